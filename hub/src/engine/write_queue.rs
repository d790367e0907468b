//! The sessions whose parked WebSocket writers have packets to write: what
//! the shard's flusher writes for them (see [`SessionEntry::park_writer`]).
//!
//! One queue per thread, and so per shard (a shard is one thread), kept here
//! rather than reached through the session's host: a send to a parked
//! writer's session pushes onto it directly. Through the host it upgraded
//! the host's `Weak` and made a dynamic call for each session queued, once
//! per delivery where every delivery is its own write.
//!
//! A broadcast's *lone* packets (for a session with nothing queued and
//! nothing held, which at low batching is every recipient) do not go
//! through the session's outbox at all: the session is told the packet's
//! bytes are taken ([`crate::engineio::session::Session::take_lone`]) and
//! keeps only the index of the broadcast's text in this thread's
//! [`Frames`], which holds one reference on the text for the whole walk
//! rather than one per recipient. The flusher writes that shared frame as
//! it is; a writer woken first copies it ([`SessionEntry::unpark_writer`]).

use std::cell::RefCell;
use std::rc::Rc;

use super::socket::SessionEntry;
use crate::engineio::Text;
use crate::signal::Signal;

thread_local! {
    /// The sessions queued. Apart from the signal and initialised as a
    /// constant: a push, once per delivery where every delivery is its own
    /// write, reaches it without the lazy initialisation's check and call.
    static SESSIONS: RefCell<Vec<Rc<SessionEntry>>> = const { RefCell::new(Vec::new()) };
    /// The texts of the broadcasts whose lone packets wait for the flusher.
    static FRAMES: RefCell<Frames> = const {
        RefCell::new(Frames { texts: Vec::new(), first: 0 })
    };
    static QUEUE: Rc<WriteQueue> = Rc::default();
}

/// The signal that wakes this thread's flusher, and its way to the
/// sessions queued.
#[derive(Default)]
pub(crate) struct WriteQueue {
    /// Notified by the first session queued into an empty queue.
    pub ready: Signal,
}

impl WriteQueue {
    /// This thread's queue (the flusher keeps it for its lifetime).
    pub fn current() -> Rc<WriteQueue> {
        QUEUE.with(Rc::clone)
    }

    /// Move the queued sessions into `batch`, which must be empty. The
    /// frames their lone packets refer to stay until
    /// [`WriteQueue::release_frames`] with the mark returned.
    pub fn take(&self, batch: &mut Vec<Rc<SessionEntry>>) -> FramesMark {
        debug_assert!(batch.is_empty());
        SESSIONS.with(|sessions| std::mem::swap(batch, &mut *sessions.borrow_mut()));
        FRAMES.with_borrow(|frames| FramesMark(frames.end()))
    }

    /// Drop the texts of the frames before `mark`, once every session
    /// taken with it has been written (or handed back to its writer).
    pub fn release_frames(&self, mark: FramesMark) {
        FRAMES.with_borrow_mut(|frames| {
            let released = mark.0.wrapping_sub(frames.first) as usize;
            frames.texts.drain(..released);
            frames.first = mark.0;
        });
    }

    /// Run `f` with this thread's frames (borrowed: `f` must not start a
    /// broadcast).
    #[inline]
    pub fn with_frames<R>(f: impl FnOnce(&Frames) -> R) -> R {
        FRAMES.with_borrow(f)
    }
}

/// Where the frames taken by one flusher round end (see
/// [`WriteQueue::take`]).
#[must_use]
pub(crate) struct FramesMark(u32);

/// The texts of broadcasts whose lone packets are not yet written, each
/// held once, by an index that only grows (wrapping).
pub(crate) struct Frames {
    /// A `Vec` rather than a `VecDeque`: looked up once per delivery, and
    /// released a round's worth at a time (a few texts moved down).
    texts: Vec<Text>,
    /// The index of `texts[0]`.
    first: u32,
}

impl Frames {
    /// The WebSocket frame of the text at `index` (a text built with its
    /// frame: [`Text::framed_message`]).
    #[inline]
    pub fn frame(&self, index: u32) -> &[u8] {
        let text = &self.texts[index.wrapping_sub(self.first) as usize];
        text.ws_message_frame().unwrap_or_default()
    }

    fn end(&self) -> u32 {
        self.first.wrapping_add(self.texts.len() as u32)
    }
}

