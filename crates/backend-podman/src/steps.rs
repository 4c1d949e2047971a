//! A build's RUN steps, found among this host's processes and ended when the build is given up.
//!
//! Measured on Podman 4.3.1 (rootful and rootless services): a client that hangs up mid-build cancels the
//! build's context, so buildah starts no further step, but the RUN step already running goes on to its end
//! (a `sleep 900` runs its 15 minutes, its working container with it). No libpod request ends it: the
//! working container is listed (`/libpod/containers/json?all=true&external=true`, state `storage`) and
//! `DELETE /libpod/containers/{id}?force=true` removes it, yet the step's processes keep running on the
//! unmounted root. Ending the step's processes does end the build: buildah sees the step fail, commits
//! nothing, and removes its working container itself (`forcerm`).
//!
//! So each build carries a [`Mark`]: a host name added with libpod's `extrahosts`, which buildah writes into
//! the `/etc/hosts` of every RUN step of that build and nowhere else (it is bind-mounted for the step, never
//! committed, and it is not part of buildah's layer cache key: a marked build still hits the cache of an
//! unmarked one). The mark names the berth process (pid and start time) and the build, so berth ends only
//! its own steps, never another client's (another berth, a user's `podman build`), and can tell a step
//! whose berth is gone (SIGKILL) from one whose berth still runs.
//!
//! This works where berth sees the service's processes: a service on this host whose steps berth may signal
//! (the same user, or root). For a service on another host (`ssh://`) the step runs to its end, and then the
//! build stops. Steps are found in this host's process table, which holds the steps of every service here: a
//! build's own mark tells its steps apart, and a killed berth's steps are a service's leftovers only when they
//! run in that service's user namespace ([`crate::leftovers`]).

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// What every mark's host name starts with.
const PREFIX: &str = "berth-build-";
/// What every mark's host name ends with: a reserved top-level domain, so the name never resolves elsewhere.
const SUFFIX: &str = ".invalid";

/// Builds this process has marked.
static BUILDS: AtomicU32 = AtomicU32::new(0);

/// One build of one berth process, as written into its steps' `/etc/hosts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// The berth process's pid.
    pub pid: u32,
    /// Its start time (clock ticks after boot, `/proc/PID/stat`), so a reused pid is not taken for it.
    pub started: u64,
    /// The build within that process.
    pub build: u32,
}

