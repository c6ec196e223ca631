//! The visual timeline: one bar per step on a shared time axis, a tick per mutating call, a
//! mark at every resume, and the sealing.

use maud::{html, Markup};

use super::super::fmt::{fmt_ms, fmt_offset};
use super::super::model::{Report, StepReport};

/// A tick spacing of 1, 2 or 5 times a power of ten giving at most about 7 ticks.
pub(crate) fn tick_step(total_ms: i64) -> i64 {
    let raw = (total_ms as f64 / 7.0).max(1.0);
    let pow = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * pow)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * pow);
    (step as i64).max(1)
}

pub(crate) fn tick_label(ms: i64, step: i64) -> String {
    if ms == 0 {
        return "0".to_owned();
    }
    if step >= 60_000 {
        let m = ms / 60_000;
        if step >= 3_600_000 {
            format!("{} h", ms / 3_600_000)
        } else {
            format!("{m} min")
        }
    } else if step >= 1000 {
        format!("{} s", ms / 1000)
    } else {
        let decimals = if step >= 100 {
            1
        } else if step >= 10 {
            2
        } else {
            3
        };
        format!("{:.*} s", decimals, ms as f64 / 1000.0)
    }
}

/// The time axis: milliseconds to a percentage of the track.
struct Axis {
    /// The last journal entry's offset.
    last: i64,
    /// The whole span shown (at least 1 ms).
    total: i64,
}

impl Axis {
    fn pct(&self, ms: i64) -> f64 {
        (ms.clamp(0, self.total) as f64) * 100.0 / self.total as f64
    }

    fn left(&self, ms: i64) -> String {
        format!("left:{:.3}%", self.pct(ms))
    }

    fn span(&self, start: i64, end: i64) -> String {
        format!(
            "left:{:.3}%;width:{:.3}%",
            self.pct(start),
            (self.pct(end) - self.pct(start)).max(0.0)
        )
    }
}

impl Report {
    fn axis(&self) -> Axis {
        let last = self
            .timeline
            .iter()
            .filter_map(|t| t.offset_ms)
            .max()
            .unwrap_or(0);
        let step_end = self
            .steps
            .iter()
            .filter_map(|s| Some(s.offset_ms? + s.duration_ms.unwrap_or(0)))
            .max()
            .unwrap_or(0);
        Axis {
            last,
            total: last.max(step_end).max(1),
        }
    }

    pub(super) fn html_gantt(&self) -> Markup {
        let axis = self.axis();
        html! {
            section.card #timeline {
                h2 {
                    "Timeline "
                    span.count { (fmt_ms(axis.total)) " from the first journal entry to the last" }
                }
                div.gantt {
                    (self.gantt_overlay(&axis))
                    div.g-row.g-axis { div {} div {} div {} }
                    @for s in &self.steps { (self.gantt_step(&axis, s)) }
                    (self.gantt_seal(&axis))
                }
                div.legend {
                    span { i style="background:#22c55e" {} "succeeded" }
                    span { i style="background:#ef4444" {} "failed" }
                    span { i style="background:#f59e0b" {} "interrupted" }
                    span { i style="background:#8b5cf6" {} "sealing" }
                    span { i.tick style="background:#0f172a" {} "mutating AWS call" }
                    span { i.tick style="background:#b91c1c" {} "failed call" }
                    span { i.tick style="background:#d97706" {} "call never finished" }
                }
            }
        }
    }

    /// The grid, its tick labels, and a mark at every resume.
    fn gantt_overlay(&self, axis: &Axis) -> Markup {
        let step = tick_step(axis.total);
        let ticks = (0..=axis.total / step).map(|i| i * step);
        // Resumes are the moments a reviewer must see: the run stopped, then went on.
        let resumes = self
            .timeline
            .iter()
            .filter(|e| e.event == "run_started" && e.session > 1);
        html! {
            div.g-overlay {
                @for t in ticks {
                    div.g-grid style=(axis.left(t)) {}
                    div.g-tick.first[t == 0] style=(axis.left(t)) { (tick_label(t, step)) }
                }
                @for e in resumes {
                    @if let Some(off) = e.offset_ms {
                        div.g-mark style=(axis.left(off)) title=(e.summary) { span { "resumed" } }
                    }
                }
            }
        }
    }

    /// One step's row: its bar (or why it has none) and its calls.
    fn gantt_step(&self, axis: &Axis, s: &StepReport) -> Markup {
        let dur = match s.duration_ms {
            Some(d) => fmt_ms(d),
            None if s.offset_ms.is_some() => "unfinished".to_owned(),
            None => String::new(),
        };
        html! {
            div.g-row {
                div.g-label title=(s.id) { (s.id) }
                div.g-track {
                    @match s.offset_ms {
                        Some(start) => (step_bar(axis, s, start)),
                        None => span.g-skip {
                            (s.status)
                            @if let Some(e) = &s.error { ": " (e) }
                        },
                    }
                    @for c in self.calls.iter().filter(|c| c.step == s.id) {
                        @if let Some(off) = c.offset_ms {
                            div class={ "g-call c-" (c.status.as_str()) } style=(axis.left(off))
                                title=(format!(
                                    "call {} {}:{} {} {}",
                                    c.call,
                                    c.service,
                                    c.operation,
                                    c.status.as_str(),
                                    fmt_offset(c.offset_ms)
                                )) {}
                        }
                    }
                }
                div.g-dur { (dur) }
            }
        }
    }

    /// Sealing: from the entry before `evidence_sealed` to it.
    fn gantt_seal(&self, axis: &Axis) -> Markup {
        let Some(i) = self
            .timeline
            .iter()
            .rposition(|e| e.event == "evidence_sealed")
        else {
            return html! {};
        };
        let end = self.timeline[i].offset_ms.unwrap_or(0);
        let start = i
            .checked_sub(1)
            .and_then(|p| self.timeline[p].offset_ms)
            .unwrap_or(end);
        html! {
            div.g-row.g-sep {
                div.g-label.sub { "seal evidence" }
                div.g-track {
                    div.g-bar.st-seal style=(axis.span(start, end)) title=(self.timeline[i].summary) {}
                }
                div.g-dur { (fmt_ms(end - start)) }
            }
        }
    }
}

/// A started step's bar, to its end (or to the last entry if it never finished).
fn step_bar(axis: &Axis, s: &StepReport, start: i64) -> Markup {
    let end = match s.duration_ms {
        Some(d) => start + d,
        None => axis.last,
    };
    let tip = format!(
        "{}: {} · start {} · {}{}",
        s.id,
        s.status,
        fmt_offset(Some(start)),
        s.duration_ms
            .map(fmt_ms)
            .unwrap_or_else(|| "never finished".into()),
        s.error
            .as_deref()
            .map(|e| format!(" · {e}"))
            .unwrap_or_default()
    );
    let class = match s.status.as_str() {
        "succeeded" => "succeeded",
        "failed" => "failed",
        _ => "interrupted",
    };
    html! {
        div class={ "g-bar st-" (class) } style=(axis.span(start, end)) title=(tip) {}
    }
}
