//! Prints the files of a source tree as the digest sees them, then the
//! digest: `cargo run -p berth-digest --example ls -- ROOT`.

use berth_digest::list_source_files;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::env::args_os().nth(1).ok_or("usage: ls ROOT")?;
    let root = std::path::absolute(std::path::PathBuf::from(root))?;
    let tree = list_source_files(&root)?;
    for f in tree.files() {
        println!("{}\t{}", f.size, f.relative);
    }
    println!("{}", tree.digest(None)?);
    Ok(())
}
