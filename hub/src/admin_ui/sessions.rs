//! The Admin UI's login sessions: ids handed out after a good password,
//! accepted instead of it on reconnect, on any shard. Bounded: past the
//! bound the oldest session is forgotten (its UI logs in again).

use std::collections::{HashSet, VecDeque};

/// A bounded set of session ids, oldest first.
#[derive(Debug)]
pub struct SessionSet {
    ids: HashSet<String>,
    order: VecDeque<String>,
    max: usize,
}

impl SessionSet {
    /// A set that holds at most `max` sessions (at least one).
    pub fn new(max: usize) -> SessionSet {
        SessionSet {
            ids: HashSet::new(),
            order: VecDeque::new(),
            max: max.max(1),
        }
    }

    /// Keep `id`; returns how many older sessions were forgotten for it.
    pub fn insert(&mut self, id: String) -> usize {
        if self.ids.contains(&id) {
            return 0;
        }
        let mut evicted = 0;
        while self.order.len() >= self.max {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
                evicted += 1;
            }
        }
        self.ids.insert(id.clone());
        self.order.push_back(id);
        evicted
    }

    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// A new session id: 8 random bytes as 16 lowercase hex characters (as
/// `@socket.io/admin-ui`'s `randomBytes(8).toString("hex")`).
pub fn new_session_id() -> String {
    let bytes: [u8; 8] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
