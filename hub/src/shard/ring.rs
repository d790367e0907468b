//! The shard's readiness ring: an io_uring of hub's own that watches the
//! plain WebSocket connections for bytes to read, so that a read costs one
//! `recv` and no poll armed per message.
//!
//! Why by hand: glommio's `TcpStream::poll_read` arms a new one-shot
//! io_uring poll after every short read (an `Rc` source allocated, an SQE
//! submitted and a CQE consumed per message and connection: about a
//! quarter of the instructions of an echo), and glommio offers neither a
//! multishot poll nor a way to wait on a descriptor's readiness. Here each
//! connection gets one *multishot* poll on hub's ring, whose completions
//! set a flag in the shard's readiness table (`shard/readiness.rs`, the
//! state machine) and wake the reader. The ring has an eventfd registered,
//! which the kernel bumps for every completion it posts; one task per
//! shard waits on that eventfd through glommio (an io_uring read on it
//! completes once the counter is non-zero), then drains the ring's
//! completion queue in user space, without a system call. So a batch of
//! readiness costs one glommio wait, however many connections it covers.
//!
//! If the ring cannot be made (an old kernel, limits; a kernel before 5.13,
//! without multishot polls, is found by a probe when it is made),
//! connections read through glommio as before (logged once).
//! `HUB_READINESS_RING=off`
//! in the environment makes hub read through glommio too (to compare the
//! two, or to rule the ring out).
//!
//! A ring that fails once made (a completion the kernel dropped, an
//! overflow it would not flush, a poll that could not be armed or removed)
//! is given up for the shard: every registered reader falls back to
//! glommio's reads, whose state is the socket's own, so no connection is
//! closed for it, and the ring is closed, which ends all its polls at once
//! (each held its socket open). `HUB_READINESS_RING_FAULT` makes such
//! failures happen, for the tests of that path (see [`Fault`]).

use std::cell::{Cell, OnceCell, RefCell, RefMut};
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use glommio::io::BufferedFile;
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use rustix::net::RecvFlags;

use super::readiness::{ReadReadiness, Readiness, Token, IGNORED_USER_DATA};
use super::stream::Stream;

/// Submission queue entries: an SQE is only ever queued just before the
/// submit that takes it (a registration, a removal, the re-arms of one
/// drain), so a few suffice; a full queue is submitted and pushed again.
const SQ_ENTRIES: u32 = 64;

/// Completion queue entries: completions posted between two drains (one
/// per wakeup of each watched socket). More wait in the kernel
/// (`IORING_FEAT_NODROP`, required) and are flushed by the drain, so this
/// bounds the ring's memory (16 bytes an entry), not the connections.
const CQ_ENTRIES: u32 = 4096;

/// What the poll waits for: bytes, the peer's half-close, an error or a
/// hang-up (a read then returns the end or the error). Not `POLLPRI`
/// (urgent data): with it in the mask, `tests/slow_consumer.rs` failed in
/// 4 of 27 runs (healthy subscribers closed as slow consumers), without it
/// in 0 of 30, cause not found; so a read stopped at an urgent byte's mark
/// waits for the peer's next bytes (the peer's own doing).
const POLL_MASK: u32 = (libc::POLLIN | libc::POLLRDHUP | libc::POLLERR | libc::POLLHUP) as u32;

thread_local! {
    /// The shard's ring, made at shard start, with the id of the executor
    /// whose task drains it (connections of another executor on the same
    /// thread, which only tests make, read through glommio).
    static SHARD_RING: OnceCell<(usize, Option<Rc<ReadinessRing>>)> = const { OnceCell::new() };
}

/// Whether the fallback was logged (once per process, not per shard).
static FALLBACK_LOGGED: AtomicBool = AtomicBool::new(false);

/// The environment variable that turns the ring off (`off`).
const DISABLE_VAR: &str = "HUB_READINESS_RING";

/// The environment variable that makes the ring fail on purpose (tests).
const FAULT_VAR: &str = "HUB_READINESS_RING_FAULT";

/// A failure made on purpose (`HUB_READINESS_RING_FAULT`), so that the
/// tests can drive the real failure paths against real connections, at a
/// point they choose, rather than wait for a kernel that runs out of
/// memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// `dropped-after:N`: once N completions were handled, a drain finds
    /// the kernel's count of dropped completions grown by one.
    DroppedAfter(u64),
    /// `removal-fails:N`: the removal of the poll of the N-th connection
    /// to end (from 0) cannot be submitted.
    RemovalFails(u64),
}

