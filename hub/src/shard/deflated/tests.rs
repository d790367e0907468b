use super::*;
use crate::engineio::Data;

fn deflating() -> Deflating {
    Deflating {
        threshold: 1024,
        window_bits: 15,
        plain_binary: false,
    }
}

fn made() -> usize {
    FRAMES.with(|f| f.borrow().made)
}

/// The payload of a server frame written by `push`.
fn payload(frame: &[u8]) -> &[u8] {
    let head = codec::server_head_len(frame.len() - 2);
    &frame[head..]
}

fn records(n: usize) -> String {
    let mut s = String::new();
    let mut i = 0;
    while s.len() < n {
        s.push_str(&format!("{{\"id\":{i},\"user\":\"u{}\"}},", i % 31));
        i += 1;
    }
    s.truncate(n);
    s
}

#[test]
fn a_broadcast_is_compressed_once_for_all_its_recipients() {
    let text = Text::framed_message(&records(4000));
    let before = made();
    let mut frames = Vec::new();
    for _ in 0..100 {
        // Each recipient has its own clone, as each outbox does.
        let data = Data::Text(text.clone());
        let mut out = Vec::new();
        assert!(deflating().push(&data, ProtocolVersion::V4, &mut out));
        frames.push(out);
    }
    assert_eq!(made() - before, 1, "compressed once");
    assert!(frames.iter().all(|f| *f == frames[0]));
    assert_eq!(frames[0][0], 0xc1, "FIN, RSV1, text");
    let whole = format!("4{}", &*text);
    assert_eq!(
        deflate::inflate(payload(&frames[0]), 1 << 20).unwrap(),
        whole.as_bytes()
    );
    // Another message is another frame; the first is still held.
    let other = Text::framed_message(&records(3000));
    assert!(deflating().push(&Data::Text(other), ProtocolVersion::V4, &mut Vec::new()));
    let mut again = Vec::new();
    assert!(deflating().push(&Data::Text(text.clone()), ProtocolVersion::V4, &mut again));
    assert_eq!(again, frames[0]);
    assert_eq!(made() - before, 2);
}

#[test]
fn a_broadcast_attachment_is_compressed_once_per_protocol() {
    let mut d = deflating();
    let attachment = bytes::Bytes::from(records(3000).into_bytes());
    let before = made();
    let mut frames = Vec::new();
    for version in [ProtocolVersion::V4, ProtocolVersion::V3] {
        for _ in 0..50 {
            let mut out = Vec::new();
            assert!(d.push(&Data::Binary(attachment.clone()), version, &mut out));
            frames.push(out);
        }
    }
    // Once for v4 clients, once for v3 ones (their payload has a `4` in front).
    assert_eq!(made() - before, 2);
    let (v4, v3) = (&frames[0], &frames[50]);
    assert!(frames[..50].iter().all(|f| f == v4));
    assert!(frames[50..].iter().all(|f| f == v3));
    assert_eq!(deflate::inflate(payload(v4), 1 << 20).unwrap(), attachment);
    let mut want = vec![4u8];
    want.extend_from_slice(&attachment);
    assert_eq!(deflate::inflate(payload(v3), 1 << 20).unwrap(), want);
    // Equal bytes in another allocation are another message: compressed
    // again, to the same frame.
    let copy = bytes::Bytes::from(records(3000).into_bytes());
    let mut out = Vec::new();
    assert!(d.push(&Data::Binary(copy), ProtocolVersion::V4, &mut out));
    assert_eq!(&out, v4);
    assert_eq!(made() - before, 3);
}

#[test]
fn what_goes_plain() {
    let mut d = deflating();
    let mut out = Vec::new();
    // Under the threshold (the `4` counts): 1022 + 1 bytes.
    let short = Text::framed_message(&records(1022));
    assert!(!d.push(&Data::Text(short), ProtocolVersion::V4, &mut out));
    let at = Text::framed_message(&records(1023));
    assert!(d.push(&Data::Text(at), ProtocolVersion::V4, &mut out));
    // compress(false).
    out.clear();
    let flagged = Text::framed_message(&records(5000)).without_compression();
    assert!(!d.push(&Data::Text(flagged), ProtocolVersion::V4, &mut out));
    assert!(out.is_empty());
    // ...and the attachments behind it, until the next text.
    let attachment = Data::Binary(vec![1u8; 5000].into());
    assert!(!d.push(&attachment, ProtocolVersion::V4, &mut out));
    assert!(out.is_empty());
    assert!(d.push(
        &Data::Text(Text::framed_message(&records(2000))),
        ProtocolVersion::V4,
        &mut out
    ));
    assert!(d.push(&attachment, ProtocolVersion::V4, &mut out));
    out.clear();
    // What does not shrink.
    let mut rng = crate::test_rng::Rng(3);
    let noise: Vec<u8> = (0..5000).map(|_| rng.next() as u8).collect();
    assert!(!d.push(&Data::Binary(noise.into()), ProtocolVersion::V4, &mut out));
    assert!(out.is_empty());
}

#[test]
fn binary_and_unframed_text_and_other_windows() {
    let mut d = deflating();
    // v3 binary carries its type byte inside the compressed payload.
    let data = vec![5u8; 3000];
    for (version, head) in [
        (ProtocolVersion::V4, &[][..]),
        (ProtocolVersion::V3, &[4u8][..]),
    ] {
        let mut out = Vec::new();
        assert!(d.push(&Data::Binary(data.clone().into()), version, &mut out));
        assert_eq!(out[0], 0xc2, "FIN, RSV1, binary");
        let mut want = head.to_vec();
        want.extend_from_slice(&data);
        assert_eq!(deflate::inflate(payload(&out), 1 << 20).unwrap(), want);
    }
    // A text not framed once for many (an engine-level send), and a 10-bit
    // window: compressed for the connection, not kept.
    let before = made();
    let plain = Text::from(records(2000));
    let mut out = Vec::new();
    assert!(d.push(&Data::Text(plain.clone()), ProtocolVersion::V4, &mut out));
    assert_eq!(
        deflate::inflate(payload(&out), 1 << 20).unwrap(),
        format!("4{}", &*plain).as_bytes()
    );
    let mut narrow = Deflating {
        window_bits: 10,
        ..d
    };
    let framed = Text::framed_message(&records(2000));
    assert!(narrow.push(&Data::Text(framed), ProtocolVersion::V4, &mut Vec::new()));
    assert_eq!(made(), before);
}

#[test]
fn the_cache_is_bounded() {
    let mut d = deflating();
    let texts: Vec<Text> = (0..MAX_FRAMES + 5)
        .map(|i| Text::framed_message(&format!("{i}{}", records(2000))))
        .collect();
    for t in &texts {
        assert!(d.push(&Data::Text(t.clone()), ProtocolVersion::V4, &mut Vec::new()));
    }
    FRAMES.with(|f| {
        let f = f.borrow();
        assert!(f.entries.len() <= MAX_FRAMES);
        assert!(f.bytes <= MAX_BYTES);
    });
    // One large message over the byte bound alone is still held (the last one).
    let big = Text::framed_message(&records(MAX_BYTES + 10));
    assert!(d.push(
        &Data::Text(big.clone()),
        ProtocolVersion::V4,
        &mut Vec::new()
    ));
    FRAMES.with(|f| {
        let f = f.borrow();
        assert_eq!(f.entries.len(), 1);
        assert!(Key::Text(&big).is(&f.entries[0].message));
    });
}
