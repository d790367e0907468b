//! One loadgen shard: a glommio executor on its own thread, running its
//! share of the clients. What it shares with the main thread are atomics
//! (`Control`, its `Counters`) and a channel of latency histograms; churn
//! clients also reach the publishers on other shards (`ChurnBoard`).

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use glommio::sync::Semaphore;
use hdrhistogram::Histogram;

use crate::args::Args;
use crate::conn::Spec;
use crate::ledger::Settled;
use crate::placement::ClientPlacement;
use crate::stats::{bump, Counters};

/// The moment every timestamp counts from: one clock for all threads.
static BASE: OnceLock<Instant> = OnceLock::new();

pub fn now_ns() -> u64 {
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    /// Connecting and joining rooms.
    Setup = 0,
    /// Sending traffic.
    Run = 1,
    /// No new traffic; the last acks and deliveries arrive.
    Drain = 2,
    /// Close everything.
    Stop = 3,
}

impl Phase {
    fn from_u8(n: u8) -> Phase {
        match n {
            0 => Phase::Setup,
            1 => Phase::Run,
            2 => Phase::Drain,
            _ => Phase::Stop,
        }
    }
}

/// What the main thread steers every shard with.
pub struct Control {
    phase: AtomicU8,
    pub counters: Vec<Counters>,
    /// Members of each room that acknowledged their join.
    pub room_joins: Vec<AtomicU64>,
    /// Room sizes, fixed when setup ends.
    pub room_sizes: OnceLock<Vec<u64>>,
    /// The measured window, by send time in `now_ns` units.
    pub window: OnceLock<(u64, u64)>,
    /// Each shard's latency since its last report.
    pub intervals: crossbeam_channel::Sender<Histogram<u64>>,
    /// What churn subscribers and publishers share.
    pub churn: ChurnBoard,
    /// Per `--url`: connections that completed their handshake, and
    /// attempts that failed (churn: every life, every retry).
    pub url_connects: Vec<AtomicU64>,
    pub url_connect_failures: Vec<AtomicU64>,
}

/// Where churn subscribers and publishers meet, across loadgen shards:
/// each publisher's next sequence number (written by it alone) and its
/// inbox of fence requests.
pub struct ChurnBoard {
    /// Publisher p's next sequence number. Stored (SeqCst) before the
    /// publish it numbers is written, so a subscriber that reads n after
    /// its join's ack knows every publish from n on was written after it.
    pub next_seq: Vec<AtomicU64>,
    /// Publisher p's fence requests.
    pub fences: Vec<(
        crossbeam_channel::Sender<FenceRequest>,
        crossbeam_channel::Receiver<FenceRequest>,
    )>,
    /// Publisher p's connection has ended: it answers nothing more.
    pub gone: Vec<AtomicBool>,
}

impl ChurnBoard {
    fn new(publishers: usize) -> ChurnBoard {
        ChurnBoard {
            next_seq: (0..publishers).map(|_| AtomicU64::new(0)).collect(),
            fences: (0..publishers)
                .map(|_| crossbeam_channel::unbounded())
                .collect(),
            gone: (0..publishers).map(|_| AtomicBool::new(false)).collect(),
        }
    }
}

/// A leaving churn subscriber's request to one publisher.
pub struct FenceRequest {
    /// Publish a fence to this room (the subscriber's private room); `None`
    /// when the subscriber was closed by the server and only asks which
    /// publishes failed below `until`.
    pub room: Option<String>,
    /// The subscriber's first counted sequence number of this publisher:
    /// failures below it are not reported.
    pub from: u64,
    /// Without a room: settle up to here.
    pub until: u64,
    pub reply: crossbeam_channel::Sender<Settled>,
}

