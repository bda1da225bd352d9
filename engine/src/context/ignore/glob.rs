//! A pattern's two readings, as moby/patternmatcher does them: the syntax check of Go's
//! `filepath.Match` (which decides whether `New` accepts a pattern), and the translation into a
//! Go regular expression (`Pattern.compile`), with the cheap exact/prefix/suffix shortcuts.

use super::gostr::decode_rune;

/// How a compiled pattern compares paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shape {
    /// The path equals the pattern.
    Exact,
    /// The path starts with the pattern minus its trailing `**`.
    Prefix,
    /// The path ends with the pattern minus its leading `**` (or equals it minus `**/`).
    Suffix,
    /// The path matches this Go regular expression.
    Regex(String),
}

/// Whether Go's `filepath.Match(pattern, ".")` would report `ErrBadPattern`.
///
/// Go checks every chunk of the pattern (the text between unbracketed `*`s) whatever the name,
/// so validity does not depend on the name: a chunk is bad when it ends in a lone `\`, or holds a
/// `[...]` class that is unclosed, empty, has a range end that is `-`, `]`, missing or not UTF-8.
pub(crate) fn is_valid(pattern: &[u8]) -> bool {
    let mut rest = pattern;
    while !rest.is_empty() {
        let (chunk, after) = scan_chunk(rest);
        if !chunk_is_valid(chunk) {
            return false;
        }
        rest = after;
    }
    true
}

/// Go's `scanChunk`: skips leading stars, then returns the chunk up to the next unbracketed `*`.
fn scan_chunk(pattern: &[u8]) -> (&[u8], &[u8]) {
    let start = pattern.iter().take_while(|&&b| b == b'*').count();
    let pattern = &pattern[start..];
    let mut in_range = false;
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            b'\\' if i + 1 < pattern.len() => i += 1,
            b'[' => in_range = true,
            b']' => in_range = false,
            b'*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    (&pattern[..i], &pattern[i..])
}

/// The syntax half of Go's `matchChunk`.
fn chunk_is_valid(mut chunk: &[u8]) -> bool {
    while let Some(&first) = chunk.first() {
        match first {
            b'[' => {
                chunk = &chunk[1..];
                if chunk.first() == Some(&b'^') {
                    chunk = &chunk[1..];
                }
                let mut ranges = 0;
                loop {
                    if chunk.first() == Some(&b']') && ranges > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let Some(after_lo) = class_char(chunk) else {
                        return false;
                    };
                    chunk = after_lo;
                    if chunk.first() == Some(&b'-') {
                        let Some(after_hi) = class_char(&chunk[1..]) else {
                            return false;
                        };
                        chunk = after_hi;
                    }
                    ranges += 1;
                }
            }
            b'\\' => {
                if chunk.len() < 2 {
                    return false;
                }
                chunk = &chunk[2..];
            }
            _ => chunk = &chunk[1..],
        }
    }
    true
}

/// Go's `getEsc`: one class character (maybe `\`-escaped); `None` when malformed, including when
/// nothing follows it.
fn class_char(chunk: &[u8]) -> Option<&[u8]> {
    let mut chunk = match chunk.first() {
        None | Some(b'-' | b']') => return None,
        Some(b'\\') => &chunk[1..],
        Some(_) => chunk,
    };
    let (rune, width) = decode_rune(chunk);
    rune?;
    chunk = &chunk[width..];
    (!chunk.is_empty()).then_some(chunk)
}

