//! The value types of inputs, action parameters and outputs, and how values are checked
//! against them. One type system for all three, so `irr validate` can tell that an input of
//! type `string` cannot feed a parameter that wants a list of ARNs.

use std::fmt;
use std::time::Duration;

use serde_json::Value;

/// A value type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueType {
    /// Any string.
    String,
    /// A whole number.
    Integer,
    /// `true` / `false`.
    Boolean,
    /// A list of values of one type.
    List(Box<ValueType>),
    /// A mapping from strings to values of one type.
    Map(Box<ValueType>),
    /// `i-` and 8 or 17 hex digits.
    InstanceId,
    /// `vol-` and 8 or 17 hex digits.
    VolumeId,
    /// `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`.
    Arn,
    /// 12 digits.
    AccountId,
    /// e.g. `us-east-1`.
    Region,
    /// IPv4 or IPv6 CIDR block.
    Cidr,
    /// `AKIA`/`ASIA` and 16 upper-case letters or digits.
    AccessKeyId,
    /// An S3 bucket name.
    BucketName,
    /// `10s`, `5m`, `2h`, `1d`, or combinations such as `1h30m`.
    Duration,
    /// An IAM policy document (a mapping with `Statement`).
    PolicyDocument,
    /// An IPv4 or IPv6 address (no prefix length).
    IpAddress,
    /// An RFC 3339 date and time with its offset, e.g. `2026-01-31T09:30:00Z`.
    Timestamp,
    /// `sg-` and 8 or 17 hex digits.
    SecurityGroupId,
    /// `vpc-` and 8 or 17 hex digits.
    VpcId,
    /// `subnet-` and 8 or 17 hex digits.
    SubnetId,
    /// `ami-` and 8 or 17 hex digits.
    ImageId,
    /// Anything (e.g. `evidence.capture`'s `content`).
    Any,
}

/// The input types of the playbook format, by their names in YAML.
pub const INPUT_TYPE_NAMES: &[&str] = &[
    "string",
    "integer",
    "boolean",
    "list",
    "instance_id",
    "volume_id",
    "arn",
    "account_id",
    "region",
    "cidr",
    "access_key_id",
    "bucket_name",
    "duration",
];

impl ValueType {
    /// The scalar type named `name` in the playbook format (`list` needs `items`, so it is
    /// not returned here).
    pub fn scalar_from_name(name: &str) -> Option<ValueType> {
        Some(match name {
            "string" => ValueType::String,
            "integer" => ValueType::Integer,
            "boolean" => ValueType::Boolean,
            "instance_id" => ValueType::InstanceId,
            "volume_id" => ValueType::VolumeId,
            "arn" => ValueType::Arn,
            "account_id" => ValueType::AccountId,
            "region" => ValueType::Region,
            "cidr" => ValueType::Cidr,
            "access_key_id" => ValueType::AccessKeyId,
            "bucket_name" => ValueType::BucketName,
            "duration" => ValueType::Duration,
            _ => return None,
        })
    }

    /// `true` for types whose values are strings in YAML.
    pub fn is_stringy(&self) -> bool {
        !matches!(
            self,
            ValueType::Integer
                | ValueType::Boolean
                | ValueType::List(_)
                | ValueType::Map(_)
                | ValueType::PolicyDocument
                | ValueType::Any
        )
    }

    /// Whether a value of type `other` can be used where `self` is expected (used for
    /// single-expression templates, whose value keeps its type).
    pub fn accepts(&self, other: &ValueType) -> bool {
        use ValueType as T;
        match (self, other) {
            (T::Any, _) | (_, T::Any) => true,
            (T::String, o) => o.is_stringy(),
            (T::List(a), T::List(b)) | (T::Map(a), T::Map(b)) => a.accepts(b),
            (T::PolicyDocument, T::Map(_)) => true,
            // A plain string may hold an id: checked again at run time.
            (s, T::String) => s.is_stringy(),
            (a, b) => a == b,
        }
    }

    /// Checks a concrete value. Returns what is wrong, in words a responder understands.
    pub fn check(&self, value: &Value) -> Result<(), String> {
        use ValueType as T;
        match self {
            T::Any => Ok(()),
            T::Integer => match value {
                Value::Number(n) if n.is_i64() || n.is_u64() => Ok(()),
                other => Err(format!("expected an integer, got {}", describe(other))),
            },
            T::Boolean => match value {
                Value::Bool(_) => Ok(()),
                other => Err(format!("expected true or false, got {}", describe(other))),
            },
            T::List(item) => match value {
                Value::Array(items) => items.iter().enumerate().try_for_each(|(i, v)| {
                    item.check(v).map_err(|e| format!("item {}: {e}", i + 1))
                }),
                other => Err(format!("expected {self}, got {}", describe(other))),
            },
            T::Map(item) => match value {
                Value::Object(m) => m
                    .iter()
                    .try_for_each(|(k, v)| item.check(v).map_err(|e| format!("\"{k}\": {e}"))),
                other => Err(format!("expected {self}, got {}", describe(other))),
            },
            T::PolicyDocument => match value {
                Value::Object(m) if m.contains_key("Statement") => Ok(()),
                Value::Object(_) => {
                    Err("an IAM policy document needs a \"Statement\" list".to_owned())
                }
                other => Err(format!(
                    "expected an IAM policy document (a mapping), got {}",
                    describe(other)
                )),
            },
            stringy => match value {
                Value::String(s) => stringy.check_str(s),
                other => Err(format!("expected {stringy}, got {}", describe(other))),
            },
        }
    }

