//! berth on a Docker daemon on another host, reached over TCP with TLS (issue 18): the remote dockerd of
//! `scripts/env/remote-docker.sh`, in the network namespace `berth-remote` at 10.203.0.2, with a private CA.
//! Each way a user names it is tested as the user would write it: `DOCKER_HOST` with `DOCKER_TLS_VERIFY` and
//! `DOCKER_CERT_PATH`; a Docker context made and selected by the docker CLI itself; `engine.docker` in
//! `berth.yaml`. The build runs there (the image is in the remote daemon, not in this machine's), berth's own
//! push reads the remote daemon's export, `--push-via engine` has the remote daemon push, Ctrl-C stops the
//! remote build, and a dead remote or a certificate that does not match is an error naming the cause and fix.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::conformance::support::unique;
use berth_tests::env::TestEnv;
use berth_tests::test_ca::{TestCa, Usage};
use berth_tests::{berth_bin, output_with_stdin};

/// The remote daemon's settings from env.sh; a missing one fails the test (the environment is not up).
struct Remote {
    host: String,
    certs: PathBuf,
    /// The same daemon at an address its certificate does not name.
    unnamed_host: String,
}

fn remote() -> Remote {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: run scripts/env/up.sh, then `source /var/lib/berth-env/env.sh`"
            )
        })
    };
    Remote {
        host: var("BERTH_TEST_REMOTE_DOCKER_HOST"),
        certs: PathBuf::from(var("BERTH_TEST_REMOTE_DOCKER_CERT_PATH")),
        unnamed_host: var("BERTH_TEST_REMOTE_DOCKER_UNNAMED_HOST"),
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// A project folder with its own Docker config folder (logins, contexts).
struct Project {
    dir: tempfile::TempDir,
}

/// Variables of the caller's shell that would name another daemon; each run sets only what it means to.
const DOCKER_VARS: [&str; 5] = [
    "DOCKER_HOST",
    "DOCKER_TLS_VERIFY",
    "DOCKER_CERT_PATH",
    "DOCKER_CONTEXT",
    "BERTH_ENGINE",
];

impl Project {
    fn new() -> Project {
        let project = Project {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        std::fs::create_dir_all(project.config()).expect("docker config folder");
        project
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn config(&self) -> PathBuf {
        self.path().join("docker-config")
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path().join(name), text).expect("write");
    }

    fn command(&self, program: &Path, vars: &[(&str, &str)]) -> Command {
        let mut command = Command::new(program);
        for var in DOCKER_VARS {
            command.env_remove(var);
        }
        command
            .env("DOCKER_CONFIG", self.config())
            .envs(vars.iter().copied())
            .current_dir(self.path());
        command
    }

    fn berth(&self, args: &[&str], stdin: &str, vars: &[(&str, &str)]) -> Run {
        let mut command = self.command(berth_bin(), vars);
        command.args(args);
        let out = output_with_stdin(command, stdin);
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The docker CLI with this project's config folder.
    fn docker(&self, args: &[&str]) -> (bool, String) {
        let out = self
            .command(Path::new("docker"), &[])
            .args(args)
            .output()
            .expect("run docker");
        outcome(&out)
    }

    fn log_in(&self, env: &TestEnv) {
        let args = [
            "login",
            &env.registry,
            "-u",
            &env.registry_user,
            "--password-stdin",
        ];
        let login = self.berth(&args, env.registry_password().expose(), &[]);
        assert_eq!(login.code, 0, "login: {}", login.stderr);
    }

    /// A small spec on the Python fixture whose last step is `command`, named uniquely.
    fn spec(&self, env: &TestEnv, label: &str, command: &str) {
        self.write(
            "spec.yaml",
            &format!(
                "name: {}\nregistry: {}/berth-remote\nbase_image: {}\npython_exec: /usr/bin/python3\n\
                 builder_config: {{uv_image: \"{}\"}}\nbuilder_options: {{install_flytekit: false}}\n\
                 commands: [\"{command}\"]\n",
                unique(label),
                env.registry,
                env.python_image,
                env.uv_image
            ),
        );
    }
}

/// The test environment, the remote daemon, and a project logged in to the registry with a spec whose last
/// step is `command`; `None` (printing why) when `BERTH_TEST_ENGINES` does not select `docker_remote`.
fn setup(label: &str, command: &str) -> Option<(&'static TestEnv, Remote, Project)> {
    let env = TestEnv::for_engine("docker_remote")?;
    let project = Project::new();
    project.log_in(env);
    project.spec(env, label, command);
    Some((env, remote(), project))
}

/// Whether a command succeeded, and what it printed (stdout, then stderr).
fn outcome(out: &std::process::Output) -> (bool, String) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The remote daemon through the docker CLI, with the client certificates.
fn remote_docker(remote: &Remote, args: &[&str]) -> (bool, String) {
    let certs = remote.certs.display().to_string();
    let out = Command::new("docker")
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTEXT")
        .args(["--host", &remote.host, "--tlsverify"])
        .args(["--tlscacert", &format!("{certs}/ca.pem")])
        .args(["--tlscert", &format!("{certs}/cert.pem")])
        .args(["--tlskey", &format!("{certs}/key.pem")])
        .args(args)
        .output()
        .expect("run docker");
    outcome(&out)
}

/// Asserts `image` is in the remote daemon and not in this machine's: the build ran there.
fn built_remotely(remote: &Remote, image: &str) {
    let (there, out) = remote_docker(remote, &["image", "inspect", "--format", "{{.Id}}", image]);
    assert!(there, "{image} is in the remote daemon: {out}");
    let local = Command::new("docker")
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTEXT")
        .args(["image", "inspect", image])
        .output()
        .expect("run docker");
    assert!(
        !local.status.success(),
        "{image} is not in this machine's daemon"
    );
}

/// The digest the registry holds for `reference`, asked by skopeo.
fn registry_digest(env: &TestEnv, reference: &str) -> String {
    berth_tests::project::skopeo_digest(reference, &env.creds_arg(), false)
}

fn tls_vars(remote: &Remote) -> Vec<(&'static str, String)> {
    vec![
        ("DOCKER_HOST", remote.host.clone()),
        ("DOCKER_TLS_VERIFY", "1".into()),
        ("DOCKER_CERT_PATH", remote.certs.display().to_string()),
    ]
}

fn borrowed<'a>(vars: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    vars.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn builds_and_pushes_on_a_tls_daemon_named_by_docker_host() {
    let Some((env, remote, project)) = setup("remote-tls", "echo built-remotely > /where") else {
        return;
    };
    let vars = tls_vars(&remote);
    let vars = borrowed(&vars);

    let built = project.berth(&["build", "--no-push", "spec.yaml"], "", &vars);
    assert_eq!(built.code, 0, "build: {}", built.stderr);
    assert!(
        built
            .stderr
            .contains(&format!("detected at {}", remote.host)),
        "detection follows DOCKER_HOST: {}",
        built.stderr
    );
    assert!(
        built.stderr.contains("step "),
        "progress from the remote build: {}",
        built.stderr
    );
    let name = built.stdout.trim().to_string();
    built_remotely(&remote, &name);

    // berth's own push, from the remote daemon's export
    let cache = project.path().join("cache").display().to_string();
    let mut own = vars.clone();
    own.push(("BERTH_CACHE_DIR", &cache));
    let pushed = project.berth(&["push", "--engine", "docker", "spec.yaml"], "", &own);
    assert_eq!(pushed.code, 0, "push: {}", pushed.stderr);
    let (reference, digest) = pushed.stdout.trim().split_once('@').expect("name@digest");
    assert_eq!(reference, name);
    assert_eq!(
        registry_digest(env, reference),
        digest,
        "the registry holds berth's push"
    );
    assert!(
        project.path().join("cache/pushed").exists(),
        "berth compressed the remote export itself"
    );

    // the remote daemon pushes, to the registry it reaches
    let cache = project.path().join("cache-engine").display().to_string();
    let mut engine = vars.clone();
    engine.push(("BERTH_CACHE_DIR", &cache));
    let args = [
        "push",
        "--engine",
        "docker",
        "--push-via",
        "engine",
        "spec.yaml",
    ];
    let pushed = project.berth(&args, "", &engine);
    assert_eq!(pushed.code, 0, "push via engine: {}", pushed.stderr);
    let (_, digest) = pushed.stdout.trim().split_once('@').expect("name@digest");
    assert_eq!(
        registry_digest(env, &name),
        digest,
        "the registry holds the engine's push"
    );
    assert!(
        !project.path().join("cache-engine/pushed").exists(),
        "the engine pushed, not berth"
    );
    let _ = remote_docker(&remote, &["rmi", "-f", &name]);
}

#[test]
fn follows_the_docker_context_the_docker_cli_made_and_selected() {
    let Some((_, remote, project)) = setup("remote-context", "echo by-context > /where") else {
        return;
    };
    let certs = remote.certs.display().to_string();
    let docker = format!(
        "host={},ca={certs}/ca.pem,cert={certs}/cert.pem,key={certs}/key.pem",
        remote.host
    );
    let (ok, out) = project.docker(&["context", "create", "berth-remote", "--docker", &docker]);
    assert!(ok, "docker context create: {out}");
    let (ok, out) = project.docker(&["context", "use", "berth-remote"]);
    assert!(ok, "docker context use: {out}");

    let config = project.berth(&["config", "--json"], "", &[]);
    assert_eq!(config.code, 0, "config: {}", config.stderr);
    let json: serde_json::Value = serde_json::from_str(&config.stdout).expect("json");
    let endpoint = json["endpoint"].as_str().unwrap_or_default();
    assert!(
        endpoint.starts_with(&remote.host)
            && endpoint.contains("context `berth-remote` from currentContext"),
        "{endpoint}"
    );

    let built = project.berth(&["build", "--no-push", "spec.yaml"], "", &[]);
    assert_eq!(
        built.code, 0,
        "build through the current context: {}",
        built.stderr
    );
    let name = built.stdout.trim().to_string();
    built_remotely(&remote, &name);

    // DOCKER_CONTEXT=default and DOCKER_HOST each win over the current context, as with the docker CLI
    let missing = "unix:///nonexistent/berth-remote-test.sock";
    let over = project.berth(
        &["build", "--engine", "docker", "--no-push", "spec.yaml"],
        "",
        &[("DOCKER_HOST", missing)],
    );
    assert_ne!(over.code, 0, "DOCKER_HOST names a missing socket");
    assert!(over.stderr.contains("DOCKER_HOST"), "{}", over.stderr);
    let default = project.berth(&["config", "--json"], "", &[("DOCKER_CONTEXT", "default")]);
    let json: serde_json::Value = serde_json::from_str(&default.stdout).expect("json");
    assert_eq!(
        json["endpoint"], "unix:///var/run/docker.sock",
        "{}",
        default.stdout
    );

    // a context that does not exist is named, with the way to list them
    let gone = project.berth(
        &["build", "--no-push", "spec.yaml"],
        "",
        &[("DOCKER_CONTEXT", "no-such-context")],
    );
    assert_ne!(gone.code, 0);
    assert!(
        gone.stderr
            .contains("`no-such-context` (from DOCKER_CONTEXT) does not exist")
            && gone.stderr.contains("docker context ls"),
        "{}",
        gone.stderr
    );
    let _ = remote_docker(&remote, &["rmi", "-f", &name]);
}

#[test]
fn berth_yaml_names_the_remote_daemon_and_berth_config_shows_where_from() {
    let Some((_, remote, project)) = setup("remote-yaml", "echo by-file > /where") else {
        return;
    };
    project.write(
        "berth.yaml",
        &format!(
            "engine:\n  name: docker\n  docker: {{host: \"{}\", tls_verify: true, cert_path: \"{}\"}}\n",
            remote.host,
            remote.certs.display()
        ),
    );
    let config = project.berth(&["config"], "", &[]);
    assert_eq!(config.code, 0, "config: {}", config.stderr);
    let file = project.path().join("berth.yaml").display().to_string();
    for (label, value) in [
        ("docker host", remote.host.clone()),
        ("docker tls", "true".into()),
        ("docker certs", remote.certs.display().to_string()),
    ] {
        let line = config
            .stdout
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no `{label}` row: {}", config.stdout));
        assert!(
            line.contains(&value) && line.contains(&format!("(from {file})")),
            "{line}"
        );
    }
    let built = project.berth(&["build", "--no-push", "spec.yaml"], "", &[]);
    assert_eq!(built.code, 0, "build: {}", built.stderr);
    built_remotely(&remote, built.stdout.trim());

    // DOCKER_TLS_VERIFY and DOCKER_CERT_PATH win over the file, as DOCKER_HOST does
    let wrong = project.path().join("no-certs");
    std::fs::create_dir_all(&wrong).expect("mkdir");
    let wrong = wrong.display().to_string();
    let over = project.berth(
        &["build", "--no-push", "spec.yaml"],
        "",
        &[("DOCKER_CERT_PATH", &wrong)],
    );
    assert_ne!(over.code, 0);
    assert!(
        over.stderr
            .contains(&format!("{wrong} has no ca.pem, cert.pem, key.pem")),
        "{}",
        over.stderr
    );
    let _ = remote_docker(&remote, &["rmi", "-f", built.stdout.trim()]);
}

/// `berth doctor` for a remote daemon that is not there, and for each way its certificates can disagree
/// with the client's: the cause and the fix, not "client error (Connect)".
#[test]
fn doctor_names_a_dead_remote_and_each_certificate_mismatch() {
    let Some((_, remote, project)) = setup("remote-doctor", "true") else {
        return;
    };
    let certs = remote.certs.display().to_string();
    let dir = project.path();
    // another CA, and a client certificate it signed
    let other = TestCa::new(dir, "other-ca", "other");
    let other_client = other.issue("other-cert", "other-client", Usage::Client);
    let folder = |name: &str, files: [(&str, String); 3]| {
        let folder = dir.join(name);
        std::fs::create_dir_all(&folder).expect("mkdir");
        for (to, from) in files {
            std::fs::copy(&from, folder.join(to)).unwrap_or_else(|e| panic!("{from}: {e}"));
        }
        folder.display().to_string()
    };
    let show = |f: &std::path::Path| f.display().to_string();
    let good = |f: &str| format!("{certs}/{f}");
    let wrong_ca = folder(
        "wrong-ca",
        [
            ("ca.pem", show(&other.cert)),
            ("cert.pem", good("cert.pem")),
            ("key.pem", good("key.pem")),
        ],
    );
    let wrong_client = folder(
        "wrong-client",
        [
            ("ca.pem", good("ca.pem")),
            ("cert.pem", show(&other_client.cert)),
            ("key.pem", show(&other_client.key)),
        ],
    );
    let no_client = dir.join("no-client");
    std::fs::create_dir_all(&no_client).expect("mkdir");
    std::fs::copy(good("ca.pem"), no_client.join("ca.pem")).expect("copy");
    let no_client = no_client.display().to_string();
    let (addr_host, port) = remote
        .host
        .trim_start_matches("tcp://")
        .rsplit_once(':')
        .expect("host:port");
    let dead = format!(
        "tcp://{addr_host}:{}",
        port.parse::<u16>().expect("port") + 1
    );

    let cases = [
        (
            remote.host.as_str(),
            wrong_ca.as_str(),
            "did not sign",
            "--tlscacert",
        ),
        (
            remote.unnamed_host.as_str(),
            certs.as_str(),
            "does not name",
            "subjectAltName",
        ),
        (
            remote.host.as_str(),
            no_client.as_str(),
            "has no cert.pem, key.pem",
            "client certificate it signed",
        ),
        (
            remote.host.as_str(),
            wrong_client.as_str(),
            "refused the client certificate",
            "signed by the daemon's CA",
        ),
        (
            dead.as_str(),
            certs.as_str(),
            "nothing listens at",
            "dockerd -H tcp://",
        ),
    ];
    for (host, cert_path, cause, fix) in cases {
        let vars = [
            ("DOCKER_HOST", host),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", cert_path),
        ];
        let doctor = project.berth(&["doctor", "--engine", "docker"], "", &vars);
        assert_ne!(
            doctor.code, 0,
            "{host} with {cert_path}: doctor finds a problem"
        );
        let line = doctor
            .stdout
            .lines()
            .position(|l| l.contains("engine docker:"))
            .unwrap_or_else(|| panic!("no docker finding: {}", doctor.stdout));
        let lines: Vec<&str> = doctor.stdout.lines().collect();
        let finding = lines[line..(line + 2).min(lines.len())].join("\n");
        assert!(
            finding.contains("problem") && finding.contains(cause),
            "{host} {cert_path}: {finding}"
        );
        assert!(
            finding.contains(fix),
            "{host} {cert_path}: the fix: {finding}"
        );
        // a build says the same, and names the setting
        let build = project.berth(
            &["build", "--engine", "docker", "--no-push", "spec.yaml"],
            "",
            &vars,
        );
        assert!(
            build.stderr.contains(&format!("DOCKER_HOST={host}")) && build.stderr.contains(cause),
            "{}",
            build.stderr
        );
    }
}

/// Ctrl-C on berth stops the build on the remote daemon (over TLS): the RUN step's process (visible here, as
/// the remote host shares this machine's process table) goes away.
#[test]
fn ctrl_c_stops_the_remote_build() {
    let marker = unique("remote-interrupt").replace('-', "");
    let command = format!("sleep 3000 && echo {marker}");
    let Some((_, remote, project)) = setup("remote-interrupt", &command) else {
        return;
    };
    interrupt_stops_the_step(&project, &tls_vars(&remote), &marker);
}

/// The same over SSH (`DOCKER_HOST=ssh://root@REMOTE`, `docker system dial-stdio` there): the connection berth
/// drops is the SSH session's, and the daemon still stops the build.
#[test]
fn ctrl_c_stops_a_build_over_ssh() {
    let Some(env) = TestEnv::for_engine("docker_ssh") else {
        return;
    };
    let marker = unique("ssh-interrupt").replace('-', "");
    let project = Project::new();
    project.log_in(env);
    project.spec(
        env,
        "ssh-interrupt",
        &format!("sleep 3000 && echo {marker}"),
    );
    let ssh = berth_tests::remote::RemoteEnv::get();
    let vars = vec![("DOCKER_HOST", ssh.docker_url())];
    interrupt_stops_the_step(&project, &vars, &marker);
}

/// Starts `berth build` with `vars`, sends SIGINT once the step printing `marker` runs, and waits for that
/// step's process to go.
fn interrupt_stops_the_step(project: &Project, vars: &[(&'static str, String)], marker: &str) {
    let mut child = project
        .command(berth_bin(), &borrowed(vars))
        .args(["build", "--no-push", "spec.yaml"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start berth");
    let running = || {
        let out = Command::new("pgrep")
            .args(["-f", marker])
            .output()
            .expect("pgrep");
        out.status.success()
    };
    let waited = Instant::now();
    while !running() {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "berth ended before the RUN step started"
        );
        assert!(
            waited.elapsed() < Duration::from_secs(600),
            "the RUN step never started"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(interrupted.success());
    let out = child.wait_with_output().expect("berth ends after Ctrl-C");
    assert!(!out.status.success(), "an interrupted build fails");
    let waited = Instant::now();
    while running() {
        assert!(
            waited.elapsed() < Duration::from_secs(120),
            "the remote RUN step still runs after Ctrl-C: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
