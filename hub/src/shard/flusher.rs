//! Writes for parked WebSocket writers, by one task per shard.
//!
//! A broadcast reaches many sessions whose writers wait with nothing to
//! write. Waking each writer costs a task switch, its `wait` torn down and
//! armed again and a dispatch, per recipient (some 1,500 instructions, more
//! than the delivery itself when few messages go in a write). Instead a send
//! to a session whose writer is parked queues the session here
//! (`engine::WriteQueue`), and this shard's flusher, woken once for
//! the whole walk, writes each queued session's outbox with one `send`: the
//! packets of every publish before it ran go in that one write, as they did
//! in the writer's. The writer stays parked, its read still armed.
//!
//! Only what cannot block is done here: a nonblocking `send` to a plain
//! connection without compression (the writer parks only then). A write
//! that does not complete, a closed session, an error: the bytes not written
//! are handed back to the writer, woken, which writes them first and races
//! the session's close as it always does.

use std::os::fd::{BorrowedFd, RawFd};
use std::rc::Rc;

use rustix::net::SendFlags;

use super::buffers;
use super::websocket::{frame_packet, WRITE_BATCH};
use crate::engine::{Frames, SessionEntry, WriteQueue};
use crate::engineio::packet::{Data, Packet};
use crate::engineio::session::Session;

/// How many sessions the flusher writes between two checks of its time
/// slice.
const YIELD_EVERY: usize = 64;

/// The shard's flusher task: it writes for the sessions queued on this
/// thread's `WriteQueue`.
pub(crate) async fn run() {
    let queue = WriteQueue::current();
    let mut batch = Vec::new();
    let mut out = Vec::new();
    loop {
        let listen = queue.ready.listen();
        let frames = queue.take(&mut batch);
        if batch.is_empty() {
            queue.release_frames(frames);
            // Nothing held between rounds: the buffer goes back to the pool.
            buffers::give_write(std::mem::take(&mut out));
            listen.await;
            continue;
        }
        // The bytes written leave the gauge once per round, not per session.
        let mut gauge_change = 0;
        // A round over many sessions gives the shard's other tasks (timers,
        // reads, the mesh) their turn when its time slice is up, as the
        // writers' own tasks did: checked every `YIELD_EVERY` sessions, so
        // a short round pays nothing. The sessions not yet written stay in
        // `batch`, each still marked queued, so none is queued twice
        // meanwhile.
        let mut done = 0;
        while done < batch.len() {
            let end = batch.len().min(done + YIELD_EVERY);
            // The frames are borrowed for the sessions of one turn (nothing
            // in it starts a broadcast, which would add one).
            gauge_change += WriteQueue::with_frames(|frames| {
                write_sessions(&batch[done..end], frames, &mut out)
            });
            done = end;
            if done < batch.len() {
                glommio::yield_if_needed().await;
            }
        }
        batch.clear();
        // Every lone packet of the round is written or copied: their
        // broadcasts' texts go.
        queue.release_frames(frames);
        if gauge_change != 0 {
            crate::metrics::with(|m| {
                m.outgoing_buffered_bytes.inc_by(gauge_change);
            });
        }
    }
}

/// Write the outboxes of `sessions` whose writers are still parked, and
/// their lone packets, whose frames `frames` holds; the change to the
/// buffered-bytes gauge. Out of line, for the per-function figures of
/// `scripts/instructions`.
#[inline(never)]
fn write_sessions(sessions: &[Rc<SessionEntry>], frames: &Frames, out: &mut Vec<u8>) -> i64 {
    let mut gauge_change = 0;
    for entry in sessions {
        if let Some(fd) = entry.take_write_turn() {
            if out.capacity() == 0 {
                *out = buffers::take_write();
            }
            match entry.take_lone_frame() {
                Some(index) => write_lone(entry, fd, frames.frame(index), out),
                None => write_parked(entry, fd, out),
            }
            gauge_change += entry.buffered_gauge_change();
        }
    }
    gauge_change
}

