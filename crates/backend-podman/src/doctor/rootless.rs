//! Whether this user can run rootless Podman: subordinate id ranges, the setuid id mappers, `podman`, a runtime
//! folder of the user's own and the user's API service answering in it. [`check`] is pure over [`RootlessFacts`];
//! each missing item is a problem with the command that fixes it.

use std::io::ErrorKind as IoKind;
use std::path::{Path, PathBuf};

use berth_core::doctor::accounts::{Accounts, Identity};
use berth_core::doctor::machine::{Executable, FileKind, PathState};
use berth_core::doctor::socket::Diagnosis;
use berth_core::doctor::Finding;
use berth_core::Error;

use super::packages::{install_command, Tool};
use super::subids::{self, SubIdEntry};

/// The subordinate uid file.
pub const SUBUID: &str = "/etc/subuid";
/// The subordinate gid file.
pub const SUBGID: &str = "/etc/subgid";

/// What the user's Podman service said.
#[derive(Debug)]
pub enum ServiceAnswer {
    /// Not asked: there is no usable runtime folder to find its socket in.
    NotAsked,
    /// It answered.
    Answered {
        /// Podman's version.
        version: String,
        /// Whether it runs rootless.
        rootless: bool,
    },
    /// It did not; `socket` is what is at its socket path.
    Failed {
        /// The socket path.
        path: PathBuf,
        /// What is there.
        socket: PathState,
        /// The backend's error (its hint says how to start the service).
        error: Error,
    },
}

/// Everything the rootless checks look at, gathered from the machine (or written out by a test).
#[derive(Debug)]
pub struct RootlessFacts {
    /// The user.
    pub user: Identity,
    /// `/etc/subuid`'s text, or why it could not be read.
    pub subuid: Result<String, IoKind>,
    /// `/etc/subgid`'s text, or why it could not be read.
    pub subgid: Result<String, IoKind>,
    /// `newuidmap` on `PATH`.
    pub newuidmap: Option<Executable>,
    /// `newgidmap` on `PATH`.
    pub newgidmap: Option<Executable>,
    /// `podman` on `PATH`.
    pub podman: Option<PathBuf>,
    /// `$XDG_RUNTIME_DIR` and what is there.
    pub runtime_dir: Option<(PathBuf, PathState)>,
    /// The service at `$XDG_RUNTIME_DIR/podman/podman.sock`.
    pub service: ServiceAnswer,
    /// `/etc/os-release`, for install commands.
    pub os_release: Option<String>,
    /// Why buildah cannot keep this user's build caches, and the fix (see [`crate::cache`]).
    pub cache_problem: Option<(String, String)>,
}

/// The findings, and the user's ranges (for `--json`).
#[derive(Debug)]
pub struct RootlessReport {
    /// One finding per check.
    pub findings: Vec<Finding>,
    /// The user's `/etc/subuid` ranges.
    pub subuid: Vec<SubIdEntry>,
    /// The user's `/etc/subgid` ranges.
    pub subgid: Vec<SubIdEntry>,
}

/// Checks everything rootless Podman needs for `facts.user`.
pub fn check(facts: &RootlessFacts, accounts: &Accounts) -> RootlessReport {
    let (mut findings, subuid, subgid) = check_subids(facts);
    let install_mappers = install_command(facts.os_release.as_deref(), Tool::IdMappers);
    findings.push(check_mapper(
        "newuidmap",
        "cap_setuid",
        facts.newuidmap.as_ref(),
        &install_mappers,
    ));
    findings.push(check_mapper(
        "newgidmap",
        "cap_setgid",
        facts.newgidmap.as_ref(),
        &install_mappers,
    ));
    findings.push(match &facts.podman {
        Some(path) => Finding::ok("podman", format!("{}", path.display())),
        None => Finding::problem(
            "podman",
            "podman is not on PATH",
            install_command(facts.os_release.as_deref(), Tool::Podman),
        ),
    });
    findings.push(check_runtime_dir(&facts.user, facts.runtime_dir.as_ref()));
    findings.push(check_service(&facts.user, accounts, &facts.service));
    if let ServiceAnswer::Answered { rootless: true, .. } = facts.service {
        findings.push(match &facts.cache_problem {
            None => Finding::ok("build caches", "buildah can keep this user's cache folders"),
            Some((message, fix)) => Finding::warning(
                "build caches",
                format!("{message}: builds work, on empty apt/uv/micromamba caches every time"),
                Some(fix.clone()),
            ),
        });
    }
    RootlessReport {
        findings,
        subuid,
        subgid,
    }
}

