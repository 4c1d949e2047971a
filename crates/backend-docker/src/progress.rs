//! Build output turned into [`ProgressEvent`]s as it arrives, remembering enough to explain a failure.
//!
//! BuildKit reports vertexes (`[2/5] RUN ...`), their logs and transfer statuses; the classic builder prints
//! `Step 2/5 : RUN ...` and the step's output as text. Both feed one [`BuildLog`], which forwards events to the
//! caller's [`Progress`] and keeps the last lines of each step so a failed build can say which step failed and
//! what it printed.

use std::collections::{HashMap, VecDeque};

use berth_core::engine::{Progress, ProgressEvent};
use berth_core::lines::MAX_LINE_BYTES;
use bollard::moby::buildkit::v1::StatusResponse;

/// Lines of output kept per step for the failure message.
const TAIL_LINES: usize = 20;

/// One step's state: its name and its last lines of output.
#[derive(Default)]
struct StepLog {
    name: String,
    announced: bool,
    partial: String,
    tail: VecDeque<String>,
}

impl StepLog {
    fn push_line(&mut self, line: &str) {
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_string());
    }
}

/// What a build printed so far, and which step failed if one did.
pub(crate) struct BuildLog<'a> {
    progress: &'a dyn Progress,
    steps: HashMap<String, StepLog>,
    /// The step that is running (classic) or that last reported an error (BuildKit).
    current: Option<String>,
    failed: Option<(String, String)>,
    image_id: Option<String>,
}

impl<'a> BuildLog<'a> {
    pub(crate) fn new(progress: &'a dyn Progress) -> Self {
        BuildLog {
            progress,
            steps: HashMap::new(),
            current: None,
            failed: None,
            image_id: None,
        }
    }

    /// Records the image id the daemon announced.
    pub(crate) fn set_image_id(&mut self, id: String) {
        self.image_id = Some(id);
    }

    /// The image id, once announced.
    pub(crate) fn image_id(&self) -> Option<&str> {
        self.image_id.as_deref()
    }

    /// Takes one BuildKit status update.
    pub(crate) fn buildkit(&mut self, status: StatusResponse) {
        for vertex in status.vertexes {
            let step = self.steps.entry(vertex.digest.clone()).or_default();
            step.name = vertex.name.clone();
            if !step.announced && (vertex.started.is_some() || vertex.cached) {
                step.announced = true;
                match numbered(&vertex.name) {
                    Some((index, total, instruction)) => self.progress.event(ProgressEvent::Step {
                        index,
                        total,
                        description: instruction.to_string(),
                    }),
                    None => self
                        .progress
                        .event(ProgressEvent::Line(vertex.name.clone())),
                }
                if vertex.cached {
                    self.progress
                        .event(ProgressEvent::Line(format!("CACHED {}", vertex.name)));
                }
            }
            if !vertex.error.is_empty() && self.failed.is_none() {
                self.failed = Some((vertex.digest.clone(), vertex.error.clone()));
            }
        }
        for status in status.statuses {
            if status.total > 0 || status.current > 0 {
                self.progress.event(ProgressEvent::Transfer {
                    id: status.id,
                    current: u64::try_from(status.current).unwrap_or(0),
                    total: u64::try_from(status.total).ok().filter(|t| *t > 0),
                });
            }
        }
        for log in status.logs {
            let text = String::from_utf8_lossy(&log.msg).into_owned();
            self.output(&log.vertex, &text);
        }
    }

    /// Takes a chunk of classic builder output (`stream` text).
    pub(crate) fn classic(&mut self, text: &str) {
        for line in text.split_inclusive('\n') {
            let bare = strip_ansi(line.trim_end_matches(['\n', '\r']));
            if let Some((index, total, description)) = classic_step(&bare) {
                let key = format!("step-{index}");
                let step = self.steps.entry(key.clone()).or_default();
                step.name = format!("[{index}/{total}] {description}");
                step.announced = true;
                self.current = Some(key);
                self.progress.event(ProgressEvent::Step {
                    index,
                    total,
                    description: description.to_string(),
                });
            } else if !bare.is_empty() {
                self.progress.event(ProgressEvent::Line(bare.clone()));
                // Builder chatter, not the step's output.
                let chatter = bare.starts_with(" ---> ")
                    || bare.starts_with("Removing intermediate container");
                if !chatter {
                    if let Some(step) = self.current.as_ref().and_then(|k| self.steps.get_mut(k)) {
                        step.push_line(&bare);
                    }
                }
            }
        }
    }

