//! Times listing and digesting a source tree.
//!
//! ```text
//! cargo run --release -p berth-digest --example bench -- ROOT [CACHE_DIR]
//! BERTH_DIGEST_PIPELINE=0 cargo run ...   # single-threaded read+hash
//! ```
//! Prints the listing time, the digest time and throughput, and, with a
//! cache directory, the time of a second (warm) list+digest.

use std::path::PathBuf;
use std::time::Instant;

use berth_digest::{list_source_files, DigestCache};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let root = std::path::absolute(PathBuf::from(
        args.next().ok_or("usage: bench ROOT [CACHE_DIR]")?,
    ))?;
    let cache = args.next().map(|d| DigestCache::open(&PathBuf::from(d)));

    let t = Instant::now();
    let tree = list_source_files(&root)?;
    let list = t.elapsed();
    let bytes: u64 = tree.files().iter().map(|f| f.size).sum();
    let t = Instant::now();
    let digest = tree.digest(cache.as_ref())?;
    let hash = t.elapsed();
    println!(
        "{digest}  files={} bytes={} list={:.3}s digest={:.3}s ({:.0} MB/s)",
        tree.files().len(),
        bytes,
        list.as_secs_f64(),
        hash.as_secs_f64(),
        bytes as f64 / 1e6 / hash.as_secs_f64()
    );
    if let Some(cache) = &cache {
        let t = Instant::now();
        let again = list_source_files(&root)?.digest(Some(cache))?;
        println!(
            "warm list+digest={:.3}s same={}",
            t.elapsed().as_secs_f64(),
            again == digest
        );
    }
    Ok(())
}