/// One subordinate id file as it serves the user.
struct SubIdFile {
    path: &'static str,
    /// The `usermod` flag that adds a range to it.
    flag: &'static str,
    /// Every entry (to find a free range), empty when unreadable.
    entries: Vec<SubIdEntry>,
    /// The user's ranges, or why the file could not be read.
    mine: Result<Vec<SubIdEntry>, IoKind>,
}

impl SubIdFile {
    fn read(
        path: &'static str,
        flag: &'static str,
        text: &Result<String, IoKind>,
        user: &Identity,
    ) -> Self {
        let entries = text.as_deref().map(subids::parse).unwrap_or_default();
        let mine = text
            .as_ref()
            .map(|_| subids::ranges_for(&entries, &user.name, user.uid))
            .map_err(|k| *k);
        SubIdFile {
            path,
            flag,
            entries,
            mine,
        }
    }

    /// Whether `usermod` should add a range: the file is missing, or the user's ranges are too small.
    fn wants_range(&self) -> bool {
        match &self.mine {
            Ok(mine) => subids::total(mine) < subids::WANTED,
            Err(kind) => *kind == IoKind::NotFound,
        }
    }

    fn finding(&self, user: &Identity, add_ranges: &str) -> Finding {
        let (check, file) = (self.path.trim_start_matches("/etc/"), self.path);
        match &self.mine {
            Err(IoKind::NotFound) => {
                Finding::problem(check, format!("{file} does not exist"), add_ranges)
            }
            Err(kind) => Finding::problem(
                check,
                format!("cannot read {file}: {kind}"),
                format!("sudo chmod 644 {file}"),
            ),
            Ok(mine) if mine.is_empty() => Finding::problem(
                check,
                format!("{file} has no range for {} (uid {})", user.name, user.uid),
                add_ranges,
            ),
            Ok(mine) => {
                let seen = format!(
                    "{file} gives {} {} ids ({})",
                    user.name,
                    subids::total(mine),
                    subids::spans(mine)
                );
                if subids::total(mine) < subids::WANTED {
                    let why = format!(
                        "images with files owned by ids up to 65534 (nobody) need {}",
                        subids::WANTED
                    );
                    Finding::warning(
                        check,
                        format!("{seen}; {why}"),
                        Some(add_ranges.to_string()),
                    )
                } else {
                    Finding::ok(check, seen)
                }
            }
        }
    }
}

/// The command that gives the user a fresh range in each file that wants one (the same free range in both, as
/// useradd does), creating missing files first (`usermod` refuses to), then restarts Podman's user namespace.
fn add_ranges_fix(user: &Identity, files: &[&SubIdFile]) -> String {
    let everyone: Vec<SubIdEntry> = files
        .iter()
        .flat_map(|f| f.entries.iter().cloned())
        .collect();
    let (start, end) = subids::free_range(&everyone);
    let missing: Vec<&str> = files
        .iter()
        .filter(|f| f.mine.as_ref().err() == Some(&IoKind::NotFound))
        .map(|f| f.path)
        .collect();
    let mut fix = String::new();
    if !missing.is_empty() {
        fix.push_str(&format!("sudo touch {} && ", missing.join(" ")));
    }
    fix.push_str("sudo usermod");
    for file in files.iter().filter(|f| f.wants_range()) {
        fix.push_str(&format!(" {} {start}-{end}", file.flag));
    }
    fix.push_str(&format!(" {} && podman system migrate", user.name));
    fix
}

fn check_subids(facts: &RootlessFacts) -> (Vec<Finding>, Vec<SubIdEntry>, Vec<SubIdEntry>) {
    let user = &facts.user;
    let uids = SubIdFile::read(SUBUID, "--add-subuids", &facts.subuid, user);
    let gids = SubIdFile::read(SUBGID, "--add-subgids", &facts.subgid, user);
    let fix = add_ranges_fix(user, &[&uids, &gids]);
    let findings = vec![uids.finding(user, &fix), gids.finding(user, &fix)];
    (
        findings,
        uids.mine.unwrap_or_default(),
        gids.mine.unwrap_or_default(),
    )
}

