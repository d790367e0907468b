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
//! If the ring cannot be made (an old kernel, limits), connections read
//! through glommio as before; it is logged once. `HUB_READINESS_RING=off`
//! in the environment makes hub read through glommio too (to compare the
//! two, or to rule the ring out).

use std::cell::{Cell, OnceCell, RefCell};
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use glommio::io::BufferedFile;
use io_uring::{cqueue, opcode, squeue, types, IoUring};

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
/// hang-up (a read then returns the end or the error).
const POLL_MASK: u32 = (libc::POLLIN | libc::POLLRDHUP | libc::POLLERR | libc::POLLHUP) as u32;

thread_local! {
    /// The shard's ring, made on the first registration, with the id of
    /// the executor whose task drains it (a thread that runs a second
    /// executor gets a new ring and task).
    static SHARD_RING: OnceCell<(usize, Option<Rc<ReadinessRing>>)> = const { OnceCell::new() };
}

/// Whether the fallback was logged (once per process, not per shard).
static FALLBACK_LOGGED: AtomicBool = AtomicBool::new(false);

/// The environment variable that turns the ring off (`off`).
const DISABLE_VAR: &str = "HUB_READINESS_RING";

fn log_fallback_once(error: &io::Error) {
    if !FALLBACK_LOGGED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            %error,
            "no io_uring for WebSocket read readiness: reading through glommio"
        );
    }
}

struct ReadinessRing {
    ring: RefCell<IoUring>,
    /// The eventfd the kernel bumps per completion, closed with the ring
    /// (glommio's file over it is never dropped: its drop would hand the
    /// close to a reactor that may be gone by then).
    #[allow(dead_code)] // held only to be closed with the ring
    eventfd: OwnedFd,
    table: RefCell<Readiness>,
    /// Readers a drain wakes, kept for the next drain's use.
    wakers: Cell<Vec<Waker>>,
    /// The ring failed after it was made: new connections read through
    /// glommio, and the registered ones were told so.
    failed: Cell<bool>,
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
    let armed = {
        let mut uring = ring.ring.borrow_mut();
        arm(&mut uring, fd, token).and_then(|()| uring.submit().map(drop))
    };
    crate::metrics::with(|m| {
        m.ws_read_ring_connections.inc();
    });
    let registration = Registration { ring, token, fd };
    if let Err(error) = armed {
        // Dropping the registration removes the poll if it did go in.
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
    /// Read into `buf` if the ring says the socket may have bytes: the
    /// count (0 at the end), an error, or pending with the reader's waker
    /// kept. `None`: the ring no longer watches this connection; read
    /// through glommio.
    pub(crate) fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Option<Poll<io::Result<usize>>> {
        loop {
            match self.ring.table.borrow_mut().poll_read_ready(self.token, cx) {
                Poll::Pending => return Some(Poll::Pending),
                Poll::Ready(ReadReadiness::Unwatched) => return None,
                Poll::Ready(ReadReadiness::Ready) => {}
            }
            match recv_nonblocking(self.fd, buf) {
                Ok(n) => {
                    // A short read emptied the socket's receive queue (TCP
                    // copies until the buffer is full or the queue empty),
                    // and any byte that arrives after it wakes the socket,
                    // which makes the multishot poll post a completion that
                    // sets `ready` again. So the next read waits for that
                    // rather than spend a `recv` on EAGAIN. A full buffer
                    // may leave more: stay ready. The end (0) stays ready.
                    if n > 0 && n < buf.len() {
                        self.ring.table.borrow_mut().read_short(self.token);
                    }
                    return Some(Poll::Ready(Ok(n)));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    // Nothing there: wait for the poll (the loop keeps the
                    // waker and returns pending).
                    self.ring.table.borrow_mut().clear_ready(self.token);
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
        let remove = opcode::PollRemove::new(self.token.user_data())
            .build()
            .user_data(IGNORED_USER_DATA);
        let mut uring = self.ring.ring.borrow_mut();
        if push(&mut uring, &remove).is_ok() {
            let _ = uring.submit();
        }
        drop(uring);
        self.ring.table.borrow_mut().deregister(self.token);
        crate::metrics::with(|m| {
            m.ws_read_ring_connections.dec();
        });
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
            ring: RefCell::new(uring),
            eventfd,
            table: RefCell::new(Readiness::default()),
            wakers: Cell::new(Vec::new()),
            failed: Cell::new(false),
        });
        glommio::spawn_local(watch(ring.clone(), file)).detach();
        Some(ring)
    }

    /// Take every completion posted, mark the connections ready, re-arm
    /// the polls that ended, then wake the readers (no borrow held).
    fn drain(&self) {
        let mut wakers = self.wakers.take();
        let mut rearm = Vec::new();
        {
            let mut uring = self.ring.borrow_mut();
            let mut table = self.table.borrow_mut();
            loop {
                for cqe in uring.completion() {
                    let done = table.handle_completion(
                        cqe.user_data(),
                        cqe.result(),
                        cqueue::more(cqe.flags()),
                    );
                    wakers.extend(done.wake);
                    rearm.extend(done.rearm);
                }
                if !uring.submission().cq_overflow() {
                    break;
                }
                // Completions that found the queue full wait in the kernel
                // (NODROP); an enter with GETEVENTS (which `submit` adds
                // when the overflow flag is set) moves them in.
                if uring.submit().is_err() {
                    break;
                }
            }
            if !rearm.is_empty() {
                let armed = rearm
                    .into_iter()
                    .try_for_each(|(fd, token)| arm(&mut uring, fd, token))
                    .and_then(|()| uring.submit().map(drop));
                if let Err(error) = armed {
                    drop((uring, table));
                    self.fail(&error);
                }
            }
        }
        for waker in wakers.drain(..) {
            waker.wake();
        }
        self.wakers.set(wakers);
    }

    /// Give up the ring: every registered reader falls back to glommio.
    fn fail(&self, error: &io::Error) {
        if self.failed.replace(true) {
            return;
        }
        tracing::warn!(%error, "the WebSocket readiness ring failed: reading through glommio");
        let wakers = self.table.borrow_mut().unwatch_all();
        for waker in wakers {
            waker.wake();
        }
    }
}

/// The shard's readiness task: wait for the eventfd, drain, again.
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
    uring.submitter().register_eventfd(fd)?;
    Ok((uring, eventfd))
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
fn recv_nonblocking(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // The system call itself rather than glibc's `recv`, a pthread
    // cancellation point whose bookkeeping costs more instructions than
    // the rest of it (see the flusher's `send_nonblocking`).
    // SAFETY: a recvfrom(2) into a live, writable slice of `buf.len()`
    // bytes, on a descriptor the registration's connection owns, with no
    // address.
    let n = unsafe {
        libc::syscall(
            libc::SYS_recvfrom,
            fd,
            buf.as_mut_ptr(),
            buf.len(),
            libc::MSG_DONTWAIT,
            std::ptr::null_mut::<libc::sockaddr>(),
            std::ptr::null_mut::<libc::socklen_t>(),
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
