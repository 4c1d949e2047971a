//! berth stopped at any moment, on every engine, as a user stops it: the real `berth` binary builds (and,
//! separately, pushes) and gets SIGINT (Ctrl-C) or SIGTERM after a random delay. It must end promptly with
//! exit status 130 and a line saying it stopped; afterwards the engine holds nothing of that run (asked of the
//! engine, see [`probe`]), the registry holds no tag of a half-pushed image (the manifest goes last), and a
//! following build succeeds.
//!
//! The delays come from a seed printed at the start (`seed N`); `BERTH_TEST_KILL_SEED=N` replays a failure.
//! Build rounds are stopped at three kinds of moment: while berth starts (connecting, checking the registry),
//! anywhere in the first seconds (pulling the base, early steps), and while a long RUN step runs. A signal
//! that lands before berth has installed its handler ends the process by the signal itself, before it has
//! touched the engine; that is reported as such and the engine is checked all the same.

mod probe;
mod services;

use std::io::Read as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use berth_tests::berth_bin;
use berth_tests::conformance::support::unique;
use berth_tests::env::TestEnv;
pub use berth_tests::project::{rootless_user, Engine};

use probe::{
    containerd_named, nothing_left, output, step_running, whole_or_absent, Marks, GIVE_UP,
    NAMESPACE,
};

/// The variable that replays a run's delays.
const SEED_VAR: &str = "BERTH_TEST_KILL_SEED";

/// A signal berth is stopped with: its name for `kill -s`, its number, and the line berth prints.
#[derive(Debug, Clone, Copy)]
struct Signal {
    name: &'static str,
    number: i32,
    says: &'static str,
}

const SIGINT: Signal = Signal {
    name: "INT",
    number: 2,
    says: "interrupted: stopped",
};
const SIGTERM: Signal = Signal {
    name: "TERM",
    number: 15,
    says: "terminated: stopped",
};

/// One engine's test: its project folder, the images only it uses, and the seeded delays.
struct Trial {
    engine: Engine,
    env: &'static TestEnv,
    dir: tempfile::TempDir,
    base: String,
    uv: String,
    rng: fastrand::Rng,
}

