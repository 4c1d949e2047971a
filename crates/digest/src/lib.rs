//! Fast, byte-for-byte reimplementation of the digests flytekit 1.16 puts
//! into an `ImageSpec` tag, so berth computes the same image names as
//! `pyflyte` without running Python.
//!
//! | ImageSpec field | flytekit code | here |
//! | --- | --- | --- |
//! | `source_root` (copy mode ALL) | `ls_files(root, ALL, deref_symlinks=False, ignore_group=IgnoreGroup(root, [GitIgnore, DockerIgnore, StandardIgnore]))` | [`list_source_files`] + [`SourceTree::digest`] |
//! | `copy` | `fast_registration.compute_digest(copy, None)` | [`copy_digest`] (files: [`copy_files`]) |
//! | `requirements` | `sha1(Path(req).read_bytes().strip())` | [`requirements_digest`] |
//!
//! Both md5 digests hash, for each file in order, its content and then its
//! relative path with every `/` removed (`a/b.txt` hashes as `ab.txt`).
//!
//! # Source tree (`source_root`)
//! Every non-directory under the root (absolute) except: anything under a
//! directory named `.git`; symlinked directories (never entered); files
//! whose target is missing; sockets; and files ignored by
//! * git: `git ls-files -io --exclude-standard` run in the root, compared by
//!   exact string, so names git quotes (non-ASCII, by default) are never
//!   git-ignored, and outside a repository or without git nothing is;
//! * `.dockerignore`: docker-py's matcher (case-insensitive, last match
//!   wins, `dir` covers `dir/**`, implicit `!.dockerignore`);
//! * flytekit's standard patterns `*.pyc`, `.cache`, `.cache/*`,
//!   `__pycache__/*`, `**/__pycache__/*` with Python `fnmatch` (so `*.pyc`
//!   works at any depth but `__pycache__/*` only at the top or below
//!   another directory).
//!
//! Files are sorted by their path, compared as code points, globally (so
//! `a-b` < `a.b` < `a/b` < `a0`).
//!
//! # Copy list (`copy`)
//! Each entry in order: a directory (symlinks followed) contributes its
//! files in `os.walk` order, paths relative to it: files of a directory
//! sorted by name, then each subdirectory in `read_dir` order (the kernel's
//! `getdents` order, which is what Python sees too), `.git` included, no
//! ignore rules. Anything else contributes itself under its base name.
//! Missing entries, dangling symlinks and sockets contribute nothing.
//!
//! # Speed
//! * The listing (walk, `stat`, ignore matching) runs every call; `git` runs
//!   once, concurrently with the walk.
//! * Contents are streamed in 256 KiB buffers. With two or more CPUs a
//!   reader thread fills buffers while the calling thread runs md5 (which
//!   is inherently sequential); `BERTH_DIGEST_PIPELINE=0` forces reading and
//!   hashing on one thread. On the 2-core reference machine the pipeline
//!   was measured faster; see the crate's `examples/bench.rs`.
//! * With a [`DigestCache`] an unchanged tree is not read at all: the
//!   digest is looked up by a key over every file's path, size, mtime,
//!   ctime, inode and device (see [`DigestCache`] for the racy-file rule).
//!
//! # Differences from flytekit
//! Where flytekit would crash or hang, this crate returns a [`DigestError`]
//! instead: a non-UTF-8 file name that is hashed, a FIFO or device file that
//! is hashed, an unreadable file, a `.dockerignore` that is not UTF-8 or has
//! a reversed range like `[z-a]`. Only Unix is supported.

mod cache;
mod dockerignore;
mod error;
mod fastmd5;
mod glob;
mod hash;
mod ignore;
mod pipeline;
mod requirements;
mod stream;
mod tree;
mod walk;

pub use cache::DigestCache;
pub use error::DigestError;
pub use requirements::requirements_digest;
pub use tree::{copy_digest, copy_files, list_source_files, SourceFile, SourceTree};