/// `newuidmap`/`newgidmap` must be able to write another process's id map: setuid root, or a file capability.
fn check_mapper(
    name: &str,
    capability: &str,
    found: Option<&Executable>,
    install: &str,
) -> Finding {
    let Some(exe) = found else {
        return Finding::problem(name, format!("{name} is not on PATH"), install);
    };
    let path = exe.path.display();
    let setuid = exe.file.mode & 0o4000 != 0;
    if setuid && exe.file.uid == 0 {
        return Finding::ok(name, format!("{path} is setuid root"));
    }
    if setuid {
        return Finding::problem(
            name,
            format!(
                "{path} is setuid but not owned by root (uid {})",
                exe.file.uid
            ),
            format!("sudo chown root {path} && sudo chmod u+s {path}"),
        );
    }
    Finding::warning(
        name,
        format!(
            "{path} is not setuid root; it may carry the {capability} file capability instead, which berth cannot read: \
             `getcap {path}` should print {capability}=ep"
        ),
        Some(format!("if it does not: sudo setcap {capability}+ep {path}")),
    )
}

fn check_runtime_dir(user: &Identity, runtime_dir: Option<&(PathBuf, PathState)>) -> Finding {
    const CHECK: &str = "XDG_RUNTIME_DIR";
    let usual = format!("/run/user/{}", user.uid);
    let create = format!(
        "sudo install -d -m 700 -o {} -g {} {usual}",
        user.name, user.gid
    );
    let own = format!("export XDG_RUNTIME_DIR={usual} (create it if needed: `{create}`)");
    let Some((path, state)) = runtime_dir else {
        return Finding::problem(
            CHECK,
            "XDG_RUNTIME_DIR is not set; rootless Podman keeps its socket and state there (a login through ssh or a \
             desktop session sets it)",
            own,
        );
    };
    let shown = path.display();
    match state {
        PathState::Missing => Finding::problem(
            CHECK,
            format!("XDG_RUNTIME_DIR={shown} does not exist"),
            format!(
                "sudo install -d -m 700 -o {} -g {} {shown}",
                user.name, user.gid
            ),
        ),
        PathState::Hidden => Finding::problem(
            CHECK,
            format!("{} may not look into {shown}", user.name),
            own,
        ),
        PathState::Present(file) if file.kind != FileKind::Dir => Finding::problem(
            CHECK,
            format!("XDG_RUNTIME_DIR={shown} is not a folder"),
            own,
        ),
        PathState::Present(file) if file.uid != user.uid => Finding::problem(
            CHECK,
            format!(
                "XDG_RUNTIME_DIR={shown} belongs to uid {}, not to {} (uid {})",
                file.uid, user.name, user.uid
            ),
            if path == Path::new(&usual) {
                format!(
                    "sudo chown {}:{} {shown} && sudo chmod 700 {shown}",
                    user.name, user.gid
                )
            } else {
                own
            },
        ),
        PathState::Present(_) => Finding::ok(CHECK, format!("{shown}, owned by {}", user.name)),
    }
}

fn check_service(user: &Identity, accounts: &Accounts, service: &ServiceAnswer) -> Finding {
    const CHECK: &str = "podman service";
    match service {
        ServiceAnswer::NotAsked => {
            Finding::skipped(CHECK, "not asked: XDG_RUNTIME_DIR is unusable (see above)")
        }
        ServiceAnswer::Answered {
            version,
            rootless: true,
        } => Finding::ok(CHECK, format!("answers (podman {version}, rootless)")),
        ServiceAnswer::Answered {
            version,
            rootless: false,
        } => Finding::warning(
            CHECK,
            format!(
                "answers (podman {version}) but runs rootful, not as {}",
                user.name
            ),
            None,
        ),
        ServiceAnswer::Failed {
            path,
            socket,
            error,
        } => {
            let diagnosis = Diagnosis {
                engine: crate::ENGINE,
                socket: path,
                me: user,
                accounts,
                instead: None,
            };
            let (message, fix) = diagnosis.of(socket, error);
            Finding::problem(CHECK, message, fix)
        }
    }
}

#[cfg(test)]
mod tests {
    use berth_core::doctor::machine::FileFacts;
    use berth_core::doctor::Status;
    use berth_core::ErrorKind;

    use super::*;

    const SUBUID_TEXT: &str = "berth-rootless:100000:65536\n";
    const DEBIAN: &str = "ID=debian\nVERSION_ID=\"12\"\n";

