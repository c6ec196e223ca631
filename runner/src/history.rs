//! `irr history [PLAYBOOK]`: past drills' scorecards (`STATE_DIR/gamedays/*.json`, kept by
//! `irr gameday`) over time, per playbook: time to contain, time to sealed evidence, checks
//! passed, and the change since the previous drill.
//!
//! The files are hostile input like any other: at most [`MAX_FILES`] are read, each at most
//! [`MAX_FILE_BYTES`]; anything that is not a regular file or not a scorecard is reported
//! (file and reason) and skipped, never trusted and never a panic.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::exit_codes::{self, Exit};

/// Scorecards read at most.
pub const MAX_FILES: usize = 10_000;
/// Largest scorecard file read.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// What history keeps of one drill.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Drill {
    /// Playbook name.
    pub playbook: String,
    /// Scenario name.
    #[serde(default)]
    pub scenario: String,
    /// When the drill started (RFC 3339).
    pub started_at: String,
    /// The run.
    #[serde(default)]
    pub run_id: Option<String>,
    /// The run's status.
    #[serde(default)]
    pub status: Option<String>,
    /// Seconds.
    #[serde(default)]
    pub time_to_contain_s: Option<f64>,
    /// Seconds.
    #[serde(default)]
    pub time_to_sealed_evidence_s: Option<f64>,
    /// Checks passed.
    #[serde(default)]
    pub checks_passed: usize,
    /// Checks in all.
    #[serde(default)]
    pub checks_total: usize,
    /// The file it came from.
    #[serde(skip_deserializing)]
    pub file: String,
}

#[derive(Deserialize)]
struct CardFile {
    playbook: String,
    #[serde(default)]
    scenario: String,
    started_at: String,
    #[serde(default)]
    run_id: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    time_to_contain_s: Option<f64>,
    #[serde(default)]
    time_to_sealed_evidence_s: Option<f64>,
    #[serde(default)]
    checks: Vec<CardCheck>,
}

#[derive(Deserialize)]
struct CardCheck {
    passed: bool,
}

/// A file that was skipped, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// The file.
    pub file: String,
    /// Why it was skipped.
    pub reason: String,
}

fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite() && *x >= 0.0)
}

/// Reads one scorecard file, bounded.
fn read_card(path: &Path) -> Result<Drill, String> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| e.to_string())?;
    if !meta.file_type().is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{} bytes, larger than {MAX_FILE_BYTES}",
            meta.len()
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    let c: CardFile =
        serde_json::from_slice(&bytes).map_err(|e| format!("not a scorecard: {e}"))?;
    let fmt = &time::format_description::well_known::Rfc3339;
    if time::OffsetDateTime::parse(&c.started_at, fmt).is_err() {
        return Err(format!(
            "started_at \"{}\" is not an RFC 3339 time",
            c.started_at.chars().take(40).collect::<String>()
        ));
    }
    if c.playbook.is_empty() || c.playbook.len() > 128 {
        return Err("no playbook name".into());
    }
    Ok(Drill {
        checks_passed: c.checks.iter().filter(|x| x.passed).count(),
        checks_total: c.checks.len(),
        playbook: c.playbook,
        scenario: c.scenario,
        started_at: c.started_at,
        run_id: c.run_id,
        status: c.status,
        time_to_contain_s: finite(c.time_to_contain_s),
        time_to_sealed_evidence_s: finite(c.time_to_sealed_evidence_s),
        file: path.display().to_string(),
    })
}

/// Every drill kept under `STATE_DIR/gamedays/`, oldest first, and the files skipped.
pub fn load(state_dir: &Path) -> (Vec<Drill>, Vec<Problem>) {
    let dir = crate::gameday::history_dir(state_dir);
    let mut drills = Vec::new();
    let mut problems = Vec::new();
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (drills, problems),
        Err(e) => {
            problems.push(Problem {
                file: dir.display().to_string(),
                reason: e.to_string(),
            });
            return (drills, problems);
        }
    };
    let mut paths: Vec<PathBuf> = Vec::new();
    for entry in rd {
        if paths.len() >= MAX_FILES {
            problems.push(Problem {
                file: dir.display().to_string(),
                reason: format!("more than {MAX_FILES} files; the rest were not read"),
            });
            break;
        }
        match entry {
            Ok(e) => paths.push(e.path()),
            Err(e) => problems.push(Problem {
                file: dir.display().to_string(),
                reason: e.to_string(),
            }),
        }
    }
    paths.sort();
    for p in paths {
        if p.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        match read_card(&p) {
            Ok(d) => drills.push(d),
            Err(reason) => problems.push(Problem {
                file: p.display().to_string(),
                reason,
            }),
        }
    }
    drills.sort_by(|a, b| (&a.started_at, &a.file).cmp(&(&b.started_at, &b.file)));
    (drills, problems)
}

