//! OCI layers berth writes itself, for the engines that execute a plan step by step (containerd, LXD) instead of
//! handing a Dockerfile to a builder.
//!
//! - [`copy`]: a COPY step's layer from context files: sorted entries, fixed times and owners, so the same files
//!   on the same parent always give the same digest, and a file that changes while it is read fails the step.
//! - [`entries`]: tar entries for files on the host (folders, files, symlinks, devices, hard links within the
//!   layer, extended attributes as PAX records) and whiteouts for deleted paths, as containerd's own tar writer
//!   writes them; each engine decides which paths changed.
//! - [`LayerFile`], [`LayerStream`]: a gzip layer being written to a file or any writer, hashed twice on the way
//!   (the blob digest and the diff id).
//! - [`memo`]: the COPY sources' digests remembered by file identity, so a cached step reads nothing.
//! - [`deflate`]: the gzip format of every layer berth compresses (blocks deflated apart, incompressible pieces
//!   stored), shared with the push from an engine's storage.

pub mod copy;
pub mod deflate;
pub mod entries;
mod file;
pub mod memo;
pub mod oci;

pub use file::{
    BlockGzip, HashingWriter, LayerDigests, LayerFile, LayerStream, LayerTar, WrittenLayer,
    FIXED_MTIME, GZIP_LEVEL,
};