impl Mark {
    /// A mark for a new build of this process.
    pub(crate) fn next() -> Mark {
        let pid = std::process::id();
        Mark {
            pid,
            started: berth_core::process::start_time(pid).unwrap_or(0),
            build: BUILDS.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The host name: `berth-build-PID-STARTED-BUILD.invalid`.
    pub fn host(&self) -> String {
        format!(
            "{PREFIX}{}-{}-{}{SUFFIX}",
            self.pid, self.started, self.build
        )
    }

    /// The `extrahosts` entry (`HOST:IP`) that puts the mark into the build's steps.
    pub(crate) fn extra_host(&self) -> String {
        format!("{}:127.0.0.1", self.host())
    }

    /// The mark a host name carries, if it is one.
    pub fn parse(host: &str) -> Option<Mark> {
        let rest = host.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
        let mut parts = rest.split('-');
        let mark = Mark {
            pid: parts.next()?.parse().ok()?,
            started: parts.next()?.parse().ok()?,
            build: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(mark)
    }

    /// Whether the berth process that made this mark still runs (the same pid, started at the same time).
    pub fn owner_alive(&self) -> bool {
        berth_core::process::start_time(self.pid) == Some(self.started)
    }
}

/// A process of a marked RUN step on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkedStep {
    /// Its pid.
    pub pid: u32,
    /// Its build's mark.
    pub mark: Mark,
    /// Its command line, for messages.
    pub command: String,
    /// Seconds since it started.
    pub age: Duration,
    /// Its user namespace (`user:[INODE]`): that of the service whose build it is (see
    /// [`crate::service_process`]).
    pub user_namespace: Option<String>,
}

/// Clock ticks a second in `/proc/PID/stat`: the kernel reports them in USER_HZ, 100 on every Linux
/// architecture berth builds for.
const USER_HZ: f64 = 100.0;

/// Seconds this machine has been up.
fn uptime() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Every process on this host that runs in a marked RUN step and that berth may look into (its own user's,
/// or every one for root).
pub fn marked_steps() -> Vec<MarkedStep> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let now = uptime();
    let own = std::process::id();
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != own)
        .filter_map(|pid| {
            let proc = Path::new("/proc").join(pid.to_string());
            // a process in a step sees buildah's hosts file; unreadable ones (another user's) are not ours
            let hosts = std::fs::read_to_string(proc.join("root/etc/hosts")).ok()?;
            let mark = hosts
                .split_whitespace()
                .filter(|word| word.starts_with(PREFIX))
                .find_map(Mark::parse)?;
            let command = std::fs::read(proc.join("cmdline"))
                .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
                .unwrap_or_default();
            let age = match (now, berth_core::process::start_time(pid)) {
                (Some(now), Some(started)) => {
                    Duration::from_secs_f64((now - started as f64 / USER_HZ).max(0.0))
                }
                _ => Duration::ZERO,
            };
            Some(MarkedStep {
                pid,
                mark,
                command: command.trim().to_string(),
                age,
                user_namespace: crate::service_process::user_namespace(pid),
            })
        })
        .collect()
}

/// Sends SIGKILL to each of `steps`; how many it reached. A step that ended meanwhile counts as ended.
pub fn end(steps: &[MarkedStep]) -> usize {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    steps
        .iter()
        .filter(|s| {
            i32::try_from(s.pid).is_ok_and(|pid| kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok())
        })
        .count()
}

/// How long a given-up build's steps are looked for when berth cannot read the service's storage: the service
/// notices the hang-up and stops starting steps within moments.
const WATCH: Duration = Duration::from_secs(5);

/// Ends the RUN steps of the build marked `mark`, watching for [`WATCH`] for one that was just starting.
pub(crate) fn end_build(mark: Mark) {
    let until = Instant::now() + WATCH;
    while Instant::now() < until {
        let steps: Vec<MarkedStep> = marked_steps()
            .into_iter()
            .filter(|s| s.mark == mark)
            .collect();
        end(&steps);
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Ends a build's steps when it is dropped before the service finished it (Ctrl-C, SIGTERM, a dropped build
/// future), on a thread of its own (`berth_core::background`) that the front end waits for.
pub(crate) struct StopOnDrop {
    mark: Mark,
    /// How to reach the service, when it runs on this host (where its steps can be found); `None` disarms.
    service: Option<crate::PodmanOptions>,
}

impl StopOnDrop {
    /// A guard for the build marked `mark` on the service `service` names (`None`: not on this host).
    pub(crate) fn new(mark: Mark, service: Option<crate::PodmanOptions>) -> StopOnDrop {
        StopOnDrop { mark, service }
    }

    /// The service ended the build (it finished, or said why it failed): nothing is left running.
    pub(crate) fn finished(mut self) {
        self.service = None;
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(options) = self.service.take() {
            let mark = self.mark;
            berth_core::background::spawn("berth-podman-stop", move || {
                crate::leftovers::end_build(options, mark)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_round_trip_and_refuse_other_names() {
        let mark = Mark {
            pid: 42,
            started: 1234,
            build: 3,
        };
        assert_eq!(mark.host(), "berth-build-42-1234-3.invalid");
        assert_eq!(Mark::parse(&mark.host()), Some(mark));
        assert_eq!(mark.extra_host(), "berth-build-42-1234-3.invalid:127.0.0.1");
        for other in [
            "localhost",
            "berth-build-42-1234.invalid",
            "berth-build-42-1234-3-4.invalid",
            "berth-build-x-1-2.invalid",
            "berth-build-42-1234-3.example",
        ] {
            assert_eq!(Mark::parse(other), None, "{other}");
        }
    }

    #[test]
    fn this_process_is_alive_and_a_changed_start_time_is_not() {
        let mark = Mark::next();
        assert!(mark.owner_alive());
        let reused = Mark {
            started: mark.started + 1,
            ..mark
        };
        assert!(!reused.owner_alive());
        assert_ne!(Mark::next().build, mark.build);
    }
}
