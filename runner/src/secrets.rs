//! Secrets stay out: masking by value.
//!
//! A run knows two kinds of secret values: inputs the playbook declares `secret: true`, and
//! the values passed for CloudFormation parameters that the rendered template declares
//! `NoEcho: true` (registered by `cloudformation.deploy_stack` before its first call). Every
//! writer of a run goes through one [`Secrets`] registry and replaces each such value,
//! wherever it occurs (inside a longer string, echoed back in an AWS error message, in a
//! step's outputs), with [`MASK`]:
//!
//! - the journal and the terminal / JSON Lines output (`executor::Sink::emit` masks every
//!   event before it is written or shown);
//! - the evidence (`executor::RunRecorder` masks every artifact's bytes, its source and every
//!   recorded resource before staging; the journal sealed into the evidence is the masked one);
//! - `run.json` (secret inputs are left out: `irr resume` takes them again);
//! - `irr plan` / `irr policy` output and the confirmation prompt of `irr run`.
//!
//! Matching is by value, so it also catches the JSON-escaped and percent-encoded forms of a
//! value (an error message quoting a request). Values are only what irr was given or
//! rendered; a file captured verbatim with `evidence.capture file:` is evidence and is not
//! rewritten (see `docs/security.md`).

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

use serde_json::Value;

/// What a secret value is replaced by.
pub const MASK: &str = "***";

/// The environment variable `irr run` / `irr resume` read a secret input from when it is not
/// given with `--input`: `IRR_INPUT_` + the name in upper case (`api_token` ->
/// `IRR_INPUT_API_TOKEN`).
pub fn env_var(input: &str) -> String {
    format!("IRR_INPUT_{}", input.to_ascii_uppercase())
}

/// The secret values of one run. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Secrets {
    /// Every form to replace, longest first.
    patterns: Arc<RwLock<Vec<String>>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the values.
        f.debug_struct("Secrets")
            .field("patterns", &self.read().len())
            .finish()
    }
}

impl Secrets {
    /// No secrets.
    pub fn new() -> Secrets {
        Secrets::default()
    }

    /// The values of the playbook's secret inputs among `inputs`.
    pub fn for_inputs(
        playbook: &crate::model::Playbook,
        inputs: &serde_json::Map<String, Value>,
    ) -> Secrets {
        let s = Secrets::new();
        for name in playbook.secret_inputs() {
            if let Some(v) = inputs.get(name) {
                s.add_value(v);
            }
        }
        s
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<String>> {
        self.patterns.read().unwrap_or_else(|e| e.into_inner())
    }

    /// `true` when there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Registers one secret string (and its escaped forms). Empty strings are ignored.
    pub fn add(&self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        let mut forms = vec![secret.to_owned()];
        // As it appears inside JSON text (an error message quoting a request body).
        if let Ok(quoted) = serde_json::to_string(secret) {
            forms.push(quoted[1..quoted.len() - 1].to_owned());
        }
        // As it appears in a form-encoded query request (CloudFormation, EC2, IAM).
        forms.push(percent_encode(secret));
        let mut p = self.patterns.write().unwrap_or_else(|e| e.into_inner());
        for f in forms {
            if !f.is_empty() && !p.contains(&f) {
                p.push(f);
            }
        }
        p.sort_by_key(|f| std::cmp::Reverse(f.len()));
    }

    /// Registers a secret value: a string, a number or boolean as written, each item of a
    /// list, each value of a map.
    pub fn add_value(&self, v: &Value) {
        match v {
            Value::String(s) => self.add(s),
            Value::Array(items) => items.iter().for_each(|i| self.add_value(i)),
            Value::Object(m) => m.values().for_each(|i| self.add_value(i)),
            Value::Null => {}
            other => self.add(&other.to_string()),
        }
    }

    /// Adds every value `other` masks.
    pub fn extend(&self, other: &Secrets) {
        let theirs: Vec<String> = other.read().clone();
        let mut p = self.patterns.write().unwrap_or_else(|e| e.into_inner());
        for f in theirs {
            if !p.contains(&f) {
                p.push(f);
            }
        }
        p.sort_by_key(|f| std::cmp::Reverse(f.len()));
    }

    /// `text` with every secret replaced by [`MASK`].
    pub fn mask_str<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let p = self.read();
        if !p.iter().any(|f| text.contains(f.as_str())) {
            return Cow::Borrowed(text);
        }
        let mut out = text.to_owned();
        for f in p.iter() {
            if out.contains(f.as_str()) {
                out = out.replace(f.as_str(), MASK);
            }
        }
        Cow::Owned(out)
    }