impl Fault {
    fn from_env() -> Option<Fault> {
        let value = std::env::var(FAULT_VAR).ok()?;
        let parsed = Fault::parse(&value);
        if parsed.is_none() {
            tracing::warn!(
                value,
                "{FAULT_VAR}: not dropped-after:N or removal-fails:N, ignored"
            );
        }
        parsed
    }

    fn parse(value: &str) -> Option<Fault> {
        match value.split_once(':') {
            Some(("dropped-after", n)) => n.parse().ok().map(Fault::DroppedAfter),
            Some(("removal-fails", n)) => n.parse().ok().map(Fault::RemovalFails),
            _ => None,
        }
    }
}

fn log_fallback_once(error: &io::Error) {
    if !FALLBACK_LOGGED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            %error,
            "no io_uring for WebSocket read readiness: reading through glommio"
        );
    }
}

struct ReadinessRing {
    /// `None` once given up: closing the ring ended every poll on it.
    ring: RefCell<Option<IoUring>>,
    /// The eventfd the kernel bumps per completion, closed with this
    /// (glommio's file over it is never dropped: its drop would hand the
    /// close to a reactor that may be gone by then).
    eventfd: OwnedFd,
    table: RefCell<Readiness>,
    /// Readers a drain wakes (with their slots' user data, to give the
    /// wakers back), kept for the next drain's use.
    wakers: Cell<Vec<(u64, Waker)>>,
    /// The ring failed after it was made: new connections read through
    /// glommio, and the registered ones were told so.
    failed: Cell<bool>,
    /// Completions the kernel dropped so far (it may, even with NODROP,
    /// when it cannot allocate an overflow entry): one more than seen
    /// means a reader may never be woken, so the ring is given up.
    dropped: Cell<u32>,
    /// The failure to make on purpose, if any, and the completions
    /// handled and removals made so far (counted only then).
    fault: Option<Fault>,
    completions: Cell<u64>,
    removals: Cell<u64>,
}

/// A connection the shard's ring watches, from registration to drop. Drop
/// it before the connection's descriptor is closed: the poll holds the
/// socket open until it is removed (the peer would see no close).
pub(crate) struct Registration {
    ring: Rc<ReadinessRing>,
    token: Token,
    fd: RawFd,
}

/// Watch `stream` for reads on the shard's ring: a plain connection only
/// (TLS reads go through rustls over glommio), and `None` when the ring is
/// unavailable.
pub(crate) fn register(stream: &Stream) -> Option<Registration> {
    let Stream::Plain(tcp) = stream else {
        return None;
    };
    let ring = shard_ring()?;
    if ring.failed.get() {
        return None;
    }
    let fd = tcp.as_raw_fd();
    let token = ring.table.borrow_mut().register(fd);
    let armed = match ring.uring().as_mut() {
        Some(uring) => arm(uring, fd, token).and_then(|()| uring.submit().map(drop)),
        None => Err(io::Error::other("the readiness ring is given up")),
    };
    ring.update_gauge();
    let registration = Registration { ring, token, fd };
    if let Err(error) = armed {
        // Giving the ring up ends the poll if it did go in; the
        // registration's drop frees the slot.
        registration.ring.fail(&error);
        return None;
    }
    Some(registration)
}

/// Make the shard's ring and start its task, if not yet done (else the
/// first registration does).
pub(crate) fn start() {
    let _ = shard_ring();
}

fn shard_ring() -> Option<Rc<ReadinessRing>> {
    let executor = glommio::executor().id();
    SHARD_RING.with(|cell| {
        let (owner, ring) = cell.get_or_init(|| (executor, ReadinessRing::start()));
        if *owner != executor {
            // Not the executor whose task drains the ring.
            return None;
        }
        ring.clone()
    })
}

impl Registration {
    /// Whether the ring says the socket may have bytes (or the end, or an
    /// error): pending with the reader's waker kept, else
    /// [`ReadReadiness::Ready`] (read with [`Registration::poll_recv`]) or
    /// [`ReadReadiness::Unwatched`] (read through glommio). Asked before a
    /// read buffer is taken, so a reader that waits takes none.
    pub(crate) fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<ReadReadiness> {
        self.ring.table.borrow_mut().poll_read_ready(self.token, cx)
    }

