//! What a report's header says about the run itself: the tree it was built
//! from, the load average, the machine.

use std::process::Command;

/// The 1-minute load average, as `/proc/loadavg` gives it.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// `git describe --always --dirty` of the working directory.
pub fn git_commit() -> String {
    Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// `Machine: N CPUs; 1-minute load average A at the start, B at the end`
/// (no full stop: each bench says more after it).
pub fn machine(load_start: &str) -> String {
    format!(
        "Machine: {} CPUs; 1-minute load average {load_start} at the start, {} at the end",
        std::thread::available_parallelism().map_or(0, usize::from),
        loadavg()
    )
}
