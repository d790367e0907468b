//! Connections per client address, counted over every shard
//! (`ServerConfig::max_connections_per_ip`).
//!
//! What is counted is TCP connections, from the accept to the close: they
//! are what holds descriptors, the resource one address can exhaust (a
//! client's Engine.IO sessions are fewer: a polling session uses one or two
//! connections, a WebSocket one). A connection handed to another shard (a
//! WebSocket upgrade for a session that lives there) keeps its place: the
//! [`IpSlot`] travels with the descriptor.
//!
//! The count is one map behind a `Mutex`, shared by the shards. The
//! SO_REUSEPORT listeners spread one address's connections over every
//! shard (by the hash of the ports), so per-shard counts could only
//! enforce the limit approximately; one atomic per hashed bucket would
//! count unrelated addresses together and refuse them. The lock is taken
//! once when a connection is accepted and once when it closes, never per
//! message, for one map update; with the limit off (0, the default) it is
//! never taken.
//!
//! IPv6 addresses are counted per /64 prefix: one host commonly has a whole
//! /64 and may pick any address in it for each connection.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use ahash::AHashMap;

/// The open connections of each client address.
#[derive(Debug)]
pub(crate) struct PerIpLimit {
    /// 0: no limit, nothing counted.
    max: usize,
    open: Mutex<AHashMap<IpAddr, usize>>,
}

/// A connection's place in its address's count, given back when dropped.
#[derive(Debug)]
#[must_use = "the place is given back when this is dropped"]
pub(crate) struct IpSlot {
    /// None when nothing is counted.
    held: Option<(Arc<PerIpLimit>, IpAddr)>,
}

impl PerIpLimit {
    pub fn new(max: usize) -> Arc<PerIpLimit> {
        Arc::new(PerIpLimit {
            max,
            open: Mutex::new(AHashMap::new()),
        })
    }

    /// A place for a new connection from `ip`; None when that address
    /// already has the most connections allowed.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        if self.max == 0 {
            return Some(IpSlot { held: None });
        }
        let key = key(ip);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(key).or_insert(0);
        // max >= 1: an address at its limit had an entry already.
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            held: Some((self.clone(), key)),
        })
    }

    /// Connections open from `ip` (its /64 for IPv6).
    #[cfg(test)]
    pub fn open(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(&key(ip)).copied().unwrap_or(0)
    }

    fn release(&self, key: IpAddr) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&key);
                // Many addresses gone leave no oversized table behind.
                if open.capacity() > 1024 && open.len() * 4 < open.capacity() {
                    open.shrink_to_fit();
                }
            }
        }
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Some((limit, key)) = self.held.take() {
            limit.release(key);
        }
    }
}

/// What a connection is counted under: the address (an IPv4 address
/// mapped into IPv6 as itself), or an IPv6 address's /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_address_gets_at_most_its_places_and_others_are_apart() {
        let limit = PerIpLimit::new(2);
        let a = limit.admit(ip("127.0.0.1")).unwrap();
        let b = limit.admit(ip("127.0.0.1")).unwrap();
        assert!(limit.admit(ip("127.0.0.1")).is_none(), "a third is refused");
        let other = limit.admit(ip("127.0.0.2"));
        assert!(other.is_some(), "another address has its own count");
        drop(a);
        assert_eq!(limit.open(ip("127.0.0.1")), 1);
        let c = limit.admit(ip("127.0.0.1"));
        assert!(c.is_some(), "a closed connection gives its place back");
        drop((b, c, other));
        assert!(
            limit.open.lock().unwrap().is_empty(),
            "nothing is kept for addresses with no connection"
        );
    }

    #[test]
    fn a_slot_moved_elsewhere_is_given_back_once() {
        let limit = PerIpLimit::new(1);
        let slot = limit.admit(ip("10.0.0.1")).unwrap();
        // As a WebSocket handed to another shard: the slot moves with it.
        let moved = std::thread::spawn(move || {
            let held = slot;
            drop(held);
        });
        moved.join().unwrap();
        assert_eq!(limit.open(ip("10.0.0.1")), 0);
        assert!(limit.admit(ip("10.0.0.1")).is_some());
    }

    #[test]
    fn a_panic_in_the_connection_task_gives_the_place_back() {
        crate::panics::install_hook();
        let limit = PerIpLimit::new(1);
        let slot = limit.admit(ip("10.0.0.2")).unwrap();
        // As `spawn_contained` runs a connection's task.
        let task = async move {
            let _slot = slot;
            futures_lite::future::yield_now().await;
            panic!("a bug while serving this connection");
        };
        let ran = futures_lite::future::block_on(crate::panics::CatchUnwind::new(task));
        assert!(ran.is_err());
        assert_eq!(limit.open(ip("10.0.0.2")), 0);
        assert!(limit.admit(ip("10.0.0.2")).is_some());
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let limit = PerIpLimit::new(1);
        let _a = limit.admit(ip("2001:db8::1")).unwrap();
        assert!(
            limit.admit(ip("2001:db8::ffff:2")).is_none(),
            "same /64, same count"
        );
        assert!(limit.admit(ip("2001:db8:0:1::1")).is_some(), "another /64");
        let _v4 = limit.admit(ip("192.0.2.7")).unwrap();
        assert!(limit.admit(ip("::ffff:192.0.2.7")).is_none());
    }

    #[test]
    fn no_limit_counts_nothing() {
        let limit = PerIpLimit::new(0);
        let slots: Vec<IpSlot> = (0..100)
            .map(|_| limit.admit(ip("127.0.0.1")).unwrap())
            .collect();
        assert_eq!(limit.open(ip("127.0.0.1")), 0);
        drop(slots);
    }
}