    /// Read into `buf`, [`Registration::poll_readable`] having said
    /// ready in this poll: the count (0 at the end), an error, or pending
    /// with the reader's waker kept. `None`: the ring no longer watches
    /// this connection; read through glommio.
    pub(crate) fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Option<Poll<io::Result<usize>>> {
        loop {
            match recv_nonblocking(self.fd, buf) {
                Ok(n) => {
                    // A short read may wait for the poll's next completion
                    // (see `Readiness::read_short` for when it may not). A
                    // full buffer may leave more: stay ready. The end (0)
                    // stays ready.
                    if n > 0 && n < buf.len() {
                        self.ring.table.borrow_mut().read_short(self.token);
                    }
                    return Some(Poll::Ready(Ok(n)));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    // Nothing there: wait for the poll (which keeps the
                    // waker and returns pending), or read again if a
                    // completion came meanwhile.
                    self.ring.table.borrow_mut().clear_ready(self.token);
                    match self.poll_readable(cx) {
                        Poll::Pending => return Some(Poll::Pending),
                        Poll::Ready(ReadReadiness::Unwatched) => return None,
                        Poll::Ready(ReadReadiness::Ready) => {}
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Some(Poll::Ready(Err(error))),
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Removed before the descriptor is closed (the caller drops this
        // first), and submitted now: the poll's reference to the socket
        // goes with it, so closing the descriptor closes the connection.
        let removed = self.ring.remove_poll(self.token);
        self.ring.table.borrow_mut().deregister(self.token);
        if let Err(error) = removed {
            // The poll would hold this socket open (the peer would see no
            // close) for as long as the ring lives: the ring is given up,
            // and closing it ends this poll with the others.
            tracing::error!(%error, "a WebSocket's read poll could not be removed");
            self.ring.fail(&error);
        }
        self.ring.update_gauge();
    }
}

impl ReadinessRing {
    /// Make the ring and its eventfd, and spawn the task that drains it.
    fn start() -> Option<Rc<ReadinessRing>> {
        if std::env::var_os(DISABLE_VAR).is_some_and(|value| value == "off") {
            log_fallback_once(&io::Error::other(format!("{DISABLE_VAR}=off")));
            return None;
        }
        let (uring, eventfd) = match make_ring() {
            Ok(made) => made,
            Err(error) => {
                log_fallback_once(&error);
                return None;
            }
        };
        // SAFETY: a descriptor the ring owns and closes after the task that
        // reads it through this file is gone (the task holds the ring); the
        // file is never dropped, so it closes nothing.
        let file = ManuallyDrop::new(unsafe { BufferedFile::from_raw_fd(eventfd.as_raw_fd()) });
        let ring = Rc::new(ReadinessRing {
            ring: RefCell::new(Some(uring)),
            eventfd,
            table: RefCell::new(Readiness::default()),
            wakers: Cell::new(Vec::new()),
            failed: Cell::new(false),
            dropped: Cell::new(0),
            fault: Fault::from_env(),
            completions: Cell::new(0),
            removals: Cell::new(0),
        });
        glommio::spawn_local(watch(ring.clone(), file)).detach();
        Some(ring)
    }

    /// The ring, or `None` once given up.
    fn uring(&self) -> RefMut<'_, Option<IoUring>> {
        self.ring.borrow_mut()
    }

    /// Submit the removal of `token`'s poll now (the poll holds the
    /// socket open). Nothing to remove once the ring is given up: closing
    /// it ended every poll.
    fn remove_poll(&self, token: Token) -> io::Result<()> {
        let mut uring = self.uring();
        let Some(uring) = uring.as_mut() else {
            return Ok(());
        };
        if let Some(Fault::RemovalFails(at)) = self.fault {
            let nth = self.removals.replace(self.removals.get() + 1);
            if nth == at {
                return Err(io::Error::other(format!(
                    "{FAULT_VAR}: removal {nth} fails"
                )));
            }
        }
        let remove = opcode::PollRemove::new(token.user_data())
            .build()
            .user_data(IGNORED_USER_DATA);
        push(uring, &remove).and_then(|()| uring.submit().map(drop))
    }

    /// Take every completion posted, mark the connections ready, re-arm
    /// the polls that ended, then wake the readers (no borrow held). A
    /// completion the kernel dropped, an overflow it would not flush or a
    /// poll that could not be re-armed gives the ring up: a reader whose
    /// wakeup is lost would otherwise wait for its heartbeat.
    fn drain(&self) {
        let mut wakers = self.wakers.take();
        let mut rearm = Vec::new();
        let mut failure = None;
        {
            let mut uring = self.uring();
            let Some(uring) = uring.as_mut() else {
                return;
            };
            let mut table = self.table.borrow_mut();
            let mut handled = 0u64;
            loop {
                for cqe in uring.completion() {
                    handled += 1;
                    let user_data = cqe.user_data();
                    let done =
                        table.handle_completion(user_data, cqe.result(), cqueue::more(cqe.flags()));
                    if let Some(waker) = done.wake {
                        wakers.push((user_data, waker));
                    }
                    rearm.extend(done.rearm);
                }
                if !uring.submission().cq_overflow() {
                    break;
                }
                // Completions that found the queue full wait in the kernel
                // (NODROP); an enter with GETEVENTS (which `submit` adds
                // when the overflow flag is set) moves them in. If it
                // cannot, they might wait for good: give the ring up.
                match uring.submit() {
                    Ok(_) => {}
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => {
                        failure = Some(error);
                        break;
                    }
                }
            }
            let mut dropped = uring.completion().overflow();
            if let Some(Fault::DroppedAfter(after)) = self.fault {
                let seen = self.completions.get() + handled;
                self.completions.set(seen);
                if seen >= after {
                    dropped = dropped.wrapping_add(1);
                }
            }
            if dropped != self.dropped.replace(dropped) && failure.is_none() {
                failure = Some(io::Error::other(format!(
                    "the kernel dropped {dropped} readiness completions"
                )));
            }
            if failure.is_none() && !rearm.is_empty() {
                failure = rearm
                    .into_iter()
                    .try_for_each(|(fd, token)| arm(uring, fd, token))
                    .and_then(|()| uring.submit().map(drop))
                    .err();
            }
        }
        if let Some(error) = failure {
            self.fail(&error);
        }
        // Woken by reference with no borrow held, then given back to the
        // table: the reader's next wait finds its waker in place and
        // clones none, and no waker is dropped per wake.
        for (_, waker) in &wakers {
            waker.wake_by_ref();
        }
        if !wakers.is_empty() {
            let mut table = self.table.borrow_mut();
            for (user_data, waker) in wakers.drain(..) {
                table.give_back(user_data, waker);
            }
        }
        self.wakers.set(wakers);
    }

    /// Give up the ring (logged once per shard): every registered reader
    /// falls back to glommio, and the ring is closed, which ends all its
    /// polls (each held its socket open) whatever state the ring is in;
    /// removing them one by one could fail as the ring did. Nothing is
    /// closed but the ring: each reader goes on where it was, through
    /// glommio's reads. The shard's task waiting on the ring's eventfd is
    /// woken to end.
    fn fail(&self, error: &io::Error) {
        if self.failed.replace(true) {
            return;
        }
        tracing::warn!(%error, "the WebSocket readiness ring failed: reading through glommio");
        crate::metrics::with(|m| {
            m.ws_read_ring_failures.inc();
        });
        let wakers = self.table.borrow_mut().unwatch_all();
        drop(self.uring().take());
        // SAFETY: a write of 8 bytes from a local to the eventfd this ring
        // owns (open until the ring is dropped).
        unsafe { libc::eventfd_write(self.eventfd.as_raw_fd(), 1) };
        self.update_gauge();
        for waker in wakers {
            waker.wake();
        }
    }

    /// The shard's `ws_read_ring_connections`: the connections watched now.
    fn update_gauge(&self) {
        let watched = self.table.borrow().watched();
        crate::metrics::with(|m| {
            m.ws_read_ring_connections.set(watched as i64);
        });
    }
}

/// The shard's readiness task: wait for the eventfd, drain, again, until
/// the ring is given up.
async fn watch(ring: Rc<ReadinessRing>, eventfd: ManuallyDrop<BufferedFile>) {
    loop {
        ring.drain();
        if ring.failed.get() {
            return;
        }
        // Completes when the counter is non-zero (and zeroes it): at least
        // one completion was posted since the last read.
        if let Err(error) = eventfd.read_at(0, 8).await {
            ring.fail(&io::Error::other(error.to_string()));
            return;
        }
    }
}

fn make_ring() -> io::Result<(IoUring, OwnedFd)> {
    let uring = IoUring::builder()
        .setup_cqsize(CQ_ENTRIES)
        .build(SQ_ENTRIES)?;
    if !uring.params().is_feature_nodrop() {
        // Without it a completion could be lost and a reader never woken.
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "io_uring without IORING_FEAT_NODROP",
        ));
    }
    // Blocking (no EFD_NONBLOCK): io_uring completes a read of a
    // nonblocking descriptor with EAGAIN instead of waiting for it.
    // SAFETY: eventfd(2) with valid flags; the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just made and is owned by nothing else.
    let eventfd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut uring = uring;
    probe_multishot(&mut uring, fd)?;
    uring.submitter().register_eventfd(fd)?;
    Ok((uring, eventfd))
}

/// Whether the kernel has multishot polls (5.13 on; 5.8 to 5.12 have
/// NODROP but not them), found once per shard so that such a kernel sends
/// the whole shard to glommio's reads (logged once) rather than each
/// connection on its own at its first poll. The probe: a multishot poll of
/// the (new, always writable) eventfd for `POLLOUT` posts at once, with
/// `IORING_CQE_F_MORE`; a kernel without them refuses it (`EINVAL`). Its
/// completions carry the ignored user data, so any the removal leaves are
/// ignored by the first drain.
fn probe_multishot(uring: &mut IoUring, fd: RawFd) -> io::Result<()> {
    let poll = opcode::PollAdd::new(types::Fd(fd), libc::POLLOUT as u32)
        .multi(true)
        .build()
        .user_data(IGNORED_USER_DATA);
    push(uring, &poll)?;
    uring.submit_and_wait(1)?;
    let first = uring.completion().next();
    let unsupported = |why: String| {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("io_uring without multishot poll: {why}"),
        ))
    };
    match first {
        None => unsupported("the probe's poll posted nothing".into()),
        Some(cqe) if cqe.result() < 0 => {
            unsupported(io::Error::from_raw_os_error(-cqe.result()).to_string())
        }
        Some(cqe) if !cqueue::more(cqe.flags()) => unsupported("the probe's poll ended".into()),
        Some(_) => {
            let remove = opcode::PollRemove::new(IGNORED_USER_DATA)
                .build()
                .user_data(IGNORED_USER_DATA);
            push(uring, &remove)?;
            uring.submit().map(drop)
        }
    }
}

