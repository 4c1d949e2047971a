//! Local images: inspect, tag, remove.

use berth_core::engine::{ImageDetails, RemoveOptions};
use berth_core::Result;
use bollard::query_parameters::{RemoveImageOptions, TagImageOptions};

use crate::errors::{client_error, Op};
use crate::transfer::split_reference;
use crate::DockerEngine;

impl DockerEngine {
    pub(crate) async fn inspect_image(&self, reference: &str) -> Result<ImageDetails> {
        let image = self
            .client
            .inspect_image(reference)
            .await
            .map_err(|e| client_error(e, Op::Inspect, &self.endpoint_name()))?;
        let config = image.config.unwrap_or_default();
        Ok(ImageDetails {
            id: image.id.unwrap_or_default(),
            tags: image.repo_tags.unwrap_or_default(),
            env: config.env.unwrap_or_default(),
            entrypoint: config.entrypoint.unwrap_or_default(),
            workdir: config.working_dir.unwrap_or_default(),
            user: config.user.unwrap_or_default(),
            layers: image.root_fs.and_then(|r| r.layers).unwrap_or_default(),
        })
    }

    pub(crate) async fn tag_image(&self, source: &str, target: &str) -> Result<()> {
        let (repo, tag) = split_reference(target, Op::Tag)?;
        self.client
            .tag_image(
                source,
                Some(TagImageOptions {
                    repo: Some(repo),
                    tag: Some(tag),
                }),
            )
            .await
            .map_err(|e| client_error(e, Op::Tag, &self.endpoint_name()))
    }

    pub(crate) async fn remove_image(&self, reference: &str, options: RemoveOptions) -> Result<()> {
        self.client
            .remove_image(
                reference,
                Some(RemoveImageOptions {
                    force: options.force,
                    noprune: false,
                    platforms: None,
                }),
                None,
            )
            .await
            .map(|_| ())
            .map_err(|e| client_error(e, Op::Remove, &self.endpoint_name()))
    }
}
