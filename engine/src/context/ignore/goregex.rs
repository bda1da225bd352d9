//! Reads the Go regular expressions that [`super::glob::compile`] produces, with Go's `regexp`
//! syntax (RE2, Perl flags, one-line mode), and writes the same language in the `regex` crate's
//! syntax.
//!
//! Going through the Go text rather than straight from the glob keeps Docker's quirks: a `[`
//! opened by the user swallows the `[^/]` that a `?` or `*` became, `^` is an anchor, `\d` is a
//! digit class and `\Q` quotes the rest. The two syntaxes differ where this matters (Go reads
//! `[` inside a class as a literal, the `regex` crate as a nested class; Go's `\d`, `\w`, `\s`
//! and `\b` are ASCII), so every literal and class range is written out explicitly.
//!
//! Only what a translated glob can contain is accepted: `{` and `(?` never occur unescaped there
//! and are refused.

use std::fmt::Write;

/// Translates a Go regular expression into `regex` crate syntax, or says why Go's `regexp`
/// would refuse it.
pub(crate) fn to_rust(go: &str) -> Result<String, String> {
    let chars: Vec<char> = go.chars().collect();
    let mut out = String::with_capacity(go.len() * 4);
    let mut atom_start: Option<usize> = None;
    let mut last_repeat = false;
    let mut groups: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let mut repeat = false;
        match c {
            '(' => {
                if chars.get(i + 1) == Some(&'?') {
                    return Err("unsupported group flags `(?`".into());
                }
                groups.push(out.len());
                out.push_str("(?:");
                atom_start = None;
                i += 1;
            }
            ')' => {
                let start = groups.pop().ok_or("unexpected )")?;
                out.push(')');
                atom_start = Some(start);
                i += 1;
            }
            '|' => {
                out.push('|');
                atom_start = None;
                i += 1;
            }
            '^' | '$' | '.' => {
                atom_start = Some(out.len());
                out.push_str(match c {
                    '^' => r"\A",
                    '$' => r"\z",
                    _ => ".",
                });
                i += 1;
            }
            '[' => {
                let (class, next) = parse_class(&chars, i)?;
                atom_start = Some(out.len());
                out.push_str(&class);
                i = next;
            }
            '*' | '+' | '?' => {
                if last_repeat {
                    return Err(format!("invalid nested repetition operator: `{c}`"));
                }
                let start = atom_start.ok_or_else(|| format!("missing argument to repetition operator: `{c}`"))?;
                out.insert_str(start, "(?:");
                out.push(')');
                out.push(c);
                i += 1;
                if chars.get(i) == Some(&'?') {
                    out.push('?');
                    i += 1;
                }
                repeat = true;
            }
            '{' => return Err("unsupported repetition `{`".into()),
            '\\' => {
                let next = chars.get(i + 1).copied();
                match next {
                    Some('A' | 'z' | 'b' | 'B') => {
                        atom_start = Some(out.len());
                        out.push_str(match next {
                            Some('A') => r"\A",
                            Some('z') => r"\z",
                            Some('b') => r"(?-u:\b)",
                            _ => r"(?-u:\B)",
                        });
                        i += 2;
                    }
                    Some('C') => return Err(r"invalid escape sequence: `\C`".into()),
                    Some('Q') => {
                        // Everything up to `\E` (or the end) is literal.
                        let rest = &chars[i + 2..];
                        let end = rest.windows(2).position(|w| w == ['\\', 'E']);
                        let literal = &rest[..end.unwrap_or(rest.len())];
                        for &ch in literal {
                            atom_start = Some(out.len());
                            push_literal(&mut out, ch);
                        }
                        i += 2 + literal.len() + if end.is_some() { 2 } else { 0 };
                    }
                    Some('p' | 'P') => {
                        let (item, next) = unicode_class(&chars, i)?;
                        atom_start = Some(out.len());
                        write!(out, "[{item}]").map_err(|e| e.to_string())?;
                        i = next;
                    }
                    Some(letter @ ('d' | 'D' | 's' | 'S' | 'w' | 'W')) => {
                        atom_start = Some(out.len());
                        out.push('[');
                        out.push_str(&perl_class(letter));
                        out.push(']');
                        i += 2;
                    }
                    _ => {
                        let (ch, next) = parse_escape(&chars, i)?;
                        atom_start = Some(out.len());
                        push_literal(&mut out, ch);
                        i = next;
                    }
                }
            }
            _ => {
                atom_start = Some(out.len());
                push_literal(&mut out, c);
                i += 1;
            }
        }
        last_repeat = repeat;
    }
    if !groups.is_empty() {
        return Err("missing closing )".into());
    }
    Ok(out)
}

fn push_literal(out: &mut String, ch: char) {
    // Writing to a String cannot fail.
    let _ = write!(out, "\\x{{{:X}}}", u32::from(ch));
}

fn range(lo: char, hi: char) -> String {
    format!("\\x{{{:X}}}-\\x{{{:X}}}", u32::from(lo), u32::from(hi))
}