/// Write the lone packet `frame` of `entry` (a broadcast's frame, shared),
/// and then what is queued behind it. As [`write_parked`] otherwise.
#[inline(always)]
fn write_lone(entry: &SessionEntry, fd: RawFd, frame: &[u8], out: &mut Vec<u8>) {
    let mut session = entry.session.borrow_mut();
    if session.is_closed() {
        // The writer writes it, the last packets and the close.
        drop(session);
        out.extend_from_slice(frame);
        entry.hand_back(std::mem::take(out));
        return;
    }
    if session.outbox_len() != 0 {
        // More behind it: one write for all, as for packets queued.
        out.extend_from_slice(frame);
        drop(session);
        write_parked(entry, fd, out);
        return;
    }
    // The frame goes to the socket from where it is shared; only what the
    // socket did not take is copied, for the writer.
    let written = send_nonblocking(fd, frame);
    if written == frame.len() {
        session.on_ws_written();
    } else {
        drop(session);
        out.extend_from_slice(&frame[written..]);
        entry.hand_back(std::mem::take(out));
    }
}

/// Write the outbox of `entry`, whose writer is parked on `fd`, behind
/// what `out` holds already (a lone packet's frame, or nothing). `out` is
/// empty on return, or taken (handed back to the writer). The caller brings
/// the buffered-bytes gauge in line.
fn write_parked(entry: &SessionEntry, fd: RawFd, out: &mut Vec<u8>) {
    let mut session = entry.session.borrow_mut();
    if session.is_closed() {
        // The writer writes the last packets and the close.
        drop(session);
        let unwritten = if out.is_empty() {
            Vec::new()
        } else {
            std::mem::take(out)
        };
        entry.hand_back(unwritten);
        return;
    }
    let version = session.version();
    if session.outbox_len() == 1 && out.is_empty() {
        // One packet queued (each delivery its own write, as at low
        // batching): a broadcast's frame goes to the socket from where it
        // is shared, not copied into `out` first; only what the socket did
        // not take is copied, for the writer.
        if send_one_packet(&mut session, fd, out) == Some(SentFrom::Frame) {
            if out.is_empty() {
                session.on_ws_written();
            } else {
                drop(session);
                entry.hand_back(std::mem::take(out));
            }
            return;
        }
        // Anything else was framed into `out`, and is written below.
    }
    loop {
        session.take_ws_batch(|packet| {
            frame_packet(packet, version, out);
            out.len() < WRITE_BATCH
        });
        if out.is_empty() {
            break;
        }
        let written = send_nonblocking(fd, out);
        if written < out.len() {
            // The peer's window is full (or the connection failed: the
            // writer's own write finds out). The taken bytes still count
            // against the budget until the writer has written them.
            out.drain(..written);
            drop(session);
            entry.hand_back(std::mem::take(out));
            return;
        }
        out.clear();
        session.on_ws_written();
        if !session.has_ws_packets() {
            break;
        }
    }
}

/// How [`send_one_packet`] wrote the packet it took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SentFrom {
    /// From the text's own frame, to the socket (only what the socket did
    /// not take was copied into `out`).
    Frame,
    /// Framed into `out`, not written yet.
    Out,
}

/// Take the first packet of `session`'s outbox, if the WebSocket may take
/// one now: a text message framed once (an ack, a broadcast's shared text)
/// is sent to `fd` from its frame with one nonblocking `send`, only what the
/// socket does not take copied into `out`; any other packet is framed into
/// `out`. `None` when nothing was taken. Shared by the flusher (a parked
/// writer's one packet) and the writer itself (its lone ack).
pub(super) fn send_one_packet(
    session: &mut Session,
    fd: RawFd,
    out: &mut Vec<u8>,
) -> Option<SentFrom> {
    let version = session.version();
    let mut sent = None;
    session.take_ws_batch(|packet| {
        sent = Some(match packet {
            Packet::Message(Data::Text(text)) => match text.ws_message_frame() {
                Some(frame) => {
                    let written = send_nonblocking(fd, frame);
                    out.extend_from_slice(&frame[written..]);
                    SentFrom::Frame
                }
                None => {
                    frame_packet(Packet::Message(Data::Text(text)), version, out);
                    SentFrom::Out
                }
            },
            other => {
                frame_packet(other, version, out);
                SentFrom::Out
            }
        });
        false
    });
    sent
}

