//! Work that a dropped operation leaves to finish on a thread of its own, and the one place a front end waits
//! for it before exiting.
//!
//! An engine operation dropped mid-way (Ctrl-C, SIGTERM, an error path that returned early) may have made things
//! in the engine that only a request can remove. Such cleanup cannot run on the dropping runtime: Drop may run
//! inside it (no nested `block_on`), and a front end drops that runtime right after an interrupt, which would
//! cancel a spawned task. So a backend hands it to [`spawn`] (a thread that makes its own runtime), and the
//! front end calls [`wait`] (through each provider's `wait_for_background_work`) before the process exits.
//! Each piece of work bounds its own length.

use std::sync::Mutex;
use std::thread::JoinHandle;

/// Threads started by [`spawn`] that nobody has waited for yet.
static RUNNING: Mutex<Vec<JoinHandle<()>>> = Mutex::new(Vec::new());

/// Runs `work` on a new thread named `name`, to be joined by [`wait`]. When no thread can be started, the work
/// is not done: the caller's own fallback (an expiring lease, the next build's sweep) applies.
pub fn spawn(name: &str, work: impl FnOnce() + Send + 'static) {
    if let Ok(handle) = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(work)
    {
        RUNNING
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(handle);
    }
}

/// Waits until every thread started by [`spawn`] has ended, including ones started while waiting. Call it
/// outside any runtime or on a blocking thread.
pub fn wait() {
    loop {
        let running = std::mem::take(&mut *RUNNING.lock().unwrap_or_else(|p| p.into_inner()));
        if running.is_empty() {
            return;
        }
        for handle in running {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[test]
    fn wait_returns_after_every_piece_of_work_and_what_it_started() {
        let done = Arc::new(AtomicU32::new(0));
        let (outer, inner) = (done.clone(), done.clone());
        super::spawn("test-outer", move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            super::spawn("test-inner", move || {
                inner.fetch_add(1, Ordering::SeqCst);
            });
            outer.fetch_add(1, Ordering::SeqCst);
        });
        super::wait();
        assert_eq!(done.load(Ordering::SeqCst), 2);
    }
}