/// Queue `entry` on this thread's queue (at most once until the flusher
/// takes it: see `SessionEntry::take_write_turn`); the first one queued
/// wakes the flusher.
#[inline]
pub(crate) fn push(entry: &Rc<SessionEntry>) {
    let first = SESSIONS.with(|sessions| {
        let mut sessions = sessions.borrow_mut();
        sessions.push(entry.clone());
        sessions.len() == 1
    });
    if first {
        wake_flusher();
    }
}

/// Wake this thread's flusher (out of line: once per round, not per push).
#[inline(never)]
fn wake_flusher() {
    QUEUE.with(|queue| queue.ready.notify());
}

/// The copy of the frame at `index` that a writer woken before the flusher
/// wrote it puts first in its buffer.
pub(crate) fn copy_frame(index: u32, out: &mut Vec<u8>) {
    FRAMES.with_borrow(|frames| out.extend_from_slice(frames.frame(index)));
}

/// One broadcast's sends on this thread: its text measured once, its frame
/// held once for all the lone packets it makes, and the sessions it queues
/// for the flusher pushed without reaching the thread's queue each time.
/// Dropped at the walk's end: the sessions go on the queue, and the flusher
/// is woken if the queue was empty.
pub(crate) struct BroadcastSends<'a> {
    pub(super) text: &'a Text,
    pub(super) len: usize,
    /// Whether the text carries its WebSocket frame (lone packets share it).
    pub(super) framed: bool,
    /// The text's index in [`Frames`], once a lone packet took it.
    frame: Option<u32>,
    /// The thread's queue, taken for the walk.
    queued: Vec<Rc<SessionEntry>>,
    was_empty: bool,
}

impl<'a> BroadcastSends<'a> {
    /// The sends of `text` to any number of sessions.
    pub fn new(text: &'a Text) -> BroadcastSends<'a> {
        let queued = SESSIONS.with(|sessions| std::mem::take(&mut *sessions.borrow_mut()));
        BroadcastSends {
            text,
            len: text.len(),
            framed: text.ws_message_frame().is_some(),
            frame: None,
            was_empty: queued.is_empty(),
            queued,
        }
    }

    /// The text's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Queue `entry` for the flusher (with the walk's other sessions, put
    /// on the thread's queue at its end).
    #[inline(always)]
    pub(super) fn queue(&mut self, entry: &Rc<SessionEntry>) {
        let queued = &mut self.queued;
        if queued.len() == queued.capacity() {
            grow(queued);
        }
        // By hand rather than `Vec::push`, which the compiler kept out of
        // line here (a call and 19 instructions per delivery at fanout-1,
        // `scripts/instructions`).
        // SAFETY: there is room for one more (just checked), and the length
        // counts the element only once it is written.
        unsafe {
            queued.as_mut_ptr().add(queued.len()).write(entry.clone());
            queued.set_len(queued.len() + 1);
        }
    }

    /// The text's index in [`Frames`] (held there from the first lone
    /// packet on).
    #[inline]
    pub(super) fn frame_index(&mut self) -> u32 {
        match self.frame {
            Some(index) => index,
            None => self.hold_frame(),
        }
    }

    #[cold]
    #[inline(never)]
    fn hold_frame(&mut self) -> u32 {
        let index = FRAMES.with_borrow_mut(|frames| {
            frames.texts.push(self.text.clone());
            frames.end().wrapping_sub(1)
        });
        self.frame = Some(index);
        index
    }
}

/// Room for more sessions (out of line: a walk grows its queue a few
/// times at most, the queue's capacity being kept between rounds).
#[cold]
#[inline(never)]
fn grow(queued: &mut Vec<Rc<SessionEntry>>) {
    queued.reserve(64);
}

impl Drop for BroadcastSends<'_> {
    fn drop(&mut self) {
        let mut queued = std::mem::take(&mut self.queued);
        let now_queued = SESSIONS.with(|sessions| {
            let mut sessions = sessions.borrow_mut();
            // Anything queued meanwhile by another path (it woke the
            // flusher if it found the queue empty) joins the walk's.
            if sessions.is_empty() {
                std::mem::swap(&mut *sessions, &mut queued);
            } else {
                sessions.append(&mut queued);
            }
            !sessions.is_empty()
        });
        if self.was_empty && now_queued {
            wake_flusher();
        }
    }
}
