//! Glob patterns for room names: `*` and `?`, nothing else.

/// `*` matches any run of characters (possibly empty, `/` included), `?`
/// exactly one character (a Unicode scalar); everything else literally.
///
/// The classic two-pointer algorithm that remembers only the last `*`:
/// no exponential backtracking, at worst `O(pattern.len() * text.len())`
/// and linear for the usual patterns. Works on chars, not bytes; allocates
/// nothing.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    // Byte offsets, always on char boundaries.
    let (mut p, mut t) = (0usize, 0usize);
    // After the last `*` seen: where the pattern resumes, and the text
    // offset that star's match currently ends at.
    let mut star: Option<(usize, usize)> = None;
    while let Some(tc) = char_at(text, t) {
        match char_at(pattern, p) {
            Some('*') => {
                p += 1;
                star = Some((p, t));
            }
            Some(pc) if pc == '?' || pc == tc => {
                p += pc.len_utf8();
                t += tc.len_utf8();
            }
            _ => match star {
                // Let the last star swallow one more character and retry.
                Some((sp, st)) => {
                    let swallowed = char_at(text, st).map_or(1, char::len_utf8);
                    let st = st + swallowed;
                    star = Some((sp, st));
                    p = sp;
                    t = st;
                }
                None => return false,
            },
        }
    }
    // The text is used up: what is left of the pattern must be stars.
    pattern[p..].bytes().all(|b| b == b'*')
}

/// The char at byte offset `i` (a char boundary), or `None` at the end.
fn char_at(s: &str, i: usize) -> Option<char> {
    s.get(i..).and_then(|rest| rest.chars().next())
}

#[cfg(test)]
mod tests {
    use super::glob_match;
    use crate::test_rng::Rng;
    use std::time::{Duration, Instant};

    #[test]
    fn empty_pattern_matches_only_empty_text() {
        assert!(glob_match("", ""));
        assert!(!glob_match("", "a"));
        assert!(!glob_match("", "*"));
    }

    #[test]
    fn literals() {
        assert!(glob_match("lobby", "lobby"));
        assert!(!glob_match("lobby", "lobb"));
        assert!(!glob_match("lobby", "lobbyx"));
        assert!(!glob_match("lobby", "Lobby"));
        assert!(!glob_match("a", ""));
        // Regex and shell metacharacters other than * and ? are literal.
        assert!(glob_match("[ab].+{c}\\", "[ab].+{c}\\"));
        assert!(!glob_match("[ab]", "a"));
        assert!(!glob_match("a.c", "abc"));
    }

