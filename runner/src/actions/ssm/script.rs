//! The shell script `ssm.capture_volatile` runs on the instance (SSM document
//! `AWS-RunShellScript`), and the reading of what it printed.
//!
//! The script holds no credentials: only, per object, a presigned `UploadPart` URL template
//! (part number and signature left out) and the list of part numbers with their signatures.
//! It streams each object through a part buffer in RAM (`/dev/shm`), never the instance's
//! disks, sends each part with its `Content-MD5`, hashes the whole stream as it sends it, and
//! prints one `irr-object NAME SHA256 SIZE PARTS` line per object. Everything it prints is
//! the compromised instance's word: bounded, parsed strictly, and only ever recorded beside
//! irr's own hash of what arrived.

use irr_forensics::PresignedPart;

use crate::actions::ActionError;

/// One MiB.
pub(super) const MIB: u64 = 1024 * 1024;

/// Largest output of one live-response command that is kept (the rest is cut by the script).
pub(super) const COMMAND_OUTPUT_LIMIT_MIB: u64 = 16;

/// Most of the agent's standard output that is read (SSM itself returns at most 24,000
/// characters of it through `GetCommandInvocation`).
const STDOUT_LIMIT: usize = 64 * 1024;

/// The built-in live-response commands: name, output file, command line.
pub(super) const BUILT_IN: &[(&str, &str, &str)] = &[
    (
        "processes",
        "processes.txt",
        "ps auxwwf 2>&1 || ps -ef 2>&1; echo '# /proc/*/exe'; ls -l /proc/[0-9]*/exe 2>&1",
    ),
    (
        "connections",
        "connections.txt",
        "ss -tunapoe 2>&1 || netstat -tunap 2>&1",
    ),
    ("users", "users.txt", "who -a 2>&1; echo '# w'; w 2>&1"),
    (
        "logins",
        "logins.txt",
        "last -Fwx -n 1000 2>&1; echo '# lastb'; lastb -Fw -n 200 2>&1",
    ),
    (
        "modules",
        "modules.txt",
        "lsmod 2>&1; echo '# /proc/modules'; cat /proc/modules 2>&1",
    ),
];

/// The names of the built-in commands, the default of `commands`.
pub(super) fn default_commands() -> Vec<String> {
    BUILT_IN.iter().map(|(n, _, _)| (*n).to_owned()).collect()
}

/// A `commands` entry as (output file name, command line): a built-in name, or any other
/// text as a shell command line of its own (`command-N.txt`, N from 1).
pub(super) fn command_of(index: usize, entry: &str) -> (String, String) {
    match BUILT_IN.iter().find(|(n, _, _)| *n == entry.trim()) {
        Some((_, file, line)) => ((*file).to_owned(), (*line).to_owned()),
        None => (format!("command-{}.txt", index + 1), entry.to_owned()),
    }
}

/// One object the script streams.
pub(super) struct Planned {
    /// The output file name (`memory.lime`, `processes.txt`, ...).
    pub name: String,
    /// Part size in MiB (the RAM buffer the script uses).
    pub part_mib: u64,
    /// The presigned part requests, parts 1..N.
    pub parts: Vec<PresignedPart>,
    /// For a live-response command: its command line; `None` for the memory image.
    pub command: Option<String>,
}

/// A part's URL as a template (`@P@` for the part number, `@S@` for the signature) and each
/// part's signature: the script stays small (about 70 bytes a part) however many parts an
/// image needs. Every part must be signed at the same time for the same object, so that
/// only those two differ; anything else is refused rather than sent wrong.
pub(super) fn url_template(parts: &[PresignedPart]) -> Result<(String, Vec<String>), ActionError> {
    let bad = |why: &str| ActionError::Evidence(format!("presigned part URLs: {why}"));
    let first = parts.first().ok_or_else(|| bad("none"))?;
    let template = templated(&first.url, 1).ok_or_else(|| bad("unexpected form"))?;
    if template.contains(['\'', '\n', '\\']) || !template.is_ascii() {
        return Err(bad("characters that cannot be quoted"));
    }
    let mut signatures = Vec::with_capacity(parts.len());
    for p in parts {
        let sig = query_value(&p.url, "X-Amz-Signature").ok_or_else(|| bad("no signature"))?;
        if !sig.bytes().all(|b| b.is_ascii_hexdigit())
            || template
                .replace("@P@", &p.part_number.to_string())
                .replace("@S@", sig)
                != p.url
            || p.headers != first.headers
        {
            return Err(bad("parts differ in more than number and signature"));
        }
        signatures.push(sig.to_owned());
    }
    Ok((template, signatures))
}

