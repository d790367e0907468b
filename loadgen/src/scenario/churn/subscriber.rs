//! A churn subscriber slot: lives one connection after another until the
//! run drains. Each life connects (WebSocket, or long-polling for
//! --polling-ratio of them), joins its shared rooms and a private room,
//! receives for about --lifetime, fences (`crate::ledger` has the rule),
//! leaves cleanly, abruptly or with a reset, and adds its tally to the
//! shard's counters.

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use rand::Rng;

use crate::args::Transport;
use crate::conn::{Conn, Leave, Outbox};
use crate::ledger::{Copy, End, Ledger, Settled, Tally};
use crate::shard::{now_ns, FenceRequest, Phase, Shard};
use crate::stats::{bump, unbump, Cause, Counters};
use crate::wire::packet::{self, Incoming};

use super::super::{keepalive, open, receiver, recv_for, room_name, rooms_of, within};

/// How long a slot waits before connecting again after a failed connect.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// How often a receiving subscriber looks at the phase.
const PHASE_POLL: Duration = Duration::from_millis(50);

/// How often a leaving subscriber looks for the publishers' answers.
const POLL: Duration = Duration::from_millis(5);

pub async fn run(shard: &Shard, slot: usize) {
    let args = &shard.args;
    let counters = shard.counters();
    let mut settled = false;
    let mut settle = |counters: &Counters| {
        if !std::mem::replace(&mut settled, true) {
            bump(&counters.settled, 1);
        }
    };
    let mut life = 0u64;
    while shard.phase.get() < Phase::Drain {
        let polling = rand::rng().random_bool(args.polling_ratio);
        let transport = if polling {
            Transport::Polling
        } else {
            Transport::Websocket
        };
        let (opened, _) = open(shard, slot, transport).await;
        let (conn, out) = match opened {
            Ok(opened) => opened,
            Err(cause) => {
                counters.error(cause);
                settle(counters);
                glommio::timer::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        bump(&counters.connects, 1);
        bump(&counters.churn.connects, 1);
        bump(&counters.open, 1);
        if polling {
            bump(&counters.churn.polling_connects, 1);
        }
        let lived = Life::new(shard, slot, life)
            .live(conn, out, &mut settle)
            .await;
        unbump(&counters.open, 1);
        life += 1;
        if let Err(cause) = lived {
            counters.error(cause);
        }
    }
    settle(counters);
    bump(&counters.churn.finished, 1);
}

/// One connection of a slot.
struct Life<'a> {
    shard: &'a Shard,
    /// Shared rooms joined, by index.
    rooms: Vec<usize>,
    /// The room only this life is in: fences come there.
    private: String,
    /// Deliveries received, for --drop-every.
    received: u64,
}

/// Why a life stopped receiving.
enum Stopped {
    /// Its time was up, or the run drains.
    Leaving,
    /// The server closed the connection, or it failed.
    Closed(Cause),
}

impl<'a> Life<'a> {
    fn new(shard: &'a Shard, slot: usize, life: u64) -> Life<'a> {
        let args = &shard.args;
        // Consecutive lives of a slot move over the rooms.
        let rooms = rooms_of(slot + life as usize, args.rooms, args.rooms_per_client).collect();
        Life {
            shard,
            rooms,
            private: format!("churn-{slot}-{life}"),
            received: 0,
        }
    }

    /// Joins, receives, fences, leaves; tallies into the shard's counters.
    async fn live(
        mut self,
        mut conn: Conn,
        mut out: Outbox,
        settle: &mut impl FnMut(&Counters),
    ) -> Result<(), Cause> {
        let shard = self.shard;
        let args = &shard.args;
        let counters = shard.counters();
        let churn = &counters.churn;
        let board = &shard.control.churn;
        let mut names: Vec<String> = self.rooms.iter().map(|&r| room_name(r)).collect();
        names.push(self.private.clone());
        let joined = receiver::join_rooms(shard, &mut conn, &mut out, &names).await;
        settle(counters);
        if let Err(cause) = joined {
            // No ledger: nothing was expected of this life.
            if matches!(cause, Cause::ServerClosed | Cause::Io | Cause::Protocol) {
                bump(&churn.by_server, 1);
            } else {
                let _ = within(
                    args.timeout,
                    async {
                        conn.leave(&mut out, shard.nsp(), Leave::Clean).await;
                        Ok(())
                    },
                    Cause::AckTimeout,
                )
                .await;
                bump(&churn.clean, 1);
            }
            return Err(cause);
        }
        // After the join's ack: every publish numbered from here on counts.
        let starts: Vec<u64> = board.next_seq.iter().map(|n| n.load(SeqCst)).collect();
        let mut ledger = Ledger::new(&self.rooms, args.rooms, &starts);

        let lifetime = args.lifetime.mul_f64(rand::rng().random_range(0.5..1.5));
        let mut leave_at = now_ns() + lifetime.as_nanos() as u64;
        let mut stopped = Stopped::Leaving;
        loop {
            if !shard.started.is_open() {
                // Lives count from the start of the run: no publisher answers before.
                leave_at = now_ns() + lifetime.as_nanos() as u64;
            }
            let now = now_ns();
            if now >= leave_at || shard.phase.get() >= Phase::Drain {
                break;
            }
            let wait = PHASE_POLL.min(Duration::from_nanos(leave_at - now));
            if let Err(cause) = self.receive(&mut conn, &mut out, &mut ledger, wait).await {
                stopped = Stopped::Closed(cause);
                break;
            }
        }

        let (replies_tx, replies) = crossbeam_channel::unbounded::<Settled>();
        let publishers = args.publishers as u32;
        let mut asked = vec![false; args.publishers];
        let deadline = Duration::from_nanos(2 * args.timeout.as_nanos() as u64);
        if let Stopped::Leaving = stopped {
            for p in 0..publishers {
                asked[p as usize] = board.fences[p as usize]
                    .0
                    .send(FenceRequest {
                        room: Some(self.private.clone()),
                        from: ledger.start(p),
                        until: 0,
                        reply: replies_tx.clone(),
                    })
                    .is_ok();
            }
            // Publishers settle within --timeout (they time out what is
            // unanswered); twice that covers their wake-ups and the fence's way.
            let give_up = now_ns() + deadline.as_nanos() as u64;
            loop {
                while let Ok(settled) = replies.try_recv() {
                    ledger.on_settled(settled);
                }
                // A publisher that is gone and has not answered never will.
                let waiting = (0..publishers).any(|p| {
                    let hopeless = board.gone[p as usize].load(SeqCst) && !ledger.is_settled(p);
                    ledger.awaits(p) && !hopeless
                });
                if !waiting || now_ns() >= give_up {
                    break;
                }
                if let Err(cause) = self.receive(&mut conn, &mut out, &mut ledger, POLL).await {
                    stopped = Stopped::Closed(cause);
                    break;
                }
            }
        }

        match stopped {
            Stopped::Leaving => {
                let how = choose_leave(args.abrupt_ratio, args.reset_ratio);
                // A clean leave over polling waits for its POST's answer.
                let _ = within(
                    args.timeout,
                    async {
                        conn.leave(&mut out, shard.nsp(), how).await;
                        Ok(())
                    },
                    Cause::AckTimeout,
                )
                .await;
                bump(
                    match how {
                        Leave::Clean => &churn.clean,
                        Leave::Abrupt => &churn.abrupt,
                        Leave::Reset => &churn.reset,
                    },
                    1,
                );
                count_left(counters, &ledger.tally(End::Left));
                Ok(())
            }
            Stopped::Closed(cause) => {
                drop(conn);
                bump(&churn.by_server, 1);
                // Ask the publishers not asked yet which publishes up to the
                // last one received failed.
                for p in 0..publishers {
                    if !asked[p as usize] {
                        let _ = board.fences[p as usize].0.send(FenceRequest {
                            room: None,
                            from: ledger.start(p),
                            until: ledger.received_upto(p),
                            reply: replies_tx.clone(),
                        });
                    }
                }
                let give_up = now_ns() + deadline.as_nanos() as u64;
                loop {
                    while let Ok(settled) = replies.try_recv() {
                        ledger.on_settled(settled);
                    }
                    let waiting = (0..publishers)
                        .any(|p| !ledger.is_settled(p) && !board.gone[p as usize].load(SeqCst));
                    if !waiting || now_ns() >= give_up {
                        break;
                    }
                    glommio::timer::sleep(POLL).await;
                }
                count_closed(counters, &ledger.tally(End::ServerClosed));
                Err(cause)
            }
        }
    }

    /// Receives for at most `wait`, answering pings and recording deliveries.
    async fn receive(
        &mut self,
        conn: &mut Conn,
        out: &mut Outbox,
        ledger: &mut Ledger,
        wait: Duration,
    ) -> Result<(), Cause> {
        let shard = self.shard;
        let nsp = shard.nsp();
        let drop_every = shard.args.drop_every;
        let mut closed = false;
        let received = &mut self.received;
        // One clock read per batch of packets, not per delivery.
        let mut now = 0;
        recv_for(conn, out, wait, &mut |p, out| {
            if keepalive(p, out) {
                return;
            }
            match packet::classify(p, nsp) {
                Incoming::Event(args) => {
                    let Some((event, stamp)) = packet::read_named_delivery(args) else {
                        return;
                    };
                    *received += 1;
                    if drop_every.is_some_and(|n| (*received).is_multiple_of(n)) {
                        return; // testing the accounting: as if it never came
                    }
                    // The guard records the publish; only a first copy goes on.
                    match event {
                        b"m" if ledger.on_publish(stamp.sender, stamp.seq) == Some(Copy::First) => {
                            shard.record_delivery(stamp.nanos, &mut now);
                        }
                        b"f" => ledger.on_fence(stamp.sender, stamp.seq),
                        _ => {}
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
        conn.send(out).await
    }
}

/// Clean, or for `abrupt` of the leaves abrupt, `reset` of those with a RST.
fn choose_leave(abrupt: f64, reset: f64) -> Leave {
    let mut rng = rand::rng();
    if !rng.random_bool(abrupt) {
        Leave::Clean
    } else if rng.random_bool(reset) {
        Leave::Reset
    } else {
        Leave::Abrupt
    }
}

/// A life that left: its tally is the run's.
fn count_left(counters: &Counters, t: &Tally) {
    let c = &counters.churn;
    bump(&counters.expected, t.expected);
    bump(&counters.duplicated, t.duplicated);
    bump(&c.delivered, t.delivered);
    bump(&c.lost, t.lost);
    bump(&c.unexpected, t.unexpected);
    bump(&c.misrouted, t.misrouted);
    bump(&c.fences_lost, t.fences_lost);
    bump(&c.unsettled, t.unsettled);
}

/// A life the server closed: kept apart, except what is wrong whatever
/// the end (duplicates, misrouted messages).
fn count_closed(counters: &Counters, t: &Tally) {
    let c = &counters.churn;
    bump(&c.closed_expected, t.expected);
    bump(&c.closed_delivered, t.delivered);
    bump(&c.closed_lost, t.lost);
    bump(&c.closed_duplicated, t.duplicated);
    bump(&c.closed_unexpected, t.unexpected);
    bump(&counters.duplicated, t.duplicated);
    bump(&c.misrouted, t.misrouted);
    bump(&c.unsettled, t.unsettled);
}
