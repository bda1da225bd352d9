//! Go's byte-string helpers that Docker's ignore handling leans on: rune decoding that reads an
//! invalid byte as U+FFFD of width 1 (`utf8.DecodeRune`), `strings.TrimSpace`, and
//! `filepath.Clean` / `filepath.Dir` on `/`-separated paths.

use std::borrow::Cow;

/// Decodes the first rune of `s` the way Go's `utf8.DecodeRune` does: `None` for an invalid or
/// truncated sequence (Go's `RuneError`), with the number of bytes consumed (1 when invalid).
pub(crate) fn decode_rune(s: &[u8]) -> (Option<char>, usize) {
    let Some(&first) = s.first() else {
        return (None, 0);
    };
    let want = match first {
        0x00..=0x7F => return (Some(char::from(first)), 1),
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return (None, 1),
    };
    // `from_utf8` refuses overlong forms and surrogates, as Go's decoder does.
    match s.get(..want).map(std::str::from_utf8) {
        Some(Ok(text)) => (text.chars().next(), want),
        _ => (None, 1),
    }
}

/// `s` as text, each byte of an invalid sequence read as one U+FFFD, the way Go's `regexp`
/// steps through a string that is not UTF-8.
pub(crate) fn go_lossy(s: &[u8]) -> Cow<'_, str> {
    if let Ok(text) = std::str::from_utf8(s) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(s.len() + 8);
    let mut rest = s;
    while !rest.is_empty() {
        let (rune, width) = decode_rune(rest);
        out.push(rune.unwrap_or(char::REPLACEMENT_CHARACTER));
        rest = &rest[width..];
    }
    Cow::Owned(out)
}

/// Go's `strings.TrimSpace`: strips leading and trailing Unicode white space (an invalid byte is
/// never space). Rust's `char::is_whitespace` is the same White_Space property Go uses.
pub(crate) fn trim_space(s: &[u8]) -> &[u8] {
    let mut start = None;
    let mut end = 0;
    let mut pos = 0;
    while pos < s.len() {
        let (rune, width) = decode_rune(&s[pos..]);
        if !rune.is_some_and(char::is_whitespace) {
            start.get_or_insert(pos);
            end = pos + width;
        }
        pos += width;
    }
    match start {
        Some(start) => &s[start..end],
        None => &[],
    }
}

/// Go's `filepath.Clean` on Unix: the shortest equivalent path, found lexically (repeated `/`
/// and `.` elements dropped, `..` resolved, no trailing `/`; `.` for an empty result). Docker
/// cleans every ignore pattern with it.
///
/// ```
/// use nullspace_engine::context::ignore::clean;
/// assert_eq!(clean(b"a//b/./c/../"), b"a/b");
/// assert_eq!(clean(b"/../x"), b"/x");
/// assert_eq!(clean(b""), b".");
/// ```
pub fn clean(path: &[u8]) -> Vec<u8> {
    if path.is_empty() {
        return b".".to_vec();
    }
    let rooted = path[0] == b'/';
    let n = path.len();
    let mut out: Vec<u8> = Vec::with_capacity(n);
    let (mut r, mut dotdot) = (0, 0);
    if rooted {
        out.push(b'/');
        r = 1;
        dotdot = 1;
    }
    while r < n {
        let at = |i: usize| path.get(i).copied();
        // An empty element or `.`: skip it.
        if path[r] == b'/' || (path[r] == b'.' && matches!(at(r + 1), None | Some(b'/'))) {
            r += 1;
        } else if path[r] == b'.' && at(r + 1) == Some(b'.') && matches!(at(r + 2), None | Some(b'/')) {
            r += 2;
            if out.len() > dotdot {
                // Back up to the previous separator, dropping the last element.
                let mut w = out.len() - 1;
                while w > dotdot && out[w] != b'/' {
                    w -= 1;
                }
                out.truncate(w);
            } else if !rooted {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(b"..");
                dotdot = out.len();
            }
        } else {
            if (rooted && out.len() != 1) || (!rooted && !out.is_empty()) {
                out.push(b'/');
            }
            while r < n && path[r] != b'/' {
                out.push(path[r]);
                r += 1;
            }
        }
    }
    if out.is_empty() {
        return b".".to_vec();
    }
    out
}

/// Go's `filepath.Dir` on Unix: everything before the last `/`, cleaned.
pub(crate) fn dir(path: &[u8]) -> Vec<u8> {
    let cut = path.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    clean(&path[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_matches_go_table() {
        // Cases from Go's path/filepath clean tests.
        let cases: &[(&str, &str)] = &[
            ("abc", "abc"),
            ("abc/def", "abc/def"),
            ("a/b/c", "a/b/c"),
            (".", "."),
            ("..", ".."),
            ("../..", "../.."),
            ("../../abc", "../../abc"),
            ("/abc", "/abc"),
            ("/", "/"),
            ("", "."),
            ("abc/", "abc"),
            ("abc/def/", "abc/def"),
            ("/abc/", "/abc"),
            ("//abc", "/abc"),
            ("abc//def//ghi", "abc/def/ghi"),
            ("abc/./def", "abc/def"),
            ("/./abc/def", "/abc/def"),
            ("abc/.", "abc"),
            ("abc/def/ghi/../jkl", "abc/def/jkl"),
            ("abc/def/../ghi/../jkl", "abc/jkl"),
            ("abc/def/..", "abc"),
            ("abc/def/../..", "."),
            ("/abc/def/../..", "/"),
            ("abc/def/../../..", ".."),
            ("/abc/def/../../..", "/"),
            ("abc/def/../../../ghi/jkl/../../../mno", "../../mno"),
            ("/../abc", "/abc"),
            ("abc/./../def", "def"),
            ("abc//./../def", "def"),
            ("abc/../../././../def", "../../def"),
            ("!foo/../bar", "bar"),
        ];
        for (input, want) in cases {
            let got = clean(input.as_bytes());
            assert_eq!(String::from_utf8_lossy(&got), *want, "clean({input:?})");
        }
    }

    #[test]
    fn dir_matches_go() {
        for (input, want) in [("file", "."), ("a/b", "a"), ("file/", "file"), ("/", "/"), ("a//b", "a")] {
            assert_eq!(String::from_utf8_lossy(&dir(input.as_bytes())), want, "dir({input:?})");
        }
    }

    #[test]
    fn trim_space_is_unicode_aware_and_byte_safe() {
        assert_eq!(trim_space(b"\t a b \r\n"), b"a b");
        assert_eq!(trim_space("\u{a0}x\u{3000}".as_bytes()), b"x");
        assert_eq!(trim_space(b" \xff "), b"\xff");
        assert_eq!(trim_space(b"   "), b"");
    }

    #[test]
    fn lossy_reads_each_invalid_byte_as_one_replacement() {
        // Go decodes a truncated 3-byte sequence as two RuneErrors; Rust's lossy would give one.
        assert_eq!(go_lossy(b"a\xe2\x82b"), "a\u{fffd}\u{fffd}b");
        assert_eq!(go_lossy("é".as_bytes()), "é");
        assert_eq!(decode_rune(b"\xed\xa0\x80"), (None, 1));
    }
}