/// The value of query parameter `name` in `url`.
fn query_value<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let query = url.split_once('?')?.1;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// The secret parts of a presigned URL: its signature and, with temporary credentials, its
/// session token (decoded).
pub(super) fn presigned_secrets(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(sig) = query_value(url, "X-Amz-Signature") {
        out.push(sig.to_owned());
    }
    if let Some(token) = query_value(url, "X-Amz-Security-Token") {
        let decoded = percent_encoding::percent_decode_str(token).decode_utf8_lossy();
        out.push(decoded.into_owned());
    }
    out
}

/// `url` with `partNumber=N` as `partNumber=@P@` and the signature as `@S@`.
fn templated(url: &str, n: i32) -> Option<String> {
    let (base, query) = url.split_once('?')?;
    let mut seen = (false, false);
    let q: Vec<String> = query
        .split('&')
        .map(|kv| {
            if kv == format!("partNumber={n}") {
                seen.0 = true;
                "partNumber=@P@".to_owned()
            } else if kv.starts_with("X-Amz-Signature=") {
                seen.1 = true;
                "X-Amz-Signature=@S@".to_owned()
            } else {
                kv.to_owned()
            }
        })
        .collect();
    (seen == (true, true)).then(|| format!("{base}?{}", q.join("&")))
}

/// Quotes `s` for the shell (single quotes; `'` as `'\''`).
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The functions every script starts with.
const PRELUDE: &str = r#"set -u
umask 077
export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
for t in curl openssl sha256sum dd base64 stat mkfifo; do
  command -v "$t" >/dev/null 2>&1 || { echo "irr-error missing-tool $t"; exit 71; }
