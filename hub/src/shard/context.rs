//! What code running on a shard may ask of it: which shard it is, how many
//! there are, and to post a message to another shard's handlers.

use std::any::Any;
use std::cell::RefCell;
use std::rc::{Rc, Weak};

use super::state::Shard;

thread_local! {
    /// Each executor runs on its own thread, so the shard it serves is thread-local.
    static CURRENT: RefCell<Weak<Shard>> = const { RefCell::new(Weak::new()) };
}

pub(crate) fn enter(shard: &Rc<Shard>) {
    CURRENT.with(|c| *c.borrow_mut() = Rc::downgrade(shard));
}

pub(crate) fn with<T>(f: impl FnOnce(&Shard) -> T) -> Option<T> {
    CURRENT.with(|c| c.borrow().upgrade().map(|s| f(&s)))
}

/// The index of the shard running the caller; None off the shards.
pub fn shard_id() -> Option<usize> {
    with(|s| s.id)
}

/// How many shards the server runs; None off the shards.
pub fn shard_count() -> Option<usize> {
    with(|s| s.count)
}

/// Whether the current shard is stopping (shutdown was asked for); false
/// off the shards. For tasks beside the listener that hold connections
/// open (the admin listener's event streams), which must end in time.
pub fn stopping() -> bool {
    with(|s| s.stopping.get()).unwrap_or(false)
}

/// Post `msg` to the handlers on shard `target` (their `on_shard_message`).
/// Messages to one shard arrive in order; posting to oneself delivers at once.
/// False off the shards or for an unknown target.
pub fn post(target: usize, msg: Box<dyn Any + Send>) -> bool {
    post_sized(target, msg, 0)
}

/// As [`post`], for a message carrying `bytes` of payload: they count in
/// the shard's backlog for the other shards, which is bounded (see
/// `ServerConfig::max_cross_shard_backlog`).
pub fn post_sized(target: usize, msg: Box<dyn Any + Send>, bytes: usize) -> bool {
    with(|s| {
        if target == s.id {
            s.deliver_app(msg);
            true
        } else if let Some(mesh) = s.mesh.get().filter(|_| target < s.count) {
            mesh.post_sized(target, msg, bytes);
            true
        } else {
            false
        }
    })
    .unwrap_or(false)
}

/// Wait until the current shard takes input again (its backlog for the
/// other shards is under its limit): a reader of input from outside the
/// clients, such as the cluster's link to Redis, waits as they do.
pub(crate) async fn input_allowed() {
    let shard = CURRENT.with(|c| c.borrow().upgrade());
    if let Some(shard) = shard {
        shard.input_allowed().await;
    }
}
