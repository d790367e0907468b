//! Token expiry on a shard: one sweeper task per shard sleeps until the
//! first deadline of the shard's [`ExpiryQueue`] and disconnects the
//! sockets whose tokens have expired.
//!
//! One task per shard rather than a timer task per socket: glommio 0.9 does
//! not free a task cancelled through its `JoinHandle`, and a refresh or a
//! disconnect would cancel one (docs/architecture.md, "Differences from the
//! design"). The sweeper sleeps on a timer raced against a wake-up channel,
//! so a socket whose deadline comes before the one it sleeps until wakes it;
//! it stops when the queue is empty and is started again by the next socket.

use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::time::SystemTime;

use ahash::AHashMap;
use futures_lite::future;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::timer::Timer;
use serde_json::json;

use crate::server::{spawn_local, Args, Socket};

use super::expiry::{self, ExpiryQueue};
use super::grant::Grant;
use super::request::Refusal;

/// The event a socket gets just before the hub disconnects it because its
/// token no longer holds, with `{"error": "token expired"}` or
/// `{"error": "user mismatch"}`. Not a reserved name of any Socket.IO client.
pub const AUTH_ERROR_EVENT: &str = "auth_error";

/// The relay's token state on one shard: the expiry of every socket with a token.
pub struct RelayShard {
    me: Weak<RelayShard>,
    /// The sockets with a token, by key, in deadline order.
    expiries: RefCell<ExpiryQueue<Socket>>,
    /// Wakes the sweeper; `None` when no sweeper runs.
    wake: RefCell<Option<LocalSender<()>>>,
}

/// A key for a new socket in the expiry queues: unique in the process, as
/// a recovered socket takes its key to another shard.
pub fn next_key() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

thread_local! {
    /// This thread's shard state of each relay (by instance). Weak: its
    /// sweeper keeps it alive while a socket is watched, so a thread that
    /// ends holds no socket in a thread-local.
    static SHARDS: RefCell<AHashMap<u64, Weak<RelayShard>>> = RefCell::new(AHashMap::new());
}

impl RelayShard {
    /// The state of relay `instance` on the calling thread's shard.
    pub fn local(instance: u64) -> Rc<RelayShard> {
        SHARDS.with(|shards| {
            let mut shards = shards.borrow_mut();
            if let Some(shard) = shards.get(&instance).and_then(Weak::upgrade) {
                return shard;
            }
            let shard = Rc::new_cyclic(|me| RelayShard {
                me: me.clone(),
                expiries: RefCell::new(ExpiryQueue::new()),
                wake: RefCell::new(None),
            });
            shards.insert(instance, Rc::downgrade(&shard));
            shard
        })
    }

    /// Disconnect `socket` (under `key`) when a token with `exp` expires,
    /// instead of any earlier deadline it had.
    pub fn watch(&self, key: u64, exp: u64, socket: &Socket) {
        let Some(deadline) = expiry::deadline(exp) else {
            // Beyond any clock: never.
            self.forget(key);
            return;
        };
        let first = self
            .expiries
            .borrow_mut()
            .insert(key, deadline, socket.clone());
        if !first {
            return;
        }
        let woken = match &*self.wake.borrow() {
            // Full means a wake-up is already on its way.
            Some(wake) => {
                let _ = wake.try_send(());
                true
            }
            None => false,
        };
        if !woken {
            let (tx, rx) = local_channel::new_bounded(1);
            // Set before spawning: glommio may run the task at once.
            *self.wake.borrow_mut() = Some(tx);
            if let Some(me) = self.me.upgrade() {
                spawn_local(sweep(me, rx));
            }
        }
    }

    /// Stop watching `key` (its socket disconnected).
    pub fn forget(&self, key: u64) {
        let removed = self.expiries.borrow_mut().remove(key);
        // Dropped here, with no borrow of the queue live.
        drop(removed);
    }
}

/// Watch the expiry of a socket that just connected with a token, until it
/// disconnects.
pub fn watch_new_socket(socket: &Socket) {
    let Some(grant) = socket.data::<Grant>() else {
        return;
    };
    let Grant::Token(token) = &*grant else {
        return;
    };
    token.shard().watch(token.key, token.claims.exp, socket);
    socket.on_disconnect(|socket, _| {
        // The grant is still there: the socket's data goes after the
        // `disconnect` handlers.
        if let Some(grant) = socket.data::<Grant>() {
            if let Grant::Token(token) = &*grant {
                token.shard().forget(token.key);
            }
        }
    });
}

/// Tell the client why (the [`AUTH_ERROR_EVENT`] event), then disconnect
/// the socket from its namespace: the client sees `io server disconnect`.
pub fn end_session(socket: &Socket, reason: Refusal) {
    tracing::info!(
        socket = socket.id(),
        nsp = socket.nsp(),
        reason = reason.as_str(),
        "disconnecting a socket whose token no longer holds"
    );
    let _ = socket.emit(
        AUTH_ERROR_EVENT,
        Args::new().arg(json!({"error": reason.as_str()})),
    );
    socket.disconnect(false);
}

/// The shard's sweeper: sleep until the first deadline (or a wake-up),
/// disconnect every socket due, again; end when no socket is watched.
/// It holds the shard's state while it runs (the sockets' grants name
/// their relay but do not hold its state): so the state lives while a
/// socket is watched, and goes with the last.
async fn sweep(shard: Rc<RelayShard>, wake: LocalReceiver<()>) {
    loop {
        let wait = {
            let wait = shard.expiries.borrow().poll_timeout(SystemTime::now());
            if wait.is_none() {
                shard.wake.borrow_mut().take();
            }
            wait
        };
        let Some(wait) = wait else {
            return;
        };
        if !wait.is_zero() {
            future::or(
                async {
                    Timer::new(wait).await;
                },
                async {
                    wake.recv().await;
                },
            )
            .await;
        }
        loop {
            let due = shard.expiries.borrow_mut().poll_expired(SystemTime::now());
            let Some((_, socket)) = due else {
                break;
            };
            end_session(&socket, Refusal::TokenExpired);
        }
    }
}
