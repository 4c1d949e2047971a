//! Progress for people: build steps and their output on standard error, as they happen.

use std::io::Write;
use std::sync::Mutex;

use berth_core::engine::{Progress, ProgressEvent};

/// Writes progress to standard error, each line prefixed with the image it belongs to. Repeated lines (a push
/// says "Preparing" once per layer) and transfer counts between quarter marks are left out.
pub struct StderrProgress {
    prefix: String,
    quiet: bool,
    last: Mutex<Option<(String, u64)>>,
    last_line: Mutex<String>,
}

impl StderrProgress {
    /// Progress for work on `image`; `quiet` keeps only step headers.
    pub fn new(image: &str, quiet: bool) -> Self {
        StderrProgress {
            prefix: image.to_string(),
            quiet,
            last: Mutex::new(None),
            last_line: Mutex::new(String::new()),
        }
    }
}

impl Progress for StderrProgress {
    fn event(&self, event: ProgressEvent) {
        let mut err = std::io::stderr().lock();
        let _ = match event {
            ProgressEvent::Step {
                index,
                total,
                description,
            } => {
                writeln!(err, "[{}] step {index}/{total}: {description}", self.prefix)
            }
            ProgressEvent::Line(line) if !self.quiet => {
                let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
                if *last == line {
                    return;
                }
                let written = writeln!(err, "[{}]   {line}", self.prefix);
                *last = line;
                written
            }
            ProgressEvent::Line(_) => Ok(()),
            // Counts without a layer id cannot be told apart; the per-layer status lines cover them.
            ProgressEvent::Transfer { id, .. } if id.is_empty() => Ok(()),
            ProgressEvent::Transfer { id, current, total } => {
                // One line per layer per 25%, not one per chunk.
                let pct = total
                    .filter(|t| *t > 0)
                    .map(|t| (current * 100 / t).min(100));
                let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
                let bucket = pct.map(|p| p / 25).unwrap_or(current >> 26);
                if last.as_ref() == Some(&(id.clone(), bucket)) {
                    return;
                }
                *last = Some((id.clone(), bucket));
                match (pct, total) {
                    (Some(p), Some(t)) => writeln!(
                        err,
                        "[{}]   {id}: {p}% of {} MB",
                        self.prefix,
                        t / 1_000_000
                    ),
                    _ => writeln!(err, "[{}]   {id}: {} MB", self.prefix, current / 1_000_000),
                }
            }
        };
    }
}
