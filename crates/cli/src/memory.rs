//! One malloc arena for the whole process (glibc), so memory freed by one thread is reused by the next.
//!
//! glibc gives threads their own arenas (up to 8 per core) and an arena keeps most of what was freed in it. berth
//! moves large, short-lived buffers between threads: the digest readers, the blocking threads that write a COPY
//! layer, the runtime's workers that send it to the engine. Each step's buffers then land in another arena, and
//! the process holds the sum. Building a 1 GiB context on containerd peaked at 65-72 MiB with the default arenas
//! and 40 MiB with one (heaptrack: the live heap was 21 MiB at the peak); naming the same tree with an empty digest
//! cache at 60-71 MiB against 47 MiB, in about the same time (bench/, README). A user's `MALLOC_ARENA_MAX` or
//! `glibc.malloc.arena_max` tunable is left to decide.
//!
//! The workspace forbids `unsafe`; this module is its one exception (berth-cli's lints deny it instead), for the
//! two C calls glibc has no safe wrapper for.

/// Limits glibc's malloc to one arena unless the environment sets a limit. Call it before any thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn one_arena() {
    let set_by_user = std::env::var_os("MALLOC_ARENA_MAX").is_some()
        || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.arena_max"));
    if !set_by_user {
        // SAFETY: mallopt only sets a parameter of the allocator; M_ARENA_MAX takes any positive count.
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

/// Other C libraries: nothing to limit.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn one_arena() {}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// The arenas glibc's `malloc_info` reports (one `<heap nr=...>` each).
    #[allow(unsafe_code)]
    fn arenas() -> usize {
        let mut buffer: *mut libc::c_char = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        // SAFETY: open_memstream fills `buffer` and `size` on fclose; the buffer is read once and freed.
        let text = unsafe {
            let stream = libc::open_memstream(&mut buffer, &mut size);
            assert!(!stream.is_null(), "open_memstream");
            assert_eq!(libc::malloc_info(0, stream), 0, "malloc_info");
            libc::fclose(stream);
            let text = std::slice::from_raw_parts(buffer.cast::<u8>(), size).to_vec();
            libc::free(buffer.cast());
            text
        };
        String::from_utf8_lossy(&text).matches("<heap nr=").count()
    }

    /// In a fresh process (this test binary run again for the one test below, so no other test's threads made
    /// arenas first): after [`one_arena`], threads allocating at once make no arena of their own.
    #[test]
    fn threads_share_one_arena() {
        if std::env::var_os("BERTH_ARENA_CHILD").is_none() {
            let exe = std::env::current_exe().expect("test binary");
            let out = std::process::Command::new(exe)
                .args([
                    "--exact",
                    "memory::tests::threads_share_one_arena",
                    "--test-threads=1",
                ])
                .env("BERTH_ARENA_CHILD", "1")
                .env_remove("MALLOC_ARENA_MAX")
                .env_remove("GLIBC_TUNABLES")
                .output()
                .expect("run the child");
            let said = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{said}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(said.contains("1 passed"), "the child ran the test: {said}");
            return;
        }
        one_arena();
        let before = arenas();
        let barrier = std::sync::Barrier::new(4);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    // every thread holds its buffers while the others allocate theirs
                    let held: Vec<Vec<u8>> = (0..16).map(|i| vec![i as u8; 64 * 1024]).collect();
                    barrier.wait();
                    std::hint::black_box(held);
                });
            }
        });
        assert_eq!(arenas(), before, "threads made arenas of their own");
    }
}
