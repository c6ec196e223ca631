//! Where evidence lives: a local directory or an S3 bucket and prefix.
//!
//! `EvidenceLocation::parse("s3://bucket/prefix")` or `parse("/local/dir")`. A location names
//! the root under which runs are stored as `CASE_ID/RUN_ID/`, or (for `verify`) one run.

use std::fmt;
use std::path::PathBuf;

use crate::Error;

/// A local directory or an S3 bucket with an optional key prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvidenceLocation {
    /// A directory on this machine.
    Local(PathBuf),
    /// `s3://bucket/prefix`; `prefix` has no leading or trailing `/` and may be empty.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix, `/`-separated, without leading or trailing `/`.
        prefix: String,
    },
}

impl EvidenceLocation {
    /// Parses `s3://bucket[/prefix]` or a local path. Other URL schemes are refused.
    pub fn parse(s: &str) -> Result<EvidenceLocation, Error> {
        let bad = |reason: &str| Error::InvalidLocation {
            location: s.to_string(),
            reason: reason.to_string(),
        };
        if s.trim().is_empty() {
            return Err(bad("empty"));
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            check_bucket(bucket).map_err(bad)?;
            let prefix = prefix.trim_matches('/');
            if prefix.split('/').any(|c| c == "." || c == "..")
                || (!prefix.is_empty() && prefix.split('/').any(str::is_empty))
            {
                return Err(bad("the key prefix has empty, `.` or `..` components"));
            }
            return Ok(EvidenceLocation::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            });
        }
        if let Some((scheme, _)) = s.split_once("://") {
            if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(bad("only s3:// locations and local paths are supported"));
            }
        }
        Ok(EvidenceLocation::Local(PathBuf::from(s)))
    }

    /// This location with one more path component (a case id, a run id).
    pub fn join(&self, component: &str) -> EvidenceLocation {
        match self {
            EvidenceLocation::Local(p) => EvidenceLocation::Local(p.join(component)),
            EvidenceLocation::S3 { bucket, prefix } => EvidenceLocation::S3 {
                bucket: bucket.clone(),
                prefix: if prefix.is_empty() {
                    component.to_string()
                } else {
                    format!("{prefix}/{component}")
                },
            },
        }
    }

    /// Splits the location of one run, `ROOT/CASE_ID/RUN_ID`, into the root, the case id and
    /// the run id. `None` when the location has fewer than two components.
    pub fn split_run(&self) -> Option<(EvidenceLocation, String, String)> {
        match self {
            EvidenceLocation::Local(p) => {
                let run = p.file_name()?.to_str()?.to_string();
                let case_dir = p.parent()?;
                let case = case_dir.file_name()?.to_str()?.to_string();
                let root = case_dir.parent().map(PathBuf::from).unwrap_or_default();
                let root = if root.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    root
                };
                Some((EvidenceLocation::Local(root), case, run))
            }
            EvidenceLocation::S3 { bucket, prefix } => {
                let mut parts: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
                let run = parts.pop()?.to_string();
                let case = parts.pop()?.to_string();
                Some((
                    EvidenceLocation::S3 {
                        bucket: bucket.clone(),
                        prefix: parts.join("/"),
                    },
                    case,
                    run,
                ))
            }
        }
    }
}

impl fmt::Display for EvidenceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvidenceLocation::Local(p) => write!(f, "{}", p.display()),
            EvidenceLocation::S3 { bucket, prefix } if prefix.is_empty() => {
                write!(f, "s3://{bucket}")
            }
            EvidenceLocation::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

impl std::str::FromStr for EvidenceLocation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        EvidenceLocation::parse(s)
    }
}

fn check_bucket(b: &str) -> Result<(), &'static str> {
    if b.len() < 3 || b.len() > 63 {
        return Err("a bucket name has 3 to 63 characters");
    }
    if !b
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    {
        return Err("a bucket name has only lowercase letters, digits, `-` and `.`");
    }
    let first = b.chars().next().unwrap_or('-');
    let last = b.chars().last().unwrap_or('-');
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err("a bucket name starts and ends with a letter or digit");
    }
    Ok(())
}

