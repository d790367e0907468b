//! Clients that send: echo clients emit `echo`, fanout publishers
//! `publish`, each with an ack, paced by --rate (open loop: timestamps are
//! the scheduled send times, so a stalled server shows as latency instead
//! of hiding behind fewer sends) or --inflight at --rate 0 (closed loop).

use std::collections::VecDeque;
use std::time::Duration;

use futures_lite::future;

use crate::conn::{Conn, Outbox};
use crate::shard::{now_ns, Phase, Shard};
use crate::stats::{bump, Cause};
use crate::wire::packet::{self, Incoming};

use super::pace::Pace;
use super::{keepalive, receiver, recv_for, Role};

pub async fn run(
    shard: &Shard,
    conn: &mut Conn,
    out: &mut Outbox,
    role: Role,
    index: usize,
) -> Result<(), Cause> {
    let args = &shard.args;
    let nsp = shard.nsp();
    let counters = shard.counters();
    let (senders, me) = match role {
        Role::Publisher(p) => (args.publishers, p),
        _ => (args.clients, index as u32),
    };
    let timeout_ns = args.timeout.as_nanos() as u64;
    let mut closed = false;
    wait_for_start(shard, conn, out).await?;

    let room_sizes = shard.control.room_sizes.get().cloned().unwrap_or_default();
    let mut pace = Pace::new(args.rate, senders, me);
    let mut outstanding: VecDeque<(u64, u64)> = VecDeque::with_capacity(args.inflight.max(4));
    let mut next_id = 1u64;
    let mut seq = 0u64;
    loop {
        let now = now_ns();
        let running = shard.phase.get() == Phase::Run;
        let mut emit = |at: u64, out: &mut Outbox, outstanding: &mut VecDeque<(u64, u64)>| {
            out.push_with(|buf| {
                packet::event_head(nsp, next_id, buf);
                match role {
                    Role::Publisher(p) => {
                        let room = ((seq * senders as u64 + p as u64) % args.rooms as u64) as usize;
                        buf.extend_from_slice(b"[\"publish\",{\"to\":\"room-");
                        packet::push_decimal(room as u64, buf);
                        buf.extend_from_slice(b"\",\"event\":\"m\",\"data\":\"");
                        packet::stamp_padded(
                            p,
                            seq,
                            at,
                            args.payload_bytes,
                            args.json_padding,
                            buf,
                        );
                        buf.extend_from_slice(b"\"}]");
                        bump(
                            &counters.expected,
                            room_sizes.get(room).copied().unwrap_or(0),
                        );
                    }
                    _ => {
                        buf.extend_from_slice(b"[\"echo\",\"");
                        packet::stamp_padded(
                            me,
                            seq,
                            at,
                            args.payload_bytes,
                            args.json_padding,
                            buf,
                        );
                        buf.extend_from_slice(b"\"]");
                    }
                }
            });
            outstanding.push_back((next_id, at));
            next_id += 1;
            seq += 1;
            bump(&counters.sent, 1);
        };
        if running {
            if pace.closed_loop() {
                while outstanding.len() < args.inflight {
                    emit(now, out, &mut outstanding);
                }
            } else {
                pace.due(now, |due| emit(due, out, &mut outstanding));
            }
        }
        while let Some(&(_, sent)) = outstanding.front() {
            if now < sent + timeout_ns {
                break;
            }
            outstanding.pop_front();
            counters.error(Cause::AckTimeout);
        }
        conn.send(out).await?;
        if !running && shard.phase.get() >= Phase::Drain && outstanding.is_empty() {
            // Done sending: stay connected, as the other clients do, until the run ends.
            return receiver::hold(shard, conn, out, None).await;
        }
        let wake = match outstanding.front() {
            Some(&(_, sent)) => sent + timeout_ns,
            None => now + 20_000_000,
        };
        let wake = match pace.next_due() {
            Some(due) if running => wake.min(due),
            _ => wake,
        };
        let is_echo = role == Role::Echo;
        let wait = Duration::from_nanos(wake.saturating_sub(now_ns()));
        recv_for(conn, out, wait, &mut |p, out| {
            if keepalive(p, out) {
                return;
            }
            match packet::classify(p, nsp) {
                Incoming::Ack { id, args } => {
                    let Some(at) = outstanding.iter().position(|&(i, _)| i == id) else {
                        return;
                    };
                    let (_, sent) = outstanding.remove(at).expect("position is in range");
                    bump(&counters.acks, 1);
                    if is_echo {
                        shard.record(sent, now_ns());
                    } else if !packet::is_ok(args) {
                        counters.error(Cause::Refused);
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

/// Until the run starts, only answers pings.
pub async fn wait_for_start(shard: &Shard, conn: &mut Conn, out: &mut Outbox) -> Result<(), Cause> {
    let nsp = shard.nsp();
    let mut closed = false;
    while !shard.started.is_open() {
        let started = future::or(
            async {
                conn.recv(out, &mut |p, out| {
                    if !keepalive(p, out) && is_end(p, nsp) {
                        closed = true;
                    }
                })
                .await
                .map(|()| false)
            },
            async {
                shard.started.wait().await;
                Ok(true)
            },
        )
        .await?;
        if closed {
            return Err(Cause::ServerClosed);
        }
        conn.send(out).await?;
        if started {
            break;
        }
    }
    Ok(())
}

fn is_end(packet: &[u8], nsp: &[u8]) -> bool {
    matches!(
        packet::classify(packet, nsp),
        Incoming::Close | Incoming::Disconnect
    )
}
