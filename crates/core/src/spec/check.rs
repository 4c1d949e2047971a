//! Checks that keep spec values from breaking out of the generated Dockerfile or the image reference.
//!
//! Every value that reaches a Dockerfile line is single-line; words that are spliced into a command line contain no
//! whitespace or shell syntax; names follow the OCI distribution grammar. Each check returns the message to show.

use std::sync::LazyLock;

use regex::Regex;

use super::load::at;
use super::{Field, ImageSpec};
use crate::error::Result;
use crate::yaml::{Node, Value};

type Check = std::result::Result<(), String>;

/// Checks every value that a build splices into the Dockerfile or a command line, naming the file, line, column
/// and field of the first bad one. Naming a spec needs none of this (flytekit names such specs too); building does.
pub fn check_buildable(spec: &ImageSpec) -> Result<()> {
    for (field, node) in &spec.raw {
        let fail = |node: &Node, message: String| {
            at(&spec.file, node.mark, format!("`{field}`: {message}"))
        };
        let each_str = |check: fn(&str) -> Check| -> Result<()> {
            for item in strings_in(node) {
                if let Value::Str(s) = &item.value {
                    check(s).map_err(|m| fail(item, m))?;
                }
            }
            Ok(())
        };
        match field {
            Field::AptPackages => each_str(apt_package)?,
            Field::Commands => each_str(command)?,
            Field::PythonExec | Field::PythonVersion => each_str(word)?,
            Field::BaseImage if matches!(node.value, Value::Str(_)) => each_str(image_reference)?,
            Field::BuilderConfig => builder_images(node).try_for_each(|v| {
                image_reference(v.value.as_str().unwrap_or_default()).map_err(|m| fail(v, m))
            })?,
            Field::PipSecretMounts => {
                for pair in strings_in(node).collect::<Vec<_>>().chunks(2) {
                    if let [_, target] = pair {
                        absolute_target(target.value.as_str().unwrap_or_default())
                            .map_err(|m| fail(target, m))?;
                    }
                }
            }
            Field::Env => {
                if let Value::Map(entries) = &node.value {
                    for (key, value) in entries {
                        env_name(key.value.as_str().unwrap_or_default())
                            .map_err(|m| fail(key, m))?;
                        if let Value::Str(v) = &value.value {
                            single_line(v).map_err(|m| fail(value, m))?;
                        }
                    }
                }
            }
            Field::Packages
            | Field::CondaPackages
            | Field::CondaChannels
            | Field::PipIndex
            | Field::PipExtraIndexUrl
            | Field::PipExtraArgs
            | Field::Platform
            | Field::Copy => each_str(single_line)?,
            _ => {}
        }
    }
    Ok(())
}

/// The string nodes of a value: itself, or the items of a list (one level of nesting for pairs).
fn strings_in(node: &Node) -> Box<dyn Iterator<Item = &Node> + '_> {
    match &node.value {
        Value::Str(_) => Box::new(std::iter::once(node)),
        Value::Seq(items) => Box::new(items.iter().flat_map(strings_in)),
        _ => Box::new(std::iter::empty()),
    }
}

fn builder_images(node: &Node) -> impl Iterator<Item = &Node> {
    let entries: &[(Node, Node)] = match &node.value {
        Value::Map(entries) => entries,
        _ => &[],
    };
    entries
        .iter()
        .filter(|(k, v)| {
            matches!(k.value.as_str(), Some("uv_image" | "micromamba_image"))
                && matches!(v.value, Value::Str(_))
        })
        .map(|(_, v)| v)
}

/// No newline or carriage return, which would start a new Dockerfile instruction.
pub(crate) fn single_line(value: &str) -> Check {
    if value.contains(['\n', '\r']) {
        return Err("contains a line break, which would start a new Dockerfile instruction; put it on one line".into());
    }
    if value.contains('\0') {
        return Err("contains a NUL character".into());
    }
    Ok(())
}

static REPOSITORY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$",
    )
    .expect("valid regex")
});

/// An image repository name such as `team/app` (already lowercased).
pub(crate) fn repository_name(name: &str) -> Check {
    if REPOSITORY.is_match(name) && name.len() <= 255 {
        return Ok(());
    }
    Err(format!(
        "`{name}` is not a valid image name: use lowercase letters, digits and separators (. _ __ -), with / between path parts"
    ))
}

static REGISTRY: LazyLock<Regex> = LazyLock::new(|| {
    // flytekit's validate_container_registry_name, which ImageSpec applies on construction, with ASCII classes
    // (registry hosts and paths are ASCII; Unicode `\w` and `\d` cost ~30 ms to compile at every start).
    Regex::new(r"^(localhost:[0-9]{1,5}|([a-z0-9._-]+)(:[0-9]{1,5})?)(/[A-Za-z0-9_.-]+)*$")
        .expect("valid regex")
});

