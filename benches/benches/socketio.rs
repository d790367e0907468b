//! Socket.IO packets and the broadcast path. Run with
//! `cargo bench -p hub-benches --bench socketio`; it also prints the heap
//! allocations one broadcast makes per recipient, counted by a wrapping
//! allocator (the goal is zero).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hub::server::testing::LocalFanout;
use hub::server::Args;
use hub::socketio::{encode_packet, Decoder, Packet, PacketType, Protocol};
use serde_json::json;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn event_packet() -> Packet {
    Packet {
        kind: PacketType::Event,
        nsp: "/chat".into(),
        query: None,
        id: Some(12),
        data: Some(
            json!(["message", {"room": "lobby", "text": "x".repeat(64), "ts": 1764121234567u64}]),
        ),
        attachments: Vec::new(),
    }
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("socketio_codec");
    group.throughput(Throughput::Elements(1));
    let packet = event_packet();
    let mut text = String::new();
    encode_packet(&packet, &mut text);
    group.bench_function("encode_event", |b| {
        let mut out = String::with_capacity(256);
        b.iter(|| {
            out.clear();
            encode_packet(black_box(&packet), &mut out);
        })
    });
    group.bench_function("decode_event", |b| {
        let mut decoder = Decoder::new(Protocol::V5, 16);
        b.iter(|| decoder.decode_text(black_box(&text)).unwrap().unwrap())
    });
    let binary = r#"51-/chat,["upload",{"name":"a.bin","data":{"_placeholder":true,"num":0}}]"#;
    let attachment = Bytes::from(vec![7u8; 1024]);
    group.bench_function("decode_binary_event_1k", |b| {
        let mut decoder = Decoder::new(Protocol::V5, 16);
        b.iter(|| {
            assert!(decoder.decode_text(black_box(binary)).unwrap().is_none());
            decoder.decode_binary(attachment.clone()).unwrap().unwrap()
        })
    });
    group.finish();
}

fn broadcast(c: &mut Criterion) {
    const SOCKETS: usize = 10_000;
    let fanout = LocalFanout::new(SOCKETS, "room");
    let args = Args::new().arg(json!({"text": "x".repeat(100)}));

    // Warm the outboxes up to their working capacity, then count.
    fanout.emit_to_room("room", "news", args.clone());
    fanout.drain();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    fanout.emit_to_room("room", "news", args.clone());
    let during = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(fanout.drain(), SOCKETS);
    println!(
        "broadcast to {SOCKETS} local sockets: {during} allocations in all, {:.4} per recipient",
        during as f64 / SOCKETS as f64
    );

    let mut group = c.benchmark_group("socketio_broadcast");
    group.throughput(Throughput::Elements(SOCKETS as u64));
    group.bench_function("to_room_10k_local", |b| {
        b.iter(|| {
            fanout.emit_to_room("room", "news", args.clone());
            fanout.drain()
        })
    });
    group.finish();
}

criterion_group!(benches, codec, broadcast);
criterion_main!(benches);