/// Go's `parseClass`: `chars[start]` is `[`. Returns the class in `regex` syntax and where the
/// class ends.
fn parse_class(chars: &[char], start: usize) -> Result<(String, usize), String> {
    let mut t = start + 1;
    let negated = chars.get(t) == Some(&'^');
    if negated {
        t += 1;
    }
    let mut items = String::new();
    let mut first = true;
    loop {
        let Some(&c) = chars.get(t) else {
            return Err("missing closing ]".into());
        };
        if c == ']' && !first {
            t += 1;
            break;
        }
        first = false;
        if c == '[' && chars.get(t + 1) == Some(&':') && chars.len() - t > 2 {
            let after = &chars[t + 2..];
            if let Some(end) = after.windows(2).position(|w| w == [':', ']']) {
                let name: String = chars[t..t + 2 + end + 2].iter().collect();
                items.push_str(&posix_class(&name).ok_or_else(|| format!("invalid character class range: `{name}`"))?);
                t += 2 + end + 2;
                continue;
            }
        }
        if c == '\\' {
            match chars.get(t + 1) {
                Some('p' | 'P') => {
                    let (item, next) = unicode_class(chars, t)?;
                    items.push_str(&item);
                    t = next;
                    continue;
                }
                Some(&letter @ ('d' | 'D' | 's' | 'S' | 'w' | 'W')) => {
                    items.push_str(&perl_class(letter));
                    t += 2;
                    continue;
                }
                _ => {}
            }
        }
        let (lo, next) = class_char(chars, t)?;
        t = next;
        let mut hi = lo;
        if chars.get(t) == Some(&'-') && chars.get(t + 1).is_some_and(|&c| c != ']') {
            let (end, next) = class_char(chars, t + 1)?;
            if end < lo {
                let text: String = chars[t - 1..next].iter().collect();
                return Err(format!("invalid character class range: `{text}`"));
            }
            hi = end;
            t = next;
        }
        items.push_str(&range(lo, hi));
    }
    Ok((format!("[{}{items}]", if negated { "^" } else { "" }), t))
}

/// Go's `parseClassChar`: one character of a class, maybe escaped.
fn class_char(chars: &[char], t: usize) -> Result<(char, usize), String> {
    match chars.get(t) {
        None => Err("missing closing ]".into()),
        Some('\\') => parse_escape(chars, t),
        Some(&c) => Ok((c, t + 1)),
    }
}

/// Go's `parseEscape`: `chars[start]` is `\`. Returns the character and where it ends.
fn parse_escape(chars: &[char], start: usize) -> Result<(char, usize), String> {
    let Some(&c) = chars.get(start + 1) else {
        return Err("trailing backslash at end of expression".into());
    };
    let mut t = start + 2;
    let invalid = |end: usize| {
        let text: String = chars[start..end.min(chars.len())].iter().collect();
        Err(format!("invalid escape sequence: `{text}`"))
    };
    let octal = |ch: Option<&char>| ch.and_then(|d| d.to_digit(8));
    let value = match c {
        '1'..='7' if octal(chars.get(t)).is_none() => return invalid(t),
        '0'..='7' => {
            let mut r = c.to_digit(8).unwrap_or(0);
            for _ in 0..2 {
                match octal(chars.get(t)) {
                    Some(d) => {
                        r = r * 8 + d;
                        t += 1;
                    }
                    None => break,
                }
            }
            r
        }
        'x' => {
            let hex = |ch: Option<&char>| ch.and_then(|d| d.to_digit(16));
            match (hex(chars.get(t)), hex(chars.get(t + 1))) {
                (Some(x), Some(y)) => {
                    t += 2;
                    x * 16 + y
                }
                _ => return invalid(t + 2),
            }
        }
        'a' => 7,
        'f' => 12,
        'n' => 10,
        'r' => 13,
        't' => 9,
        'v' => 11,
        c if c.is_ascii() && !c.is_ascii_alphanumeric() => u32::from(c),
        _ => return invalid(t),
    };
    char::from_u32(value).map(|ch| (ch, t)).ok_or_else(|| format!("invalid escape value {value:#x}"))
}

/// Go's `parseUnicodeClass` for the single-letter form (`\pL`, `\PN`): `chars[start]` is `\`.
/// Returns class items (to sit inside `[...]`) and where the escape ends.
fn unicode_class(chars: &[char], start: usize) -> Result<(String, usize), String> {
    let negated = chars.get(start + 1) == Some(&'P');
    let name = chars.get(start + 2).copied();
    let invalid = || {
        let text: String = chars[start..(start + 3).min(chars.len())].iter().collect();
        format!("invalid character class range: `{text}`")
    };
    // Go's `unicode.C` is Cc|Cf|Co|Cs, without the unassigned code points of Unicode's `C`.
    let items = match name {
        Some('{') => return Err("unsupported `\\p{...}` class".into()),
        Some('C') => r"\p{Cc}\p{Cf}\p{Co}".to_string(),
        Some(letter @ ('L' | 'M' | 'N' | 'P' | 'S' | 'Z')) => format!("\\p{{{letter}}}"),
        _ => return Err(invalid()),
    };
    let items = if negated { format!("[^{items}]") } else { items };
    Ok((items, start + 3))
}

