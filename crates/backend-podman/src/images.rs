//! Local images: inspect, tag, remove.

use berth_core::engine::{ImageDetails, RemoveOptions};
use berth_core::Result;
use http::Method;

use crate::client::{image_path, query};
use crate::errors::Op;
use crate::{invalid, PodmanEngine};

impl PodmanEngine {
    pub(crate) async fn inspect_image(&self, reference: &str) -> Result<ImageDetails> {
        let path = format!("/libpod/images/{}/json", image_path(reference));
        let image = self.get_json(&path, Op::Inspect).await?;
        let strings = |value: &serde_json::Value| -> Vec<String> {
            value
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|i| i.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let text = |value: &serde_json::Value| value.as_str().unwrap_or_default().to_string();
        let id = text(&image["Id"]);
        let config = &image["Config"];
        Ok(ImageDetails {
            id: with_algorithm(&id),
            tags: strings(&image["RepoTags"]),
            env: strings(&config["Env"]),
            entrypoint: strings(&config["Entrypoint"]),
            workdir: text(&config["WorkingDir"]),
            user: text(&config["User"]),
            layers: strings(&image["RootFS"]["Layers"]),
        })
    }

    pub(crate) async fn tag_image(&self, source: &str, target: &str) -> Result<()> {
        let (repo, tag) = split_reference(target, Op::Tag)?;
        let path = format!(
            "/libpod/images/{}/tag?{}",
            image_path(source),
            query(&[("repo", repo), ("tag", tag)])
        );
        self.request(Method::POST, &path, Op::Tag).await.map(drop)
    }

    pub(crate) async fn remove_image(&self, reference: &str, options: RemoveOptions) -> Result<()> {
        let path = format!(
            "/libpod/images/{}?{}",
            image_path(reference),
            query(&[("force", options.force.to_string())])
        );
        self.request(Method::DELETE, &path, Op::Remove)
            .await
            .map(drop)
    }
}

/// libpod's image ids are bare hex; berth's are `sha256:...` like Docker's.
pub(crate) fn with_algorithm(id: &str) -> String {
    if id.contains(':') || id.is_empty() {
        id.to_string()
    } else {
        format!("sha256:{id}")
    }
}

/// `repo[:tag]` split into repository and tag (`latest` when none); a digest cannot be a target.
pub(crate) fn split_reference(reference: &str, op: Op) -> Result<(String, String)> {
    if reference.contains('@') {
        return Err(invalid(
            op,
            format!("`{reference}` names a digest; a tag is needed here"),
        ));
    }
    match berth_core::reference::WrittenRef::split(reference) {
        written if !written.name.is_empty() => Ok((
            written.name.to_string(),
            written.tag_or_latest().to_string(),
        )),
        _ => Err(invalid(op, "an empty image reference")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_tags_not_ports() {
        assert_eq!(
            split_reference("127.0.0.1:5000/a/b:v1", Op::Tag).expect("tagged"),
            ("127.0.0.1:5000/a/b".into(), "v1".into())
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/a/b", Op::Tag).expect("untagged"),
            ("127.0.0.1:5000/a/b".into(), "latest".into())
        );
        assert!(split_reference("a@sha256:00", Op::Tag).is_err());
        assert_eq!(with_algorithm("abc"), "sha256:abc");
    }
}