impl Control {
    pub fn new(
        shards: usize,
        rooms: usize,
        churn_publishers: usize,
        urls: usize,
        intervals: crossbeam_channel::Sender<Histogram<u64>>,
    ) -> Control {
        Control {
            phase: AtomicU8::new(Phase::Setup as u8),
            counters: (0..shards).map(|_| Counters::default()).collect(),
            room_joins: (0..rooms).map(|_| AtomicU64::new(0)).collect(),
            room_sizes: OnceLock::new(),
            window: OnceLock::new(),
            intervals,
            churn: ChurnBoard::new(churn_publishers),
            url_connects: (0..urls).map(|_| AtomicU64::new(0)).collect(),
            url_connect_failures: (0..urls).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Relaxed))
    }

    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Relaxed);
    }
}

pub fn new_histogram() -> Histogram<u64> {
    // 1 µs to 100 s at 3 significant digits, in nanoseconds.
    Histogram::new_with_bounds(1_000, 100_000_000_000, 3).expect("valid bounds")
}

/// A shard's view of the run, shared by its client tasks.
pub struct Shard {
    pub id: usize,
    pub args: Arc<Args>,
    /// One per `--url`, in order.
    pub specs: Vec<Spec>,
    /// Which of `specs` each client connects to.
    pub placement: ClientPlacement,
    pub control: Arc<Control>,
    /// The phase as this shard last saw it.
    pub phase: Cell<Phase>,
    pub started: Latch,
    /// Handshakes in flight.
    pub gate: Semaphore,
    /// Latency over the measured window.
    pub measured: RefCell<Histogram<u64>>,
    /// Latency since the last report to the main thread.
    pub interval: RefCell<Histogram<u64>>,
}

impl Shard {
    pub fn counters(&self) -> &Counters {
        &self.control.counters[self.id]
    }

    /// The namespace prefix of Socket.IO packets (`/chat,`, or empty): the
    /// same on every URL.
    pub fn nsp(&self) -> &[u8] {
        &self.specs[0].nsp
    }

    /// Where client `index` of the run connects, and the index of its URL.
    pub fn spec_of(&self, index: usize) -> (&Spec, usize) {
        let url = self.placement.url_of_client(&self.args, index);
        (&self.specs[url], url)
    }

    /// Records a latency; the measured window goes by when it was sent.
    pub fn record(&self, sent_ns: u64, now_ns: u64) {
        let latency = now_ns.saturating_sub(sent_ns).max(1);
        self.interval.borrow_mut().saturating_record(latency);
        if let Some(&(start, end)) = self.control.window.get() {
            if sent_ns >= start && sent_ns < end {
                self.measured.borrow_mut().saturating_record(latency);
            }
        }
    }

    /// A delivery received first: counted, its latency recorded. `now` is
    /// the clock read once per batch of packets (0: not read yet).
    pub fn record_delivery(&self, sent_ns: u64, now: &mut u64) {
        bump(&self.counters().deliveries, 1);
        if *now == 0 {
            *now = now_ns();
        }
        self.record(sent_ns, *now);
    }

    /// Follows the main thread's phase and reports latency each second,
    /// until the run stops.
    pub async fn follow(&self) {
        let mut last_report = Instant::now();
        loop {
            glommio::timer::sleep(Duration::from_millis(5)).await;
            let phase = self.control.phase();
            if phase != self.phase.get() {
                self.phase.set(phase);
                if phase >= Phase::Run {
                    self.started.open();
                }
            }
            if last_report.elapsed() >= Duration::from_secs(1) || phase == Phase::Stop {
                last_report = Instant::now();
                let interval = std::mem::replace(&mut *self.interval.borrow_mut(), new_histogram());
                let _ = self.control.intervals.send(interval);
            }
            if phase == Phase::Stop {
                return;
            }
        }
    }
}

/// A one-way gate the client tasks of a shard wait on.
#[derive(Default)]
pub struct Latch {
    open: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl Latch {
    pub fn open(&self) {
        self.open.set(true);
        for waker in self.waiters.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    pub fn is_open(&self) -> bool {
        self.open.get()
    }

    pub async fn wait(&self) {
        futures_lite::future::poll_fn(|cx| {
            if self.open.get() {
                Poll::Ready(())
            } else {
                self.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}