    fn user(name: &str, uid: u32) -> Identity {
        Identity {
            name: name.into(),
            uid,
            gid: uid,
            groups: vec![uid],
        }
    }

    fn mapper(path: &str, mode: u32) -> Option<Executable> {
        Some(Executable {
            path: PathBuf::from(path),
            file: FileFacts {
                uid: 0,
                gid: 0,
                mode,
                kind: FileKind::Other,
            },
        })
    }

    /// berth-rootless as scripts/env/up.sh sets it up.
    fn ready() -> RootlessFacts {
        RootlessFacts {
            user: user("berth-rootless", 1001),
            subuid: Ok(SUBUID_TEXT.into()),
            subgid: Ok(SUBUID_TEXT.into()),
            newuidmap: mapper("/usr/bin/newuidmap", 0o4755),
            newgidmap: mapper("/usr/bin/newgidmap", 0o4755),
            podman: Some(PathBuf::from("/usr/bin/podman")),
            runtime_dir: Some((
                PathBuf::from("/run/user/1001"),
                PathState::Present(FileFacts {
                    uid: 1001,
                    gid: 1001,
                    mode: 0o700,
                    kind: FileKind::Dir,
                }),
            )),
            service: ServiceAnswer::Answered {
                version: "4.3.1".into(),
                rootless: true,
            },
            os_release: Some(DEBIAN.into()),
            cache_problem: None,
        }
    }

