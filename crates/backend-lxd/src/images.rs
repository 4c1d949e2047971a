//! `inspect`, `tag` and `remove` on berth's LXD store.

use berth_core::engine::{ImageDetails, RemoveOptions};
use berth_core::image_config::strings;
use berth_core::{Error, ErrorKind, Operation, Result};

use crate::errors::error;
use crate::pull::image_name;
use crate::store::{descriptor, Store};

/// The error for a name the store does not have.
pub(crate) fn not_found(name: &str, op: Operation) -> Error {
    error(
        ErrorKind::NotFound,
        op,
        format!("no image {name} in berth's LXD store"),
    )
    .with_hint("build or pull it with --engine lxd first")
}

pub(crate) fn inspect(store: &Store, reference: &str) -> Result<ImageDetails> {
    let op = Operation::Inspect;
    let name = image_name(reference, op)?;
    let image = store
        .image(&name, op)?
        .ok_or_else(|| not_found(&name, op))?;
    let config = &image.config["config"];
    Ok(ImageDetails {
        id: image.config_digest.clone(),
        tags: store.names_of(&image.manifest_digest, op)?,
        env: strings(&config["Env"]),
        entrypoint: strings(&config["Entrypoint"]),
        workdir: config["WorkingDir"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        user: config["User"].as_str().unwrap_or_default().to_string(),
        layers: image.diff_ids(),
    })
}

pub(crate) fn tag(store: &Store, source: &str, target: &str) -> Result<()> {
    let op = Operation::Tag;
    let source = image_name(source, op)?;
    let target = image_name(target, op)?;
    let found = store
        .resolve(&source, op)?
        .ok_or_else(|| not_found(&source, op))?;
    let d = descriptor(
        found["mediaType"].as_str().unwrap_or_default(),
        found["digest"].as_str().unwrap_or_default(),
        found["size"].as_u64().unwrap_or(0),
    );
    store.set_ref(&target, &d, op)
}

/// Removes a name. Blobs stay (layers are shared with the step cache and other images); `force` changes nothing,
/// as no container ever uses an image of the store.
pub(crate) fn remove(store: &Store, reference: &str, _options: RemoveOptions) -> Result<()> {
    let op = Operation::Remove;
    let name = image_name(reference, op)?;
    if store.remove_ref(&name, op)? {
        Ok(())
    } else {
        Err(not_found(&name, op))
    }
}