fn secs(v: Option<f64>) -> String {
    v.map(|s| format!("{s:.2} s")).unwrap_or_else(|| "-".into())
}

fn delta(now: Option<f64>, before: Option<f64>) -> String {
    match (now, before) {
        (Some(a), Some(b)) => {
            let d = a - b;
            if d.abs() < 0.005 {
                "same".into()
            } else if d < 0.0 {
                format!("{:.2} s faster", -d)
            } else {
                format!("{d:.2} s slower")
            }
        }
        _ => "-".into(),
    }
}

/// `irr history [PLAYBOOK]`: PLAYBOOK is a playbook name or file (its `metadata.name`).
pub fn command(state_dir: &Path, playbook: Option<&str>, json_out: bool) -> Exit {
    let filter = match playbook {
        None => None,
        Some(p) if Path::new(p).is_file() => {
            let name = std::fs::read_to_string(p)
                .ok()
                .map(|t| crate::diagnostic::Source::new(p, t))
                .and_then(|src| crate::validate::validate(&src).ok())
                .map(|pb| pb.metadata.name.clone());
            match name {
                Some(n) => Some(n),
                None => {
                    let _ = writeln!(
                        std::io::stderr().lock(),
                        "error: {p} is not a valid playbook (`irr validate {p}` says why)"
                    );
                    return exit_codes::INVALID;
                }
            }
        }
        Some(p) => Some(p.to_owned()),
    };
    let (drills, problems) = load(state_dir);
    let mut by_playbook: BTreeMap<String, Vec<Drill>> = BTreeMap::new();
    for d in drills {
        if filter.is_none() || filter.as_deref() == Some(d.playbook.as_str()) {
            by_playbook.entry(d.playbook.clone()).or_default().push(d);
        }
    }
    if json_out {
        let list: Vec<serde_json::Value> = by_playbook
            .iter()
            .map(|(name, drills)| json!({"playbook": name, "drills": drills}))
            .collect();
        let _ = writeln!(
            std::io::stdout().lock(),
            "{}",
            serde_json::to_string_pretty(&json!({"playbooks": list, "problems": problems}))
                .unwrap_or_default()
        );
    } else {
        let mut out = std::io::stdout().lock();
        if by_playbook.is_empty() {
            let _ = writeln!(
                out,
                "no drills kept in {}{}",
                crate::gameday::history_dir(state_dir).display(),
                filter
                    .as_deref()
                    .map(|f| format!(" for playbook {f}"))
                    .unwrap_or_default()
            );
        }
        for (name, drills) in &by_playbook {
            let _ = writeln!(out, "{name} ({} drill(s))", drills.len());
            let _ = writeln!(
                out,
                "  {:<22} {:<12} {:>10} {:>12} {:>7}  vs previous",
                "started", "status", "contain", "evidence", "checks"
            );
            let mut prev: Option<&Drill> = None;
            for d in drills {
                let _ = writeln!(
                    out,
                    "  {:<22} {:<12} {:>10} {:>12} {:>7}  contain {}, evidence {}",
                    d.started_at,
                    d.status.as_deref().unwrap_or("-"),
                    secs(d.time_to_contain_s),
                    secs(d.time_to_sealed_evidence_s),
                    format!("{}/{}", d.checks_passed, d.checks_total),
                    delta(d.time_to_contain_s, prev.and_then(|p| p.time_to_contain_s)),
                    delta(
                        d.time_to_sealed_evidence_s,
                        prev.and_then(|p| p.time_to_sealed_evidence_s)
                    ),
                );
                prev = Some(d);
            }
        }
        let mut err = std::io::stderr().lock();
        for p in &problems {
            let _ = writeln!(err, "skipped {}: {}", p.file, p.reason);
        }
    }
    exit_codes::SUCCESS
}
