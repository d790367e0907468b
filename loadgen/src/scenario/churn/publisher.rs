//! A churn publisher: publishes to the shared rooms with acks, paced like
//! fanout's publishers, and answers the fence requests of leaving
//! subscribers (the rule is in `crate::ledger`). All on one WebSocket
//! connection, so its publishes and fences reach the hub in the order they
//! were numbered.

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use crate::conn::{Conn, Outbox};
use crate::ledger::book::{Answered, Book};
use crate::ledger::{room_of, Settled};
use crate::shard::{now_ns, FenceRequest, Phase, Shard};
use crate::stats::{bump, Cause};
use crate::wire::packet::{self, Incoming};

use super::super::pace::Pace;
use super::super::{keepalive, recv_for, sender};

/// The longest a publisher sleeps before it looks at its fence requests.
const FENCE_POLL_NS: u64 = 2_000_000;

pub async fn run(shard: &Shard, conn: &mut Conn, out: &mut Outbox, me: u32) -> Result<(), Cause> {
    let result = publish(shard, conn, out, me).await;
    // Subscribers stop waiting for an answer from a publisher that is gone.
    shard.control.churn.gone[me as usize].store(true, SeqCst);
    result
}

async fn publish(shard: &Shard, conn: &mut Conn, out: &mut Outbox, me: u32) -> Result<(), Cause> {
    let args = &shard.args;
    let nsp = shard.nsp();
    let counters = shard.counters();
    let board = &shard.control.churn;
    let requests = board.fences[me as usize].1.clone();
    let next_seq = &board.next_seq[me as usize];
    sender::wait_for_start(shard, conn, out).await?;

    let publishers = args.publishers;
    let timeout_ns = args.timeout.as_nanos() as u64;
    let mut book: Book<crossbeam_channel::Sender<Settled>> = Book::new(me);
    let mut pace = Pace::new(args.rate, publishers, me);
    let mut closed = false;
    loop {
        let now = now_ns();
        if shard.phase.get() == Phase::Run {
            let emit = |book: &mut Book<_>, out: &mut Outbox| {
                let (id, seq) = book.publish(now);
                // Before the publish is written: see `ChurnBoard::next_seq`.
                next_seq.store(seq + 1, SeqCst);
                let room = room_of(me, seq, publishers, args.rooms);
                out.push_with(|buf| {
                    packet::event_head(nsp, id, buf);
                    buf.extend_from_slice(b"[\"publish\",{\"to\":\"room-");
                    packet::push_decimal(room as u64, buf);
                    buf.extend_from_slice(b"\",\"event\":\"m\",\"data\":\"");
                    packet::stamp(me, seq, now, args.payload_bytes, buf);
                    buf.extend_from_slice(b"\"}]");
                });
                bump(&counters.sent, 1);
            };
            if pace.closed_loop() {
                while book.publishes_in_flight() < args.inflight {
                    emit(&mut book, out);
                }
            } else {
                pace.due(now, |_| emit(&mut book, out));
            }
        }
        while let Ok(request) = requests.try_recv() {
            fence(&mut book, request, now, me, nsp, out);
            bump(&counters.churn.fences, 1);
        }
        let expired = book.expire(now, timeout_ns);
        for _ in 0..expired.publishes + expired.fences {
            counters.error(Cause::AckTimeout);
        }
        bump(&counters.churn.failed, expired.publishes);
        while let Some((reply, settled)) = book.poll_settled() {
            let _ = reply.send(settled); // the subscriber may have given up
        }
        conn.send(out).await?;

        let mut wake = now + FENCE_POLL_NS;
        if let Some(oldest) = book.oldest_sent() {
            wake = wake.min(oldest + timeout_ns);
        }
        if let Some(due) = pace.next_due().filter(|_| shard.phase.get() == Phase::Run) {
            wake = wake.min(due);
        }
        let wait = Duration::from_nanos(wake.saturating_sub(now_ns()));
        recv_for(conn, out, wait, &mut |p, out| {
            if keepalive(p, out) {
                return;
            }
            match packet::classify(p, nsp) {
                Incoming::Ack { id, args } => {
                    let ok = packet::is_ok(args);
                    match book.on_ack(id, ok) {
                        Some(Answered::Publish { ok: true, .. }) => bump(&counters.acks, 1),
                        Some(Answered::Publish { ok: false, .. }) => {
                            bump(&counters.acks, 1);
                            bump(&counters.churn.failed, 1);
                            counters.error(Cause::Refused);
                        }
                        Some(Answered::Fence { ok: false }) => counters.error(Cause::Refused),
                        Some(Answered::Fence { ok: true }) | None => {}
                    }
                }
                Incoming::Close | Incoming::Disconnect => closed = true,
                _ => {}
            }
        })
        .await?;
        if closed {
            return Err(Cause::ServerClosed);
        }
    }
}

/// Writes the fence a subscriber asked for (or, for one the server closed,
/// only notes what to answer).
fn fence(
    book: &mut Book<crossbeam_channel::Sender<Settled>>,
    request: FenceRequest,
    now: u64,
    me: u32,
    nsp: &[u8],
    out: &mut Outbox,
) {
    let Some(room) = request.room else {
        book.ask(request.from, request.until, request.reply);
        return;
    };
    let (id, upto) = book.fence(now, request.from, request.reply);
    out.push_with(|buf| {
        packet::event_head(nsp, id, buf);
        buf.extend_from_slice(b"[\"publish\",{\"to\":\"");
        buf.extend_from_slice(room.as_bytes());
        buf.extend_from_slice(b"\",\"event\":\"f\",\"data\":\"");
        packet::stamp(me, upto, now, 0, buf);
        buf.extend_from_slice(b"\"}]");
    });
}
