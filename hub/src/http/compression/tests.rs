use std::io::Read;

use super::*;
use ContentCoding::{Deflate, Gzip};

fn pick(header: &str) -> Option<ContentCoding> {
    negotiate([header])
}

#[test]
fn no_header_or_an_empty_one_asks_for_nothing() {
    assert_eq!(negotiate([]), None);
    assert_eq!(pick(""), None);
    assert_eq!(pick(" , ,"), None);
}

#[test]
fn what_browsers_and_node_send() {
    // Chromium, Firefox, undici's fetch, curl --compressed.
    assert_eq!(pick("gzip, deflate, br, zstd"), Some(Gzip));
    assert_eq!(pick("gzip, deflate"), Some(Gzip));
    assert_eq!(pick("deflate, gzip;q=1.0, *;q=0.5"), Some(Deflate));
    assert_eq!(pick("br"), None);
}

#[test]
fn single_codings_and_case() {
    assert_eq!(pick("gzip"), Some(Gzip));
    assert_eq!(pick("GZip"), Some(Gzip));
    assert_eq!(pick("x-gzip"), Some(Gzip));
    assert_eq!(pick("deflate"), Some(Deflate));
    assert_eq!(pick("DEFLATE;Q=0.5"), Some(Deflate));
    assert_eq!(pick("identity"), None);
    assert_eq!(pick("compress, br"), None);
}

#[test]
fn the_higher_quality_wins() {
    assert_eq!(pick("gzip;q=0.5, deflate"), Some(Deflate));
    assert_eq!(pick("gzip;q=0.8, deflate;q=0.7"), Some(Gzip));
    assert_eq!(pick("deflate;q=0.001, gzip;q=0.002"), Some(Gzip));
    // Whitespace around the parameters.
    assert_eq!(pick("gzip ; q=0.1 ,deflate ;q = 0.2"), Some(Deflate));
}

#[test]
fn equal_quality_goes_to_the_one_named_first_then_gzip() {
    assert_eq!(pick("deflate, gzip"), Some(Deflate));
    assert_eq!(pick("gzip, deflate"), Some(Gzip));
    assert_eq!(pick("*"), Some(Gzip));
    // A coding named beats one reached through `*` at the same quality.
    assert_eq!(pick("*, deflate"), Some(Deflate));
}

#[test]
fn q_zero_refuses_even_under_a_wildcard() {
    assert_eq!(pick("gzip;q=0"), None);
    assert_eq!(pick("gzip;q=0, *"), Some(Deflate));
    assert_eq!(pick("*, gzip;q=0"), Some(Deflate));
    assert_eq!(pick("gzip;q=0, deflate;q=0.000, *"), None);
    assert_eq!(pick("*;q=0"), None);
    assert_eq!(pick("*;q=0, deflate;q=0.1"), Some(Deflate));
}

#[test]
fn a_preferred_identity_keeps_the_body_as_it_is() {
    assert_eq!(pick("gzip;q=0.5, identity"), None);
    assert_eq!(pick("identity;q=0.5, gzip"), Some(Gzip));
    // Equal: the coding (identity is always acceptable, but not preferred).
    assert_eq!(pick("identity, gzip"), Some(Gzip));
    assert_eq!(pick("identity;q=0, gzip"), Some(Gzip));
    assert_eq!(pick("identity;q=0"), None);
}

#[test]
fn bad_elements_are_skipped() {
    assert_eq!(pick("gzip;q=abc"), None);
    assert_eq!(pick("gzip;q=2, deflate"), Some(Deflate));
    assert_eq!(pick("gzip;q=1.5, deflate;q=0.1"), Some(Deflate));
    assert_eq!(pick("gzip;q=0.1234, deflate;q=0.1"), Some(Deflate));
    assert_eq!(pick("gzip;q=1.000"), Some(Gzip));
    assert_eq!(pick("gzip;q=1.001"), None);
    assert_eq!(pick("gzip;q=-0"), None);
    assert_eq!(pick("gzip;q="), None);
    // Other parameters are ignored.
    assert_eq!(pick("gzip;level=9"), Some(Gzip));
    assert_eq!(pick(";q=1, gzip"), Some(Gzip));
}

#[test]
fn repeated_fields_are_one_list() {
    assert_eq!(negotiate(["br", "deflate"]), Some(Deflate));
    assert_eq!(negotiate(["gzip;q=0.1", "deflate;q=0.2"]), Some(Deflate));
    assert_eq!(negotiate(["deflate", "gzip"]), Some(Deflate));
}

#[test]
fn qvalues_parse_to_thousandths() {
    for (text, want) in [
        ("0", Some(0)),
        ("0.", Some(0)),
        ("0.5", Some(500)),
        ("0.05", Some(50)),
        ("0.005", Some(5)),
        ("0.999", Some(999)),
        ("1", Some(1000)),
        ("1.", Some(1000)),
        ("1.0", Some(1000)),
        ("1.000", Some(1000)),
        ("1.1", None),
        ("0.0000", None),
        ("0.x", None),
        ("2", None),
        ("", None),
        ("00.5", None),
        ("+0.5", None),
    ] {
        assert_eq!(parse_qvalue(text), want, "{text:?}");
    }
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn unzlib(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn sample(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut i = 0u32;
    while out.len() < len {
        out.extend_from_slice(
            format!("42[\"message\",{{\"n\":{i},\"text\":\"hello\"}}]\x1e").as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

#[test]
fn gzip_and_deflate_round_trip_in_their_formats() {
    let body = sample(10_000);
    let gz = compress(Gzip, &body);
    assert_eq!(&gz[..3], &[0x1f, 0x8b, 8], "a gzip member");
    assert_eq!(gunzip(&gz), body);
    assert!(gz.len() < body.len() / 4, "{} bytes", gz.len());
    let zlib = compress(Deflate, &body);
    // A zlib header (RFC 1950): deflate, 32 KiB window, check bits.
    assert_eq!(zlib[0], 0x78);
    assert_eq!(u16::from_be_bytes([zlib[0], zlib[1]]) % 31, 0);
    assert_eq!(unzlib(&zlib), body);
    // Empty bodies are valid streams too.
    assert_eq!(gunzip(&compress(Gzip, b"")), b"");
    assert_eq!(unzlib(&compress(Deflate, b"")), b"");
}

#[test]
fn pieces_give_the_same_stream_as_one_write() {
    let body = sample(200_000);
    for coding in [Gzip, Deflate] {
        let mut pieces = BodyCompressor::new(coding, body.len());
        for piece in body.chunks(7_777) {
            pieces.feed(piece);
        }
        assert_eq!(pieces.finish(), compress(coding, &body), "{coding:?}");
    }
}

#[test]
fn binary_that_does_not_shrink_still_round_trips() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let body: Vec<u8> = (0..5000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let gz = compress(Gzip, &body);
    assert!(gz.len() > body.len(), "random bytes grow a little");
    assert_eq!(gunzip(&gz), body);
}
