//! Name/value pairs kept compactly: a session keeps its handshake's headers
//! and query for its whole life, so they should cost two allocations, not
//! two per pair.

use std::fmt;

/// Name/value pairs in order: HTTP header fields (names lower case) or
/// query parameters. Every name and value is in one string, so the pairs
/// take two allocations however many there are.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Pairs {
    /// Names and values, back to back.
    text: Box<str>,
    /// Where each name, then its value, ends in `text`.
    ends: Box<[u32]>,
}

impl Pairs {
    pub fn len(&self) -> usize {
        self.ends.len() / 2
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The pairs, in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            pairs: self,
            front: 0,
            back: self.len(),
        }
    }

    /// The value of the first pair named `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The value of the last pair named `name`.
    pub fn get_last(&self, name: &str) -> Option<&str> {
        self.iter().rev().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    fn pair(&self, index: usize) -> (&str, &str) {
        let start = match index {
            0 => 0,
            _ => self.ends[2 * index - 1] as usize,
        };
        let name_end = self.ends[2 * index] as usize;
        let end = self.ends[2 * index + 1] as usize;
        (&self.text[start..name_end], &self.text[name_end..end])
    }
}

impl<N: AsRef<str>, V: AsRef<str>> FromIterator<(N, V)> for Pairs {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(pairs: I) -> Pairs {
        let mut text = String::new();
        let mut ends = Vec::new();
        for (name, value) in pairs {
            text.push_str(name.as_ref());
            ends.push(offset(&text));
            text.push_str(value.as_ref());
            ends.push(offset(&text));
        }
        Pairs {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        }
    }
}

fn offset(text: &str) -> u32 {
    u32::try_from(text.len()).expect("name/value pairs over 4 GiB")
}

impl fmt::Debug for Pairs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for &'a Pairs {
    type Item = (&'a str, &'a str);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// The pairs of a [`Pairs`], in order.
#[derive(Clone)]
pub struct Iter<'a> {
    pairs: &'a Pairs,
    front: usize,
    back: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        if self.front == self.back {
            return None;
        }
        self.front += 1;
        Some(self.pairs.pair(self.front - 1))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.back - self.front;
        (left, Some(left))
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.front == self.back {
            return None;
        }
        self.back -= 1;
        Some(self.pairs.pair(self.back))
    }
}

impl ExactSizeIterator for Iter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_pairs_in_order() {
        let pairs: Pairs = [("host", "example.com"), ("a", ""), ("", "b"), ("a", "2")]
            .into_iter()
            .collect();
        assert_eq!(pairs.len(), 4);
        assert_eq!(
            pairs.iter().collect::<Vec<_>>(),
            [("host", "example.com"), ("a", ""), ("", "b"), ("a", "2")]
        );
        assert_eq!(
            pairs.iter().rev().map(|(n, _)| n).collect::<Vec<_>>(),
            ["a", "", "a", "host"]
        );
        assert_eq!(pairs.get("a"), Some(""));
        assert_eq!(pairs.get_last("a"), Some("2"));
        assert_eq!(pairs.get("b"), None);
        assert_eq!(
            format!("{pairs:?}"),
            r#"[("host", "example.com"), ("a", ""), ("", "b"), ("a", "2")]"#
        );
    }

    #[test]
    fn empty() {
        let pairs = Pairs::default();
        assert!(pairs.is_empty());
        assert_eq!(pairs.iter().next(), None);
        assert_eq!(pairs.get(""), None);
        let from_nothing: Pairs = Vec::<(String, String)>::new().into_iter().collect();
        assert_eq!(from_nothing, pairs);
    }

    #[test]
    fn values_may_hold_any_character() {
        let pairs: Pairs = [("k\u{0}", "v\n:é"), ("x", "y")].into_iter().collect();
        assert_eq!(pairs.get("k\u{0}"), Some("v\n:é"));
        assert_eq!(pairs.get("x"), Some("y"));
    }
}