done
# Part buffers in RAM only: the instance's disks are evidence.
B=$(mktemp -d /dev/shm/irr.XXXXXXXX) || { echo "irr-error no-ram-buffer /dev/shm"; exit 70; }
trap 'rm -rf "$B"' EXIT
# irr_send NAME PART_MIB TEMPLATE N:SIG... reads stdin to its end, sends it part by part and
# prints "irr-object NAME SHA256 SIZE PARTS", the SHA-256 taken of the stream as it is sent.
irr_send() {
  local name=$1 mib=$2 tmpl=$3 total=0 n=0 len=0 e p s u md5 hp
  shift 3
  local full=$((mib * 1048576))
  mkfifo "$B/h"
  sha256sum <"$B/h" >"$B/sum" &
  hp=$!
  exec 9>"$B/h"
  for e in "$@"; do
    p=${e%%:*}
    s=${e#*:}
    dd of="$B/part" bs=1048576 count="$mib" iflag=fullblock status=none 2>/dev/null
    len=$(stat -c %s "$B/part" 2>/dev/null || echo 0)
    if [ "$len" -eq 0 ] && [ "$n" -gt 0 ]; then break; fi
    md5=$(openssl dgst -md5 -binary "$B/part" | base64)
    u=${tmpl//@P@/$p}
    u=${u//@S@/$s}
    if ! curl -sS -f --retry 3 -X PUT -H "Expect:" -H "Content-MD5: $md5" ${IRR_H[@]+"${IRR_H[@]}"} \
         --upload-file "$B/part" -o /dev/null "$u" 2>"$B/err"; then
      echo "irr-error upload $name part $p: $(head -c 200 "$B/err" | tr -cd '[:print:]')"
      break
    fi
    cat "$B/part" >&9
    n=$((n + 1))
    total=$((total + len))
    if [ "$len" -lt "$full" ]; then break; fi
  done
  if [ "$n" -eq "$#" ] && [ "$len" -eq "$full" ] && [ "$(dd bs=1 count=1 status=none 2>/dev/null | wc -c)" -gt 0 ]; then
    echo "irr-truncated $name"
  fi
  cat >/dev/null
  exec 9>&-
  wait "$hp"
  echo "irr-object $name $(cut -d' ' -f1 "$B/sum") $total $n"
  rm -f "$B/h" "$B/sum" "$B/part" "$B/err"
}
"#;

/// The memory part: AVML to its standard output, else a LiME module serving on loopback,
/// else a note that neither is there.
fn memory_block(send: &str) -> String {
    format!(
        r#"if command -v avml >/dev/null 2>&1; then
  echo "irr-memory avml"
  avml /dev/stdout 2>"$B/avml.err" | {send}
  [ -s "$B/avml.err" ] && echo "irr-note avml: $(head -c 200 "$B/avml.err" | tr -cd '[:print:]')"
else
  k=""
  for c in "/lib/modules/$(uname -r)/extra/lime.ko" "/opt/lime/lime-$(uname -r).ko" "/usr/local/lib/lime/lime-$(uname -r).ko"; do
    if [ -f "$c" ]; then k=$c; break; fi
  done
  if [ -n "$k" ]; then
    echo "irr-memory lime $k"
    insmod "$k" "path=tcp:4444 format=lime" &
    ip=$!
    for i in $(seq 1 30); do
      ss -ltn 2>/dev/null | grep -q '127.0.0.1:4444 \|:4444 ' && break
      sleep 1
    done
    exec 8<>/dev/tcp/127.0.0.1/4444 && {{ {send} <&8; exec 8<&-; }}
    wait "$ip"
    rmmod lime 2>/dev/null
  else
    echo "irr-memory none: neither avml nor a LiME module for $(uname -r) is on the instance"
  fi
fi
"#,
    )
}

/// The script for `planned` objects: memory first (when planned), then each command. `header`
/// names the case, run and step.
pub(super) fn build_refs(header: &str, planned: &[&Planned]) -> Result<String, ActionError> {
    let mut s = format!("#!/bin/bash\n# irr ssm.capture_volatile: {header}\n# Streams volatile state into irr's evidence bucket through presigned UploadPart URLs made\n# by irr for exactly these objects: no credentials, nothing written to this instance's disks.\n");
    s.push_str(PRELUDE);
    let headers = planned.first().map(|p| {
        p.parts
            .first()
            .map(|f| f.headers.clone())
            .unwrap_or_default()
    });
    s.push_str("IRR_H=(");
    for (k, v) in headers.unwrap_or_default() {
        s.push_str(&format!(" -H {}", quote(&format!("{k}: {v}"))));
    }
    s.push_str(" )\n");
    for (i, p) in planned.iter().enumerate() {
        if p.parts
            .iter()
            .any(|x| Some(&x.headers) != planned[0].parts.first().map(|f| &f.headers))
        {
            return Err(ActionError::Evidence(
                "presigned part URLs: objects differ in their signed headers".into(),
            ));
        }
        let (template, sigs) = url_template(&p.parts)?;
        s.push_str(&format!("IRR_T_{i}={}\n", quote(&template)));
        let list: Vec<String> = sigs
            .iter()
            .enumerate()
            .map(|(n, sig)| format!("{}:{sig}", n + 1))
            .collect();
        s.push_str(&format!("IRR_P_{i}=({})\n", list.join(" ")));
        let send = format!(
            "irr_send {} {} \"$IRR_T_{i}\" \"${{IRR_P_{i}[@]}}\"",
            p.name, p.part_mib
        );
        match &p.command {
            None => s.push_str(&memory_block(&send)),
            Some(line) => s.push_str(&format!(
                "( {line} ) </dev/null 2>&1 | head -c {} | {send}\n",
                COMMAND_OUTPUT_LIMIT_MIB * MIB
            )),
        }
    }
    s.push_str("echo irr-done\n");
    Ok(s)
}

/// What the agent said about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AgentObject {
    /// SHA-256 (hex) the script took of the stream it sent.
    pub sha256: String,
    /// Bytes it sent.
    pub size: u64,
    /// Parts it sent.
    pub parts: u64,
}

/// What the agent printed, parsed: per object name its word, the memory tool, its errors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct AgentReport {
    /// `irr-object` lines, by object name (only names that were planned).
    pub objects: std::collections::BTreeMap<String, AgentObject>,
    /// `irr-truncated` names: the stream was longer than the parts irr presigned.
    pub truncated: Vec<String>,
    /// The `irr-memory` line's text (`avml`, `lime PATH`, `none: ...`).
    pub memory_tool: Option<String>,
    /// `irr-error` and `irr-note` lines (at most 20, each at most 300 characters).
    pub notes: Vec<String>,
    /// The script reached its end (`irr-done`).
    pub done: bool,
}

/// Parses the agent's standard output; names not in `planned` are ignored.
pub(super) fn parse_output(stdout: &str, planned: &[&str]) -> AgentReport {
    let mut r = AgentReport::default();
    let text = &stdout[..floor_char_boundary(stdout, STDOUT_LIMIT)];
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["irr-object", name, sha, size, parts] if planned.contains(name) => {
                let hex = sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit());
                if let (true, Ok(size), Ok(parts)) = (hex, size.parse(), parts.parse()) {
                    r.objects.insert(
                        (*name).to_owned(),
                        AgentObject {
                            sha256: sha.to_ascii_lowercase(),
                            size,
                            parts,
                        },
                    );
                }
            }
            ["irr-truncated", name] if planned.contains(name) => {
                r.truncated.push((*name).to_owned())
            }
            ["irr-memory", ..] => {
                r.memory_tool = Some(clip(line.trim_start_matches("irr-memory").trim()))
            }
            ["irr-done"] => r.done = true,
            [w, ..] if (*w == "irr-error" || *w == "irr-note") && r.notes.len() < 20 => {
                r.notes.push(clip(line))
            }
            _ => {}
        }
    }
    r
}

fn clip(s: &str) -> String {
    let s: String = s.chars().filter(|c| !c.is_control()).take(300).collect();
    redact_presigned(&s)
}