/// A registry with an optional path, such as `ghcr.io/org` or `localhost:30000`.
pub(crate) fn registry(registry: &str) -> Check {
    if REGISTRY.is_match(registry) {
        return Ok(());
    }
    Err(format!(
        "`{registry}` is not a valid registry; expected forms: localhost:30000, ghcr.io/username, docker.io/username"
    ))
}

static APT_PACKAGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9][a-z0-9+.\-]*(:[a-z0-9]+)?(=[A-Za-z0-9.+~:\-]+|/[a-z0-9\-]+)?$")
        .expect("valid regex")
});

/// A Debian package name, optionally `=version` or `/release`.
pub(crate) fn apt_package(package: &str) -> Check {
    if APT_PACKAGE.is_match(package) {
        return Ok(());
    }
    Err(format!("`{package}` is not a Debian package name (expected e.g. `git`, `curl=7.88.1-10`, `libssl-dev:amd64`)"))
}

/// A shell command spliced into one `RUN` line.
pub(crate) fn command(command: &str) -> Check {
    single_line(command)?;
    if command.trim_end().ends_with('\\') {
        return Err(
            "ends with a backslash, which would continue the RUN line into the next instruction"
                .into(),
        );
    }
    let without_herestrings = command.replace("<<<", "");
    if without_herestrings.contains("<<") {
        return Err("contains a here-document (`<<`), which would swallow the following Dockerfile lines; use a script file in `copy` instead".into());
    }
    Ok(())
}

/// A single word for a command line: no whitespace, quotes or shell operators.
pub(crate) fn word(word: &str) -> Check {
    if word.is_empty() {
        return Err("is empty".into());
    }
    if let Some(c) = word
        .chars()
        .find(|c| c.is_whitespace() || "'\"`$;&|<>\\(){}".contains(*c))
    {
        return Err(format!(
            "`{word}` contains `{c}`; expected a single word without spaces or shell syntax"
        ));
    }
    Ok(())
}

/// An environment variable name: one token without `=`, quotes, `$` or `\\`.
pub(crate) fn env_name(name: &str) -> Check {
    let bad = name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "=\"'$\\".contains(c));
    if !bad {
        return Ok(());
    }
    Err(format!(
        "`{name}` is not a valid environment variable name (no spaces, `=`, quotes, `$` or `\\`)"
    ))
}

static IMAGE_REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::[0-9]+)?/)?[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$",
    )
    .expect("valid regex")
});

/// An image reference such as `debian:bookworm-slim` or `127.0.0.1:5000/team/app:v1@sha256:...`.
pub(crate) fn image_reference(reference: &str) -> Check {
    if IMAGE_REFERENCE.is_match(reference) {
        return Ok(());
    }
    Err(format!("`{reference}` is not a valid image reference (expected e.g. `debian:bookworm-slim`, `ghcr.io/org/app:1.0`)"))
}

/// A mount target inside the image: an absolute path on one line without spaces.
pub(crate) fn absolute_target(target: &str) -> Check {
    word(target)?;
    if !target.starts_with('/') {
        return Err(format!(
            "`{target}` must be an absolute path inside the image"
        ));
    }
    if target.contains(',') {
        return Err(format!(
            "`{target}` contains a comma, which would end the mount option"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injection_attempts_are_refused() {
        assert!(single_line("x\nRUN rm -rf /").is_err());
        assert!(command("echo hi \\").is_err());
        assert!(command("cat <<EOF").is_err());
        assert!(command("grep x <<< \"$y\"").is_ok());
        assert!(apt_package("curl && rm -rf /").is_err());
        assert!(apt_package("curl=7.88.1-10+deb12u5").is_ok());
        assert!(word("3.11 && evil").is_err());
        assert!(absolute_target("/etc/x,id=y").is_err());
        assert!(env_name("A B").is_err());
    }

    #[test]
    fn names_follow_the_distribution_grammar() {
        assert!(repository_name("team/my-app").is_ok());
        assert!(repository_name("Team").is_err());
        assert!(repository_name("a//b").is_err());
        assert!(registry("127.0.0.1:5000").is_ok());
        assert!(registry("ghcr.io/org").is_ok());
        assert!(registry("https://ghcr.io").is_err());
        assert!(
            registry("ghcr.io/\u{f8}rg").is_err(),
            "registry paths are ASCII"
        );
        assert!(image_reference("debian:bookworm-slim").is_ok());
        assert!(image_reference("127.0.0.1:5000/fixtures/uv:0.5.1").is_ok());
        assert!(image_reference("bad ref").is_err());
    }
}
