//! Facts about this machine's processes that engines use to tell a killed berth's leftovers from a running
//! berth's work.

/// `pid`'s start time in clock ticks after boot (field 22 of `/proc/PID/stat`), `None` when no such process runs.
/// With the pid it names one process for good: a pid the kernel hands out again comes with another start time.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name (field 2) may hold spaces and parentheses: count from its closing one
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_has_a_start_time_and_a_free_pid_has_none() {
        assert!(super::start_time(std::process::id()).is_some());
        // above the kernel's largest pid (4194304)
        assert_eq!(super::start_time(4_194_305), None);
    }
}
