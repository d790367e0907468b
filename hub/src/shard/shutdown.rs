//! Stopping a shard: woken through a socket pair (signal handlers and other
//! threads cannot reach an executor otherwise), then sessions are closed
//! and flushed within the shutdown timeout.

use std::os::fd::{IntoRawFd, OwnedFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::future;
use futures_lite::io::AsyncReadExt;
use glommio::net::UnixStream;
use glommio::timer::Timer;

use super::state::{Shard, ShutdownStarted, ShutdownStepDone};
use crate::engine::{CloseReason, Socket};
use crate::signal::Signal;

/// The part of the shutdown timeout kept, at most, for the shards to tell
/// each other they are done and for their threads to end.
const LEAVE_MARGIN: Duration = Duration::from_secs(1);

/// How long a stopping shard waits for a long-polling client to fetch its
/// last packets before dropping the session.
const POLLER_GRACE: Duration = Duration::from_secs(1);

/// Wait for the byte that asks this shard to stop, then raise `stop`.
pub(crate) async fn watch(control: OwnedFd, stop: Rc<Signal>) {
    // SAFETY: the descriptor is one end of a socket pair made for this shard alone.
    let mut stream =
        unsafe { <UnixStream as std::os::fd::FromRawFd>::from_raw_fd(control.into_raw_fd()) };
    let mut byte = [0u8; 1];
    // Only a byte means stop: the other end closes when the last handle is
    // dropped, which a server that is never asked to stop may well do.
    if let Ok(1) = stream.read(&mut byte).await {
        stop.notify();
    } else {
        future::pending::<()>().await;
    }
}

/// When the shard must be done: the shutdown timeout after shutdown was
/// asked for. `RunningServer::join` gives up at that instant; the shard
/// keeps a margin before it to tell the others it is done and to end.
fn deadlines(shard: &Shard) -> (Instant, Instant) {
    let asked = shard
        .shutdown_requested
        .get()
        .copied()
        .unwrap_or_else(Instant::now);
    let end = asked + shard.config.shutdown_timeout;
    let margin = (shard.config.shutdown_timeout / 5).min(LEAVE_MARGIN);
    (end - margin, end - margin / 2)
}

/// Tell the applications, close every session, wait until they are gone or
/// the shutdown timeout (less a margin to leave) passes.
pub(crate) async fn drain(shard: &Rc<Shard>) {
    let (deadline, _) = deadlines(shard);
    // A barrier before anyone is disconnected: each shard's marker travels
    // behind what it posted before it began stopping, so a broadcast that
    // another shard acknowledged before the signal reaches this shard's
    // sockets ahead of their DISCONNECT. A shard that sends no marker (stuck
    // in a handler) is waited for half the time left, so that this shard's
    // clients still get their DISCONNECT and the time to flush it.
    if let Some(mesh) = shard.mesh.get() {
        for peer in (0..shard.count).filter(|p| *p != shard.id) {
            mesh.post(peer, Box::new(ShutdownStarted));
        }
        let now = Instant::now();
        let barrier = now + deadline.saturating_duration_since(now) / 2;
        if !wait_until(shard, barrier, || {
            shard.peers_started.get() + 1 >= shard.count
        })
        .await
        {
            tracing::warn!(
                shard = shard.id,
                "disconnecting without hearing from every shard: a publish a silent shard acknowledged may be lost"
            );
        }
    }
    for endpoint in &shard.endpoints {
        endpoint.handler.on_shutdown();
    }
    // A barrier: each shard's marker travels behind what its first step
    // posted, so the second step sees every message of the first.
    if let Some(mesh) = shard.mesh.get() {
        for peer in (0..shard.count).filter(|p| *p != shard.id) {
            mesh.post(peer, Box::new(ShutdownStepDone));
        }
        wait_until(shard, deadline, || {
            shard.peers_stopped.get() + 1 >= shard.count
        })
        .await;
    }
    for endpoint in &shard.endpoints {
        endpoint.handler.on_shutdown_late();
    }
    for endpoint in &shard.endpoints {
        let sessions: Vec<_> = endpoint.sessions.borrow().values().cloned().collect();
        for entry in sessions {
            Socket(entry).close_with(CloseReason::ServerShuttingDown);
        }
    }
    // Pollers normally come back within a round trip for their last packets
    // and the close; one that has not after a grace period has gone. So has
    // a WebSocket peer that has not read them by then: its writer gives up.
    let grace = (Instant::now() + POLLER_GRACE).min(deadline);
    if !wait_until(shard, grace, || shard.pending_work() == 0).await {
        let mut given_up = 0;
        for endpoint in &shard.endpoints {
            let sessions: Vec<_> = endpoint.sessions.borrow().values().cloned().collect();
            for entry in sessions {
                entry.session.borrow_mut().end_write_grace(Instant::now());
                entry.io_changed.notify();
                if entry.session.borrow_mut().abandon_if_polling() {
                    given_up += 1;
                    shard.settle_contained(shard.endpoint_index(endpoint), &entry);
                }
            }
        }
        if given_up > 0 {
            tracing::info!(
                shard = shard.id,
                sessions = given_up,
                "gave up polling sessions whose clients did not come back for their last packets"
            );
        }
    }
    if !wait_until(shard, deadline, || shard.pending_work() == 0).await {
        tracing::warn!(
            shard = shard.id,
            open = shard.pending_work(),
            "shutdown timeout: sessions left open"
        );
    }
}

/// Say this shard is done, then stay (serving connections, forwarding
/// polls) until every other shard is done too: a client's keep-alive
/// connection may live here while its session is on a shard still draining.
pub(crate) async fn leave(shard: &Rc<Shard>) {
    let Some(mesh) = shard.mesh.get() else {
        return;
    };
    let (_, deadline) = deadlines(shard);
    let announce = future::or(
        async {
            mesh.announce_stopped(shard.id).await;
            true
        },
        async {
            Timer::new(deadline.saturating_duration_since(Instant::now())).await;
            false
        },
    );
    if !announce.await {
        tracing::warn!(shard = shard.id, "stopping without telling every shard");
        return;
    }
    if !wait_until(shard, deadline, || mesh.all_peers_stopped(shard.id)).await {
        tracing::warn!(
            shard = shard.id,
            "stopping without hearing from every shard"
        );
    }
}

/// Wait for `done` (re-checked whenever the shard settles something) until
/// `deadline`; false on timeout.
async fn wait_until(shard: &Shard, deadline: Instant, done: impl Fn() -> bool) -> bool {
    loop {
        let listen = shard.settled.listen();
        if done() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        future::or(listen, async {
            Timer::new(deadline - now).await;
        })
        .await;
    }
}