/// Queue a multishot poll of `fd` for `token`.
fn arm(uring: &mut IoUring, fd: RawFd, token: Token) -> io::Result<()> {
    let poll = opcode::PollAdd::new(types::Fd(fd), POLL_MASK)
        .multi(true)
        .build()
        .user_data(token.user_data());
    push(uring, &poll)
}

/// Queue `entry`, submitting what is queued first if the queue is full.
fn push(uring: &mut IoUring, entry: &squeue::Entry) -> io::Result<()> {
    // SAFETY: the entries queued here are polls and poll removals, which
    // reference no memory of ours; the kernel takes its own reference to
    // the polled file when it takes the entry, so the descriptor may close
    // at any time after (its poll is removed before it is: see
    // `Registration`'s drop).
    if unsafe { uring.submission().push(entry) }.is_ok() {
        return Ok(());
    }
    uring.submit()?;
    // SAFETY: as above.
    unsafe { uring.submission().push(entry) }
        .map_err(|_| io::Error::other("io_uring submission queue full"))
}

/// `recv` without blocking.
///
/// Through rustix, which issues the system call itself, rather than
/// glibc's `recv`, a pthread cancellation point whose bookkeeping costs
/// more instructions than the rest of it (see the flusher's `sendto`).
fn recv_nonblocking(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the descriptor is the registration's connection's, which
    // stays open while the registration lives (it is dropped first).
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    match rustix::net::recv(fd, buf, RecvFlags::DONTWAIT) {
        Ok((read, _)) => Ok(read),
        Err(errno) => Err(io::Error::from(errno)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_finds_multishot_polls_and_leaves_only_ignored_completions() {
        // This kernel (the CI's, 5.13 or later) has them: the ring is made.
        let (mut uring, _eventfd) = make_ring().expect("a ring with multishot polls");
        // What the probe left (its removal's completion and its poll's
        // last) carries the user data the table ignores.
        uring.submit_and_wait(2).unwrap();
        let left: Vec<u64> = uring.completion().map(|cqe| cqe.user_data()).collect();
        assert!(!left.is_empty());
        assert!(left.iter().all(|&user_data| user_data == IGNORED_USER_DATA));
        let mut table = Readiness::default();
        for user_data in left {
            let done = table.handle_completion(user_data, -libc::ECANCELED, false);
            assert!(done.wake.is_none() && done.rearm.is_none());
        }
    }

    #[test]
    fn a_fault_is_read_from_its_two_forms_only() {
        let parse = Fault::parse;
        assert_eq!(parse("dropped-after:12"), Some(Fault::DroppedAfter(12)));
        assert_eq!(parse("removal-fails:0"), Some(Fault::RemovalFails(0)));
        assert_eq!(parse("removal-fails"), None);
        assert_eq!(parse("dropped-after:x"), None);
    }
}