impl Trial {
    fn new(engine: Engine) -> Option<Trial> {
        let env = TestEnv::for_engine(engine.selection_name())?;
        let seed = std::env::var(SEED_VAR)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| fastrand::u64(..));
        eprintln!("{engine:?}: seed {seed} ({SEED_VAR}={seed} replays these delays)");
        // a tag of this test's engine in the fixtures' own repositories: their blobs are there already
        let tag = format!("interrupted-{}", engine.selection_name());
        let retag = |image: &str| {
            format!(
                "{}:{tag}",
                image.rsplit_once(':').expect("tagged fixture").0
            )
        };
        let (base, uv) = (retag(&env.python_image), retag(&env.uv_image));
        for (from, to) in [(&env.python_image, &base), (&env.uv_image, &uv)] {
            let mut skopeo = Command::new("skopeo");
            skopeo.args([
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
            ]);
            skopeo.args([
                "--src-creds",
                &env.creds_arg(),
                "--dest-creds",
                &env.creds_arg(),
            ]);
            skopeo
                .arg(format!("docker://{from}"))
                .arg(format!("docker://{to}"));
            output(skopeo);
        }
        let trial = Trial {
            engine,
            env,
            dir: tempfile::tempdir().expect("temp dir"),
            base,
            uv,
            rng: fastrand::Rng::with_seed(seed),
        };
        Some(trial)
    }

    /// Writes a spec running `commands` and copying `blob` (when given); returns its path.
    fn spec(&self, name: &str, commands: &[String], blob: Option<&str>) -> PathBuf {
        let commands: Vec<String> = commands.iter().map(|c| format!("{c:?}")).collect();
        let mut text = format!(
            "name: {name}\nregistry: {}/berth-e2e\nbase_image: {}\npython_exec: /usr/bin/python3\n\
             commands: [{}]\nbuilder_config: {{uv_image: \"{}\"}}\n\
             builder_options: {{install_flytekit: false}}\n",
            self.env.registry,
            self.base,
            commands.join(", "),
            self.uv,
        );
        if let Some(blob) = blob {
            text.push_str(&format!("copy: [{blob}]\n"));
        }
        let path = self.dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, text).expect("write spec");
        self.give_to_user();
        path
    }

    /// Writes `bytes` random bytes to `name` in the project.
    fn blob(&mut self, name: &str, bytes: usize) {
        let data: Vec<u8> = std::iter::repeat_with(|| self.rng.u8(..))
            .take(bytes)
            .collect();
        std::fs::write(self.dir.path().join(name), data).expect("write blob");
        self.give_to_user();
    }

    /// Rootless Podman's berth runs as its user, who must own the project.
    fn give_to_user(&self) {
        if self.engine == Engine::PodmanRootless {
            let user = rootless_user();
            let mut chown = Command::new("chown");
            chown.args(["-R", &format!("{}:{}", user.uid, user.gid)]);
            chown.arg(self.dir.path());
            output(chown);
        }
    }

    /// `berth ARGS...` as the engine's user, started, standard error piped; returns once the child runs berth
    /// (the wrappers before it have set the signals' handling and exec'd it), so a signal sent at once reaches
    /// berth and not a wrapper still setting up.
    fn spawn(&self, args: &[&str]) -> Child {
        let mut child = self
            .command(args)
            .stdout(Stdio::null())
            .spawn()
            .expect("start berth");
        let exe = format!("/proc/{}/exe", child.id());
        let started = Instant::now();
        while std::fs::read_link(&exe)
            .ok()
            .and_then(|p| p.file_name().map(|n| n == "berth"))
            != Some(true)
        {
            if child.try_wait().expect("wait").is_some() {
                break;
            }
            assert!(started.elapsed() < GIVE_UP, "the child never ran berth");
            std::thread::sleep(Duration::from_micros(200));
        }
        child
    }

    /// `berth doctor --json` as the engine's user: what it says of this engine's leftovers.
    fn doctor_leftovers(&self) -> Vec<String> {
        let out = self
            .command(&["doctor", "--json"])
            .stdout(Stdio::piped())
            .output()
            .expect("run berth doctor");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "berth doctor --json printed no JSON ({e}):\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let engine = match self.engine {
            Engine::PodmanRootless => "podman",
            other => other.selection_name(),
        };
        report["leftovers"][engine]
            .as_array()
            .unwrap_or_else(|| {
                panic!("berth doctor --json has no leftovers for {engine}: {report}")
            })
            .iter()
            .filter(|f| f["status"] == "warning")
            .map(|f| f["message"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// `berth ARGS...` as the engine's user, standard error piped, not started.
    fn command(&self, args: &[&str]) -> Command {
        let config = self.dir.path().join("docker-config");
        let vars = [
            ("DOCKER_CONFIG", config.display().to_string()),
            ("BERTH_REGISTRY_USERNAME", self.env.registry_user.clone()),
            (
                "BERTH_REGISTRY_PASSWORD",
                self.env.registry_password().expose().to_string(),
            ),
            (
                "CONTAINERD_ADDRESS",
                self.env.containerd_address.display().to_string(),
            ),
            ("CONTAINERD_NAMESPACE", NAMESPACE.to_string()),
        ];
        let command = match self.engine {
            Engine::PodmanRootless => {
                let extra: Vec<String> = vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
                rootless_user().berth(&extra, &[])
            }
            _ => {
                let mut command = Command::new(berth_bin());
                command.envs(vars.iter().map(|(k, v)| (k, v)));
                command
            }
        };
        // setpriv and env exec berth, so the child's pid is berth's
        let mut command = default_signals(command);
        command
            .arg(args[0])
            .args(["--engine", self.engine.flag()])
            .args(&args[1..])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    /// `berth ARGS...` to its end; fails the test unless it succeeds.
    fn succeed(&self, args: &[&str]) -> String {
        let mut child = self.spawn(args);
        let (status, stderr) = finish(&mut child);
        assert!(status.success(), "berth {args:?}: {status}\n{stderr}");
        stderr
    }

    /// Starts `berth build` of a spec whose RUN step prints the step marker with `-what` and sleeps for
    /// 15 minutes; returns once that step runs.
    fn build_to_long_step(&self, what: &str, marks: &Marks<'_>, round: &str) -> Child {
        let name = unique(&format!("interrupted-{what}"));
        let marker = format!("{}-{what}", marks.step_marker);
        let spec = self.spec(&name, &[format!("echo {marker}; sleep 900")], None);
        let mut child = self.spawn(&["build", &spec.display().to_string()]);
        let started = Instant::now();
        while !step_running(&marker) {
            if child.try_wait().expect("wait").is_some() {
                let (status, stderr) = finish(&mut child);
                panic!("{round}: berth ended ({status}) before its step ran:\n{stderr}");
            }
            assert!(
                started.elapsed() < GIVE_UP,
                "{round}: the step never started"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        child
    }

    /// A delay in `from..to` milliseconds.
    fn delay(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(self.rng.u64(from..to))
    }
}

/// Waits (up to [`GIVE_UP`]) for berth to end; its status and standard error.
fn finish(child: &mut Child) -> (ExitStatus, String) {
    let mut pipe = child.stderr.take().expect("stderr piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + GIVE_UP;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for berth") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("berth did not end within {GIVE_UP:?} of the signal (a hang)");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, reader.join().expect("stderr reader"))
}

/// `command` run with SIGINT and SIGTERM as a terminal gives them: a shell without job control starts a background
/// command with SIGINT ignored, and berth would inherit that, losing a signal sent before its handler exists
/// instead of ending. `env` execs the command, so the child's pid stays the command's.
fn default_signals(command: Command) -> Command {
    let mut wrapped = Command::new("env");
    wrapped
        .arg("--default-signal=INT,TERM")
        .arg(command.get_program())
        .args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    wrapped
}

fn send(child: &Child, signal: Signal) {
    let mut kill = Command::new("kill");
    kill.args(["-s", signal.name, &child.id().to_string()]);
    // berth may have ended on its own a moment ago: the caller judges by its status
    let _ = kill.output();
}

/// How berth ended after `signal`, checked: 130 and its line, or (before its handler existed) the signal
/// itself with nothing printed, or (`may_finish`: a push that was done first) success. Returns a word for
/// the round's log.
fn judge(
    status: ExitStatus,
    stderr: &str,
    signal: Signal,
    may_finish: bool,
    round: &str,
) -> &'static str {
    if status.code() == Some(130) {
        assert!(
            stderr.contains(signal.says),
            "{round}: berth exited 130 without saying `{}`:\n{stderr}",
            signal.says
        );
        return "stopped";
    }
    if status.signal() == Some(signal.number) && stderr.trim().is_empty() {
        return "ended by the signal before berth started";
    }
    if may_finish && status.success() {
        return "done before the signal";
    }
    panic!(
        "{round}: after SIG{} berth ended with {status}:\n{stderr}",
        signal.name
    );
}

/// Build rounds, then push rounds, then a build that must succeed.
async fn stopped_anywhere(engine: Engine) {
    let Some(mut trial) = Trial::new(engine) else {
        return;
    };
    let images = [trial.base.clone(), trial.uv.clone()];
    let step_marker = unique("interrupted-step");
    let marks = Marks {
        images: &images,
        step_marker: &step_marker,
    };
    // (signal, window of the delay in ms, counted from the start or from the step running)
    let builds = [
        (SIGINT, 0, 400, false),
        (SIGTERM, 400, 5000, false),
        (SIGINT, 0, 1500, true),
        (SIGTERM, 0, 1500, true),
    ];
    for (n, (signal, from, to, in_step)) in builds.into_iter().enumerate() {
        let name = unique("interrupted-build");
        let step = format!("echo {step_marker}-{n}; sleep 900");
        let spec = trial.spec(&name, &[step], None);
        let delay = trial.delay(from, to);
        let mut child = trial.spawn(&["build", &spec.display().to_string()]);
        let started = Instant::now();
        if in_step {
            while !step_running(&format!("{step_marker}-{n}")) {
                if child.try_wait().expect("wait").is_some() {
                    let (status, stderr) = finish(&mut child);
                    panic!("berth ended ({status}) before its step ran:\n{stderr}");
                }
                assert!(started.elapsed() < GIVE_UP, "the step never started");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        std::thread::sleep(delay);
        send(&child, signal);
        let (status, stderr) = finish(&mut child);
        let round = format!(
            "{engine:?} build round {n}: SIG{} {delay:?} after {}",
            signal.name,
            if in_step {
                "the step started"
            } else {
                "the start"
            }
        );
        let outcome = judge(status, &stderr, signal, false, &round);
        eprintln!("{round}: {outcome}");
        let said = format!("{round} (berth printed:\n{stderr})");
        nothing_left(engine, trial.env, &marks, child.id(), &said).await;
    }

    killed_mid_step(&mut trial, &marks).await;
    if engine == Engine::Containerd {
        killed_mid_write(&mut trial, &marks).await;
        running_berth_untouched(&mut trial, &marks).await;
    }

    for (n, signal) in [SIGINT, SIGTERM, SIGINT].into_iter().enumerate() {
        let name = unique("interrupted-push");
        let blob = format!("{name}.bin");
        trial.blob(&blob, 24 << 20);
        let spec = trial.spec(&name, &[], Some(&blob));
        let spec = spec.display().to_string();
        trial.succeed(&["build", "--no-push", &spec]);
        let reference = output({
            let mut name = Command::new(berth_bin());
            name.args(["name", &spec]);
            name
        });
        let delay = trial.delay(0, 3000);
        let mut child = trial.spawn(&["push", &spec]);
        std::thread::sleep(delay);
        send(&child, signal);
        let (status, stderr) = finish(&mut child);
        let round = format!(
            "{engine:?} push round {n}: SIG{} {delay:?} after the start",
            signal.name
        );
        let outcome = judge(status, &stderr, signal, true, &round);
        let tagged = whole_or_absent(trial.env, reference.trim());
        assert!(
            tagged || outcome != "done before the signal",
            "{round}: berth said the push was done, yet the registry has no {reference}"
        );
        eprintln!(
            "{round}: {outcome}, tag {}",
            if tagged { "complete" } else { "absent" }
        );
        let said = format!("{round} (berth printed:\n{stderr})");
        nothing_left(engine, trial.env, &marks, child.id(), &said).await;
    }

    let name = unique("interrupted-after");
    let spec = trial.spec(&name, &["echo after".to_string()], None);
    let mut child = trial.spawn(&["build", &spec.display().to_string()]);
    let (status, stderr) = finish(&mut child);
    assert!(
        status.success(),
        "the build after the stopped ones: {status}\n{stderr}"
    );
    // a build that went on in the engine after its berth was stopped shows by now
    nothing_left(engine, trial.env, &marks, child.id(), "the rounds above").await;
}

/// berth killed with SIGKILL while a step runs (it can do nothing about that): the next berth run on the engine
/// finds what it left, removes it and says so in one line, and then the engine holds nothing of it. Docker
/// cancels the build of a closed connection itself: nothing is left even before the next run. On containerd
/// the killed berth's task, container and lease carry its pid and start time (owner labels).
async fn killed_mid_step(trial: &mut Trial, marks: &Marks<'_>) {
    let engine = trial.engine;
    let round = format!("{engine:?} SIGKILL round");
    let mut child = trial.build_to_long_step("killed", marks, &round);
    let delay = trial.delay(0, 1500);
    std::thread::sleep(delay);
    child.kill().expect("SIGKILL berth");
    let (status, _) = finish(&mut child);
    assert_eq!(status.signal(), Some(9), "{round}: {status}");
    if engine == Engine::Containerd {
        // the step's FIFOs are in the build's folder while it runs: the kill leaves that folder
        let named = containerd_named(trial.env, child.id()).await;
        assert!(
            named.iter().any(|n| n.starts_with("build folder")),
            "{round}: right after the kill, berth {} has no build folder: {named:?}",
            child.id()
        );
    }
    if engine == Engine::Docker {
        nothing_left(engine, trial.env, marks, child.id(), &round).await;
    } else {
        // what the killed berth left shows in `berth doctor` before the next run removes it
        let listed = trial.doctor_leftovers();
        assert!(
            listed.iter().any(|l| l.contains(&child.id().to_string())),
            "{round}: berth doctor does not list what berth {} left: {listed:?}",
            child.id()
        );
    }
    let next = unique("interrupted-after-kill");
    let spec = trial.spec(&next, &["echo after".to_string()], None);
    let stderr = trial.succeed(&["build", &spec.display().to_string()]);
    let says = "removed what a killed berth left in";
    let said: Vec<&str> = stderr.lines().filter(|l| l.contains(says)).collect();
    if engine == Engine::Docker {
        assert!(
            said.is_empty(),
            "{round}: Docker had nothing to remove, yet:\n{stderr}"
        );
    } else {
        assert_eq!(
            said.len(),
            1,
            "{round}: the next build must say in one line what it removed:\n{stderr}"
        );
        eprintln!(
            "{round}: {delay:?} into the step; the next run: {}",
            said[0]
        );
    }
    nothing_left(engine, trial.env, marks, child.id(), &round).await;
}

/// berth killed with SIGKILL while it writes a blob into containerd's content store (a COPY step's layer of 64
/// MiB): containerd keeps the unfinished write (an ingest, its ref naming the berth process) and berth's build
/// folder holds the layer file. `berth doctor` lists both, and the next run aborts the ingest, removes the
/// folder and says so in its one line. The kill is sent once the ingest shows in containerd, so the test fails
/// when either is not there right after the kill.
async fn killed_mid_write(trial: &mut Trial, marks: &Marks<'_>) {
    let round = "Containerd SIGKILL round while a blob is written";
    let name = unique("interrupted-killed-write");
    let blob = format!("{name}.bin");
    trial.blob(&blob, 64 << 20);
    let spec = trial.spec(&name, &[], Some(&blob));
    let mut child = trial.spawn(&["build", "--no-push", &spec.display().to_string()]);
    let pid = child.id();
    let started = Instant::now();
    let has_ingest = |named: &[String]| named.iter().any(|n| n.starts_with("ingest"));
    while !has_ingest(&containerd_named(trial.env, pid).await) {
        if child.try_wait().expect("wait").is_some() {
            let (status, stderr) = finish(&mut child);
            panic!("{round}: berth ended ({status}) before an ingest of it showed:\n{stderr}");
        }
        assert!(
            started.elapsed() < GIVE_UP,
            "{round}: no ingest of berth {pid} showed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().expect("SIGKILL berth");
    let (status, _) = finish(&mut child);
    assert_eq!(status.signal(), Some(9), "{round}: {status}");
    let named = containerd_named(trial.env, pid).await;
    for what in ["ingest", "build folder"] {
        assert!(
            named.iter().any(|n| n.starts_with(what)),
            "{round}: right after the kill, berth {pid} has no {what}: {named:?}"
        );
    }
    let listed = trial.doctor_leftovers();
    for what in ["containerd ingest", "build folder"] {
        assert!(
            listed
                .iter()
                .any(|l| l.contains(what) && l.contains(&format!("berth process {pid} "))),
            "{round}: berth doctor does not list the {what} berth {pid} left: {listed:?}"
        );
    }
    let next = unique("interrupted-after-write");
    let spec = trial.spec(&next, &["echo after".to_string()], None);
    let stderr = trial.succeed(&["build", &spec.display().to_string()]);
    let said: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("removed what a killed berth left in"))
        .collect();
    assert!(
        said.len() == 1 && said[0].contains("containerd ingest") && said[0].contains("build folder"),
        "{round}: the next build must say in one line that it aborted the ingest and removed the folder:\n{stderr}"
    );
    eprintln!("{round}: the next run: {}", said[0]);
    let named = containerd_named(trial.env, pid).await;
    assert!(named.is_empty(), "{round}: after the next run: {named:?}");
    nothing_left(Engine::Containerd, trial.env, marks, pid, round).await;
}

/// A berth whose RUN step runs while another berth builds on the same containerd: the other's run removes
/// nothing of it (its build folder stays, and it goes on until it is stopped).
async fn running_berth_untouched(trial: &mut Trial, marks: &Marks<'_>) {
    let round = "Containerd round with a berth running beside the next one";
    let mut child = trial.build_to_long_step("beside", marks, round);
    let pid = child.id();
    let marker = format!("{}-beside", marks.step_marker);
    let before = containerd_named(trial.env, pid).await;
    assert!(
        before.iter().any(|n| n.starts_with("build folder")),
        "{round}: berth {pid} has no build folder while its step runs: {before:?}"
    );
    // no RUN step of its own: one would wait for the uv cache mount the running step holds (`sharing=locked`)
    let next = unique("interrupted-beside-next");
    let blob = format!("{next}.bin");
    trial.blob(&blob, 4096);
    let spec_next = trial.spec(&next, &[], Some(&blob));
    let stderr = trial.succeed(&["build", &spec_next.display().to_string()]);
    assert!(
        !stderr.contains(&format!("berth process {pid} ")),
        "{round}: the other berth removed something of the running one:\n{stderr}"
    );
    assert_eq!(
        containerd_named(trial.env, pid).await,
        before,
        "{round}: the running berth's build folder changed"
    );
    assert!(
        step_running(&marker),
        "{round}: the running berth's step ended"
    );
    assert!(
        child.try_wait().expect("wait").is_none(),
        "{round}: berth {pid} ended"
    );
    send(&child, SIGINT);
    let (status, stderr) = finish(&mut child);
    let outcome = judge(status, &stderr, SIGINT, false, round);
    eprintln!("{round}: the next one's run left it alone; then SIGINT: {outcome}");
    nothing_left(Engine::Containerd, trial.env, marks, pid, round).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_build_and_push_stopped_anywhere_leave_nothing() {
    stopped_anywhere(Engine::Docker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_build_and_push_stopped_anywhere_leave_nothing() {
    stopped_anywhere(Engine::Podman).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rootless_podman_build_and_push_stopped_anywhere_leave_nothing() {
    stopped_anywhere(Engine::PodmanRootless).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_build_and_push_stopped_anywhere_leave_nothing() {
    stopped_anywhere(Engine::Containerd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lxd_build_and_push_stopped_anywhere_leave_nothing() {
    stopped_anywhere(Engine::Lxd).await;
}
