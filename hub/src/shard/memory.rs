//! Giving memory back to the system once many connections or namespaces
//! have gone.
//!
//! glibc's malloc keeps what is freed for the thread's next allocations:
//! only the top of a heap is returned by itself, so after a flood of
//! connections or namespaces has gone, the process's resident memory stays
//! where the flood took it (measured: 20,000 namespaces on 200 connections,
//! +28 MB during, +27.5 MB after they had all been freed). `malloc_trim(0)`
//! returns every whole free page of every arena (glibc >= 2.8; it was
//! 15.5 MB after, below the start).
//!
//! Each shard counts what it frees (sessions, namespaces). Once
//! [`THRESHOLD`] objects were freed since its last trim, it trims
//! [`DELAY`] later, from a task of its own, so a mass disconnect is trimmed
//! once or twice, after most of it, rather than object by object; a shard
//! whose clients come and go slowly trims rarely. A trim walks the free
//! memory of every arena: a millisecond or so, paid at most once a second.
//! Other allocators (a `#[global_allocator]`) are unaffected: the call then
//! finds nothing to give back.

use std::cell::Cell;
use std::time::{Duration, Instant};

use glommio::timer::Timer;

/// Objects freed on a shard before it trims.
pub const THRESHOLD: usize = 1_000;
/// How long after the threshold is passed the trim runs.
pub const DELAY: Duration = Duration::from_secs(1);

thread_local! {
    /// Objects freed on this shard since its last trim.
    static FREED: Cell<usize> = const { Cell::new(0) };
    /// A trim is scheduled.
    static SCHEDULED: Cell<bool> = const { Cell::new(false) };
}

/// `count` sessions or namespaces were freed on the calling shard (off the
/// shards, in tests say, nothing happens).
pub(crate) fn freed(count: usize) {
    let total = FREED.with(|f| {
        let total = f.get() + count;
        f.set(total);
        total
    });
    if total < THRESHOLD || super::context::shard_count().is_none() {
        return;
    }
    if SCHEDULED.with(|s| s.replace(true)) {
        return;
    }
    glommio::spawn_local(async {
        Timer::new(DELAY).await;
        let freed = FREED.with(|f| f.replace(0));
        SCHEDULED.with(|s| s.set(false));
        let started = Instant::now();
        let released = trim();
        tracing::debug!(
            freed,
            released,
            took_us = started.elapsed().as_micros() as u64,
            "gave free memory back to the system"
        );
    })
    .detach();
}

/// Return free memory to the system; whether any was.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() -> bool {
    // SAFETY: malloc_trim has no preconditions; it takes each arena's lock.
    unsafe { libc::malloc_trim(0) != 0 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}