fn floor_char_boundary(s: &str, max: usize) -> usize {
    let mut i = max.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// `text` with the values of `X-Amz-Signature`, `X-Amz-Credential` and
/// `X-Amz-Security-Token` (and the per-part signatures of a script, `N:HEX`) replaced by
/// `[redacted]`: what irr records of a script or of the agent's output never holds a usable
/// presigned URL.
pub(super) fn redact_presigned(text: &str) -> String {
    let mut out = text.to_owned();
    for name in [
        "X-Amz-Signature=",
        "X-Amz-Credential=",
        "X-Amz-Security-Token=",
    ] {
        let mut from = 0;
        while let Some(at) = out[from..].find(name).map(|i| from + i + name.len()) {
            let end = out[at..]
                .find(|c: char| c == '&' || c == '\'' || c == '"' || c.is_whitespace())
                .map_or(out.len(), |i| at + i);
            if &out[at..end] != "@S@" {
                out.replace_range(at..end, "[redacted]");
            }
            from = at;
        }
    }
    // The signature lists: `N:HEX` words of 64 hex digits.
    out.split_inclusive([' ', '(', '\n'])
        .map(|w| {
            let core = w.trim_end_matches([' ', '(', ')', '\n']);
            match core.split_once(':') {
                Some((n, sig))
                    if !n.is_empty()
                        && n.bytes().all(|b| b.is_ascii_digit())
                        && sig.len() == 64
                        && sig.bytes().all(|b| b.is_ascii_hexdigit()) =>
                {
                    w.replacen(sig, "[redacted]", 1)
                }
                _ => w.to_owned(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(n: i32, sig: &str) -> PresignedPart {
        PresignedPart {
            part_number: n,
            url: format!("https://b.s3.amazonaws.com/c/r/artifacts/s/memory.lime?x-id=UploadPart&partNumber={n}&uploadId=U1&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20260101T000000Z&X-Amz-Expires=960&X-Amz-SignedHeaders=host%3Bx-amz-expected-bucket-owner&X-Amz-Signature={sig}"),
            headers: vec![("x-amz-expected-bucket-owner".into(), "123456789012".into())],
        }
    }

    #[test]
    fn parts_become_one_template_and_their_signatures() {
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let (t, sigs) = url_template(&[part(1, &a), part(2, &b)]).unwrap();
        assert!(
            t.contains("partNumber=@P@") && t.ends_with("X-Amz-Signature=@S@"),
            "{t}"
        );
        assert_eq!(sigs, vec![a.clone(), b]);
        // A part that differs in anything else is refused.
        let mut other = part(2, &a);
        other.url = other.url.replace("uploadId=U1", "uploadId=U2");
        assert!(url_template(&[part(1, &a), other]).is_err());
    }

    #[test]
    fn a_script_holds_no_signature_once_redacted_and_no_credential_at_all() {
        let sig = "0123456789abcdef".repeat(4);
        let planned = [Planned {
            name: "processes.txt".into(),
            part_mib: 16,
            parts: vec![part(1, &sig)],
            command: Some("ps aux".into()),
        }];
        let script = build_refs("case IR-1", &[&planned[0]]).unwrap();
        assert!(script.contains(&format!("IRR_P_0=(1:{sig})")), "{script}");
        let red = redact_presigned(&script);
        assert!(!red.contains(&sig), "{red}");
        assert!(!red.contains("AKIAEXAMPLE"), "{red}");
        assert!(red.contains("X-Amz-Signature=@S@"), "{red}");
        assert!(red.contains("1:[redacted]"), "{red}");
    }

    #[test]
    fn the_agents_word_is_parsed_strictly() {
        let hex = "ab".repeat(32);
        let out = format!(
            "irr-memory avml\nirr-object memory.lime {hex} 10 1\nirr-object other.txt {hex} 1 1\nirr-object processes.txt nothex 5 1\nirr-error upload x https://h/k?X-Amz-Signature=dead&a=1\nirr-done\n"
        );
        let r = parse_output(&out, &["memory.lime", "processes.txt"]);
        assert_eq!(r.memory_tool.as_deref(), Some("avml"));
        assert_eq!(r.objects.len(), 1, "{r:?}");
        assert_eq!(r.objects["memory.lime"].size, 10);
        assert!(r.done);
        assert_eq!(r.notes.len(), 1);
        assert!(!r.notes[0].contains("dead"), "{:?}", r.notes);
    }

    #[test]
    fn commands_are_built_in_names_or_command_lines() {
        assert_eq!(command_of(0, "processes").0, "processes.txt");
        assert_eq!(
            command_of(2, "cat /etc/hosts"),
            ("command-3.txt".to_owned(), "cat /etc/hosts".to_owned())
        );
        assert_eq!(default_commands().len(), 5);
    }
}