    fn finding<'a>(report: &'a RootlessReport, check: &str) -> &'a Finding {
        report
            .findings
            .iter()
            .find(|f| f.check == check)
            .unwrap_or_else(|| panic!("no {check} finding in {:?}", report.findings))
    }

    #[test]
    fn a_ready_user_passes_every_check() {
        let report = check(&ready(), &Accounts::default());
        let statuses: Vec<(&str, Status)> = report
            .findings
            .iter()
            .map(|f| (f.check.as_str(), f.status))
            .collect();
        assert!(
            statuses.iter().all(|(_, s)| *s == Status::Ok),
            "{:?}",
            report.findings
        );
        assert_eq!(
            finding(&report, "subuid").message,
            "/etc/subuid gives berth-rootless 65536 ids (100000-165535)"
        );
        assert_eq!((report.subuid.len(), report.subgid.len()), (1, 1));
    }

    #[test]
    fn another_users_range_is_a_problem_with_a_free_range_to_add() {
        let facts = RootlessFacts {
            user: user("berth-plain", 1002),
            ..ready()
        };
        let report = check(&facts, &Accounts::default());
        for check_name in ["subuid", "subgid"] {
            let f = finding(&report, check_name);
            assert_eq!(f.status, Status::Problem, "{f:?}");
            assert!(
                f.message
                    .ends_with("has no range for berth-plain (uid 1002)"),
                "{f:?}"
            );
            assert_eq!(
                f.fix.as_deref(),
                Some("sudo usermod --add-subuids 165536-231071 --add-subgids 165536-231071 berth-plain && podman system migrate")
            );
        }
        assert!(report.subuid.is_empty());
    }

    #[test]
    fn a_range_owned_by_the_numeric_uid_counts() {
        let by_uid = "1002:300000:65536\n";
        let facts = RootlessFacts {
            user: user("berth-plain", 1002),
            subuid: Ok(by_uid.into()),
            subgid: Ok(by_uid.into()),
            ..ready()
        };
        let report = check(&facts, &Accounts::default());
        assert_eq!(finding(&report, "subuid").status, Status::Ok);
        assert_eq!(report.subgid[0].start, 300000);
    }

    #[test]
    fn a_small_range_is_a_warning_and_only_that_file_gets_a_new_one() {
        let facts = RootlessFacts {
            subuid: Ok("berth-rootless:100000:1000\n".into()),
            ..ready()
        };
        let report = check(&facts, &Accounts::default());
        let f = finding(&report, "subuid");
        assert_eq!(f.status, Status::Warning, "{f:?}");
        assert!(f.message.contains("1000 ids (100000-100999)"), "{f:?}");
        assert_eq!(
            f.fix.as_deref(),
            Some(
                "sudo usermod --add-subuids 165536-231071 berth-rootless && podman system migrate"
            )
        );
        assert_eq!(finding(&report, "subgid").status, Status::Ok);
    }

    #[test]
    fn a_missing_file_is_created_before_usermod() {
        let facts = RootlessFacts {
            subgid: Err(IoKind::NotFound),
            ..ready()
        };
        let report = check(&facts, &Accounts::default());
        let f = finding(&report, "subgid");
        assert_eq!(
            (f.status, f.message.as_str()),
            (Status::Problem, "/etc/subgid does not exist")
        );
        assert_eq!(
            f.fix.as_deref(),
            Some("sudo touch /etc/subgid && sudo usermod --add-subgids 165536-231071 berth-rootless && podman system migrate")
        );
    }

    #[test]
    fn id_mappers_must_be_there_and_setuid_or_capable() {
        let facts = RootlessFacts {
            newuidmap: None,
            newgidmap: mapper("/usr/bin/newgidmap", 0o755),
            ..ready()
        };
        let report = check(&facts, &Accounts::default());
        let uid = finding(&report, "newuidmap");
        assert_eq!(
            (uid.status, uid.fix.as_deref()),
            (Status::Problem, Some("sudo apt-get install uidmap"))
        );
        let gid = finding(&report, "newgidmap");
        assert_eq!(gid.status, Status::Warning, "{gid:?}");
        assert!(
            gid.message.contains("cannot read")
                && gid.message.contains("getcap /usr/bin/newgidmap"),
            "{gid:?}"
        );
    }

    #[test]
    fn the_runtime_folder_must_be_set_and_the_users_own() {
        let unset = check(
            &RootlessFacts {
                runtime_dir: None,
                service: ServiceAnswer::NotAsked,
                ..ready()
            },
            &Accounts::default(),
        );
        let f = finding(&unset, "XDG_RUNTIME_DIR");
        assert_eq!(f.status, Status::Problem);
        assert!(
            f.fix
                .as_deref()
                .unwrap_or_default()
                .starts_with("export XDG_RUNTIME_DIR=/run/user/1001"),
            "{f:?}"
        );
        assert_eq!(finding(&unset, "podman service").status, Status::Skipped);

        let foreign = RootlessFacts {
            runtime_dir: Some((
                PathBuf::from("/run/user/1001"),
                PathState::Present(FileFacts {
                    uid: 0,
                    gid: 0,
                    mode: 0o755,
                    kind: FileKind::Dir,
                }),
            )),
            ..ready()
        };
        let f = check(&foreign, &Accounts::default()).findings.remove(5);
        assert_eq!(f.check, "XDG_RUNTIME_DIR");
        assert_eq!(
            f.fix.as_deref(),
            Some("sudo chown berth-rootless:1001 /run/user/1001 && sudo chmod 700 /run/user/1001")
        );
    }

    #[test]
    fn no_service_socket_says_how_to_start_the_service() {
        let path = PathBuf::from("/run/user/1001/podman/podman.sock");
        let error = Error::new(ErrorKind::EngineUnavailable, "cannot reach the Podman service")
            .with_hint("start the service: `systemctl --user start podman.socket`, or `podman system service --time=0 unix:///run/user/1001/podman/podman.sock`");
        let facts = RootlessFacts {
            service: ServiceAnswer::Failed {
                path,
                socket: PathState::Missing,
                error,
            },
            ..ready()
        };
        let report = check(&facts, &Accounts::default());
        let f = finding(&report, "podman service");
        assert_eq!(f.status, Status::Problem);
        assert!(
            f.message
                .starts_with("no socket at /run/user/1001/podman/podman.sock"),
            "{f:?}"
        );
        assert!(
            f.fix
                .as_deref()
                .unwrap_or_default()
                .contains("systemctl --user start podman.socket"),
            "{f:?}"
        );
    }

    #[test]
    fn build_caches_another_user_owns_are_a_warning_with_the_fix() {
        let fine = check(&ready(), &Accounts::default());
        assert_eq!(finding(&fine, "build caches").status, Status::Ok);
        let facts = RootlessFacts {
            cache_problem: Some(("cannot keep build caches".into(), "chmod 1777 it".into())),
            ..ready()
        };
        let report = check(&facts, &Accounts::default());
        let f = finding(&report, "build caches");
        assert_eq!(f.status, Status::Warning, "{f:?}");
        assert_eq!(f.fix.as_deref(), Some("chmod 1777 it"));
    }
}
