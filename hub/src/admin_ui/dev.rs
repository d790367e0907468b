//! Development mode: the socket, room and event notices sent to every
//! admin socket.

use std::sync::Arc;

use super::Shared;

/// The notices of one shard waiting for the admin sockets.
pub(crate) struct DevEvents {
    #[allow(dead_code)]
    shared: Arc<Shared>,
}

impl DevEvents {
    pub fn new(shared: Arc<Shared>) -> DevEvents {
        DevEvents { shared }
    }
}