    #[test]
    fn star() {
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "anything at all"));
        assert!(glob_match("*", "a/b/c"));
        assert!(glob_match("**", ""));
        assert!(glob_match("**", "abc"));
        assert!(glob_match("***a***", "a"));
        assert!(glob_match("chat:*", "chat:lobby"));
        assert!(glob_match("chat:*", "chat:"));
        assert!(glob_match("chat:*", "chat:a/b"));
        assert!(!glob_match("chat:*", "chat"));
        assert!(!glob_match("chat:*", "news:chat:x"));
        assert!(glob_match("*:lobby", "chat:lobby"));
        assert!(!glob_match("*:lobby", "chat:lobby2"));
        assert!(glob_match("a*b*c", "abc"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(glob_match("a*b*c", "abbbcbc"));
        assert!(!glob_match("a*b*c", "aXXbYYcd"));
        assert!(!glob_match("a*b*c", "acb"));
        assert!(glob_match("*ab", "aab"));
        assert!(glob_match("*aab", "aaab"));
        assert!(glob_match("a*", "a"));
        assert!(!glob_match("a*", "ba"));
        assert!(glob_match("*a*", "bab"));
        assert!(!glob_match("*a*", "bbb"));
    }

    #[test]
    fn question_mark() {
        assert!(glob_match("?", "a"));
        assert!(glob_match("?", "/"));
        assert!(!glob_match("?", ""));
        assert!(!glob_match("?", "ab"));
        assert!(glob_match("??", "ab"));
        assert!(glob_match("room-?", "room-1"));
        assert!(!glob_match("room-?", "room-12"));
        assert!(glob_match("?*", "a"));
        assert!(!glob_match("?*", ""));
        assert!(glob_match("*?", "abc"));
        assert!(glob_match("a?c*", "abcdef"));
        assert!(glob_match("*?*", "x"));
    }

    #[test]
    fn star_and_question_match_themselves_too() {
        assert!(glob_match("*", "*"));
        assert!(glob_match("?", "?"));
        assert!(glob_match("a*", "a*"));
        assert!(glob_match("a?", "a?"));
    }

    #[test]
    fn unicode_is_per_scalar() {
        // `?` is one Unicode scalar, whatever its UTF-8 length.
        assert!(glob_match("?", "é"));
        assert!(glob_match("?", "€"));
        assert!(glob_match("?", "😀"));
        assert!(!glob_match("?", "e\u{301}")); // two scalars
        assert!(glob_match("??", "e\u{301}"));
        assert!(glob_match("caf?", "café"));
        assert!(glob_match("caf?!", "café!"));
        assert!(glob_match("日本*", "日本語"));
        assert!(glob_match("*語", "日本語"));
        assert!(glob_match("日?語", "日本語"));
        assert!(!glob_match("日?語", "日本本語"));
        assert!(glob_match("日*語", "日本本語"));
        assert!(glob_match("😀*😀", "😀😃😀"));
        assert!(glob_match("*😀", "😀😀😀"));
        assert!(!glob_match("😀", "😃"));
        // Star backtracking across multi-byte characters.
        assert!(glob_match("*éb", "éééb"));
        assert!(glob_match("*?b", "ééb"));
        assert!(!glob_match("*é", "éa"));
    }

    /// The reference: plain recursion, exponential but obviously right.
    fn reference(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).any(|i| reference(rest, &t[i..])),
            Some((&c, rest)) => match t.split_first() {
                Some((&tc, trest)) => (c == '?' || c == tc) && reference(rest, trest),
                None => false,
            },
        }
    }

    #[test]
    fn agrees_with_reference_on_random_inputs() {
        let alphabet = ['a', 'b', 'é', '*', '?', '/'];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let plen = rng.below(8);
            let tlen = rng.below(10);
            let p: String = (0..plen)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            // Texts mostly without metacharacters, sometimes with.
            let talpha = if rng.below(4) == 0 {
                &alphabet[..]
            } else {
                &alphabet[..3]
            };
            let t: String = (0..tlen).map(|_| talpha[rng.below(talpha.len())]).collect();
            let pc: Vec<char> = p.chars().collect();
            let tc: Vec<char> = t.chars().collect();
            assert_eq!(
                glob_match(&p, &t),
                reference(&pc, &tc),
                "pattern {p:?} text {t:?}"
            );
        }
    }

    fn assert_fast(pattern: &str, text: &str, expected: bool) {
        let start = Instant::now();
        assert_eq!(glob_match(pattern, text), expected);
        let took = start.elapsed();
        // Generous, for slow debug builds on a busy machine: the
        // exponential algorithm would take ages, this one microseconds.
        assert!(took < Duration::from_secs(2), "took {took:?}");
    }

    #[test]
    fn adversarial_patterns_finish_fast() {
        let text = "a".repeat(100_000);
        assert_fast("a*a*a*a*a*b", &text, false);
        assert_fast("*a*a*a*a*a*a*a*a*a*a*b", &text, false);
        assert_fast("a*a*a*a*a*a", &text, true);
        assert_fast(&"*a".repeat(50), &text, true);
        assert_fast(&format!("{}b", "*a".repeat(50)), &text, false);
        assert_fast(&"*?".repeat(200), &text, true);
        assert_fast(&format!("{}*", "?".repeat(100_001)), &text, false);
        let long_pattern = format!("{}b", "a*".repeat(1_000));
        assert_fast(&long_pattern, &"a".repeat(5_000), false);
        assert_fast(&"*".repeat(100_000), &text, true);
        assert_fast(&"*".repeat(100_000), "", true);
    }
}
