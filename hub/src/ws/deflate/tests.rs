use super::*;

fn agreed(bits: u8, asked: bool) -> Option<Negotiated> {
    Some(Negotiated {
        server_window_bits: bits,
        window_bits_asked: asked,
    })
}

fn offer(values: &[&str]) -> Option<Negotiated> {
    negotiate(values.iter().copied())
}

#[test]
fn negotiation_matrix() {
    let default = Some(Negotiated::DEFAULT);
    let cases: &[(&[&str], Option<Negotiated>)] = &[
        // What browsers and Node clients send.
        (&["permessage-deflate; client_max_window_bits"], default),
        (&["permessage-deflate"], default),
        (&["Permessage-Deflate"], default),
        (&["permessage-deflate; client_max_window_bits=10"], default),
        (
            &["permessage-deflate; server_no_context_takeover; client_no_context_takeover"],
            default,
        ),
        (
            &["permessage-deflate; server_max_window_bits=10"],
            agreed(10, true),
        ),
        (
            &["permessage-deflate; server_max_window_bits=15"],
            agreed(15, true),
        ),
        (
            &["permessage-deflate; server_max_window_bits=\"12\""],
            agreed(12, true),
        ),
        (
            &["permessage-deflate;server_max_window_bits = 9"],
            agreed(9, true),
        ),
        // Declined offers: the next one is taken.
        (
            &["permessage-deflate; server_max_window_bits=8, permessage-deflate"],
            default,
        ),
        (
            &["permessage-deflate; mystery, permessage-deflate; server_max_window_bits=11"],
            agreed(11, true),
        ),
        (
            &[
                "x-webkit-deflate-frame",
                "permessage-deflate; client_max_window_bits",
            ],
            default,
        ),
        // Each way an offer is declined, alone: nothing agreed.
        (&["permessage-deflate; server_max_window_bits=8"], None),
        (&["permessage-deflate; server_max_window_bits=16"], None),
        (&["permessage-deflate; server_max_window_bits=7"], None),
        (&["permessage-deflate; server_max_window_bits=010"], None),
        (&["permessage-deflate; server_max_window_bits=1a"], None),
        (&["permessage-deflate; server_max_window_bits"], None),
        (&["permessage-deflate; client_max_window_bits=16"], None),
        (&["permessage-deflate; client_max_window_bits=\"\""], None),
        (&["permessage-deflate; server_no_context_takeover=1"], None),
        (&["permessage-deflate; client_no_context_takeover=x"], None),
        (
            &["permessage-deflate; server_no_context_takeover; server_no_context_takeover"],
            None,
        ),
        (
            &["permessage-deflate; client_max_window_bits; client_max_window_bits=9"],
            None,
        ),
        (&["permessage-deflate; unknown_param"], None),
        (&["x-webkit-deflate-frame"], None),
        (&[], None),
        // A header that does not parse: nothing agreed.
        (&["permessage-deflate;"], None),
        (&["permessage-deflate; server_max_window_bits=\"10"], None),
        (&["permessage-deflate,, "], None),
        (&["permessage deflate"], None),
        (&["permessage-deflate; a=b=c"], None),
    ];
    for (values, want) in cases {
        assert_eq!(offer(values), *want, "{values:?}");
    }
}

/// Every offer of a header value, or `None` where it does not parse.
fn parse_extensions(value: &str) -> Option<Vec<Offer<'_>>> {
    let mut rest = value;
    let mut offers = Vec::new();
    loop {
        offers.push(next_offer(&mut rest)?);
        if rest.is_empty() {
            return Some(offers);
        }
    }
}

fn offer_of<'a>(name: &'a str, params: &[(&'a str, Option<&'a str>)]) -> Offer<'a> {
    Offer {
        name,
        params: params
            .iter()
            .map(|(n, v)| (*n, v.map(Cow::Borrowed)))
            .collect(),
    }
}

#[test]
fn parser_reads_the_grammar() {
    assert_eq!(
        parse_extensions("foo, bar; baz=2;q=\"a\\bc\"\t, x;y=\"15\"").unwrap(),
        vec![
            offer_of("foo", &[]),
            offer_of("bar", &[("baz", Some("2")), ("q", Some("abc"))]),
            offer_of("x", &[("y", Some("15"))]),
        ]
    );
    assert_eq!(parse_extensions(""), None);
    assert_eq!(parse_extensions("a,"), None);
    assert_eq!(parse_extensions("a b"), None);
    // A quoted value must be a token once unquoted.
    assert_eq!(parse_extensions("a; b=\"x y\""), None);
    assert_eq!(parse_extensions("a; b=\"x\\ y\""), None);
    assert_eq!(parse_extensions("a; b=\"\""), None);
}

#[test]
fn answer_header() {
    let mut out = Vec::new();
    Negotiated::DEFAULT.write_header(&mut out);
    assert_eq!(
        out,
        b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n"
    );
    out.clear();
    offer(&["permessage-deflate; server_max_window_bits=10"])
        .unwrap()
        .write_header(&mut out);
    assert!(out.ends_with(b"client_no_context_takeover; server_max_window_bits=10\r\n"));
}

