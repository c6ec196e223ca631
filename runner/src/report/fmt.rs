//! Small formatting helpers shared by the assembly and the renderers.

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub(crate) fn parse_ts(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// Milliseconds from `a` to `b` (RFC 3339).
pub(crate) fn millis_between(a: &str, b: &str) -> Option<i64> {
    let (a, b) = (parse_ts(a)?, parse_ts(b)?);
    i64::try_from((b - a).whole_milliseconds()).ok()
}

pub(crate) fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// A value in one line: strings bare, lists of scalars comma-separated, the rest as JSON.
pub(crate) fn short_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()) => {
            a.iter().map(short_value).collect::<Vec<_>>().join(",")
        }
        other => compact(other),
    }
}

/// Call parameters in one line: `key=value, ...`.
pub(crate) fn key_params(v: &Value) -> String {
    match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", short_value(v)))
            .collect::<Vec<_>>()
            .join(", "),
        Value::Null => String::new(),
        other => short_value(other),
    }
}

pub(crate) fn short_hash(h: &str) -> String {
    h.chars().take(12).collect()
}

/// `850 ms`, `1.24 s`, `3 m 05 s`, `2 h 03 m`.
pub(crate) fn fmt_ms(ms: i64) -> String {
    let neg = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    if ms < 1000 {
        format!("{neg}{ms} ms")
    } else if ms < 60_000 {
        format!("{neg}{:.2} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{neg}{} m {:02} s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{neg}{} h {:02} m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

pub(crate) fn fmt_offset(ms: Option<i64>) -> String {
    match ms {
        Some(ms) => format!("+{}", fmt_ms(ms)),
        None => String::new(),
    }
}

pub(crate) fn fmt_opt_ms(ms: Option<i64>) -> String {
    ms.map(fmt_ms).unwrap_or_default()
}

pub(crate) fn fmt_bytes(n: u64) -> String {
    if n < 1024 {
        format!("{n} B")
    } else if n < 1024 * 1024 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else if n < 1024 * 1024 * 1024 {
        format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
    } else {
        format!("{:.2} GiB", n as f64 / (1024.0 * 1024.0 * 1024.0))
    }
}

// ---- rendering -------------------------------------------------------------------------------
