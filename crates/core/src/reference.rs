//! Image references (`registry/repository:tag@digest`) parsed the way Docker's distribution grammar reads them.

use std::fmt;

use crate::error::{Error, Result};

/// Docker Hub's registry host, used when a reference names none.
pub const DOCKER_HUB: &str = "docker.io";

/// Every host name Docker Hub goes by: in references, as its API host, as its old index.
pub const DOCKER_HUB_HOSTS: &[&str] = &[DOCKER_HUB, "index.docker.io", "registry-1.docker.io"];

/// The key Docker's `config.json` and credential helpers file Docker Hub under.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// Whether `registry` (a host, `host:port`, or a credential key such as [`DOCKER_HUB_KEY`]) is Docker Hub under
/// any of its names.
pub fn is_docker_hub(registry: &str) -> bool {
    let key = registry.trim();
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key);
    DOCKER_HUB_HOSTS
        .iter()
        .any(|hub| hub.eq_ignore_ascii_case(host))
}

/// The names an engine may look `registry`'s credentials up by: all of Docker Hub's (hosts and key) for Docker
/// Hub, else the registry as given.
pub fn credential_names(registry: &str) -> Vec<String> {
    if is_docker_hub(registry) {
        DOCKER_HUB_HOSTS
            .iter()
            .chain(std::iter::once(&DOCKER_HUB_KEY))
            .map(|h| h.to_string())
            .collect()
    } else {
        vec![registry.to_string()]
    }
}

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// Registry host with optional port, e.g. `127.0.0.1:5000`, `ghcr.io`, `docker.io`.
    pub registry: String,
    /// Repository path, e.g. `team/app` (`library/debian` on Docker Hub).
    pub repository: String,
    /// Tag, if given.
    pub tag: Option<String>,
    /// Digest (`sha256:...`), if given.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses a reference; a first component with a `.` or `:` or equal to `localhost` is the registry.
    pub fn parse(reference: &str) -> Result<ImageRef> {
        let invalid = |why: &str| {
            Error::invalid(format!(
                "`{reference}` is not a valid image reference: {why}"
            ))
        };
        if reference.is_empty()
            || reference
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid("it is empty or contains spaces"));
        }
        let (rest, digest) = match reference.split_once('@') {
            Some((rest, digest)) => {
                let valid = digest
                    .strip_prefix("sha256:")
                    .is_some_and(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()));
                if !valid {
                    return Err(invalid(
                        "the digest must be sha256: followed by 64 hex digits",
                    ));
                }
                (rest, Some(digest.to_string()))
            }
            None => (reference, None),
        };
        let (registry, path) = match rest.split_once('/') {
            Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_string(), path)
            }
            _ => (DOCKER_HUB.to_string(), rest),
        };
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag.to_string())),
            _ => (path, None),
        };
        if repository.is_empty() || repository.split('/').any(str::is_empty) {
            return Err(invalid("the repository path is empty"));
        }
        if repository.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(invalid("repository names must be lowercase"));
        }
        if let Some(tag) = &tag {
            let ok = tag.len() <= 128
                && tag
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !ok {
                return Err(invalid("tags are letters, digits, _ . - (at most 128)"));
            }
        }
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_string()
        };
        Ok(ImageRef {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The tag, or `latest` when neither tag nor digest is given.
    pub fn tag_or_latest(&self) -> &str {
        self.tag.as_deref().unwrap_or("latest")
    }

    /// What to ask the registry for: the digest if given, else the tag (or `latest`).
    pub fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .unwrap_or_else(|| self.tag_or_latest())
    }

    /// The same image pinned to `digest`.
    pub fn with_digest(&self, digest: &str) -> ImageRef {
        ImageRef {
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }
}

/// A reference as written, split where engine APIs take it apart (`fromImage` + `tag`, `repo` + `tag`).
///
/// The name keeps the text the user gave (no `docker.io/library/` is added, as [`ImageRef`] does, so the
/// engine names the image as it was named); nothing is validated here, [`ImageRef::parse`] does that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrittenRef<'a> {
    /// Everything before the tag and digest: `127.0.0.1:5000/team/app`.
    pub name: &'a str,
    /// The tag, when one follows the last path component (a registry's `:port` is not one).
    pub tag: Option<&'a str>,
    /// The digest after `@`, when given.
    pub digest: Option<&'a str>,
}

impl<'a> WrittenRef<'a> {
    /// Splits `reference` at its digest and tag.
    pub fn split(reference: &'a str) -> Self {
        let (rest, digest) = match reference.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (reference, None),
        };
        match rest.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') && !name.is_empty() => WrittenRef {
                name,
                tag: Some(tag),
                digest,
            },
            _ => WrittenRef {
                name: rest,
                tag: None,
                digest,
            },
        }
    }

    /// The tag, or `latest` when none is written.
    pub fn tag_or_latest(&self) -> &'a str {
        self.tag.unwrap_or("latest")
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_by_any_name() {
        for name in [
            "docker.io",
            "Index.Docker.io",
            "registry-1.docker.io",
            DOCKER_HUB_KEY,
        ] {
            assert!(is_docker_hub(name), "{name}");
            assert_eq!(credential_names(name).len(), 4, "{name}");
        }
        assert!(!is_docker_hub("ghcr.io"));
        assert!(!is_docker_hub("docker.io.example"));
        assert_eq!(credential_names("127.0.0.1:5000"), ["127.0.0.1:5000"]);
    }

    #[test]
    fn written_references_split_at_tag_and_digest_not_port() {
        let split = WrittenRef::split;
        assert_eq!(
            split("127.0.0.1:5000/a/b:1"),
            WrittenRef {
                name: "127.0.0.1:5000/a/b",
                tag: Some("1"),
                digest: None
            }
        );
        assert_eq!(split("127.0.0.1:5000/a/b").tag_or_latest(), "latest");
        assert_eq!(split("127.0.0.1:5000/a/b").name, "127.0.0.1:5000/a/b");
        assert_eq!(
            split("r/a:1@sha256:00"),
            WrittenRef {
                name: "r/a",
                tag: Some("1"),
                digest: Some("sha256:00")
            }
        );
        assert_eq!(split("busybox").name, "busybox");
    }

    #[test]
    fn parses_registries_tags_and_digests() {
        let r = ImageRef::parse("127.0.0.1:5000/team/app:v1").expect("valid");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "team/app", Some("v1"))
        );
        let r = ImageRef::parse("debian:bookworm-slim").expect("valid");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("docker.io", "library/debian")
        );
        let r = ImageRef::parse("localhost/app").expect("valid");
        assert_eq!(
            (r.registry.as_str(), r.tag_or_latest()),
            ("localhost", "latest")
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("ghcr.io/org/app:1@{digest}")).expect("valid");
        assert_eq!(r.manifest_reference(), digest);
        assert_eq!(r.to_string(), format!("ghcr.io/org/app:1@{digest}"));
    }

    #[test]
    fn refuses_malformed_references() {
        for bad in [
            "",
            "a b",
            "App:1",
            "x@sha256:12",
            "reg.io//app",
            "app:bad/tag:",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
    }
}