/// `send` without blocking: the bytes written (fewer on a full window or
/// an error, which the writer, retrying, sees for itself). Always inlined:
/// out of line, its call and saved registers cost 30 instructions per
/// delivery at fanout-1 (`scripts/instructions`).
#[inline(always)]
pub(super) fn send_nonblocking(fd: RawFd, bytes: &[u8]) -> usize {
    let mut written = 0;
    while written < bytes.len() {
        let rest = &bytes[written..];
        match sendto(fd, rest) {
            Ok(n) if n > 0 => written += n,
            Err(rustix::io::Errno::INTR) => {}
            _ => break,
        }
    }
    written
}

/// sendto(2) of `bytes` to the connected socket `fd`, nonblocking and
/// without SIGPIPE: the bytes written, or the error.
///
/// Through rustix, which issues the system call itself, rather than
/// glibc's `send`: the wrapper is a pthread cancellation point, and
/// switching asynchronous cancellation on and off around the call costs
/// more instructions than the rest of it (measured with callgrind: 57 of
/// its 85 per call); hub never cancels a thread. Out of line, so that
/// `scripts/instructions` counts the writes by its calls.
#[inline(never)]
fn sendto(fd: RawFd, bytes: &[u8]) -> rustix::io::Result<usize> {
    // SAFETY: the descriptor is a connection's, open for this call: a
    // parked writer's (the writer unparks before it closes it) or the
    // calling writer's own.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    rustix::net::send(fd, bytes, SendFlags::DONTWAIT | SendFlags::NOSIGNAL)
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    use super::*;
    use crate::engine::{BroadcastSends, Echo, Socket};
    use crate::engineio::{ProtocolVersion, Sid, Text, TransportKind};

    /// A lone broadcast is written from its shared frame, and a packet
    /// queued behind it goes in the same write, after it; the session then
    /// holds nothing.
    #[test]
    fn lone_packets_are_written_first_and_whole() {
        let (ours, mut peer) = UnixStream::pair().unwrap();
        let mut sessions = Vec::new();
        for _ in 0..2 {
            let entry = SessionEntry::detached(
                Sid::generate(0),
                ProtocolVersion::V4,
                TransportKind::WebSocket,
                Rc::new(Echo),
            );
            entry.session.borrow_mut().take_ws_packets(&mut Vec::new());
            entry.park_writer(ours.as_raw_fd());
            sessions.push(Socket(entry));
        }
        let text = Text::framed_message("lone");
        let mut sends = BroadcastSends::new(&text);
        for socket in &sessions {
            assert!(socket.send_broadcast_text(&mut sends));
        }
        drop(sends);
        let behind = Text::framed_message("behind");
        let mut sends = BroadcastSends::new(&behind);
        assert!(sessions[1].send_broadcast_text(&mut sends));
        drop(sends);

        let queue = WriteQueue::current();
        let mut batch = Vec::new();
        let mark = queue.take(&mut batch);
        assert_eq!(batch.len(), 2);
        let mut out = Vec::new();
        let change = WriteQueue::with_frames(|frames| write_sessions(&batch, frames, &mut out));
        queue.release_frames(mark);
        assert!(out.is_empty(), "everything written");
        // The walks' tallies raised the gauge by what they queued.
        assert_eq!(change, -((2 * text.len() + behind.len()) as i64));
        for socket in &sessions {
            assert_eq!(socket.buffered(), 0);
            assert_eq!(socket.buffered_bytes(), 0);
        }
        let lone = text.ws_message_frame().unwrap();
        let expected = [lone, lone, behind.ws_message_frame().unwrap()].concat();
        let mut received = vec![0; expected.len()];
        peer.read_exact(&mut received).unwrap();
        assert_eq!(received, expected);
    }
}
