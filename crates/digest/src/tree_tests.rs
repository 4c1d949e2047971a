use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use super::*;

fn must<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Writes `content` to `path` and backdates its mtime by `age`, so the
/// racy-file rule does not apply.
fn write_old(path: &Path, content: &[u8], age: Duration) {
    must(std::fs::write(path, content), "write");
    let file = must(std::fs::File::options().write(true).open(path), "open");
    must(file.set_modified(SystemTime::now() - age), "set mtime");
}

const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn warm_cache_reads_no_file_and_change_invalidates() {
    let dir = must(tempfile::tempdir(), "tempdir");
    let root = dir.path().join("root");
    must(std::fs::create_dir_all(root.join("pkg")), "mkdir");
    write_old(&root.join("pkg/a.py"), b"a = 1\n", HOUR);
    write_old(&root.join("b.txt"), b"bbbb", HOUR);
    let cache = DigestCache::open(&dir.path().join("cache"));

    let cold = must(list_source_files(&root), "list");
    let first = must(cold.digest_with(Some(&cache), Mode::Pipelined), "digest");
    assert!(!first.from_cache);
    assert_eq!(first.stats.files_read, 2);

    let warm = must(list_source_files(&root), "list");
    let second = must(warm.digest_with(Some(&cache), Mode::Pipelined), "digest");
    assert!(second.from_cache, "unchanged tree must come from the cache");
    assert_eq!(second.stats.files_read, 0);
    assert_eq!(second.digest, first.digest);

    // Same size, different content and (old) mtime: must be recomputed.
    write_old(&root.join("b.txt"), b"BBBB", 2 * HOUR);
    let changed = must(list_source_files(&root), "list");
    let third = must(changed.digest_with(Some(&cache), Mode::Inline), "digest");
    assert!(!third.from_cache);
    assert_ne!(third.digest, first.digest);
    let uncached = must(changed.digest_with(None, Mode::Inline), "digest");
    assert_eq!(third.digest, uncached.digest);
}

#[test]
fn a_changed_file_resumes_from_the_last_checkpoint_before_it() {
    let dir = must(tempfile::tempdir(), "tempdir");
    let root = dir.path().join("root");
    must(std::fs::create_dir(&root), "mkdir");
    for i in 0..10 {
        write_old(&root.join(format!("f{i}")), &[b'a' + i as u8; 600], HOUR);
    }
    let cache = DigestCache::open(&dir.path().join("cache"));
    let first = must(
        must(list_source_files(&root), "list").digest_with(Some(&cache), Mode::Pipelined),
        "digest",
    );
    assert_eq!((first.stats.files_read, first.resumed_at), (10, None));

    write_old(&root.join("f8"), &[b'z'; 600], 2 * HOUR);
    let tree = must(list_source_files(&root), "list");
    let second = must(tree.digest_with(Some(&cache), Mode::Pipelined), "digest");
    let start = second
        .resumed_at
        .unwrap_or_else(|| panic!("no resume: {second:?}"));
    assert!((1..=8).contains(&start), "{start}");
    assert_eq!(second.stats.files_read, 10 - start as u64);
    assert_eq!(
        second.digest,
        must(tree.digest_with(None, Mode::Inline), "digest").digest
    );
    assert_ne!(second.digest, first.digest);

    // Changing the first file leaves nothing to resume from.
    write_old(&root.join("f0"), &[b'y'; 600], 3 * HOUR);
    let tree = must(list_source_files(&root), "list");
    let third = must(tree.digest_with(Some(&cache), Mode::Inline), "digest");
    assert_eq!((third.stats.files_read, third.resumed_at), (10, None));
    assert_eq!(
        third.digest,
        must(tree.digest_with(None, Mode::Inline), "digest").digest
    );
}

#[test]
fn a_fresh_file_stops_checkpoints_but_not_those_before_it() {
    let dir = must(tempfile::tempdir(), "tempdir");
    let root = dir.path().join("root");
    must(std::fs::create_dir(&root), "mkdir");
    for i in 0..10 {
        write_old(&root.join(format!("f{i}")), &[b'a' + i as u8; 600], HOUR);
    }
    must(std::fs::write(root.join("f5"), [b'!'; 600]), "write"); // fresh
    let cache = DigestCache::open(&dir.path().join("cache"));
    let first = must(
        must(list_source_files(&root), "list").digest_with(Some(&cache), Mode::Inline),
        "digest",
    );
    assert_eq!((first.stats.files_read, first.resumed_at), (10, None));
    let second = must(
        must(list_source_files(&root), "list").digest_with(Some(&cache), Mode::Inline),
        "digest",
    );
    assert!(!second.from_cache, "a racy tree must not be served whole");
    let start = second
        .resumed_at
        .unwrap_or_else(|| panic!("no resume: {second:?}"));
    assert!(
        (1..=5).contains(&start),
        "resumed after the fresh file: {start}"
    );
    assert_eq!(second.digest, first.digest);
}

#[test]
fn recently_modified_files_are_never_cached() {
    let dir = must(tempfile::tempdir(), "tempdir");
    let root = dir.path().join("root");
    must(std::fs::create_dir(&root), "mkdir");
    must(
        std::fs::write(root.join("fresh.txt"), b"just written"),
        "write",
    );
    let cache = DigestCache::open(&dir.path().join("cache"));
    for _ in 0..2 {
        let tree = must(list_source_files(&root), "list");
        let out = must(tree.digest_with(Some(&cache), Mode::Inline), "digest");
        assert!(!out.from_cache);
        assert_eq!(out.stats.files_read, 1);
    }
    assert!(!dir.path().join("cache").exists(), "nothing may be stored");
}

