//! When an overlay upper folder is not a layer by itself.
//!
//! With overlay's `redirect_dir`, renaming a folder of a lower layer leaves in the upper folder a nearly empty
//! folder carrying a `redirect` attribute that names where its contents really are; with `metacopy`, changing a
//! lower file's metadata (`chmod`, `chown`) makes an upper inode with a `metacopy` attribute and no data. Written as
//! they are, both give a broken layer (an empty folder, an empty file) and no error: Docker's overlay2 driver
//! refuses its own upper-folder diff in exactly these configurations. berth checks the snapshot's mount (its options,
//! else the overlay module's defaults) before it walks the upper folder, and the walk refuses the attributes too
//! (a kernel may enable a feature another way); either sends the step to containerd's diff service, which compares
//! the mounted trees.

use std::path::{Path, PathBuf};

use crate::convert::MountSpec;

/// Attributes overlay leaves on entries whose contents or name live in a lower layer (rootful, then rootless).
pub(crate) const REDIRECTS: [&str; 4] = [
    "trusted.overlay.redirect",
    "user.overlay.redirect",
    "trusted.overlay.metacopy",
    "user.overlay.metacopy",
];

/// Where the running kernel's overlay module keeps its defaults.
const MODULE_PARAMETERS: &str = "/sys/module/overlay/parameters";

/// The overlay feature `mounts` use that makes the upper folder incomplete, if any.
pub(crate) fn incomplete_upper(mounts: &[MountSpec]) -> Option<&'static str> {
    incomplete_upper_with(mounts, Path::new(MODULE_PARAMETERS))
}

fn incomplete_upper_with(mounts: &[MountSpec], parameters: &Path) -> Option<&'static str> {
    let [mount] = mounts else { return None };
    if mount.kind != "overlay" {
        return None;
    }
    let module_default =
        |name: &str| std::fs::read_to_string(parameters.join(name)).is_ok_and(|v| v.trim() == "Y");
    for feature in ["redirect_dir", "metacopy"] {
        let option = mount
            .options
            .iter()
            .rev()
            .find_map(|o| o.strip_prefix(feature)?.strip_prefix('='));
        // redirect_dir=follow and =nofollow only read redirects; =on writes them
        let on = match option {
            Some(value) => value == "on",
            None => module_default(feature),
        };
        if on {
            return Some(feature);
        }
    }
    None
}

/// An upper-folder entry that carries one of [`REDIRECTS`]: the step's layer must come from the diff service.
#[derive(Debug)]
pub(crate) struct Redirected {
    pub(crate) path: PathBuf,
    pub(crate) attribute: String,
}

impl std::fmt::Display for Redirected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} carries overlay's `{}`: its contents are in a lower layer",
            self.path.display(),
            self.attribute
        )
    }
}

impl std::error::Error for Redirected {}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlay(options: &[&str]) -> Vec<MountSpec> {
        vec![MountSpec {
            kind: "overlay".into(),
            source: "overlay".into(),
            options: options.iter().map(|o| o.to_string()).collect(),
        }]
    }

    #[test]
    fn mount_options_win_over_the_module_defaults() {
        let module = tempfile::tempdir().expect("parameters");
        let set = |name: &str, value: &str| {
            std::fs::write(module.path().join(name), format!("{value}\n")).expect("write")
        };
        set("redirect_dir", "N");
        set("metacopy", "N");
        let plain = overlay(&["index=off", "workdir=/w", "upperdir=/u", "lowerdir=/l"]);
        assert_eq!(incomplete_upper_with(&plain, module.path()), None);
        let redirect = overlay(&["redirect_dir=on", "upperdir=/u"]);
        assert_eq!(
            incomplete_upper_with(&redirect, module.path()),
            Some("redirect_dir")
        );
        let follow = overlay(&["redirect_dir=follow", "metacopy=on"]);
        assert_eq!(
            incomplete_upper_with(&follow, module.path()),
            Some("metacopy")
        );
        set("metacopy", "Y");
        assert_eq!(
            incomplete_upper_with(&plain, module.path()),
            Some("metacopy")
        );
        assert_eq!(
            incomplete_upper_with(&overlay(&["metacopy=off"]), module.path()),
            None
        );
        let bind = vec![MountSpec {
            kind: "bind".into(),
            source: "/x".into(),
            options: vec!["rbind".into()],
        }];
        assert_eq!(incomplete_upper_with(&bind, module.path()), None);
    }
}
