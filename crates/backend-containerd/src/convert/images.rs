//! The images service: records that name a manifest or index.

use std::collections::HashMap;

use berth_core::Result;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::{
    CreateImageRequest, DeleteImageRequest, GetImageRequest, Image, ListImagesRequest,
    UpdateImageRequest,
};
use containerd_client::tonic::Code;

use super::{Daemon, Descriptor, ImageRecord};
use crate::errors::{status_error, Op};

impl From<Image> for ImageRecord {
    fn from(image: Image) -> Self {
        ImageRecord {
            target: image.target.map(Descriptor::from).unwrap_or(Descriptor {
                media_type: String::new(),
                digest: String::new(),
                size: 0,
            }),
            labels: image.labels,
        }
    }
}

impl Daemon {
    fn images(&self) -> ImagesClient<containerd_client::tonic::transport::Channel> {
        ImagesClient::new(self.channel.clone())
    }

    /// The record named `name`, or `None`.
    pub(crate) async fn get_image(&self, name: &str, op: Op) -> Result<Option<ImageRecord>> {
        let request = self.call(GetImageRequest {
            name: name.to_string(),
        });
        match self.images().get(request).await {
            Ok(response) => Ok(response.into_inner().image.map(ImageRecord::from)),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(status_error(&s, op)),
        }
    }

    /// Points `name` at `target` (creating or updating the record).
    pub(crate) async fn put_image(
        &self,
        name: &str,
        target: &Descriptor,
        labels: HashMap<String, String>,
        op: Op,
    ) -> Result<()> {
        let image = Image {
            name: name.to_string(),
            labels,
            target: Some(target.into()),
            created_at: None,
            updated_at: None,
        };
        let request = self.call(CreateImageRequest {
            image: Some(image.clone()),
            source_date_epoch: None,
        });
        match self.images().create(request).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::AlreadyExists => {
                let request = self.call(UpdateImageRequest {
                    image: Some(image),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["target".into(), "labels".into()],
                    }),
                    source_date_epoch: None,
                });
                self.images()
                    .update(request)
                    .await
                    .map_err(|s| status_error(&s, op))?;
                Ok(())
            }
            Err(s) => Err(status_error(&s, op)),
        }
    }

    /// The names of every record pointing at `digest`.
    pub(crate) async fn image_names_for(&self, digest: &str, op: Op) -> Result<Vec<String>> {
        let request = self.call(ListImagesRequest {
            filters: vec![format!("target.digest=={digest}")],
        });
        let images = self
            .images()
            .list(request)
            .await
            .map_err(|s| status_error(&s, op))?
            .into_inner()
            .images;
        let mut names: Vec<String> = images.into_iter().map(|i| i.name).collect();
        names.sort();
        Ok(names)
    }

    /// Deletes record `name`; `false` when there was none.
    pub(crate) async fn delete_image(&self, name: &str, op: Op) -> Result<bool> {
        let request = self.call(DeleteImageRequest {
            name: name.to_string(),
            sync: false,
            target: None,
        });
        match self.images().delete(request).await {
            Ok(_) => Ok(true),
            Err(s) if s.code() == Code::NotFound => Ok(false),
            Err(s) => Err(status_error(&s, op)),
        }
    }
}
