//! The benchmark floor: the least a server can do for loadgen's fanout and
//! echo scenarios (Engine.IO v4 / Socket.IO v5 over WebSocket, text only:
//! join, leave, publish, echo), on hub's runtime: one glommio executor per
//! shard, each with its own `SO_REUSEPORT` listener. A publish builds one
//! frame and queues that same buffer to every member; other shards get it
//! over glommio's lock-free shared channels.

mod conn;
mod frame;
mod relay;

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use clap::Parser;
use glommio::channels::shared_channel;
use glommio::net::TcpListener;
use glommio::timer::Timer;
use glommio::{LocalExecutorBuilder, Placement};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use relay::{PostReceiver, PostSender, Shard};

/// Posts in flight from one shard to another before they wait in the sender's backlog.
const CHANNEL_CAPACITY: usize = 4096;

#[derive(Parser, Clone)]
#[command(
    name = "floor",
    about = "The benchmark floor: a minimal Socket.IO relay"
)]
struct Args {
    #[arg(long, default_value_t = 3000)]
    port: u16,
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Executors, each with its own listener on the port.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    shards: u16,
    /// Milliseconds between pings.
    #[arg(long, default_value_t = 25_000)]
    ping_interval: u64,
    /// Milliseconds, announced to clients (not enforced).
    #[arg(long, default_value_t = 20_000)]
    ping_timeout: u64,
}

fn main() {
    let args = Args::parse();
    let mut signals = Signals::new([SIGTERM, SIGINT])
        .unwrap_or_else(|e| fail(&format!("cannot catch signals: {e}")));
    let count = args.shards as usize;
    // One channel per ordered pair of shards: senders[from], receivers[to].
    let mut senders: Vec<Vec<PostSender>> = (0..count).map(|_| Vec::new()).collect();
    let mut receivers: Vec<Vec<PostReceiver>> = (0..count).map(|_| Vec::new()).collect();
    for (from, outgoing) in senders.iter_mut().enumerate() {
        for (to, incoming) in receivers.iter_mut().enumerate() {
            if to != from {
                let (tx, rx) = shared_channel::new_bounded(CHANNEL_CAPACITY);
                outgoing.push(tx);
                incoming.push(rx);
            }
        }
    }
    // glommio locks io_memory per executor; stay within the locked-memory limit (as hub does).
    let io_memory = ((6 << 20) / count).clamp(256 << 10, 1 << 20);
    let (bound_tx, bound_rx) = mpsc::channel::<Result<SocketAddr, String>>();
    let mut addr = SocketAddr::new(args.bind, args.port);
    let mut handles = Vec::with_capacity(count);
    for (id, (tx, rx)) in senders.into_iter().zip(receivers).enumerate() {
        let bound_tx = bound_tx.clone();
        let args = args.clone();
        let spawned = LocalExecutorBuilder::new(Placement::Unbound)
            .name(&format!("floor-{id}"))
            .io_memory(io_memory)
            .spawn(move || run_shard(id, addr, args, tx, rx, bound_tx));
        handles.push(spawned.unwrap_or_else(|e| fail(&format!("cannot start shard {id}: {e}"))));
        // Shard 0 learns the port (it may be 0); the others join it.
        addr = match bound_rx.recv() {
            Ok(Ok(bound)) => bound,
            Ok(Err(message)) => fail(&message),
            Err(_) => fail(&format!("shard {id} stopped")),
        };
    }
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "listening on {}:{}", addr.ip(), addr.port());
    let _ = stdout.flush();

    // Nothing to drain: on the first signal, just exit.
    if signals.forever().next().is_some() {
        std::process::exit(0);
    }
    for handle in handles {
        let _ = handle.join();
    }
}

fn fail(message: &str) -> ! {
    eprintln!("floor: {message}");
    std::process::exit(1);
}

async fn run_shard(
    id: usize,
    addr: SocketAddr,
    args: Args,
    senders: Vec<PostSender>,
    receivers: Vec<PostReceiver>,
    bound_tx: mpsc::Sender<Result<SocketAddr, String>>,
) {
    let listener = match TcpListener::bind(addr) {
        Ok(listener) => listener,
        Err(e) => {
            let _ = bound_tx.send(Err(format!("cannot listen on {addr}: {e}")));
            return;
        }
    };
    let _ = bound_tx.send(Ok(listener.local_addr().unwrap_or(addr)));
    let shard = Rc::new(Shard::new(
        id,
        senders.len(),
        args.ping_interval,
        args.ping_timeout,
    ));
    // Connecting a shared channel waits for the other side: each in its own task.
    for (index, tx) in senders.into_iter().enumerate() {
        glommio::spawn_local(relay::pump(shard.clone(), index, tx)).detach();
    }
    for rx in receivers {
        glommio::spawn_local(relay::receive(shard.clone(), rx)).detach();
    }
    let pinger = shard.clone();
    glommio::spawn_local(async move {
        let interval = Duration::from_millis(pinger.ping_interval.max(1));
        loop {
            Timer::new(interval).await;
            pinger.ping_all();
        }
    })
    .detach();
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(conn::serve(shard.clone(), stream)).detach();
            }
            // Out of descriptors, say: back off instead of spinning.
            Err(_) => {
                Timer::new(Duration::from_millis(20)).await;
            }
        }
    }
}