    fn check_str(&self, s: &str) -> Result<(), String> {
        use ValueType as T;
        let ok = match self {
            T::String => true,
            T::InstanceId => is_resource_id(s, "i-"),
            T::VolumeId => is_resource_id(s, "vol-"),
            T::Arn => is_arn(s),
            T::AccountId => s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()),
            T::Region => is_region(s),
            T::Cidr => is_cidr(s),
            T::AccessKeyId => {
                (s.starts_with("AKIA") || s.starts_with("ASIA"))
                    && s.len() == 20
                    && s.bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            }
            T::BucketName => is_bucket_name(s),
            T::Duration => return parse_duration(s).map(|_| ()),
            T::IpAddress => s.parse::<std::net::IpAddr>().is_ok(),
            T::Timestamp => parse_timestamp(s).is_ok(),
            T::SecurityGroupId => is_resource_id(s, "sg-"),
            T::VpcId => is_resource_id(s, "vpc-"),
            T::SubnetId => is_resource_id(s, "subnet-"),
            T::ImageId => is_resource_id(s, "ami-"),
            _ => true,
        };
        if ok {
            Ok(())
        } else {
            Err(format!("\"{s}\" is not {self}{}", self.example()))
        }
    }

    fn example(&self) -> &'static str {
        match self {
            ValueType::InstanceId => " (\"i-\" and 8 or 17 hex digits, e.g. i-0abc1234def567890)",
            ValueType::VolumeId => " (\"vol-\" and 8 or 17 hex digits)",
            ValueType::Arn => " (e.g. arn:aws:iam::123456789012:user/alice)",
            ValueType::AccountId => " (12 digits)",
            ValueType::Region => " (e.g. us-east-1)",
            ValueType::Cidr => " (e.g. 10.0.0.0/16 or 2001:db8::/32)",
            ValueType::AccessKeyId => " (20 characters starting AKIA or ASIA)",
            ValueType::BucketName => " (3-63 lowercase letters, digits, dots and hyphens)",
            ValueType::IpAddress => " (e.g. 10.0.1.25 or 2001:db8::1, without a prefix length)",
            ValueType::Timestamp => {
                " (RFC 3339 with its offset, e.g. 2026-01-31T09:30:00Z or 2026-01-31T10:30:00+01:00)"
            }
            ValueType::SecurityGroupId => " (\"sg-\" and 8 or 17 hex digits)",
            ValueType::VpcId => " (\"vpc-\" and 8 or 17 hex digits)",
            ValueType::SubnetId => " (\"subnet-\" and 8 or 17 hex digits)",
            ValueType::ImageId => " (\"ami-\" and 8 or 17 hex digits)",
            _ => "",
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueType::String => f.write_str("a string"),
            ValueType::Integer => f.write_str("an integer"),
            ValueType::Boolean => f.write_str("a boolean"),
            ValueType::List(t) => write!(f, "a list of {}", Plural(t)),
            ValueType::Map(t) => write!(f, "a mapping of {}", Plural(t)),
            ValueType::InstanceId => f.write_str("an instance id"),
            ValueType::VolumeId => f.write_str("a volume id"),
            ValueType::Arn => f.write_str("an ARN"),
            ValueType::AccountId => f.write_str("an account id"),
            ValueType::Region => f.write_str("a region"),
            ValueType::Cidr => f.write_str("a CIDR block"),
            ValueType::AccessKeyId => f.write_str("an access key id"),
            ValueType::BucketName => f.write_str("a bucket name"),
            ValueType::Duration => f.write_str("a duration"),
            ValueType::PolicyDocument => f.write_str("an IAM policy document"),
            ValueType::IpAddress => f.write_str("an IP address"),
            ValueType::Timestamp => f.write_str("a timestamp"),
            ValueType::SecurityGroupId => f.write_str("a security group id"),
            ValueType::VpcId => f.write_str("a VPC id"),
            ValueType::SubnetId => f.write_str("a subnet id"),
            ValueType::ImageId => f.write_str("an image id"),
            ValueType::Any => f.write_str("any value"),
        }
    }
}

struct Plural<'a>(&'a ValueType);

impl fmt::Display for Plural<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.to_string();
        let s = s
            .strip_prefix("a ")
            .or_else(|| s.strip_prefix("an "))
            .unwrap_or(&s);
        if let Some(rest) = s.strip_prefix("list") {
            write!(f, "lists{rest}")
        } else if let Some(rest) = s.strip_prefix("mapping") {
            write!(f, "mappings{rest}")
        } else if s == "any value" {
            f.write_str("values")
        } else if s.ends_with('s') {
            write!(f, "{s}es")
        } else {
            write!(f, "{s}s")
        }
    }
}

