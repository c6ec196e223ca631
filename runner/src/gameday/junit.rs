//! The scorecard as JUnit XML.

use super::*;

/// Text for XML: `&<>"'` escaped, characters XML 1.0 cannot hold dropped.
pub(super) fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// The scorecard as JUnit XML (the schema Jenkins, GitLab and nextest read): one test suite
/// for the drill, one test case per check, a `<failure>` with the check's detail for each
/// failed one; a run that did not succeed is one more failed case, `run`.
pub fn junit_xml(card: &Scorecard) -> String {
    use std::fmt::Write as _;
    let class = format!("irr.gameday.{}", card.playbook);
    let mut cases = Vec::new();
    let status = card
        .status
        .map(|s| format!("{s:?}").to_lowercase())
        .unwrap_or_else(|| "did not run".into());
    cases.push((
        "run".to_owned(),
        card.status == Some(RunStatus::Succeeded),
        format!("run {}: {status}", card.run_id.as_deref().unwrap_or("-")),
        None,
    ));
    for c in &card.checks {
        cases.push((check_name(c), c.passed, c.detail.clone(), c.skipped.clone()));
    }
    let failures = cases.iter().filter(|c| !c.1 && c.3.is_none()).count();
    let skipped = cases.iter().filter(|c| c.3.is_some()).count();
    let total_s = card.time_to_sealed_evidence_s.unwrap_or(0.0) + card.seed_s;
    let mut o = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        o,
        "<testsuites name=\"irr gameday\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{total_s:.3}\">",
        cases.len()
    );
    let _ = writeln!(
        o,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{total_s:.3}\" timestamp=\"{}\" package=\"{}\">",
        xml_escape(&format!("gameday {}", card.scenario)),
        cases.len(),
        xml_escape(card.started_at.trim_end_matches('Z')),
        xml_escape(&class)
    );
    for (name, passed, detail, skip) in &cases {
        let _ = write!(
            o,
            "    <testcase name=\"{}\" classname=\"{}\" time=\"0\"",
            xml_escape(name),
            xml_escape(&class)
        );
        if let Some(why) = skip {
            let _ = writeln!(
                o,
                ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                xml_escape(why)
            );
        } else if *passed {
            o.push_str("/>\n");
        } else {
            let _ = writeln!(
                o,
                ">\n      <failure message=\"{}\" type=\"check\">{}</failure>\n    </testcase>",
                xml_escape(detail),
                xml_escape(detail)
            );
        }
    }
    let _ = writeln!(
        o,
        "    <system-out>{}</system-out>",
        xml_escape(&format!(
            "case {} run {} target {} score {}",
            card.case_id,
            card.run_id.as_deref().unwrap_or("-"),
            card.target,
            card.score
        ))
    );
    o.push_str("  </testsuite>\n</testsuites>\n");
    o
}
