//! One replay of a journal: the run's state rebuilt from its typed events, for `irr resume`,
//! the seal, the case's record, drills and `irr report` alike, so that no two readers can
//! disagree about what a journal says.

use std::collections::HashMap;

use serde_json::Value;

use super::Entry;
use crate::actions::{AwsResource, CallOutcome, Gap};
use crate::events::{EvidenceSummary, RunEvent, RunStatus, StepSummary};

/// A `run_started` (the first, and one per `irr resume`).
#[derive(Clone, Debug)]
pub struct Start {
    /// When.
    pub ts: String,
    /// Run id.
    pub run_id: String,
    /// Case id.
    pub case_id: String,
    /// Playbook name.
    pub playbook: String,
    /// Playbook version.
    pub version: String,
    /// SHA-256 of the playbook file.
    pub playbook_sha256: String,
    /// Dry run.
    pub dry_run: bool,
    /// `irr resume`.
    pub resumed: bool,
    /// Who the AWS credentials belonged to.
    pub aws_principal: Option<String>,
}

/// One attempt of a step (or of one `for_each` item).
#[derive(Clone, Debug, PartialEq)]
pub struct Attempt {
    /// When it started.
    pub ts: String,
    /// 1-based, counted across resumes.
    pub attempt: u32,
    /// The `for_each` item.
    pub item: Option<usize>,
}

/// An attempt that failed and was retried.
#[derive(Clone, Debug, PartialEq)]
pub struct Retry {
    /// When.
    pub ts: String,
    /// The attempt that failed.
    pub attempt: u32,
    /// Why.
    pub error: String,
    /// Wait before the next attempt.
    pub delay_ms: u64,
}

/// What the journal says about one step.
#[derive(Clone, Debug, Default)]
pub struct StepState {
    /// Step id.
    pub id: String,
    /// Every attempt started, in order.
    pub attempts: Vec<Attempt>,
    /// Every retry.
    pub retries: Vec<Retry>,
    /// Its last `step_finished`, with when; `None` while it never ended.
    pub finished: Option<(String, StepSummary)>,
    /// Mutating calls it made.
    pub calls: usize,
}

impl StepState {
    /// When its first attempt started.
    pub fn first_started(&self) -> Option<&str> {
        self.attempts.first().map(|a| a.ts.as_str())
    }

    /// The highest attempt number reached.
    pub fn max_attempt(&self) -> u32 {
        self.attempts.iter().map(|a| a.attempt).max().unwrap_or(0)
    }
}

/// A mutating AWS call: journaled before it was made, and after, when it ended.
#[derive(Clone, Debug)]
pub struct Call {
    /// Call number, counted per process: a resumed run counts from 1 again.
    pub call: u64,
    /// How many `run_started` came before it: its process (1: the first, 2: the first
    /// resume, ...).
    pub session: usize,
    /// When it was started.
    pub ts: String,
    /// Step id.
    pub step: String,
    /// e.g. `ec2`.
    pub service: String,
    /// e.g. `CreateSnapshot`.
    pub operation: String,
    /// Key parameters.
    pub params: Value,
    /// How it ended, with when; `None`: in flight when the journal stops (the process died
    /// between the call and its answer: AWS may or may not have done it).
    pub finished: Option<(String, CallOutcome)>,
}

impl Call {
    /// `service:Operation of step STEP`, as messages name it.
    pub fn describe(&self) -> String {
        format!(
            "call {} {}:{} of step {}",
            self.call, self.service, self.operation, self.step
        )
    }
}

/// A stored artifact.
#[derive(Clone, Debug, PartialEq)]
pub struct Artifact {
    /// When it was captured.
    pub ts: String,
    /// Step id.
    pub step: String,
    /// Path in the bundle.
    pub path: String,
    /// SHA-256 of its bytes.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
    /// What it came from.
    pub source: String,
    /// Its place in the journal's capture order (0-based, over every capture).
    pub order: usize,
}

