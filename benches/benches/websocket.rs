//! WebSocket frames: decoding masked client frames, encoding server frames.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hub::ws::codec::{encode_text, Decoder};

/// A masked client text frame of `len` bytes, as browsers send.
fn client_frame(len: usize) -> Vec<u8> {
    let payload = vec![b'x'; len];
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut frame = vec![0x81];
    if len < 126 {
        frame.push(0x80 | len as u8);
    } else {
        frame.push(0x80 | 126);
        frame.extend_from_slice(&(len as u16).to_be_bytes());
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

fn frames(c: &mut Criterion) {
    let mut group = c.benchmark_group("websocket");
    for len in [100usize, 4096] {
        let frame = client_frame(len);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(format!("decode_masked_text_{len}"), |b| {
            let mut decoder = Decoder::new(1 << 20);
            b.iter_batched(
                || BytesMut::from(&frame[..]),
                |mut buf| decoder.decode(black_box(&mut buf)).unwrap().unwrap(),
                BatchSize::SmallInput,
            )
        });
        let payload = vec![b'x'; len];
        let mut out = Vec::with_capacity(len + 16);
        group.bench_function(format!("encode_text_{len}"), |b| {
            b.iter(|| {
                out.clear();
                encode_text(black_box(&payload), &mut out);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, frames);
criterion_main!(benches);
