use super::*;
use serde_json::json;

fn split(json: &str) -> Result<RawArray, String> {
    split_array(Utf8Bytes::copy_from_str(json), 0)
}

#[test]
fn elements_are_the_text_as_received() {
    let a = split(r#"[ "echo" , {"b": 1.0,  "a":[1e2]}, 12,"\u00e9\n"]"#).unwrap();
    assert_eq!(a.len(), 4);
    let items: Vec<&str> = a.iter().collect();
    assert_eq!(
        items,
        [
            r#""echo""#,
            r#"{"b": 1.0,  "a":[1e2]}"#,
            "12",
            r#""\u00e9\n""#
        ]
    );
    assert_eq!(a.value(1), Some(json!({"b": 1.0, "a": [100.0]})));
    assert_eq!(a.str(0).as_deref(), Some("echo"));
    assert_eq!(a.str(3).as_deref(), Some("é\n"));
    assert_eq!(a.str(2), None);
    assert_eq!(
        a.values(),
        vec![json!("echo"), a.value(1).unwrap(), json!(12), json!("é\n")]
    );
}

#[test]
fn offsets_are_within_the_whole_text() {
    let text = Utf8Bytes::copy_from_str(r#"2/chat,5["x",[1]]"#);
    let mut a = split_array(text, 8).unwrap();
    assert_eq!(a.get(0), Some(r#""x""#));
    assert_eq!(a.get(1), Some("[1]"));
    a.remove_first();
    assert_eq!(a.len(), 1);
    assert_eq!(a.get(0), Some("[1]"));
    assert!(split(r#"[]"#).unwrap().is_empty());
}

#[test]
fn what_a_value_parse_refuses_is_refused() {
    for json in [
        "[",
        r#"["x",]"#,
        r#"["x"] 1"#,
        r#"["x", 1e999]"#,
        r#"["x", -1E400]"#,
        r#"["x", {"a": [2e500]}]"#,
        r#"["\ud800"]"#,
        r#"["x", {"k": "\udc00"}]"#,
        "[\"x\u{1}\"]",
    ] {
        assert!(split(json).is_err(), "{json}");
        assert!(serde_json::from_str::<Value>(json).is_err(), "{json}");
    }
    // Not an array: the decoder sends those to a value parse.
    assert!(split(r#"{"a":1}"#).is_err());
    let huge = format!("[{}]", "9".repeat(400));
    assert!(split(&huge).is_err());
    assert!(serde_json::from_str::<Value>(&huge).is_err());
}

#[test]
fn what_a_value_parse_accepts_is_accepted() {
    for json in [
        r#"["x", 1e3, -2.5E-7, 0.5e1, true, false, null]"#,
        r#"["\ud83d\ude00", "\u0041", {"e": "1e999"}]"#,
        r#"[{"true": [true, false], "n": 10}]"#,
        "[\"e\", \"E\", \"\\\\u\"]",
    ] {
        let a = split(json).unwrap_or_else(|e| panic!("{json}: {e}"));
        let expected: Vec<Value> = serde_json::from_str(json).unwrap();
        assert_eq!(a.values(), expected, "{json}");
    }
    let long = format!("[{}]", "9".repeat(250));
    assert!(split(&long).is_ok());
}

#[test]
fn nesting_limit_is_serde_jsons() {
    // Around serde_json's limit, both agree, whatever the strings hold.
    for depth in 120..135 {
        for inner in ["1", r#""[[[[""#, r#"{"a":"{{"}"#] {
            let json = format!("[\"x\",{}{inner}{}]", "[".repeat(depth), "]".repeat(depth));
            assert_eq!(
                split(&json).is_ok(),
                serde_json::from_str::<Value>(&json).is_ok(),
                "depth {depth} {inner}"
            );
        }
    }
    let deep = format!("[\"x\",{}{}]", "[".repeat(5000), "]".repeat(5000));
    assert!(split(&deep).is_err());
    // Many brackets, little depth.
    let wide = format!("[{}]", vec!["[{}]"; 200].join(","));
    assert!(split(&wide).is_ok());
}

#[test]
fn the_scanner_follows_the_grammar() {
    for json in [
        " [ ] ",
        "[\t\"a\"\n,\r1 ]\n",
        r#"["\"\\\/\b\f\n\r\t\u00A0\uD83D\uDE00"]"#,
        r#"[{}, {"a":{"b":[]}}, [[]], -0, 0.5, 1E+2, 1e-2, "\u007f"]"#,
        r#"[{"dup": 1, "dup": 2}]"#,
        "[\"\u{7f}é😀\"]",
    ] {
        let a = split(json).unwrap_or_else(|e| panic!("{json}: {e}"));
        let expected: Vec<Value> = serde_json::from_str(json).unwrap();
        assert_eq!(a.values(), expected, "{json}");
    }
    for json in [
        "[01]",
        "[-]",
        "[1.]",
        "[.5]",
        "[+1]",
        "[1e]",
        "[1e+]",
        "[tru]",
        "[truex]",
        "[nul]",
        "[,]",
        "[1,,2]",
        r#"[{"a"}]"#,
        r#"[{"a":}]"#,
        r#"[{"a":1,}]"#,
        "[{1:2}]",
        r#"["\x"]"#,
        r#"["\u12g4"]"#,
        r#"["\ud800\u0041"]"#,
        r#"["\ud800\ud800"]"#,
        r#"["\ud800"#,
        r#"["\ud800\"]"#,
        "[\"a\u{1f}\"]",
        "[1]x",
        "[1] [2]",
        r#"["abc"#,
        "[\"a\tb\"]",
        "[\u{a0}1]",
    ] {
        assert!(split(json).is_err(), "{json}");
        assert!(serde_json::from_str::<Value>(json).is_err(), "{json}");
    }
}

/// Random texts from JSON's alphabet, and random edits of valid arrays:
/// refused exactly when a value parse refuses them.
#[test]
fn the_scanner_agrees_with_a_value_parse() {
    let seeds = [
        r#"["echo","a string of some length, to cross a word or two"]"#,
        r#"["x",{"a":[1,2.5,-3e2],"b":{"c":null}},true,false,"\u00e9\ud83d\ude00"]"#,
        r#"[ 0 , -0.0 , 1E9 , "\\\"" , [ [ ] ] , { } ]"#,
    ];
    let alphabet: Vec<char> = "[]{}\",:\\/ubfnrtdD089aAeE+-.x \t\n\u{1}é"
        .chars()
        .collect();
    let mut rng = crate::test_rng::Rng(0x9e37_79b9_7f4a_7c15);
    let (mut accepted, mut refused) = (0, 0);
    for round in 0..40_000 {
        let text: String = if round % 2 == 0 {
            let mut chars: Vec<char> = seeds[rng.below(seeds.len())].chars().collect();
            for _ in 0..=rng.below(3) {
                let at = rng.below(chars.len() + 1);
                match rng.below(3) {
                    0 if at < chars.len() => {
                        chars.remove(at);
                    }
                    1 if at < chars.len() => chars[at] = alphabet[rng.below(alphabet.len())],
                    _ => chars.insert(at, alphabet[rng.below(alphabet.len())]),
                }
            }
            chars.into_iter().collect()
        } else {
            let body: String = (0..rng.below(24))
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            format!("[{body}]")
        };
        let ours = split(&text);
        let theirs = serde_json::from_str::<Vec<Value>>(&text);
        assert_eq!(ours.is_ok(), theirs.is_ok(), "{text:?}: {ours:?}");
        if let (Ok(ours), Ok(theirs)) = (ours, theirs) {
            assert_eq!(ours.values(), theirs, "{text:?}");
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    // Both verdicts were exercised.
    assert!(accepted > 1_000 && refused > 1_000, "{accepted} {refused}");
}

/// Strings of every length around the scanner's 16-byte steps, with an
/// escape, a control character or a multi-byte character at each place.
#[test]
fn the_scanner_sees_every_byte_of_a_string() {
    for len in 0..40 {
        for at in 0..=len {
            for inserted in ["\\n", "\u{1}", "é", "\\u0041", "\""] {
                let mut body = "a".repeat(len);
                body.insert_str(at, inserted);
                for tail in ["]", "  ]  ", ",1]"] {
                    let json = format!("[\"{body}\"{tail}");
                    let ours = split(&json);
                    let theirs = serde_json::from_str::<Vec<Value>>(&json);
                    assert_eq!(ours.is_ok(), theirs.is_ok(), "{json:?}");
                    if let (Ok(ours), Ok(theirs)) = (ours, theirs) {
                        assert_eq!(ours.values(), theirs, "{json:?}");
                    }
                }
            }
        }
    }
}