/// The compressed payload of a frame written by [`deflate_frame`], and its first byte.
fn payload_of(frame: &[u8]) -> (u8, &[u8]) {
    let head = match frame[1] {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    (frame[0], &frame[head..])
}

fn json_like(len: usize) -> Vec<u8> {
    let mut text = Vec::new();
    let mut i = 0u64;
    while text.len() < len {
        text.extend_from_slice(format!("{{\"id\":{i},\"name\":\"user{}\"}},", i % 97).as_bytes());
        i += 1;
    }
    text.truncate(len);
    text
}

#[test]
fn deflate_then_inflate_every_size_and_window() {
    for len in [0usize, 1, 100, 1023, 1024, 1025, 65_536, 1 << 20] {
        let text = json_like(len);
        for bits in [9u8, 12, 15] {
            let mut frame = Vec::new();
            let parts: [&[u8]; 2] = [b"4", &text];
            if !deflate_frame(true, &parts, bits, &mut frame) {
                // Only what does not shrink is left plain.
                assert!(len < 100, "{len} did not shrink");
                assert!(frame.is_empty());
                continue;
            }
            let (b0, payload) = payload_of(&frame);
            assert_eq!(b0, 0xc1, "FIN, RSV1, text");
            assert!(payload.len() < len / 2 + 16, "{len}: {}", payload.len());
            let mut whole = b"4".to_vec();
            whole.extend_from_slice(&text);
            assert_eq!(inflate(payload, 2 << 20).unwrap(), whole, "{len} {bits}");
            // Through a reference implementation (flate2 raw inflate with the tail).
            let mut reference = Decompress::new(false);
            let mut input = payload.to_vec();
            input.extend_from_slice(&TAIL);
            let mut out = Vec::with_capacity(len + 100);
            reference
                .decompress_vec(&input, &mut out, FlushDecompress::Sync)
                .unwrap();
            assert_eq!(out, whole);
        }
    }
}

#[test]
fn binary_frames_and_incompressible_data() {
    let data = vec![7u8; 5000];
    let mut frame = Vec::new();
    assert!(deflate_frame(false, &[&data], 15, &mut frame));
    assert_eq!(frame[0], 0xc2, "FIN, RSV1, binary");
    assert_eq!(inflate(payload_of(&frame).1, 10_000).unwrap(), data);
    // Random bytes do not shrink: left to the plain frame.
    let mut rng = crate::test_rng::Rng(7);
    let noise: Vec<u8> = (0..4096).map(|_| rng.next() as u8).collect();
    let mut frame = Vec::new();
    assert!(!deflate_frame(false, &[&noise], 15, &mut frame));
    assert!(frame.is_empty());
}

#[test]
fn frames_do_not_depend_on_earlier_ones() {
    // server_no_context_takeover: the same payload gives the same frame
    // whatever was compressed before, so one frame serves every recipient.
    let a = json_like(4000);
    let mut first = Vec::new();
    assert!(deflate_frame(true, &[&a], 15, &mut first));
    let mut other = Vec::new();
    assert!(deflate_frame(true, &[&json_like(3000)], 15, &mut other));
    let mut again = Vec::new();
    assert!(deflate_frame(true, &[&a], 15, &mut again));
    assert_eq!(first, again);
}

#[test]
fn decompression_bomb_stops_at_the_limit() {
    // 10 MB of zeros compress to about 10 KB.
    let zeros = vec![0u8; 10 << 20];
    let mut frame = Vec::new();
    assert!(deflate_frame(false, &[&zeros], 15, &mut frame));
    let payload = payload_of(&frame).1;
    assert!(payload.len() < 20_000, "{}", payload.len());
    assert_eq!(inflate(payload, 1_000_000), Err(InflateError::TooBig));
    // Exactly at the limit is fine; one byte over is not.
    let mut frame = Vec::new();
    assert!(deflate_frame(false, &[&zeros[..1000]], 15, &mut frame));
    let payload = payload_of(&frame).1;
    assert_eq!(inflate(payload, 1000).unwrap().len(), 1000);
    assert_eq!(inflate(payload, 999), Err(InflateError::TooBig));
    // The inflater is reset after a refusal: the next message inflates.
    assert_eq!(inflate(payload, 1000).unwrap().len(), 1000);
}

#[test]
fn tiny_limits() {
    // Found by fuzzing (ws_frames): a limit under 63 bytes made the first
    // output buffer's bounds cross (`clamp` panicked).
    let mut frame = Vec::new();
    assert!(deflate_frame(false, &[&[7u8; 300]], 15, &mut frame));
    let payload = payload_of(&frame).1;
    for limit in [0, 1, 16, 62, 63, 64, 299] {
        assert_eq!(
            inflate(payload, limit),
            Err(InflateError::TooBig),
            "{limit}"
        );
    }
    assert_eq!(inflate(payload, 300).unwrap(), vec![7u8; 300]);
    assert_eq!(inflate(&[0x00], 0), Ok(Vec::new()));
}

#[test]
fn invalid_data_is_refused() {
    // A block type of 3 is reserved.
    assert_eq!(
        inflate(&[0xff, 0xff, 0xff], 1000),
        Err(InflateError::Invalid)
    );
    // An empty compressed message inflates to nothing.
    assert_eq!(inflate(&[0x00], 1000), Ok(Vec::new()));
    let mut frame = Vec::new();
    deflate_frame(
        true,
        &[b"hello hello hello hello hello hello"],
        15,
        &mut frame,
    );
    assert_eq!(
        inflate(payload_of(&frame).1, 1000).unwrap(),
        b"hello hello hello hello hello hello"
    );
}

#[test]
fn a_final_block_ends_the_message() {
    // A sender may end its data with a final block (BFINAL): what it holds is the message.
    let mut compressor = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(256);
    compressor
        .compress_vec(b"abcabcabc", &mut out, FlushCompress::Finish)
        .unwrap();
    assert_eq!(inflate(&out, 1000).unwrap(), b"abcabcabc");
}
