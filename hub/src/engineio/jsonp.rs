//! v3 JSONP polling (`j=<n>` in the query): responses are a script calling
//! `___eio[n]`, requests are form posts with the payload in field `d`.

use super::packet::DecodeError;

/// Content type of JSONP responses: they are loaded by a `<script>` tag.
// The reference server sends JSONP as text/plain, and clients only eval it.
pub const JSONP_CONTENT_TYPE: &str = "text/plain; charset=UTF-8";

/// The reference server parses form bodies with Node's `querystring`, which
/// stops after this many fields.
const MAX_FORM_FIELDS: usize = 1000;

/// Appends `s` as a JSON string literal, escaped as `JSON.stringify` does.
/// With `js_safe`, U+2028 and U+2029 are escaped too: they are valid in JSON
/// strings but end a line in (pre-ES2019) JavaScript, so the script would break.
pub(crate) fn push_json_string(out: &mut String, s: &str, js_safe: bool) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{2028}' if js_safe => out.push_str("\\u2028"),
            '\u{2029}' if js_safe => out.push_str("\\u2029"),
            c if (c as u32) < 0x20 => {
                let b = c as u8;
                out.push_str("\\u00");
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 0xf) as usize] as char);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Wrap an encoded text payload as `___eio[<j>]("<payload>");`.
///
/// Only the digits of `j` are kept, as the reference does, so a hostile `j`
/// cannot inject script.
pub fn wrap_jsonp(j: &str, payload_text: &str) -> Vec<u8> {
    let mut out = String::with_capacity(payload_text.len() + j.len() + 16);
    out.push_str("___eio[");
    out.extend(j.chars().filter(char::is_ascii_digit));
    out.push_str("](");
    push_json_string(&mut out, payload_text, true);
    out.push_str(");");
    out.into_bytes()
}

/// Unwrap a JSONP POST body (`d=<urlencoded payload>`) into the payload text.
///
/// Browsers mangle newlines in form posts, so the client sends a newline as
/// `\n` (backslash, n) and a literal backslash-n as `\\n`; this undoes that
/// with the reference server's two replacements, in its order.
pub fn unwrap_jsonp_post(body: &[u8]) -> Result<String, DecodeError> {
    let mut values = form_urlencoded::parse(body)
        .take(MAX_FORM_FIELDS)
        .filter(|(k, _)| k == "d")
        .map(|(_, v)| v);
    // a repeated `d` is an array for `querystring`, which the reference ignores
    let (Some(d), None) = (values.next(), values.next()) else {
        return Err(DecodeError::MissingJsonpData);
    };
    Ok(unescape_newlines(&d))
}

