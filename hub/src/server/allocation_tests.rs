//! Heap allocations per echo (an event with an ack, answered with its own
//! arguments, as the relay's `echo`), counted by a wrapping allocator, so
//! that the count per message does not creep back up.
//!
//! The allocator counts only on a thread that asked it to: the other tests
//! of this binary run at the same time on other threads.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use super::io::Io;
use super::shard::SioShard;
use super::testing::TestClient;
use crate::engine::{Data, Handler};
use crate::engineio::Text;

struct Counting;

thread_local! {
    /// Allocations on this thread while counting, `None` when not counting.
    static COUNT: Cell<Option<u64>> = const { Cell::new(None) };
    /// Heap bytes taken minus given back on this thread while weighing,
    /// `None` when not weighing, in glibc's chunks (see [`chunk`]).
    static HELD: Cell<Option<i64>> = const { Cell::new(None) };
}

/// What glibc's malloc takes for `size` bytes: the size and 8 bytes of
/// header, rounded up to 16, at least 32. An idle connection's cost is
/// these chunks (plus its share of the maps), so its allocations are
/// weighed as chunks: a struct 8 bytes over a boundary costs 16.
fn chunk(size: usize) -> i64 {
    ((size + 8).div_ceil(16) * 16).max(32) as i64
}

fn weigh(delta: i64) {
    let _ = HELD.try_with(|held| {
        if let Some(n) = held.get() {
            held.set(Some(n + delta));
        }
    });
}

fn count_one() {
    // `try_with`: a thread being torn down has no slot left; it does not count.
    let _ = COUNT.try_with(|c| {
        if let Some(n) = c.get() {
            c.set(Some(n + 1));
        }
    });
}

// SAFETY: every call is passed on to `System` as is; counting touches a
// const-initialised thread-local `Cell` only, which does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        weigh(chunk(layout.size()));
        // SAFETY: the caller's guarantees for `layout` are `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        weigh(-chunk(layout.size()));
        // SAFETY: `ptr` came from `System` with `layout` (every allocation does).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        weigh(chunk(new_size) - chunk(layout.size()));
        // SAFETY: as for `dealloc`, and the caller's guarantees for `new_size`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations `f` makes on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    COUNT.with(|c| c.set(Some(0)));
    f();
    COUNT.with(|c| c.replace(None)).unwrap_or(0)
}

/// A server whose `/` answers `echo` with its own arguments.
fn echo_io() -> Io {
    Io::builder()
        .of("/", |nsp| {
            nsp.on_connection(|socket| {
                socket.on("echo", |_, args, ack| {
                    if let Some(ack) = ack {
                        ack.send(args);
                    }
                });
            })
        })
        .build()
}

/// A client of a shard whose `/` answers `echo` with its own arguments.
fn echo_client() -> (std::rc::Rc<SioShard>, TestClient) {
    let io = echo_io();
    let shard = SioShard::new(io.config.clone(), 0);
    let client = TestClient::new(&shard);
    assert!(client.connect("/").starts_with(r#"0{"sid""#));
    (shard, client)
}

/// An Engine.IO message as the WebSocket reader hands it over: the frame's
/// text, its type byte left out without a copy.
fn message(text: String) -> Data {
    Data::Text(Text::from_string_tail(text, 1))
}

#[test]
fn an_echo_allocates_only_its_answer() {
    let (shard, client) = echo_client();
    let payload = "x".repeat(100);
    let texts = |n: u64| -> Vec<Data> {
        (0..n)
            .map(|id| message(format!(r#"42{id}["echo","{payload}",{{"n":1.50}}]"#)))
            .collect()
    };
    // Warm up: the session's queue and the encoder's scratch grow once.
    for data in texts(8) {
        shard.on_message(&client.conn, data);
    }
    assert_eq!(client.sent().len(), 8);

    const ECHOES: u64 = 100;
    let mut counted = 0;
    let mut answers = Vec::new();
    for data in texts(ECHOES) {
        counted += allocations(|| shard.on_message(&client.conn, data));
        // Taken after each, not counted: the queue stays as warmed up.
        answers.extend(client.sent());
    }
    assert_eq!(answers.len(), ECHOES as usize);
    // The arguments go back as they came (`1.50` is not re-spelled).
    assert_eq!(answers[0], format!(r#"30["{payload}",{{"n":1.50}}]"#));
    // One allocation per echo: the answer's framed text. Not the namespace,
    // the arguments (kept as received text), the ack's state or a header.
    assert_eq!(counted, ECHOES, "{counted} allocations for {ECHOES} echoes");
}

/// Heap bytes (glibc chunks) that `f` takes and keeps, on this thread.
fn held_bytes(f: impl FnOnce()) -> i64 {
    HELD.with(|held| held.set(Some(0)));
    f();
    HELD.with(|held| held.replace(None)).unwrap_or(0)
}

#[test]
fn an_idle_client_holds_what_it_did() {
    let io = echo_io();
    let shard = SioShard::new(io.config.clone(), 0);
    // Enough clients that the maps' growth is spread over them as on a
    // loaded shard (about half full, as at 7,500 sessions a shard).
    const CLIENTS: usize = 1000;
    let mut clients = Vec::with_capacity(CLIENTS);
    let held = held_bytes(|| {
        for _ in 0..CLIENTS {
            let client = TestClient::new(&shard);
            client.send_through_session("0");
            assert!(client.sent()[0].starts_with(r#"0{"sid""#));
            clients.push(client);
        }
    });
    let per_client = held / CLIENTS as i64;
    // Measured at 1,771 bytes (the session's state machine and entry, the
    // handshake, the client, its socket in `/` with its listener and its
    // own room, the maps' share, and this harness's host); 2,107 before
    // the session's events, the socket's rooms and the client's sockets
    // had room for one in place, the socket's ack table and v2 CONNECT
    // query were boxed, and a listener took 40 bytes rather than 48.
    // The WebSocket task, glommio's poll and the engine's maps are not in
    // it (see docs/benchmarks.md, "Issue 15, second round: idle memory").
    assert!(
        per_client <= 1_820,
        "an idle client holds {per_client} bytes of heap"
    );
}
