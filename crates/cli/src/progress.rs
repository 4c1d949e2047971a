//! Progress for people, on standard error: on a terminal, one live line per image (its step, its last output
//! line, a byte bar while pushing); otherwise plain lines, prefixed with the image, as they happen (what CI logs
//! want). `-q` keeps only results and errors; `-v` adds every line of build output on a terminal too.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use berth_core::engine::{Progress, ProgressEvent};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How much to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// Results and errors only.
    Quiet,
    /// Steps and output (plain), or live lines (terminal).
    Normal,
    /// Every output line, also on a terminal.
    Verbose,
}

/// Where progress goes for this run.
pub struct Output {
    verbosity: Verbosity,
    bars: Option<MultiProgress>,
}

static OUTPUT: OnceLock<Output> = OnceLock::new();

/// Sets up progress output once, at start-up (live lines only when standard error is a terminal).
pub fn init(verbosity: Verbosity) {
    let live = verbosity != Verbosity::Quiet
        && std::io::stderr().is_terminal()
        && std::env::var("TERM").map_or(true, |t| t != "dumb");
    let bars = live.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
    let _ = OUTPUT.set(Output { verbosity, bars });
}

/// This run's output (plain and normal if [`init`] was not called).
pub fn output() -> &'static Output {
    OUTPUT.get_or_init(|| Output {
        verbosity: Verbosity::Normal,
        bars: None,
    })
}

impl Output {
    /// A status line (`name: building on docker`), shown unless quiet, above any live lines.
    pub fn say(&self, text: &str) {
        if self.verbosity == Verbosity::Quiet {
            return;
        }
        self.print(text);
    }

    /// A line that is always shown (a result or a warning), above any live lines.
    pub fn print(&self, text: &str) {
        match &self.bars {
            Some(bars) => {
                let _ = bars.println(text);
            }
            None => {
                let _ = writeln!(std::io::stderr().lock(), "{text}");
            }
        }
    }

