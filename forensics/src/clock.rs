//! The one clock of the workspace: every timestamp irr writes comes from here, so the journal,
//! the manifest, the report and AWS-facing values cannot disagree on format.
//!
//! Two precisions, both RFC 3339 in UTC with a `Z`:
//! - [`now_rfc3339`]: milliseconds (`2024-05-01T12:00:00.123Z`), for what irr records
//!   (journal events, evidence items, run summaries), where ordering within a second matters;
//! - [`rfc3339_seconds`] / [`now_rfc3339_seconds`]: whole seconds (`2024-05-01T12:00:00Z`), for
//!   values that AWS reads back (IAM `aws:CurrentTime` conditions, tags), where a fraction
//!   would only be noise.

use time::OffsetDateTime;

/// The current time.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Now, RFC 3339 in UTC with milliseconds.
pub fn now_rfc3339() -> String {
    crate::manifest::Timestamp::now().to_string()
}

/// Now, RFC 3339 in UTC, whole seconds.
pub fn now_rfc3339_seconds() -> String {
    rfc3339_seconds(now())
}

/// Formats a time as RFC 3339 in UTC, whole seconds.
pub fn rfc3339_seconds(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precisions() {
        let ms = now_rfc3339();
        assert!(
            ms.ends_with('Z') && ms.len() == "2024-05-01T12:00:00.123Z".len(),
            "{ms}"
        );
        let t = time::macros::datetime!(2024-05-01 12:00:00.987 +02:00);
        assert_eq!(rfc3339_seconds(t), "2024-05-01T10:00:00Z");
        assert_eq!(now_rfc3339_seconds().len(), "2024-05-01T12:00:00Z".len());
    }
}
