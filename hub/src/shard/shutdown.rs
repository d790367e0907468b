//! Stopping a shard: woken through a socket pair (signal handlers and other
//! threads cannot reach an executor otherwise), then sessions are closed
//! and flushed within the shutdown timeout.

use std::os::fd::{IntoRawFd, OwnedFd};
use std::rc::Rc;
use std::time::Instant;

use futures_lite::future;
use futures_lite::io::AsyncReadExt;
use glommio::net::UnixStream;
use glommio::timer::Timer;

use super::signal::Signal;
use super::state::Shard;
use crate::engine::{CloseReason, Socket};

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

/// Tell the applications, close every session, wait until they are gone or
/// the shutdown timeout passes.
pub(crate) async fn drain(shard: &Rc<Shard>) {
    for endpoint in &shard.endpoints {
        endpoint.handler.on_shutdown();
    }
    for endpoint in &shard.endpoints {
        let sessions: Vec<_> = endpoint.sessions.borrow().values().cloned().collect();
        for entry in sessions {
            Socket(entry).close_with(CloseReason::ServerShuttingDown);
        }
    }
    let deadline = Instant::now() + shard.config.shutdown_timeout;
    loop {
        let listen = shard.settled.listen();
        let open = shard.pending_work();
        if open == 0 {
            return;
        }
        let now = Instant::now();
        if now >= deadline {
            tracing::warn!(
                shard = shard.id,
                open,
                "shutdown timeout: sessions left open"
            );
            return;
        }
        future::or(listen, async {
            Timer::new(deadline - now).await;
        })
        .await;
    }
}
