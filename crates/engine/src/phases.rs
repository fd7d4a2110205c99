//! Where a command's time and memory go: each phase's end, logged at debug level (`-vv`) with
//! the time since the process started and its resident memory.

use std::sync::OnceLock;
use std::time::Instant;

static START: OnceLock<Instant> = OnceLock::new();

/// Starts the clock (else the first mark does).
pub fn start() {
    START.get_or_init(Instant::now);
}

/// Marks the end of phase `what`.
pub fn mark(what: &str) {
    let start = START.get_or_init(Instant::now);
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    // statm's second field is the resident set in pages.
    let resident_mb = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096 / 1_000_000);
    tracing::debug!(
        "phase {what}: {:.3} s, {resident_mb} MB resident",
        start.elapsed().as_secs_f64()
    );
}
