//! Clients that mostly listen: joining rooms, then counting deliveries
//! (fanout subscribers) or just answering pings (idle, connect).

use crate::conn::{Conn, Outbox};
use crate::shard::Shard;
use crate::stats::{bump, Cause, Seen, SeqWindow};
use crate::wire::packet::{self, Incoming};

use super::{keepalive, room_name, rooms_of, within};

/// Joins subscriber `index`'s rooms with one `join` and waits for the ack.
pub async fn join(
    shard: &Shard,
    conn: &mut Conn,
    out: &mut Outbox,
    index: usize,
) -> Result<(), Cause> {
    let args = &shard.args;
    let rooms: Vec<usize> = rooms_of(index, args.rooms, args.rooms_per_client).collect();
    let names: Vec<String> = rooms.iter().map(|&r| room_name(r)).collect();
    join_rooms(shard, conn, out, &names).await?;
    for room in rooms {
        shard.control.room_joins[room].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(())
}

/// Joins `names` with one `join` (ack id 1) and waits for the ack.
pub async fn join_rooms(
    shard: &Shard,
    conn: &mut Conn,
    out: &mut Outbox,
    names: &[String],
) -> Result<(), Cause> {
    let args = &shard.args;
    let nsp = shard.nsp();
    out.push_with(|buf| {
        packet::event_head(nsp, 1, buf);
        buf.extend_from_slice(b"[\"join\",");
        serde_json::to_writer(&mut *buf, names).expect("room names serialize");
        buf.push(b']');
    });
    conn.send(out).await?;
    let mut answer: Option<Result<(), Cause>> = None;
    within(
        args.timeout,
        async {
            while answer.is_none() {
                conn.recv(out, &mut |p, out| {
                    if keepalive(p, out) {
                        return;
                    }
                    match packet::classify(p, nsp) {
                        Incoming::Ack { id: 1, args } if packet::is_ok(args) => {
                            answer = Some(Ok(()))
                        }
                        Incoming::Ack { id: 1, .. } => answer = Some(Err(Cause::Refused)),
                        Incoming::Close | Incoming::Disconnect => {
                            answer = Some(Err(Cause::ServerClosed))
                        }
                        _ => {}
                    }
                })
                .await?;
                conn.send(out).await?;
            }
            Ok(())
        },
        Cause::AckTimeout,
    )
    .await?;
    answer.expect("the loop ends with an answer")
}

/// Reads until the connection ends, answering pings; with `windows` (one
/// per publisher), counts each delivery and its latency.
pub async fn hold(
    shard: &Shard,
    conn: &mut Conn,
    out: &mut Outbox,
    mut windows: Option<Vec<SeqWindow>>,
) -> Result<(), Cause> {
    let nsp = shard.nsp();
    let counters = shard.counters();
    loop {
        let mut closed = false;
        // One clock read per batch of packets, not per delivery.
        let mut now = 0;
        conn.recv(out, &mut |p, out| {
            if keepalive(p, out) {
                return;
            }
            match packet::classify(p, nsp) {
                Incoming::Event(args) => {
                    let (Some(windows), Some(stamp)) =
                        (windows.as_mut(), packet::read_delivery(args))
                    else {
                        return;
                    };
                    let Some(window) = windows.get_mut(stamp.sender as usize) else {
                        return;
                    };
                    match window.record(stamp.seq) {
                        Seen::New => shard.record_delivery(stamp.nanos, &mut now),
                        Seen::Duplicate => bump(&counters.duplicated, 1),
                        Seen::TooOld => bump(&counters.unchecked, 1),
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
        conn.send(out).await?;
    }
}