/// Go's `Pattern.compile` with `/` as separator: the pattern's shape, and for [`Shape::Regex`]
/// the regular expression text (in Go's syntax, anchored).
///
/// The pattern is read rune by rune as Go's `text/scanner` reads it: an invalid byte becomes
/// U+FFFD and a leading byte-order mark is skipped. Only `.+()|{}$` are escaped, so `[`, `]`,
/// `^` and `\x` escapes reach the regular expression with their regexp meaning, as in Docker.
pub(crate) fn compile(pattern: &[u8]) -> Shape {
    #[derive(PartialEq)]
    enum Detected {
        Exact,
        Prefix,
        Suffix,
        Regex,
    }
    let runes = scan_runes(pattern);
    let mut re = String::from("^");
    let mut detected = Detected::Exact;
    let mut pos = 0;
    let mut iteration = 0;
    while pos < runes.len() {
        let ch = runes[pos];
        pos += 1;
        let peek = runes.get(pos).copied();
        match ch {
            '*' if peek == Some('*') => {
                pos += 1;
                // `**/` is read as `**`.
                if runes.get(pos) == Some(&'/') {
                    pos += 1;
                }
                if pos == runes.len() {
                    if detected == Detected::Exact {
                        detected = Detected::Prefix;
                    } else {
                        re.push_str(".*");
                        detected = Detected::Regex;
                    }
                } else {
                    re.push_str("(.*/)?");
                    detected = Detected::Regex;
                }
                if iteration == 0 {
                    detected = Detected::Suffix;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                detected = Detected::Regex;
            }
            '?' => {
                re.push_str("[^/]");
                detected = Detected::Regex;
            }
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => {
                re.push('\\');
                re.push(ch);
            }
            '\\' => {
                // A trailing `\` stays as it is; otherwise it escapes the next rune.
                re.push('\\');
                if let Some(next) = peek {
                    pos += 1;
                    re.push(next);
                    detected = Detected::Regex;
                }
            }
            '[' | ']' => {
                re.push(ch);
                detected = Detected::Regex;
            }
            _ => re.push(ch),
        }
        iteration += 1;
    }
    match detected {
        Detected::Exact => Shape::Exact,
        Detected::Prefix => Shape::Prefix,
        Detected::Suffix => Shape::Suffix,
        Detected::Regex => {
            re.push('$');
            Shape::Regex(re)
        }
    }
}

/// The runes Go's `text/scanner` yields for `pattern`.
fn scan_runes(pattern: &[u8]) -> Vec<char> {
    let mut runes = Vec::with_capacity(pattern.len());
    let mut rest = pattern;
    while !rest.is_empty() {
        let (rune, width) = decode_rune(rest);
        runes.push(rune.unwrap_or(char::REPLACEMENT_CHARACTER));
        rest = &rest[width..];
    }
    if runes.first() == Some(&'\u{feff}') {
        runes.remove(0);
    }
    runes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_follows_filepath_match() {
        for good in ["*", "a*b", "[a-z]", "[^a]", "[\\]]", "a\\*", "[*]", "**", "[[:]", "\\[", "]"] {
            assert!(is_valid(good.as_bytes()), "{good:?} should be valid");
        }
        for bad in ["[", "a[", "[]", "[]a]", "[^]", "[a-]", "[-a]", "a\\", "[a", "*[", "[\\"] {
            assert!(!is_valid(bad.as_bytes()), "{bad:?} should be invalid");
        }
        assert!(!is_valid(b"[\xff]"), "a class character that is not UTF-8 is refused");
    }

    #[test]
    fn shapes() {
        assert_eq!(compile(b"abc"), Shape::Exact);
        assert_eq!(compile(b"a.b"), Shape::Exact);
        assert_eq!(compile(b"abc/**"), Shape::Prefix);
        assert_eq!(compile(b"**"), Shape::Suffix);
        assert_eq!(compile(b"**/foo"), Shape::Suffix);
        assert_eq!(compile(b"**/**"), Shape::Regex("^(.*/)?.*$".into()));
        assert_eq!(compile(b"a?**"), Shape::Regex("^a[^/].*$".into()));
        assert_eq!(compile(b"*.md"), Shape::Regex("^[^/]*\\.md$".into()));
        assert_eq!(compile(b"**/*.txt"), Shape::Regex("^(.*/)?[^/]*\\.txt$".into()));
        assert_eq!(compile(b"a\\*b"), Shape::Regex("^a\\*b$".into()));
        assert_eq!(compile(b"\xef\xbb\xbfx*"), Shape::Regex("^x[^/]*$".into()));
    }
}