#[test]
fn corrupt_cache_entry_is_ignored() {
    let dir = must(tempfile::tempdir(), "tempdir");
    let root = dir.path().join("root");
    must(std::fs::create_dir(&root), "mkdir");
    write_old(&root.join("f"), b"content", HOUR);
    let cache_dir = dir.path().join("cache");
    let cache = DigestCache::open(&cache_dir);
    let tree = must(list_source_files(&root), "list");
    let good = must(tree.digest(Some(&cache)), "digest");
    for entry in must(std::fs::read_dir(&cache_dir), "read cache") {
        must(
            std::fs::write(must(entry, "entry").path(), b"garbage"),
            "corrupt",
        );
    }
    let out = must(tree.digest_with(Some(&cache), Mode::Inline), "digest");
    assert!(!out.from_cache);
    assert_eq!(out.digest, good);
    // And it was repaired.
    assert!(must(tree.digest_with(Some(&cache), Mode::Inline), "digest").from_cache);
}

#[test]
fn copy_digest_uses_the_cache_too() {
    let dir = must(tempfile::tempdir(), "tempdir");
    let file = dir.path().join("one.txt");
    write_old(&file, b"one", HOUR);
    let cache_dir = must(tempfile::tempdir(), "tempdir");
    let cache = DigestCache::open(cache_dir.path());
    let paths = [file.clone()];
    let first = must(
        copy_digest_with(&paths, Some(&cache), Mode::Inline),
        "digest",
    );
    let second = must(
        copy_digest_with(&paths, Some(&cache), Mode::Inline),
        "digest",
    );
    assert!(!first.from_cache && second.from_cache);
    assert_eq!(first.digest, second.digest);
    // The source-tree digest of a directory holding just that file hashes
    // the same bytes but is another kind: it must not hit the copy entry.
    let tree = must(list_source_files(dir.path()), "list");
    assert!(!must(tree.digest_with(Some(&cache), Mode::Inline), "digest").from_cache);
}

#[test]
fn non_utf8_names_fail_unless_ignored() {
    let dir = must(tempfile::tempdir(), "tempdir");
    let root = dir.path();
    must(
        std::fs::write(root.join(OsStr::from_bytes(b"bad\xff.txt")), b"x"),
        "write",
    );
    let err = list_source_files(root).err();
    assert!(
        matches!(err, Some(DigestError::NonUtf8Path { .. })),
        "{err:?}"
    );
    must(
        std::fs::write(root.join(".dockerignore"), b"bad*\n"),
        "write",
    );
    let tree = must(list_source_files(root), "list");
    assert_eq!(tree.files().len(), 1, "only .dockerignore is left");
}

#[test]
fn fifos_fail_unless_ignored() {
    let dir = must(tempfile::tempdir(), "tempdir");
    let root = dir.path();
    let status = std::process::Command::new("mkfifo")
        .arg(root.join("pipe"))
        .status();
    if !status.is_ok_and(|s| s.success()) {
        return; // no mkfifo on this system
    }
    let err = list_source_files(root).err();
    assert!(
        matches!(err, Some(DigestError::SpecialFile { .. })),
        "{err:?}"
    );
    must(
        std::fs::write(root.join(".dockerignore"), b"pipe\n"),
        "write",
    );
    assert_eq!(must(list_source_files(root), "list").files().len(), 1);
}

#[test]
fn both_modes_agree_on_a_tree() {
    let dir = must(tempfile::tempdir(), "tempdir");
    let root = dir.path();
    for i in 0..50 {
        let content = vec![b'a' + (i % 26) as u8; i * 9973];
        must(
            std::fs::write(root.join(format!("f{i:02}")), content),
            "write",
        );
    }
    let tree = must(list_source_files(root), "list");
    let a = must(tree.digest_with(None, Mode::Inline), "inline");
    let b = must(tree.digest_with(None, Mode::Pipelined), "pipelined");
    assert_eq!(a.digest, b.digest);
    assert_eq!(a.stats, b.stats);
}

#[test]
fn given_files_hash_as_flytekit_lists_them_repeats_included() {
    let dir = must(tempfile::tempdir(), "tempdir");
    let root = dir.path().join("root");
    must(std::fs::create_dir_all(root.join("pkg")), "mkdir");
    must(std::fs::write(root.join("pkg/a.py"), b"a = 1\n"), "write");
    must(
        std::fs::write(root.join("main.py"), b"import pkg.a\n"),
        "write",
    );
    let a = root.join("pkg/a.py");
    let main = root.join("main.py");
    // flytekit: md5 over the sorted list of file content then path without separators, a repeat hashed twice.
    let mut md5 = md5::Md5::default();
    for (path, name) in [(&main, "main.py"), (&a, "pkga.py"), (&a, "pkga.py")] {
        md5::Digest::update(&mut md5, must(std::fs::read(path), "read"));
        md5::Digest::update(&mut md5, name.as_bytes());
    }
    let want: String = md5::Digest::finalize(md5)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let tree = must(list_given_files(&root, &[a.clone(), main, a]), "list");
    let names: Vec<&str> = tree.files().iter().map(|f| f.relative.as_str()).collect();
    assert_eq!(names, ["main.py", "pkg/a.py", "pkg/a.py"]);
    assert_eq!(must(tree.digest(None), "digest"), want);

    let outside = dir.path().join("elsewhere.py");
    must(std::fs::write(&outside, b""), "write");
    assert!(matches!(
        list_given_files(&root, &[outside]),
        Err(DigestError::OutsideRoot { .. })
    ));
}
