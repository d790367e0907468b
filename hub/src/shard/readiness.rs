//! Read readiness of the shard's plain WebSocket connections, as hub's own
//! io_uring reports it (`shard/ring.rs` is the IO around this): a slab of
//! slots, one per registered connection, each with a `ready` flag and the
//! waker of the connection's reader. Sans-IO: fed the completions of the
//! connections' multishot polls, asked by the readers whether to read.
//!
//! A slot's user data (the poll's `user_data`) carries its index and a
//! generation bumped when the slot is freed, so a completion still in
//! flight for a connection that is gone never reaches the connection that
//! took its slot.

use std::task::{Context, Poll, Waker};

/// One registered connection: its place in the table and the generation
/// of that place when it registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    slot: u32,
    generation: u32,
}

/// User data no slot ever has (a generation is never `u32::MAX`): the
/// completions of removals, which carry nothing to handle.
pub(crate) const IGNORED_USER_DATA: u64 = u64::MAX;

/// Events after which a short read proves nothing: the peer's end (TCP
/// takes the FIN in the read that copies the bytes before it, and no new
/// wakeup follows), an error or a hang-up. Once one is reported, the
/// connection's reader reads until `EAGAIN` (or the end).
const STICKY_EVENTS: u32 = (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) as u32;

impl Token {
    /// The poll's `user_data`: generation in the high half, slot in the low.
    pub(crate) fn user_data(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.slot)
    }

    fn from_user_data(user_data: u64) -> Token {
        Token {
            slot: user_data as u32,
            generation: (user_data >> 32) as u32,
        }
    }
}

struct Slot {
    generation: u32,
    /// The descriptor the slot's poll watches; `None` while the slot is free.
    fd: Option<i32>,
    /// A read may find bytes (or the end, or an error): set by the poll,
    /// cleared by a read that found nothing more.
    ready: bool,
    /// The poll reported one of [`STICKY_EVENTS`]: a short read leaves
    /// `ready` set (only `EAGAIN` clears it).
    sticky: bool,
    /// The poll failed and is not re-armed: the connection reads through
    /// glommio instead.
    unwatched: bool,
    /// The reader's waker, kept across its waits: a completion takes it
    /// only while `waiting`, and the ring gives it back once woken (see
    /// [`Readiness::give_back`]), so a reader that waits again with the
    /// same waker clones nothing.
    waker: Option<Waker>,
    /// The reader waits for `ready`: set by a pending
    /// [`Readiness::poll_read_ready`], cleared by the completion that
    /// wakes it.
    waiting: bool,
}

/// What a reader should do (see [`Readiness::poll_read_ready`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadReadiness {
    /// Read now: bytes, the end or an error may be there.
    Ready,
    /// The ring no longer watches this connection: read the way an
    /// unregistered connection does.
    Unwatched,
}

/// What a completion asks of the ring around the table.
#[must_use]
#[derive(Debug, Default)]
pub(crate) struct Completion {
    /// Wake this reader (outside any borrow of the table), then give its
    /// waker back to the table with [`Readiness::give_back`].
    pub(crate) wake: Option<Waker>,
    /// The multishot poll ended: arm a new one for this descriptor with
    /// this token's user data.
    pub(crate) rearm: Option<(i32, Token)>,
}

/// The readiness table of one shard.
#[derive(Default)]
pub(crate) struct Readiness {
    slots: Vec<Slot>,
    free: Vec<u32>,
    registered: usize,
    /// Registered and still watched by the ring (not fallen back).
    watched: usize,
}

impl Readiness {
    /// Register descriptor `fd`. It starts ready: the first read tries the
    /// socket (bytes may have come before the poll was armed; the poll
    /// reports them too, which only costs a spurious wake).
    pub(crate) fn register(&mut self, fd: i32) -> Token {
        self.registered += 1;
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    fd: None,
                    ready: false,
                    sticky: false,
                    unwatched: false,
                    waker: None,
                    waiting: false,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let entry = &mut self.slots[slot as usize];
        entry.fd = Some(fd);
        entry.ready = true;
        entry.sticky = false;
        entry.unwatched = false;
        entry.waker = None;
        entry.waiting = false;
        self.watched += 1;
        Token {
            slot,
            generation: entry.generation,
        }
    }

    /// Free `token`'s slot (its poll is being removed): completions still
    /// in flight for it are ignored from now on.
    pub(crate) fn deregister(&mut self, token: Token) {
        let Some(entry) = live(&mut self.slots, token) else {
            return;
        };
        if !entry.unwatched {
            self.watched -= 1;
        }
        entry.fd = None;
        entry.waker = None;
        // Skipping u32::MAX keeps every live user data apart from
        // IGNORED_USER_DATA.
        entry.generation = match entry.generation.wrapping_add(1) {
            u32::MAX => 0,
            next => next,
        };
        self.free.push(token.slot);
        self.registered -= 1;
    }