/// How a JSON value reads in a message.
pub fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".to_owned(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string \"{s}\""),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a mapping".to_owned(),
    }
}

fn is_resource_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|hex| {
        (hex.len() == 8 || hex.len() == 17) && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

fn is_arn(s: &str) -> bool {
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && !parts[2].is_empty()
        && !parts[5].is_empty()
}

fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].parse::<u8>().is_ok()
}

/// An IPv4 or IPv6 network in CIDR notation (by the `ipnet` crate).
fn is_cidr(s: &str) -> bool {
    s.parse::<ipnet::IpNet>().is_ok()
}

fn is_bucket_name(s: &str) -> bool {
    (3..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

/// Parses an RFC 3339 date and time (`2026-01-31T09:30:00Z`, an offset required).
pub fn parse_timestamp(s: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("\"{s}\" is not an RFC 3339 timestamp: {e}"))
}

/// Parses `10s`, `5m`, `2h`, `1d` and combinations such as `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!("\"{s}\" is not a duration; write a number and a unit (s, m, h or d), e.g. 30s, 5m, 4h or 1h30m")
    };
    if s.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = num.parse().map_err(|_| bad())?;
        total = total
            .checked_add(n.checked_mul(unit).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        num.clear();
    }
    if !num.is_empty() {
        return Err(bad());
    }
    if total == 0 {
        return Err(format!(
            "\"{s}\" is zero; a duration must be longer than that"
        ));
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap().as_secs(), 10);
        assert_eq!(parse_duration("1h30m").unwrap().as_secs(), 5400);
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn ids_and_names() {
        assert!(ValueType::InstanceId
            .check(&json!("i-0abc1234def567890"))
            .is_ok());
        assert!(ValueType::InstanceId.check(&json!("i-12345678")).is_ok());
        assert!(ValueType::InstanceId.check(&json!("i-123")).is_err());
        assert!(ValueType::Arn
            .check(&json!("arn:aws:iam::123456789012:role/x"))
            .is_ok());
        assert!(ValueType::Arn.check(&json!("role/x")).is_err());
        assert!(ValueType::Cidr.check(&json!("10.0.0.0/8")).is_ok());
        assert!(ValueType::Cidr.check(&json!("10.0.0.0/33")).is_err());
        assert!(ValueType::BucketName.check(&json!("Evidence")).is_err());
        assert!(ValueType::AccessKeyId
            .check(&json!("AKIAIOSFODNN7EXAMPLE"))
            .is_ok());
    }

    #[test]
    fn addresses_times_and_network_ids() {
        let ip = ValueType::IpAddress;
        assert!(ip.check(&json!("10.0.1.25")).is_ok());
        assert!(ip.check(&json!("2001:db8::1")).is_ok());
        for bad in [
            "10.0.1",
            "10.0.1.256",
            "10.0.0.0/8",
            "10.0.1.25 ",
            "host.example.com",
        ] {
            let err = ip.check(&json!(bad)).unwrap_err();
            assert!(err.contains("is not an IP address"), "{bad}: {err}");
        }
        let t = ValueType::Timestamp;
        assert!(t.check(&json!("2026-01-31T09:30:00Z")).is_ok());
        assert!(t.check(&json!("2026-01-31T10:30:00.5+01:00")).is_ok());
        assert!(t.check(&json!("2026-01-31T09:30:00")).is_err(), "no offset");
        assert!(
            t.check(&json!("2026-02-30T09:30:00Z")).is_err(),
            "no such day"
        );
        assert!(t.check(&json!("yesterday")).is_err());
        assert!(ValueType::SecurityGroupId
            .check(&json!("sg-0123abcd"))
            .is_ok());
        assert!(ValueType::SecurityGroupId.check(&json!("sg-xyz")).is_err());
        assert!(ValueType::VpcId
            .check(&json!("vpc-0123456789abcdef0"))
            .is_ok());
        assert!(ValueType::VpcId.check(&json!("subnet-0123abcd")).is_err());
        assert!(ValueType::SubnetId.check(&json!("subnet-0123abcd")).is_ok());
        assert!(ValueType::ImageId.check(&json!("ami-12c6146b")).is_ok());
        assert!(ValueType::ImageId.check(&json!("ami-12c6146")).is_err());
    }

    #[test]
    fn lists_name_the_bad_item() {
        let t = ValueType::List(Box::new(ValueType::Arn));
        let err = t
            .check(&json!(["arn:aws:iam::123456789012:user/a", "bob"]))
            .unwrap_err();
        assert!(err.starts_with("item 2:"), "{err}");
    }

    #[test]
    fn type_compatibility() {
        let arns = ValueType::List(Box::new(ValueType::Arn));
        assert!(arns.accepts(&ValueType::List(Box::new(ValueType::Arn))));
        assert!(!arns.accepts(&ValueType::String));
        assert!(ValueType::String.accepts(&ValueType::InstanceId));
        assert!(ValueType::InstanceId.accepts(&ValueType::String));
        assert!(!ValueType::InstanceId.accepts(&ValueType::Integer));
    }
}