/// The end of the run (`run_finished`).
#[derive(Clone, Debug)]
pub struct Finish {
    /// When.
    pub ts: String,
    /// Status.
    pub status: RunStatus,
    /// Every step.
    pub steps: Vec<StepSummary>,
    /// The evidence.
    pub evidence: Option<EvidenceSummary>,
    /// Gaps.
    pub gaps: Vec<Gap>,
}

/// A run's state, as its journal tells it.
#[derive(Clone, Debug, Default)]
pub struct RunState {
    /// Every `run_started`, in order (the first, then one per resume).
    pub starts: Vec<Start>,
    /// Every step seen, in the order it first appeared.
    pub steps: Vec<StepState>,
    /// Every mutating call, in call order.
    pub calls: Vec<Call>,
    /// Every capture, in order; a path captured again (a retried step) appears twice: see
    /// [`RunState::artifacts`] for the last word on each path.
    pub captures: Vec<Artifact>,
    /// Resources recorded, each once, in order, with its step.
    pub resources: Vec<(String, AwsResource)>,
    /// Gaps recorded, each once, in order, with when.
    pub gaps: Vec<(String, Gap)>,
    /// Notes, with when.
    pub notes: Vec<(String, String)>,
    /// Every `evidence_sealed`, with when.
    pub sealed: Vec<(String, EvidenceSummary)>,
    /// The `run_finished`, when the run ended.
    pub finished: Option<Finish>,
    /// Lines that are not events this version knows (`(line, event name)`).
    pub unknown: Vec<(usize, String)>,
    /// `call_finished` lines with no `call_started` of that number in their process
    /// (`(line, call)`): a damaged or forged journal.
    pub orphan_finishes: Vec<(usize, u64)>,
    index: HashMap<String, usize>,
}

impl RunState {
    /// The step with id `id`.
    pub fn step(&self, id: &str) -> Option<&StepState> {
        self.index.get(id).map(|&i| &self.steps[i])
    }

    fn step_mut(&mut self, id: &str) -> &mut StepState {
        let i = match self.index.get(id) {
            Some(&i) => i,
            None => {
                self.steps.push(StepState {
                    id: id.to_owned(),
                    ..StepState::default()
                });
                self.index.insert(id.to_owned(), self.steps.len() - 1);
                self.steps.len() - 1
            }
        };
        &mut self.steps[i]
    }

    /// Calls started and never finished.
    pub fn in_flight(&self) -> impl Iterator<Item = &Call> {
        self.calls.iter().filter(|c| c.finished.is_none())
    }

    /// The last capture of every path, in capture order of that last capture.
    pub fn artifacts(&self) -> Vec<&Artifact> {
        let mut last: Vec<&Artifact> = Vec::new();
        for a in &self.captures {
            last.retain(|b| b.path != a.path);
            last.push(a);
        }
        last
    }

    /// The last word on each step that ended (`step_finished`), by id.
    pub fn step_results(&self) -> HashMap<String, StepSummary> {
        self.steps
            .iter()
            .filter_map(|s| s.finished.as_ref().map(|(_, f)| (s.id.clone(), f.clone())))
            .collect()
    }

    /// The last attempt number of every step (`STEP`, and `STEP/ITEM` for a `for_each`
    /// item): a resumed run counts on from there.
    pub fn last_attempts(&self) -> HashMap<String, u32> {
        let mut out: HashMap<String, u32> = HashMap::new();
        for s in &self.steps {
            for a in &s.attempts {
                let key = match a.item {
                    Some(i) => format!("{}/{i}", s.id),
                    None => s.id.clone(),
                };
                let last = out.entry(key).or_default();
                *last = (*last).max(a.attempt);
            }
        }
        out
    }

    /// The gaps alone, in order.
    pub fn gap_list(&self) -> Vec<Gap> {
        self.gaps.iter().map(|(_, g)| g.clone()).collect()
    }