/// Go's ASCII Perl classes `\d \s \w` and their negations, as class items.
fn perl_class(letter: char) -> String {
    let items = match letter.to_ascii_lowercase() {
        'd' => range('0', '9'),
        's' => ['\t', '\n', '\x0C', '\r', ' '].iter().map(|&c| range(c, c)).collect(),
        _ => [range('0', '9'), range('A', 'Z'), range('a', 'z'), range('_', '_')].concat(),
    };
    if letter.is_ascii_uppercase() { format!("[^{items}]") } else { items }
}

/// Go's POSIX classes (`[:alpha:]`, `[:^digit:]`, ...), ASCII only, as class items.
fn posix_class(name: &str) -> Option<String> {
    let (negated, bare) = match name.strip_prefix("[:^") {
        Some(rest) => (true, rest.strip_suffix(":]")?),
        None => (false, name.strip_prefix("[:")?.strip_suffix(":]")?),
    };
    let ranges: &[(char, char)] = match bare {
        "alnum" => &[('0', '9'), ('A', 'Z'), ('a', 'z')],
        "alpha" => &[('A', 'Z'), ('a', 'z')],
        "ascii" => &[('\x00', '\x7F')],
        "blank" => &[('\t', '\t'), (' ', ' ')],
        "cntrl" => &[('\x00', '\x1F'), ('\x7F', '\x7F')],
        "digit" => &[('0', '9')],
        "graph" => &[('!', '~')],
        "lower" => &[('a', 'z')],
        "print" => &[(' ', '~')],
        "punct" => &[('!', '/'), (':', '@'), ('[', '`'), ('{', '~')],
        "space" => &[('\t', '\r'), (' ', ' ')],
        "upper" => &[('A', 'Z')],
        "word" => &[('0', '9'), ('A', 'Z'), ('a', 'z'), ('_', '_')],
        "xdigit" => &[('0', '9'), ('A', 'F'), ('a', 'f')],
        _ => return None,
    };
    let items: String = ranges.iter().map(|&(lo, hi)| range(lo, hi)).collect();
    Some(if negated { format!("[^{items}]") } else { items })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(go: &str, text: &str) -> bool {
        let rust = to_rust(go).unwrap_or_else(|e| panic!("{go:?}: {e}"));
        regex::Regex::new(&rust).unwrap_or_else(|e| panic!("{go:?} -> {rust:?}: {e}")).is_match(text)
    }

    #[test]
    fn go_class_reads_bracket_as_literal() {
        // What the glob `[*]` becomes: Go reads `[[^/]` as the class {'[', '^', '/'}.
        assert!(matches("^[[^/]*]$", "[^]"));
        assert!(matches("^[[^/]*]$", "]"));
        assert!(!matches("^[[^/]*]$", "a]"));
    }

    #[test]
    fn perl_classes_are_ascii() {
        assert!(matches(r"^\d$", "7"));
        assert!(!matches(r"^\d$", "٣"));
        assert!(matches(r"^[\w]+$", "a_Z9"));
        assert!(!matches(r"^\w$", "é"));
    }

    #[test]
    fn escapes_follow_go() {
        assert!(matches(r"^\x41$", "A"));
        assert!(matches(r"^\101$", "A"));
        assert!(matches(r"^\<$", "<"));
        assert!(to_rust(r"\u0041").is_err());
        assert!(to_rust(r"\1").is_err());
        assert!(to_rust(r"\é").is_err());
        assert!(to_rust(r"\C").is_err());
        assert!(matches(r"^\Q[^/]*$", "[^/]*$ and more"));
        assert!(matches(r"^\Qa*\E$", "a*"));
    }

    #[test]
    fn classes() {
        assert!(matches("^[[:alpha:]]$", "q"));
        assert!(to_rust("^[[:nope:]]$").is_err());
        assert!(to_rust("^[b-a]$").is_err());
        assert!(to_rust("^[abc$").is_err());
        assert!(matches("^[]a]$", "]"));
        assert!(matches("^[a-]$", "-"));
        assert!(matches("^[^a]$", "\n"));
        assert!(!matches("^.$", "\n"));
        assert!(matches(r"^\pL$", "é"));
        assert!(!matches(r"^\PL$", "é"));
        assert!(to_rust(r"\pX").is_err());
    }

    #[test]
    fn caret_is_an_anchor_and_repeats_are_checked() {
        assert!(matches("^^a[^/]*$", "abc"));
        assert!(!matches("^a^b$", "a^b"));
        assert!(to_rust("a**").is_err());
        assert!(to_rust("*a").is_err());
        assert!(to_rust("(a").is_err());
        assert!(to_rust("a)").is_err());
    }
}
