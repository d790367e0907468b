//! Engine.IO codecs and the session state machine on the message path.

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hub::engineio::payload::{decode_payload, encode_payload};
use hub::engineio::session::{Session, SessionConfig};
use hub::engineio::{Data, Packet, ProtocolVersion, TransportKind};

/// A 100-byte text message, the size the fanout benchmarks use.
fn message() -> String {
    format!("4{}", "x".repeat(99))
}

fn packets(n: usize) -> Vec<Packet> {
    (0..n)
        .map(|_| Packet::Message(Data::Text(message()[1..].into())))
        .collect()
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("engineio_codec");
    let text = message();
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode_text_packet_v4", |b| {
        b.iter(|| Packet::decode_text(ProtocolVersion::V4, black_box(&text)).unwrap())
    });

    let batch = packets(10);
    let v4_body = encode_payload(ProtocolVersion::V4, &batch, true).body;
    let v3_body = encode_payload(ProtocolVersion::V3, &batch, true).body;
    group.throughput(Throughput::Elements(10));
    group.bench_function("encode_payload_v4_10", |b| {
        b.iter(|| encode_payload(ProtocolVersion::V4, black_box(&batch), true))
    });
    group.bench_function("decode_payload_v4_10", |b| {
        b.iter(|| decode_payload(ProtocolVersion::V4, black_box(&v4_body), false).unwrap())
    });
    group.bench_function("decode_payload_v3_10", |b| {
        b.iter(|| decode_payload(ProtocolVersion::V3, black_box(&v3_body), false).unwrap())
    });
    group.finish();
}

fn session(c: &mut Criterion) {
    let mut group = c.benchmark_group("engineio_session");
    group.throughput(Throughput::Elements(1));
    // One message in and one out on a WebSocket session, as an echo does.
    group.bench_function("ws_message_round_trip", |b| {
        let now = Instant::now();
        let mut session = Session::new(
            "AAxxxxxxxxxxxxxxxxxxxxxx",
            ProtocolVersion::V4,
            TransportKind::WebSocket,
            SessionConfig::default(),
            now,
        );
        let mut out = Vec::new();
        session.take_ws_packets(&mut out);
        out.clear();
        b.iter_batched(
            || Packet::Message(Data::Text(message()[1..].into())),
            |packet| {
                session.on_packets([packet], now);
                while let Some(event) = session.poll_event() {
                    if let hub::engineio::session::Event::Message(data) = event {
                        session.send(data).expect("within the budget");
                    }
                }
                session.take_ws_packets(&mut out);
                out.clear();
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, codec, session);
criterion_main!(benches);
