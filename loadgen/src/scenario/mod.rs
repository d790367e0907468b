//! The client tasks of every scenario: connect, then receive (fanout
//! subscribers, idle and connect clients) or send with acks (echo clients,
//! fanout publishers).

mod churn;
mod pace;
mod receiver;
mod sender;

use std::rc::Rc;
use std::time::Duration;

use futures_lite::future;

use crate::args::{Scenario, Transport};
use crate::conn::{Conn, Outbox};
use crate::shard::{now_ns, Shard};
use crate::stats::{bump, unbump, Cause};

/// What client number `index` (0-based over the whole run) does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Holds the connection and answers pings.
    Hold,
    /// Joins its rooms and counts deliveries.
    Subscriber,
    /// Emits `echo` with acks.
    Echo,
    /// Publishes to rooms; `0..publishers`.
    Publisher(u32),
    /// A churn subscriber slot: connects, joins, receives, leaves, again.
    Churner,
    /// Publishes to the churn rooms and answers fence requests; `0..publishers`.
    ChurnPublisher(u32),
}

pub fn role(scenario: Scenario, clients: usize, index: usize) -> Role {
    match scenario {
        Scenario::Connect | Scenario::Idle => Role::Hold,
        Scenario::Echo => Role::Echo,
        Scenario::Fanout if index < clients => Role::Subscriber,
        Scenario::Fanout => Role::Publisher((index - clients) as u32),
        Scenario::Churn if index < clients => Role::Churner,
        Scenario::Churn => Role::ChurnPublisher((index - clients) as u32),
    }
}

/// The rooms subscriber `index` joins: `k` consecutive rooms from
/// `index * k`, wrapping, so every room gets the same share.
pub fn rooms_of(index: usize, rooms: usize, per_client: usize) -> impl Iterator<Item = usize> {
    (0..per_client).map(move |j| (index * per_client + j) % rooms)
}

pub fn room_name(room: usize) -> String {
    format!("room-{room}")
}

/// Opens client `index`'s connection over `transport` to its URL (see
/// `crate::placement`), waiting for a handshake slot (--concurrency); also
/// returns when the handshake began. Counts the outcome for the URL.
async fn open(
    shard: &Shard,
    index: usize,
    transport: Transport,
) -> (Result<(Conn, Outbox), Cause>, u64) {
    let args = &shard.args;
    let source = args
        .source_ips
        .as_ref()
        .map(|ips| ips.0[index % ips.0.len()]);
    let (spec, url) = shard.spec_of(index);
    let permit = shard.gate.acquire_permit(1).await;
    let begun = now_ns();
    let opened = within(
        args.timeout,
        Conn::open_over(spec, transport, source),
        Cause::ConnectTimeout,
    )
    .await;
    drop(permit);
    let control = &shard.control;
    let count = match opened {
        Ok(_) => &control.url_connects[url],
        Err(_) => &control.url_connect_failures[url],
    };
    count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    (opened, begun)
}

/// One client from connect to the end of the run (or its first error).
pub async fn client(shard: Rc<Shard>, index: usize) {
    let args = &shard.args;
    let role = role(args.scenario, args.clients, index);
    if role == Role::Churner {
        // It opens a connection per life.
        return churn::subscriber::run(&shard, index).await;
    }
    let transport = match role {
        Role::ChurnPublisher(_) => Transport::Websocket,
        _ => args.transport,
    };
    let (opened, begun) = open(&shard, index, transport).await;
    let counters = shard.counters();
    let (mut conn, mut out) = match opened {
        Ok(opened) => opened,
        Err(cause) => {
            counters.error(cause);
            bump(&counters.settled, 1);
            return;
        }
    };
    bump(&counters.connects, 1);
    bump(&counters.open, 1);
    if args.scenario == Scenario::Connect {
        shard.record(begun, now_ns());
    }
    let result = match role {
        Role::Hold => {
            bump(&counters.settled, 1);
            receiver::hold(&shard, &mut conn, &mut out, None).await
        }
        Role::Subscriber => match receiver::join(&shard, &mut conn, &mut out, index).await {
            Ok(()) => {
                bump(&counters.settled, 1);
                let windows = vec![Default::default(); args.publishers];
                receiver::hold(&shard, &mut conn, &mut out, Some(windows)).await
            }
            Err(cause) => {
                bump(&counters.settled, 1);
                Err(cause)
            }
        },
        Role::Echo | Role::Publisher(_) => {
            bump(&counters.settled, 1);
            sender::run(&shard, &mut conn, &mut out, role, index).await
        }
        Role::ChurnPublisher(p) => {
            bump(&counters.settled, 1);
            churn::publisher::run(&shard, &mut conn, &mut out, p).await
        }
        Role::Churner => unreachable!("returned above"),
    };
    unbump(&counters.open, 1);
    if let Err(cause) = result {
        counters.error(cause);
    }
}

/// Waits at most `limit` for `f`.
async fn within<T>(
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, Cause>>,
    timeout: Cause,
) -> Result<T, Cause> {
    future::or(f, async {
        glommio::timer::sleep(limit).await;
        Err(timeout)
    })
    .await
}

/// Receives what comes, `on` for each packet, until `wait` has passed
/// (or the connection fails).
async fn recv_for(
    conn: &mut Conn,
    out: &mut Outbox,
    wait: Duration,
    on: &mut impl FnMut(&[u8], &mut Outbox),
) -> Result<(), Cause> {
    future::or(conn.recv(out, on), async {
        glommio::timer::sleep(wait).await;
        Ok(())
    })
    .await
}

/// Answers what every client must: the server's pings. True when the
/// packet was one.
fn keepalive(packet: &[u8], out: &mut Outbox) -> bool {
    if packet == b"2" {
        out.push(b"3");
        return true;
    }
    false
}