fn unescape_newlines(d: &str) -> String {
    // First pass, /(\\)?\\n/g: `\n` becomes a newline, `\\n` stays.
    let b = d.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if b.get(i + 1) == Some(&b'\\') && b.get(i + 2) == Some(&b'n') {
                out.extend_from_slice(b"\\\\n");
                i += 3;
                continue;
            }
            if b.get(i + 1) == Some(&b'n') {
                out.push(b'\n');
                i += 2;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    // Only ASCII sequences were replaced by ASCII, so this stays UTF-8.
    let first = String::from_utf8(out).unwrap_or_default();
    // Second pass, /\\\\n/g: `\\n` becomes `\n`.
    first.replace("\\\\n", "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrap(j: &str, s: &str) -> String {
        String::from_utf8(wrap_jsonp(j, s)).unwrap()
    }

    #[test]
    fn wrap_plain() {
        assert_eq!(wrap("0", "2:40"), r#"___eio[0]("2:40");"#);
        assert_eq!(wrap("12", ""), r#"___eio[12]("");"#);
    }

    #[test]
    fn wrap_keeps_only_digits_of_j() {
        assert_eq!(wrap("1);alert(1);//2", "x"), r#"___eio[112]("x");"#);
        assert_eq!(wrap("", "x"), r#"___eio[]("x");"#);
        assert_eq!(
            wrap("٣", "x"),
            r#"___eio[]("x");"#,
            "non-ASCII digits are dropped"
        );
    }

    #[test]
    fn wrap_escapes_like_json_stringify() {
        assert_eq!(
            wrap("3", "a\"b\\c\nd\re\tf\u{8}g\u{c}h"),
            r#"___eio[3]("a\"b\\c\nd\re\tf\bg\fh");"#
        );
        assert_eq!(
            wrap("3", "\u{0}\u{1}\u{1f}\u{1e}\u{7f}"),
            r#"___eio[3]("\u0000\u0001\u001f\u001e"#.to_owned() + "\u{7f}\");"
        );
        assert_eq!(
            wrap("3", "x\u{2028}y\u{2029}z"),
            r#"___eio[3]("x\u2028y\u2029z");"#
        );
        // other non-ASCII is passed through as UTF-8
        assert_eq!(wrap("3", "€😀</script>"), "___eio[3](\"€😀</script>\");");
    }

    #[test]
    fn json_string_without_js_escapes() {
        let mut s = String::new();
        push_json_string(&mut s, "a\u{2028}\"", false);
        assert_eq!(s, "\"a\u{2028}\\\"\"");
    }

    #[test]
    fn wrapped_payload_is_valid_json_inside() {
        let payload = "7:4a\"\\\n\u{2028}😀";
        let out = wrap("5", payload);
        let inner = &out["___eio[5](".len()..out.len() - 2];
        let back: String = serde_json::from_str(inner).unwrap();
        assert_eq!(back, payload);
    }

    #[test]
    fn unwrap_simple() {
        assert_eq!(unwrap_jsonp_post(b"d=3%3A4hi").unwrap(), "3:4hi");
        assert_eq!(unwrap_jsonp_post(b"d=3:4a+b").unwrap(), "3:4a b");
        assert_eq!(unwrap_jsonp_post(b"x=1&d=2%3A4%E2%82%AC").unwrap(), "2:4€");
        assert_eq!(unwrap_jsonp_post(b"d=").unwrap(), "");
    }

    #[test]
    fn unwrap_newline_escaping() {
        // client sent a real newline as backslash-n
        assert_eq!(unwrap_jsonp_post(br"d=4a%5Cnb").unwrap(), "4a\nb");
        // client sent a literal backslash-n as backslash-backslash-n
        assert_eq!(unwrap_jsonp_post(br"d=4a%5C%5Cnb").unwrap(), "4a\\nb");
        // unencoded backslashes work too (lenient form parsing)
        assert_eq!(unwrap_jsonp_post(br"d=\n\\n").unwrap(), "\n\\n");
        // a lone backslash or backslash-other is untouched
        assert_eq!(unwrap_jsonp_post(br"d=a\b\").unwrap(), "a\\b\\");
    }

    #[test]
    fn unescape_matches_reference_regexes() {
        // hand-evaluated against /(\\)?\\n/g then /\\\\n/g
        let cases: &[(&str, &str)] = &[
            (r"\n", "\n"),
            (r"\\n", r"\n"),
            (r"\\\n", r"\\n"),
            (r"\\\\n", "\\\\\\n"),
            (r"\n\n", "\n\n"),
            (r"a\nb\\nc", "a\nb\\nc"),
            (r"\", r"\"),
            (r"n\", r"n\"),
            ("€\\n😀", "€\n😀"),
        ];
        for (input, expected) in cases {
            assert_eq!(&unescape_newlines(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn unwrap_errors() {
        assert_eq!(unwrap_jsonp_post(b""), Err(DecodeError::MissingJsonpData));
        assert_eq!(
            unwrap_jsonp_post(b"e=1"),
            Err(DecodeError::MissingJsonpData)
        );
        assert_eq!(
            unwrap_jsonp_post(b"D=1"),
            Err(DecodeError::MissingJsonpData)
        );
        assert_eq!(
            unwrap_jsonp_post(b"d=1&d=2"),
            Err(DecodeError::MissingJsonpData)
        );
        let many = "a=1&".repeat(1000) + "d=1:6";
        assert_eq!(
            unwrap_jsonp_post(many.as_bytes()),
            Err(DecodeError::MissingJsonpData)
        );
        let ok = "a=1&".repeat(999) + "d=1:6";
        assert_eq!(unwrap_jsonp_post(ok.as_bytes()).unwrap(), "1:6");
    }

    #[test]
    fn garbage_never_panics() {
        for input in crate::engineio::packet::tests::garbage_inputs() {
            let _ = unwrap_jsonp_post(&input);
            let s = String::from_utf8_lossy(&input);
            let _ = unescape_newlines(&s);
            let out = wrap("1", &s);
            assert!(out.starts_with("___eio[1](\"") && out.ends_with("\");"));
        }
    }
}