/// Checks that `s` can be one path component of evidence (a case id, run id, step id or file
/// name): 1 to 255 characters of `A-Z a-z 0-9 . _ -`, not `.` or `..`. Such names need no
/// escaping in `SHA256SUMS`, in S3 keys or on any file system.
pub fn check_component(what: &'static str, s: &str) -> Result<(), Error> {
    let bad = |reason| Error::InvalidName {
        what,
        value: s.to_string(),
        reason,
    };
    if s.is_empty() || s.len() > 255 {
        return Err(bad("must have 1 to 255 characters"));
    }
    if s == "." || s == ".." {
        return Err(bad("must not be `.` or `..`"));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(bad("may use only letters, digits, `.`, `_` and `-`"));
    }
    Ok(())
}

/// Checks an item path relative to the run: `/`-separated components, each valid for
/// [`check_component`]; not `manifest.json` or `SHA256SUMS`, which the seal writes.
pub fn check_item_path(path: &str) -> Result<(), Error> {
    if path == crate::MANIFEST_NAME || path == crate::SUMS_NAME {
        return Err(Error::InvalidName {
            what: "item path",
            value: path.to_string(),
            reason: "is written by the seal",
        });
    }
    if path.len() > 1024 {
        return Err(Error::InvalidName {
            what: "item path",
            value: path.to_string(),
            reason: "must be at most 1024 characters",
        });
    }
    for c in path.split('/') {
        check_component("item path", c).map_err(|_| Error::InvalidName {
            what: "item path",
            value: path.to_string(),
            reason: "must be `/`-separated names of letters, digits, `.`, `_` and `-`",
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_s3_and_local() {
        assert_eq!(
            EvidenceLocation::parse("s3://my-bucket/a/b/").unwrap(),
            EvidenceLocation::S3 {
                bucket: "my-bucket".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(
            EvidenceLocation::parse("s3://my-bucket")
                .unwrap()
                .to_string(),
            "s3://my-bucket"
        );
        assert_eq!(
            EvidenceLocation::parse("/var/ev").unwrap(),
            EvidenceLocation::Local("/var/ev".into())
        );
        assert!(EvidenceLocation::parse("s3://My_Bucket/x").is_err());
        assert!(EvidenceLocation::parse("s3://b/../x").is_err());
        assert!(EvidenceLocation::parse("gs://bucket/x").is_err());
        assert!(EvidenceLocation::parse("").is_err());
    }

    #[test]
    fn splits_a_run() {
        let (root, case, run) = EvidenceLocation::parse("s3://bkt/pre/fix/case-1/run-2")
            .unwrap()
            .split_run()
            .unwrap();
        assert_eq!(root.to_string(), "s3://bkt/pre/fix");
        assert_eq!((case.as_str(), run.as_str()), ("case-1", "run-2"));
        let (root, case, run) = EvidenceLocation::parse("s3://bkt/case-1/run-2")
            .unwrap()
            .split_run()
            .unwrap();
        assert_eq!(root.to_string(), "s3://bkt");
        assert_eq!((case.as_str(), run.as_str()), ("case-1", "run-2"));
        assert!(EvidenceLocation::parse("s3://bkt/run")
            .unwrap()
            .split_run()
            .is_none());
        let (root, case, run) = EvidenceLocation::parse("/ev/c/r")
            .unwrap()
            .split_run()
            .unwrap();
        assert_eq!(root, EvidenceLocation::Local("/ev".into()));
        assert_eq!((case.as_str(), run.as_str()), ("c", "r"));
        assert_eq!(
            EvidenceLocation::parse("s3://bkt/x")
                .unwrap()
                .join("c")
                .join("r")
                .to_string(),
            "s3://bkt/x/c/r"
        );
    }

    #[test]
    fn names() {
        assert!(check_component("case id", "case-2024.01_a").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "é", "a\nb"] {
            assert!(check_component("case id", bad).is_err(), "{bad:?}");
        }
        assert!(check_item_path("artifacts/snap/volumes.json").is_ok());
        for bad in [
            "/abs",
            "a//b",
            "a/../b",
            "manifest.json",
            "SHA256SUMS",
            "a/b/",
            "x\\y",
        ] {
            assert!(check_item_path(bad).is_err(), "{bad:?}");
        }
    }
}