    /// Connections registered now.
    #[cfg(test)]
    pub(crate) fn registered(&self) -> usize {
        self.registered
    }

    /// Connections the ring watches now: registered, not fallen back to
    /// glommio (what the `ws_read_ring_connections` gauge shows).
    pub(crate) fn watched(&self) -> usize {
        self.watched
    }

    fn live(&mut self, token: Token) -> Option<&mut Slot> {
        live(&mut self.slots, token)
    }

    /// A completion from the ring: `result` is the poll's (the event mask,
    /// or a negative errno), `more` whether the multishot poll goes on
    /// (`IORING_CQE_F_MORE`).
    pub(crate) fn handle_completion(
        &mut self,
        user_data: u64,
        result: i32,
        more: bool,
    ) -> Completion {
        if user_data == IGNORED_USER_DATA {
            return Completion::default();
        }
        let token = Token::from_user_data(user_data);
        let Some(entry) = live(&mut self.slots, token) else {
            // A connection gone, or its removal's last word.
            return Completion::default();
        };
        if entry.unwatched {
            // Fallen back to glommio: its poll is gone or being removed.
            return Completion::default();
        }
        entry.ready = true;
        if result >= 0 && (result as u32) & STICKY_EVENTS != 0 {
            entry.sticky = true;
        }
        let wake = if entry.waiting {
            entry.waiting = false;
            entry.waker.take()
        } else {
            None
        };
        let rearm = if more {
            None
        } else if result >= 0 {
            // The kernel ended the poll (it may, e.g. when the completion
            // queue overflowed): arm another.
            entry.fd.map(|fd| (fd, token))
        } else {
            // The poll failed: re-arming could fail the same way at once,
            // again and again. The reader falls back to glommio's reads.
            entry.unwatched = true;
            self.watched -= 1;
            None
        };
        Completion { wake, rearm }
    }

    /// Whether `token`'s reader should read: if not, its waker is kept (in
    /// place of an earlier one) and woken by the next completion.
    pub(crate) fn poll_read_ready(
        &mut self,
        token: Token,
        cx: &mut Context<'_>,
    ) -> Poll<ReadReadiness> {
        let Some(entry) = self.live(token) else {
            return Poll::Ready(ReadReadiness::Unwatched);
        };
        if entry.unwatched {
            return Poll::Ready(ReadReadiness::Unwatched);
        }
        if entry.ready {
            return Poll::Ready(ReadReadiness::Ready);
        }
        entry.waiting = true;
        match &mut entry.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The waker a completion took for the reader of `user_data`, woken
    /// since: kept for the reader's next wait, unless the slot is gone,
    /// fallen back, or holds another waker by now.
    pub(crate) fn give_back(&mut self, user_data: u64, waker: Waker) {
        if let Some(entry) = live(&mut self.slots, Token::from_user_data(user_data)) {
            if entry.waker.is_none() && !entry.unwatched {
                entry.waker = Some(waker);
            }
        }
    }

    /// A read found the socket empty: wait for the poll's next completion.
    pub(crate) fn clear_ready(&mut self, token: Token) {
        if let Some(entry) = self.live(token) {
            entry.ready = false;
        }
    }

    /// A read took fewer bytes than it had room for. TCP copies until the
    /// buffer is full or the receive queue is empty, and a byte that comes
    /// after wakes the socket, which makes the multishot poll post a
    /// completion: so the reader may wait for that rather than spend a
    /// `recv` on `EAGAIN`. Not after one of [`STICKY_EVENTS`]: then the
    /// read may have stopped at the FIN with no wakeup to follow.
    pub(crate) fn read_short(&mut self, token: Token) {
        if let Some(entry) = self.live(token) {
            if !entry.sticky {
                entry.ready = false;
            }
        }
    }

    /// The ring is given up (and closed, which ends its polls): every
    /// connection reads through glommio from now on. Returns the readers to
    /// wake, whose wait would never end otherwise.
    pub(crate) fn unwatch_all(&mut self) -> Vec<Waker> {
        let mut wakers = Vec::new();
        for slot in &mut self.slots {
            if slot.fd.is_none() || slot.unwatched {
                continue;
            }
            slot.unwatched = true;
            self.watched -= 1;
            slot.waiting = false;
            wakers.extend(slot.waker.take());
        }
        wakers
    }
}

/// `token`'s slot, if it is still the one `token` registered.
fn live(slots: &mut [Slot], token: Token) -> Option<&mut Slot> {
    slots
        .get_mut(token.slot as usize)
        .filter(|slot| slot.generation == token.generation && slot.fd.is_some())
}

#[cfg(test)]
mod tests;
