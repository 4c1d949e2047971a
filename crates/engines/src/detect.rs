//! Detection: the first engine in the table whose socket answers. An address the user named (`DOCKER_HOST`,
//! `CONTAINER_HOST`, `CONTAINERD_ADDRESS` or a file's `engine.<name>`) that does not answer stops detection with
//! an error naming it, rather than a quiet switch to the next engine.

use std::io::ErrorKind as IoKind;
use std::path::Path;

use berth_core::provider::Shared;
use berth_core::{Error, ErrorKind, Result};

use crate::choice::{named_address, way_out, ChoiceSource};
use crate::settings::{connect_settings, named, FileSettings, Setting};
use crate::{providers, EngineKind};

/// The first engine whose socket answers, in table order.
pub(crate) fn detect(files: &dyn FileSettings) -> Result<(EngineKind, ChoiceSource)> {
    // with its address named, an engine's first candidate is the place that setting names (a socket, or one
    // derived from it, as LXD's socket in `LXD_DIR`)
    let candidates: Vec<(EngineKind, String, Option<Setting>)> = providers()
        .flat_map(|kind| {
            let settings = connect_settings(kind, files, Shared::default());
            let places = kind.provider().candidates(&settings);
            let named = named(kind, files);
            places
                .into_iter()
                .enumerate()
                .map(move |(i, place)| (kind, place, named.clone().filter(|_| i == 0)))
        })
        .collect();
    let mut refused = Vec::new();
    for (kind, socket, named) in &candidates {
        let path = socket.strip_prefix("unix://").unwrap_or(socket);
        if path.contains("://") {
            // tcp://, ssh:// or https://: named on purpose; the engine reports whether it answers
            return Ok((*kind, ChoiceSource::Detected(socket.clone())));
        }
        let named = named.clone();
        let answer = if Path::new(path).exists() {
            std::os::unix::net::UnixStream::connect(path).map(drop)
        } else {
            Err(IoKind::NotFound.into())
        };
        let refusal = match answer {
            Ok(()) => {
                let place = named.map_or_else(|| socket.clone(), |n| named_address(*kind, &n));
                return Ok((*kind, ChoiceSource::Detected(place)));
            }
            Err(e) if e.kind() == IoKind::NotFound => None,
            Err(e) => Some(e),
        };
        if let Some(setting) = named {
            return Err(named_address_unanswered(*kind, &setting, refusal.as_ref()));
        }
        refused.extend(refusal.map(|e| (socket.clone(), e)));
        // a default socket that is missing, refuses this user or has nobody listening: try the next one
    }
    Err(nothing_answered(&candidates, &refused))
}

/// The error when no candidate answered: every place looked at and why, and what would fix it.
fn nothing_answered(
    candidates: &[(EngineKind, String, Option<Setting>)],
    refused: &[(String, std::io::Error)],
) -> Error {
    let looked: Vec<String> = candidates
        .iter()
        .map(
            |(kind, socket, _)| match refused.iter().find(|(s, _)| s == socket) {
                Some((_, e)) => format!("{kind}: {socket} ({})", describe_refusal(e)),
                None => format!("{kind}: {socket} (no such socket)"),
            },
        )
        .collect();
    let denied = refused
        .iter()
        .filter(|(_, e)| e.kind() == IoKind::PermissionDenied)
        .map(|(socket, _)| socket.strip_prefix("unix://").unwrap_or(socket));
    let mut fixes: Vec<String> = Vec::new();
    let mut root_only: Vec<&str> = Vec::new();
    for path in denied {
        match socket_group(path) {
            Some(group) => fixes.push(format!(
                "join group `{group}` to use {path} (`sudo usermod -aG {group} $USER`, then log in again)"
            )),
            None => root_only.push(path),
        }
    }
    if !root_only.is_empty() {
        fixes.push(format!(
            "{} {} only for root: run berth as root, or start your own rootless Podman \
             (`systemctl --user start podman.socket`)",
            root_only.join(" and "),
            if root_only.len() == 1 { "is" } else { "are" }
        ));
    }
    let starts: Vec<String> = providers()
        .map(|k| format!("`{}`", k.info().start_command))
        .collect();
    fixes.push(format!(
        "start an engine ({}) or name one with --engine / BERTH_ENGINE",
        starts.join(", ")
    ));
    Error::new(
        ErrorKind::EngineUnavailable,
        format!(
            "no container engine this user can reach (looked at {})",
            looked.join("; ")
        ),
    )
    .with_hint(fixes.join("; or "))
}

/// The error for an address the user named that does not answer; `refused` is why, when its socket exists
/// (else there is no such socket, or the value is not a socket path at all).
fn named_address_unanswered(
    kind: EngineKind,
    setting: &Setting,
    refused: Option<&std::io::Error>,
) -> Error {
    let why = match refused {
        Some(e) => describe_refusal(e),
        None if setting.value.trim_start_matches("unix://").starts_with('/') => {
            "no such socket".to_string()
        }
        None => "not a socket address (unix:///PATH)".to_string(),
    };
    let unset = way_out(kind, setting);
    Error::new(
        ErrorKind::EngineUnavailable,
        format!(
            "{} names the {kind} engine, which does not answer there: {why}",
            named_address(kind, setting)
        ),
    )
    .with_hint(format!(
        "start {kind} there or point it at one that runs; or {unset} to let berth detect an engine; or choose \
         one with --engine"
    ))
}

fn describe_refusal(e: &std::io::Error) -> String {
    match e.kind() {
        IoKind::PermissionDenied => "permission denied".into(),
        IoKind::ConnectionRefused => "nothing listens on it".into(),
        _ => e.to_string(),
    }
}

/// The group that may open the socket at `path`, when its mode admits a group other than root's.
fn socket_group(path: &str) -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).ok()?;
    let gid = meta.gid();
    (meta.mode() & 0o060 == 0o060 && gid != 0)
        .then(|| group_name(gid).unwrap_or_else(|| gid.to_string()))
}

/// The name of group `gid`, from /etc/group (`name:password:gid:members`).
fn group_name(gid: u32) -> Option<String> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        (fields.nth(1)?.parse::<u32>().ok()? == gid).then(|| name.to_string())
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::settings::Source;

    /// A project file naming a Docker socket that does not exist.
    struct NamesDocker;

    impl FileSettings for NamesDocker {
        fn engine_name(&self) -> Option<Setting> {
            None
        }

        fn engine_setting(&self, engine: &str, key: &str) -> Option<Setting> {
            (engine == "docker" && key == "host").then(|| Setting {
                value: "unix:///nonexistent/berth-test.sock".into(),
                source: Source::Project(PathBuf::from("/p/berth.yaml")),
            })
        }
    }

    #[test]
    #[cfg(feature = "docker")]
    fn a_named_address_that_does_not_answer_stops_detection() {
        if std::env::var_os("DOCKER_HOST").is_some() {
            eprintln!("skipped: DOCKER_HOST names Docker's address instead of the file");
            return;
        }
        let error = detect(&NamesDocker).expect_err("nothing answers there");
        assert_eq!(error.kind(), ErrorKind::EngineUnavailable);
        assert!(
            error.to_string().contains(
                "`engine.docker.host: unix:///nonexistent/berth-test.sock` (from /p/berth.yaml) names the docker \
                 engine, which does not answer there: no such socket"
            ),
            "{error}"
        );
        assert!(
            error
                .hint()
                .unwrap_or_default()
                .contains("remove `engine.docker` from that file"),
            "{error:?}"
        );
    }
}