    /// When the journal's first line was written.
    pub fn first_ts(&self) -> Option<&str> {
        self.starts.first().map(|s| s.ts.as_str())
    }

    fn call_started(&mut self, mut call: Call) {
        self.step_mut(&call.step).calls += 1;
        call.session = self.starts.len();
        self.calls.push(call);
    }

    fn call_finished(&mut self, line: usize, call: u64, ts: String, outcome: CallOutcome) {
        // Call numbers restart in each process: only this process's call can match.
        let session = self.starts.len();
        match self
            .calls
            .iter_mut()
            .rev()
            .find(|c| c.call == call && c.session == session)
        {
            Some(c) => c.finished = Some((ts, outcome)),
            None => self.orphan_finishes.push((line, call)),
        }
    }

    /// Applies one entry.
    pub fn apply(&mut self, entry: &Entry) {
        let ts = entry.ts.clone();
        let Some(event) = &entry.event else {
            self.unknown.push((entry.line, entry.name().to_owned()));
            return;
        };
        match event.clone() {
            RunEvent::RunStarted {
                run_id,
                case_id,
                playbook,
                version,
                playbook_sha256,
                dry_run,
                resumed,
                aws_principal,
            } => self.starts.push(Start {
                ts,
                run_id,
                case_id,
                playbook,
                version,
                playbook_sha256,
                dry_run,
                resumed,
                aws_principal,
            }),
            RunEvent::StepStarted {
                step,
                attempt,
                item,
            } => self
                .step_mut(&step)
                .attempts
                .push(Attempt { ts, attempt, item }),
            RunEvent::StepRetrying {
                step,
                attempt,
                error,
                delay_ms,
            } => self.step_mut(&step).retries.push(Retry {
                ts,
                attempt,
                error,
                delay_ms,
            }),
            RunEvent::CallStarted {
                call,
                step,
                service,
                operation,
                params,
            } => self.call_started(Call {
                call,
                session: 0,
                ts,
                step,
                service,
                operation,
                params,
                finished: None,
            }),
            RunEvent::CallFinished { call, outcome } => {
                self.call_finished(entry.line, call, ts, outcome)
            }
            RunEvent::EvidenceCaptured {
                step,
                path,
                sha256,
                size,
                source,
            } => {
                let order = self.captures.len();
                self.captures.push(Artifact {
                    ts,
                    step,
                    path,
                    sha256,
                    size,
                    source,
                    order,
                });
            }
            RunEvent::ResourceRecorded { step, resource } => {
                if !self.resources.iter().any(|(_, r)| *r == resource) {
                    self.resources.push((step, resource));
                }
            }
            RunEvent::GapRecorded(gap) => {
                if !self.gaps.iter().any(|(_, g)| *g == gap) {
                    self.gaps.push((ts, gap));
                }
            }
            RunEvent::StepFinished(summary) => {
                let id = summary.id.clone();
                self.step_mut(&id).finished = Some((ts, summary));
            }
            RunEvent::Note { message } => self.notes.push((ts, message)),
            RunEvent::EvidenceSealed(summary) => self.sealed.push((ts, summary)),
            RunEvent::RunFinished {
                status,
                steps,
                evidence,
                gaps,
                ..
            } => {
                self.finished = Some(Finish {
                    ts,
                    status,
                    steps,
                    evidence,
                    gaps,
                })
            }
        }
    }
}