    /// `bytes` with every secret replaced by [`MASK`] (byte-wise: works on any encoding
    /// that keeps ASCII and UTF-8 as they are).
    pub fn mask_bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        let p = self.read();
        if p.is_empty() {
            return Cow::Borrowed(bytes);
        }
        let mut cur: Cow<'a, [u8]> = Cow::Borrowed(bytes);
        for f in p.iter() {
            let needle = f.as_bytes();
            if find(&cur, needle).is_some() {
                cur = Cow::Owned(replace_bytes(&cur, needle, MASK.as_bytes()));
            }
        }
        cur
    }

    /// `v` with every secret replaced in every string (keys included) and in numbers and
    /// booleans that are secret as a whole.
    pub fn mask_value(&self, v: &Value) -> Value {
        if self.is_empty() {
            return v.clone();
        }
        self.mask_in(v)
    }

    fn mask_in(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.mask_str(s).into_owned()),
            Value::Array(items) => Value::Array(items.iter().map(|i| self.mask_in(i)).collect()),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (self.mask_str(k).into_owned(), self.mask_in(v)))
                    .collect(),
            ),
            Value::Number(_) | Value::Bool(_) => {
                let text = v.to_string();
                if self.read().contains(&text) {
                    Value::String(MASK.to_owned())
                } else {
                    v.clone()
                }
            }
            Value::Null => Value::Null,
        }
    }

    /// Masks a serialisable value (an event) through JSON: the same value back, masked.
    /// `None` only when it cannot round-trip (then the caller must not write it).
    pub fn mask_serde<T>(&self, t: &T) -> Option<T>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Clone,
    {
        if self.is_empty() {
            return Some(t.clone());
        }
        let v = serde_json::to_value(t).ok()?;
        serde_json::from_value(self.mask_in(&v)).ok()
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > hay.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

fn replace_bytes(hay: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masks_inside_strings_keys_bytes_and_escaped_forms() {
        let s = Secrets::new();
        s.add("pa\"ss w0rd");
        assert_eq!(s.mask_str("x=pa\"ss w0rd;"), "x=***;");
        // JSON-escaped, in a message quoting a request body.
        assert_eq!(
            s.mask_str(r#"body {"P": "pa\"ss w0rd"}"#),
            r#"body {"P": "***"}"#
        );
        // Percent-encoded, as a query request carries it.
        assert_eq!(s.mask_str("Value=pa%22ss%20w0rd&x"), "Value=***&x");
        let v = json!({"a": ["before pa\"ss w0rd after"], "pa\"ss w0rd": 1});
        assert_eq!(
            s.mask_value(&v),
            json!({"a": ["before *** after"], "***": 1})
        );
        assert_eq!(
            &*s.mask_bytes(b"{\"k\": \"pa\\\"ss w0rd\"}"),
            b"{\"k\": \"***\"}"
        );
    }

    #[test]
    fn numbers_lists_and_longest_first() {
        let s = Secrets::new();
        s.add_value(&json!([4242, "abc", "abcdef"]));
        assert_eq!(s.mask_str("abcdef abc"), "*** ***");
        assert_eq!(
            s.mask_value(&json!({"pin": 4242, "n": 7})),
            json!({"pin": "***", "n": 7})
        );
        assert!(Secrets::new().mask_str("x").as_ref() == "x");
        s.add("");
        assert_eq!(s.mask_str("plain"), "plain");
    }

    #[test]
    fn env_var_names() {
        assert_eq!(env_var("api_token"), "IRR_INPUT_API_TOKEN");
    }
}
