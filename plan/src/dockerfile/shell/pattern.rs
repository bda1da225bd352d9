//! Shell patterns in `${name#p}`, `${name%p}` and `${name/p/r}`, matched as BuildKit matches
//! them: the pattern becomes a regular expression (`?` any character but newline, `*` any run,
//! greedy or not; no bracket expressions), and `%` searches the reversed value with the
//! reversed pattern, since a regular expression cannot find the shortest rightmost match.
//! Go's RE2 and the `regex` crate share leftmost-first semantics, so the matches agree.

use super::error::PatternError;
use super::text::{is_digit, is_letter};
use regex::Regex;

/// A compiled pattern: a plain string when it has no wildcard (the common case, matched
/// without building an automaton), a regular expression otherwise.
pub(super) enum Matcher {
    Literal { text: String, anchored: bool },
    Regex(Regex),
}

impl Matcher {
    /// The leftmost match starting at or after byte `start`, as Go's regexp finds it.
    pub(super) fn find_at(&self, haystack: &str, start: usize) -> Option<(usize, usize)> {
        match self {
            Self::Literal { text, anchored: true } => {
                (start == 0 && haystack.starts_with(text.as_str())).then_some((0, text.len()))
            }
            Self::Literal { text, anchored: false } => {
                let at = start + haystack.get(start..)?.find(text.as_str())?;
                Some((at, at + text.len()))
            }
            Self::Regex(re) => re.find_at(haystack, start).map(|m| (m.start(), m.end())),
        }
    }
}

/// BuildKit's `convertShellPatternToRegex`: `*` is `.*` (`.*?` unless `greedy`), `?` is `.`,
/// `\*`, `\?` and `\\` are literal, `\}` and `\/` are the character alone, any other escape is
/// an error; everything else is literal.
pub(super) fn compile(pattern: &str, greedy: bool, anchored: bool) -> Result<Matcher, PatternError> {
    // Go's text/scanner drops a byte-order mark at the very start.
    let mut chars = pattern.strip_prefix('\u{feff}').unwrap_or(pattern).chars().peekable();
    let mut regex = String::with_capacity(pattern.len() + 4);
    let mut literal = String::with_capacity(pattern.len());
    let mut wildcard = false;
    if anchored {
        regex.push('^');
    }
    let star = if greedy { ".*" } else { ".*?" };
    let mut buf = [0u8; 4];
    while let Some(tok) = chars.next() {
        let c = match tok {
            '*' | '?' => {
                wildcard = true;
                regex.push_str(if tok == '*' { star } else { "." });
                continue;
            }
            '\\' => {
                // `\}` and `\/` only kept the brace or slash from ending the `${}`: the
                // character is taken literally on the next turn.
                if matches!(chars.peek(), Some('}' | '/')) {
                    continue;
                }
                match chars.next() {
                    Some(c @ ('*' | '?' | '\\')) => c,
                    found => return Err(PatternError::InvalidEscape { found }),
                }
            }
            c => c,
        };
        literal.push(c);
        regex.push_str(&regex::escape(c.encode_utf8(&mut buf)));
    }
    if !wildcard {
        return Ok(Matcher::Literal { text: literal, anchored });
    }
    Regex::new(&regex).map(Matcher::Regex).map_err(|e| PatternError::TooLarge(e.to_string()))
}

/// `${value#pattern}` (or `##` when `greedy`): `value` less the prefix that `pattern` matches.
pub(super) fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, (String, PatternError)> {
    let matcher = compile(pattern, greedy, true).map_err(|e| (pattern.to_owned(), e))?;
    Ok(match matcher.find_at(value, 0) {
        Some((_, end)) => value[end..].to_owned(),
        None => value.to_owned(),
    })
}

/// `${value%pattern}` (or `%%` when `greedy`). An invalid pattern is reported reversed, as
/// BuildKit reports it.
pub(super) fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, (String, PatternError)> {
    let reversed: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

/// Reverses a pattern but keeps each `\x` escape in order (`a\*c` becomes `c\*a`).
pub(super) fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = chars.clone();
    let last = chars.len().saturating_sub(1);
    let mut i = 0;
    while i < chars.len() {
        let at = last - i;
        if chars[i] == '\\' && i != last {
            // i < last, so `at >= 1` and `i + 1` is in range.
            out[at - 1] = '\\';
            out[at] = chars[i + 1];
            i += 2;
        } else {
            out[at] = chars[i];
            i += 1;
        }
    }
    out.into_iter().collect()
}

/// `${value/pattern/replacement}` and `${value//pattern/replacement}`.
pub(super) fn replace(
    pattern: &str,
    value: &str,
    replacement: &str,
    all: bool,
) -> Result<String, (String, PatternError)> {
    let matcher = compile(pattern, true, false).map_err(|e| (pattern.to_owned(), e))?;
    if all {
        return Ok(replace_all(&matcher, value, replacement));
    }
    Ok(match matcher.find_at(value, 0) {
        Some((start, end)) => format!("{}{replacement}{}", &value[..start], &value[end..]),
        None => value.to_owned(),
    })
}

/// Go's `Regexp.ReplaceAllString`: the same walk over matches (an empty match right after
/// another match is not replaced) and the replacement read as a template, where `$$` is `$`,
/// `$0`/`${0}` the match, any other `$name`/`${name}` nothing (the pattern has no groups), and a
/// malformed `$` itself.
fn replace_all(matcher: &Matcher, src: &str, template: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut last_end = 0;
    let mut search = 0;
    while search <= src.len() {
        let Some((start, end)) = matcher.find_at(src, search) else {
            break;
        };
        out.push_str(&src[last_end..start]);
        if end > last_end || start == 0 {
            expand_template(&mut out, template, &src[start..end]);
        }
        last_end = end;
        let width = src[search..].chars().next().map_or(0, char::len_utf8);
        if search + width > end {
            search += width;
        } else if search + 1 > end {
            search += 1;
        } else {
            search = end;
        }
    }
    out.push_str(&src[last_end..]);
    out
}

fn expand_template(out: &mut String, template: &str, matched: &str) {
    let mut rest = template;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        match template_name(rest) {
            Some((name, after)) => {
                rest = after;
                if name == "0" {
                    out.push_str(matched);
                }
            }
            None => out.push('$'),
        }
    }
    out.push_str(rest);
}

/// Go's regexp `extract`: a leading `name` or `{name}` of letters, digits and `_`.
fn template_name(s: &str) -> Option<(&str, &str)> {
    let (braced, body) = match s.strip_prefix('{') {
        Some(body) => (true, body),
        None => (false, s),
    };
    let len =
        body.char_indices().find(|&(_, c)| !(is_letter(c) || is_digit(c) || c == '_')).map_or(body.len(), |(i, _)| i);
    if len == 0 {
        return None;
    }
    let (name, after) = body.split_at(len);
    if braced {
        return after.strip_prefix('}').map(|after| (name, after));
    }
    Some((name, after))
}