/// Rebuilds a run's state from its journal's entries, in order.
pub fn replay(entries: &[Entry]) -> RunState {
    let mut state = RunState::default();
    for e in entries {
        state.apply(e);
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{read, read_lenient, Journal};
    use serde_json::json;

    fn outcome(ok: bool) -> CallOutcome {
        CallOutcome {
            ok,
            request_id: Some("r-1".into()),
            error_code: None,
            error_message: None,
            result: json!({}),
        }
    }

    #[test]
    fn replay_rebuilds_steps_calls_artifacts_and_resources() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let j = Journal::open(&path).unwrap();
        let started = |attempt, item| RunEvent::StepStarted {
            step: "isolate".into(),
            attempt,
            item,
        };
        let call = |call| RunEvent::CallStarted {
            call,
            step: "isolate".into(),
            service: "ec2".into(),
            operation: "ModifyNetworkInterfaceAttribute".into(),
            params: json!({"eni": "eni-1"}),
        };
        let captured = |sha: &str| RunEvent::EvidenceCaptured {
            step: "isolate".into(),
            path: "artifacts/isolate/before.json".into(),
            sha256: sha.into(),
            size: 2,
            source: "ec2:DescribeInstances".into(),
        };
        let resource = RunEvent::ResourceRecorded {
            step: "isolate".into(),
            resource: AwsResource {
                kind: "security-group".into(),
                id: "sg-1".into(),
                details: Default::default(),
            },
        };
        for e in [
            started(1, Some(0)),
            captured("aa"),
            call(1),
            RunEvent::CallFinished {
                call: 1,
                outcome: outcome(true),
            },
            RunEvent::StepRetrying {
                step: "isolate".into(),
                attempt: 1,
                error: "throttled".into(),
                delay_ms: 10,
            },
            started(2, Some(0)),
            captured("bb"),
            resource.clone(),
            resource,
            call(2),
        ] {
            j.append(&e).unwrap();
        }
        let state = replay(&read(&path).unwrap());
        let step = state.step("isolate").unwrap();
        assert_eq!(step.max_attempt(), 2);
        assert_eq!(step.retries.len(), 1);
        assert_eq!(step.calls, 2);
        assert!(step.finished.is_none());
        assert_eq!(state.last_attempts()["isolate/0"], 2);
        let in_flight: Vec<String> = state.in_flight().map(Call::describe).collect();
        assert_eq!(
            in_flight,
            ["call 2 ec2:ModifyNetworkInterfaceAttribute of step isolate"]
        );
        let arts = state.artifacts();
        assert_eq!(arts.len(), 1);
        assert_eq!((arts[0].sha256.as_str(), arts[0].order), ("bb", 1));
        assert_eq!(state.resources.len(), 1);
        assert!(state.finished.is_none());
        assert!(state.unknown.is_empty());
        assert!(state.orphan_finishes.is_empty());

        // A resumed process counts its calls from 1 again: its call_finished 2 is not the
        // first process's call 2, which stays in flight.
        drop(j);
        let j = Journal::open(&path).unwrap();
        j.append(&RunEvent::RunStarted {
            run_id: "r".into(),
            case_id: "c".into(),
            playbook: "p".into(),
            version: "1.0.0".into(),
            playbook_sha256: "0".repeat(64),
            dry_run: false,
            resumed: true,
            aws_principal: None,
        })
        .unwrap();
        j.append(&RunEvent::CallFinished {
            call: 2,
            outcome: outcome(true),
        })
        .unwrap();
        let state = replay(&read(&path).unwrap());
        assert_eq!(state.in_flight().count(), 1);
        assert_eq!(state.orphan_finishes.len(), 1);
    }

    #[test]
    fn unknown_lines_are_kept_apart_and_the_lenient_reader_reads_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let j = Journal::open(&path).unwrap();
        j.append(&RunEvent::Note {
            message: "one".into(),
        })
        .unwrap();
        drop(j);
        // A line from a future version, then an edit that breaks the chain.
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"seq\":2,\"event\":\"from_the_future\",\"prev_sha256\":\"x\"}\n");
        std::fs::write(&path, &text).unwrap();
        assert!(read(&path).is_err());
        let lenient = read_lenient(&path);
        assert_eq!(lenient.entries.len(), 2);
        assert!(lenient.chain_problem.unwrap().contains("line 2"));
        let state = replay(&lenient.entries);
        assert_eq!(state.notes.len(), 1);
        assert_eq!(state.unknown, [(2, "from_the_future".to_owned())]);
    }
}