    /// Progress for work on `image`.
    pub fn image(&'static self, image: &str) -> ImageProgress {
        let bar = self.bars.as_ref().map(|bars| {
            let bar = bars.add(ProgressBar::new_spinner());
            bar.set_style(spinner_style());
            bar.set_prefix(image.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        ImageProgress {
            output: self,
            prefix: image.to_string(),
            bar,
            state: Mutex::new(State::default()),
        }
    }
}

/// A workflow run's progress as this run shows it: status lines said (hidden by `-q`), warnings printed, each
/// image's build and push on its own line.
pub struct RunOutput;

impl Progress for RunOutput {
    fn event(&self, event: ProgressEvent) {
        match event {
            ProgressEvent::Warning(text) => output().print(&text),
            ProgressEvent::Line(text) => output().say(&text),
            // A run reports transfers and steps on its images' progress, never on its own.
            ProgressEvent::Step { .. } | ProgressEvent::Transfer { .. } => {}
        }
    }
}

impl berth_workflow::RunProgress for RunOutput {
    fn image(&self, image: &str) -> Box<dyn Progress> {
        Box::new(output().image(image))
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {prefix:.bold} {wide_msg}").expect("valid template")
}

fn bytes_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{spinner} {prefix:.bold} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
    )
    .expect("valid template")
    .progress_chars("=> ")
}

#[derive(Default)]
struct State {
    step: String,
    last_line: String,
    /// Plain mode: the last quarter mark printed per layer.
    marks: HashMap<String, u64>,
    /// Live mode: bytes done and total per layer.
    layers: HashMap<String, (u64, Option<u64>)>,
}

/// Progress of one image's build or push.
pub struct ImageProgress {
    output: &'static Output,
    prefix: String,
    bar: Option<ProgressBar>,
    state: Mutex<State>,
}

impl Drop for ImageProgress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Progress for ImageProgress {
    fn event(&self, event: ProgressEvent) {
        if let ProgressEvent::Warning(text) = &event {
            // Shown at every verbosity: the build goes on, but the user has something to fix.
            self.output
                .print(&format!("{}: warning: {text}", self.prefix));
            return;
        }
        if self.output.verbosity == Verbosity::Quiet {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match (&self.bar, event) {
            (
                _,
                ProgressEvent::Step {
                    index,
                    total,
                    description,
                },
            ) => {
                state.step = format!("step {index}/{total}: {description}");
                match &self.bar {
                    Some(bar) => {
                        bar.set_message(state.step.clone());
                        if self.output.verbosity == Verbosity::Verbose {
                            self.output
                                .print(&format!("[{}] {}", self.prefix, state.step));
                        }
                    }
                    None => self
                        .output
                        .print(&format!("[{}] {}", self.prefix, state.step)),
                }
            }
            (bar, ProgressEvent::Line(line)) => {
                // A push says "Preparing" once per layer; one is enough.
                if state.last_line == line {
                    return;
                }
                let verbose = self.output.verbosity == Verbosity::Verbose;
                match bar {
                    Some(bar) => {
                        bar.set_message(format!("{} | {}", state.step, line.trim()));
                        if verbose {
                            self.output.print(&format!("[{}]   {line}", self.prefix));
                        }
                    }
                    None => self.output.print(&format!("[{}]   {line}", self.prefix)),
                }
                state.last_line = line;
            }
            (_, ProgressEvent::Warning(_)) => {}
            // Counts without a layer id cannot be told apart; the per-layer status lines cover them.
            (_, ProgressEvent::Transfer { id, .. }) if id.is_empty() => {}
            (Some(bar), ProgressEvent::Transfer { id, current, total }) => {
                state.layers.insert(id, (current, total));
                let (done, all) = totals(&state.layers);
                if bar.length() != Some(all) {
                    bar.set_style(bytes_style());
                    bar.set_length(all);
                    bar.set_message(format!("{} layer(s)", state.layers.len()));
                }
                bar.set_position(done);
            }
            (None, ProgressEvent::Transfer { id, current, total }) => {
                // One line per layer per 25%, not one per chunk.
                let pct = percent(current, total);
                let mark = pct.map(|p| p / 25).unwrap_or(current >> 26);
                let previous = state.marks.insert(id.clone(), mark);
                // Nothing moved yet (0%), or still within the same quarter: no line.
                if previous == Some(mark) || mark == 0 {
                    return;
                }
                let text = match (pct, total) {
                    (Some(p), Some(t)) => format!("[{}]   {id}: {p}% of {}", self.prefix, size(t)),
                    _ => format!("[{}]   {id}: {}", self.prefix, size(current)),
                };
                self.output.print(&text);
            }
        }
    }
}

/// Bytes done and bytes in all, over every layer. The counts are the daemon's: saturating, so absurd ones
/// make an absurd bar, never an overflow.
fn totals(layers: &HashMap<String, (u64, Option<u64>)>) -> (u64, u64) {
    layers
        .values()
        .fold((0u64, 0u64), |(done, all), (current, total)| {
            (
                done.saturating_add(*current),
                all.saturating_add(total.unwrap_or(*current)),
            )
        })
}

/// How far `current` is into `total`, 0 to 100 (in u128, so no daemon-reported count can overflow it).
fn percent(current: u64, total: Option<u64>) -> Option<u64> {
    let total = total.filter(|t| *t > 0)?;
    let pct = (u128::from(current) * 100 / u128::from(total)).min(100);
    Some(pct as u64)
}

/// A byte count for a person: `512 B`, `34 kB`, `12.3 MB` (config blobs and small layers are not `0 MB`).
fn size(bytes: u64) -> String {
    match bytes {
        0..=999 => format!("{bytes} B"),
        1_000..=999_999 => format!("{} kB", bytes / 1_000),
        _ => format!("{:.1} MB", bytes as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_byte_counts_cannot_overflow_the_arithmetic() {
        assert_eq!(percent(u64::MAX, Some(u64::MAX)), Some(100));
        assert_eq!(percent(u64::MAX, Some(1)), Some(100));
        assert_eq!(percent(1, Some(4)), Some(25));
        assert_eq!(percent(5, Some(0)), None);
        let layers = HashMap::from([
            ("a".to_string(), (u64::MAX, Some(u64::MAX))),
            ("b".to_string(), (u64::MAX, None)),
        ]);
        assert_eq!(totals(&layers), (u64::MAX, u64::MAX));

        // both modes, through the event path a daemon's counts take
        for bars in [
            None,
            Some(MultiProgress::with_draw_target(ProgressDrawTarget::hidden())),
        ] {
            let output: &'static Output = Box::leak(Box::new(Output {
                verbosity: Verbosity::Normal,
                bars,
            }));
            let progress = output.image("app");
            for id in ["a", "b"] {
                progress.event(ProgressEvent::Transfer {
                    id: id.into(),
                    current: u64::MAX,
                    total: Some(u64::MAX),
                });
            }
        }
    }

    #[test]
    fn small_blobs_are_not_zero_megabytes() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(34_567), "34 kB");
        assert_eq!(size(12_345_678), "12.3 MB");
    }
}
