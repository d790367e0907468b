//! What a session needs from the runtime that hosts it, named here so that
//! the engine layer does not depend on the shard runtime above it.

use std::rc::Rc;

use super::socket::SessionEntry;

/// The runtime hosting a session (a shard): its clock, and its queue of
/// sessions whose events are delivered later.
///
/// Deferring is what keeps the delivery path free of re-entrancy: a send
/// that finds its session must close (a slow consumer), or an application
/// that closes a session from inside a handler, must not run the session's
/// close (the application's disconnect handlers, leaving rooms) there and
/// then, while the caller may be walking a room or holding a borrow. The
/// session is marked closed at once (nothing more is queued to it) and its
/// events are dispatched by the host once the current dispatch has finished.
pub(crate) trait SessionHost {
    /// Queue the session on the clock for its next deadline, which moved
    /// earlier than the one it is queued for.
    fn rearm(&self, entry: &Rc<SessionEntry>);
    /// Dispatch the session's pending events after the current dispatch
    /// on this shard has finished, never from inside this call.
    fn defer_dispatch(&self, entry: &Rc<SessionEntry>);
}
