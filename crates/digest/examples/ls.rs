//! Prints the files a digest covers, then the digest.
//!
//! ```text
//! cargo run -p berth-digest --example ls -- ROOT            # source_root
//! cargo run -p berth-digest --example ls -- --copy PATH...  # copy list
//! ```

use std::path::PathBuf;

use berth_digest::{copy_digest, copy_files, list_source_files};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if args.first().is_some_and(|a| a.as_os_str() == "--copy") {
        let paths = &args[1..];
        for f in copy_files(paths).unwrap_or_default() {
            println!("{}\t{}", f.size, f.relative);
        }
        println!("{}", copy_digest(paths, None)?);
        return Ok(());
    }
    let root = std::path::absolute(args.first().ok_or("usage: ls ROOT | ls --copy PATH...")?)?;
    let tree = list_source_files(&root)?;
    for f in tree.files() {
        println!("{}\t{}", f.size, f.relative);
    }
    println!("{}", tree.digest(None)?);
    Ok(())
}