    /// Output of a step, possibly with partial lines.
    fn output(&mut self, key: &str, text: &str) {
        let step = self.steps.entry(key.to_string()).or_default();
        step.partial.push_str(text);
        while let Some(pos) = step.partial.find('\n') {
            let line: String = step.partial.drain(..=pos).collect();
            let line = line.trim_end_matches(['\n', '\r']).to_string();
            step.push_line(&line);
            self.progress.event(ProgressEvent::Line(line));
        }
        // a step printing without newlines must not grow one buffer for ever
        if step.partial.len() > MAX_LINE_BYTES {
            step.partial.clear();
            self.progress
                .event(ProgressEvent::Line(OVERLONG.to_string()));
        }
    }

    /// Whether the failure happened inside a build step (RUN, COPY...) rather than while resolving or pulling
    /// a base image: a step's failure is a build failure whatever its output says.
    pub(crate) fn failed_in_step(&self) -> bool {
        self.failing_step()
            .and_then(|s| numbered(&s.name))
            .is_some_and(|(_, _, instruction)| !instruction.starts_with("FROM"))
    }

    fn failing_step(&self) -> Option<&StepLog> {
        let key = match &self.failed {
            Some((digest, _)) => Some(digest),
            None => self.current.as_ref(),
        };
        key.and_then(|k| self.steps.get(k))
    }

    /// A message naming the failing step, the error and the step's last lines of output.
    pub(crate) fn failure_message(&self, error: &str) -> String {
        let Some(step) = self.failing_step() else {
            return error.to_string();
        };
        let mut message = format!("step `{}` failed: {}", step.name, error.trim());
        let mut tail: Vec<&str> = step.tail.iter().map(String::as_str).collect();
        if !step.partial.is_empty() {
            tail.push(step.partial.trim_end());
        }
        if !tail.is_empty() {
            message.push_str("\nlast output:");
            for line in tail {
                message.push_str("\n  | ");
                message.push_str(line);
            }
        }
        message
    }
}

/// `[2/5] RUN x` or `[stage-1 2/5] RUN x` → (2, 5, "RUN x").
fn numbered(name: &str) -> Option<(usize, usize, &str)> {
    let rest = name.strip_prefix('[')?;
    let (label, instruction) = rest.split_once("] ")?;
    let counts = label.rsplit(' ').next()?;
    let (index, total) = counts.split_once('/')?;
    Some((index.parse().ok()?, total.parse().ok()?, instruction))
}

/// `Step 2/5 : RUN x` → (2, 5, "RUN x").
fn classic_step(line: &str) -> Option<(usize, usize, &str)> {
    let rest = line.strip_prefix("Step ")?;
    let (counts, description) = rest.split_once(" : ")?;
    let (index, total) = counts.split_once('/')?;
    Some((index.parse().ok()?, total.parse().ok()?, description))
}

/// The classic builder colours stderr with ANSI escapes; progress consumers get plain text.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for e in chars.by_ref() {
                if e.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Said in place of a line of build output too long to keep.
pub(crate) const OVERLONG: &str = "(berth left out a line of build output longer than 1 MiB)";

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Record(Mutex<Vec<ProgressEvent>>);

    impl Progress for Record {
        fn event(&self, event: ProgressEvent) {
            self.0.lock().expect("lock").push(event);
        }
    }

    #[test]
    fn classic_output_names_the_failing_step() {
        let record = Record::default();
        let mut log = BuildLog::new(&record);
        log.classic("Step 1/2 : FROM busybox\n ---> abc\nStep 2/2 : RUN echo boom; false\n");
        log.classic(" ---> Running in 123\n\u{1b}[91mboom\n\u{1b}[0m");
        assert!(log.failed_in_step());
        let message = log.failure_message(
            "The command '/bin/sh -c echo boom; false' returned a non-zero code: 1",
        );
        assert!(
            message.starts_with("step `[2/2] RUN echo boom; false` failed"),
            "{message}"
        );
        assert!(message.contains("  | boom"), "{message}");
        let events = record.0.lock().expect("lock");
        assert!(events.contains(&ProgressEvent::Step {
            index: 2,
            total: 2,
            description: "RUN echo boom; false".into()
        }));
    }

    #[test]
    fn step_output_without_newlines_is_bounded() {
        let record = Record::default();
        let mut log = BuildLog::new(&record);
        let chunk = "x".repeat(64 << 10);
        for _ in 0..64 {
            log.output("v", &chunk);
            assert!(log.steps["v"].partial.len() <= MAX_LINE_BYTES + chunk.len());
        }
        log.output("v", "\ndone\n");
        let events = record.0.lock().expect("lock");
        assert!(events.contains(&ProgressEvent::Line(OVERLONG.to_string())));
        assert!(events.contains(&ProgressEvent::Line("done".to_string())));
    }

    #[test]
    fn numbered_vertex_names() {
        assert_eq!(numbered("[2/5] RUN x"), Some((2, 5, "RUN x")));
        assert_eq!(numbered("[stage-1 1/3] FROM b"), Some((1, 3, "FROM b")));
        assert_eq!(numbered("[internal] load .dockerignore"), None);
    }
}
