//! Waiting for a condition, with a bound: the tests never sleep for a
//! state to come, they look for it every 20 ms and fail past the bound.

use std::thread;
use std::time::{Duration, Instant};

/// How often a condition is looked at again.
const POLL: Duration = Duration::from_millis(20);

/// Waits until `done()` holds, for at most `within`; how long it took.
/// Past `within`, the test fails with `what`.
pub fn eventually(within: Duration, what: &str, done: impl FnMut() -> bool) -> Duration {
    eventually_or(within, done, || {
        format!("timed out after {within:?}: {what}")
    })
}

/// As [`eventually`], the failure message made by `failure` when it comes
/// (say, with the state that was not reached).
pub fn eventually_or(
    within: Duration,
    mut done: impl FnMut() -> bool,
    failure: impl FnOnce() -> String,
) -> Duration {
    let started = Instant::now();
    while !done() {
        if started.elapsed() >= within {
            panic!("{}", failure());
        }
        thread::sleep(POLL);
    }
    started.elapsed()
}
