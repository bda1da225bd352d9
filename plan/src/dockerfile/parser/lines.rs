//! BuildKit's line parsers: one joined instruction line to a [`Node`], arguments shaped per
//! instruction (`frontend/dockerfile/parser/line_parsers.go` and `split_command.go`).

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};

use super::{
    MAX_ONBUILD_DEPTH, Node, ParseErrorKind, find_byte, go_quote, go_trim_space, split_once_byte, with_lowercase,
};

type LineResult = Result<bool, ParseErrorKind>;

/// Where an instruction's argument values go: leaf nodes of the tree, or (when only the
/// values are wanted) a flat list, where the fixed separators cost no allocation; either is a
/// `Vec` of an [`ArgValue`].
pub(super) trait ArgSink {
    /// An argument copied from the line.
    fn push_str(&mut self, value: &str);
    /// An argument already owned.
    fn push_string(&mut self, value: String);
    /// A fixed argument (the `=` or empty separator of a key/value pair).
    fn push_static(&mut self, value: &'static str);
    /// Room for exactly `additional` more arguments (most instructions have one or two).
    fn reserve(&mut self, additional: usize);
    /// How many arguments there are.
    fn len(&self) -> usize;
    /// Drops the arguments after the first `len`.
    fn truncate(&mut self, len: usize);
}

/// One argument value as a sink stores it.
pub(super) trait ArgValue {
    /// A value copied from the line.
    fn copied(value: &str) -> Self;
    /// A value already owned.
    fn owned(value: String) -> Self;
    /// A fixed value.
    fn fixed(value: &'static str) -> Self;
}

impl ArgValue for Node {
    fn copied(value: &str) -> Self {
        Self::owned(value.to_owned())
    }

    fn owned(value: String) -> Self {
        Node { value, ..Node::default() }
    }

    fn fixed(value: &'static str) -> Self {
        Self::copied(value)
    }
}

impl ArgValue for Cow<'static, str> {
    fn copied(value: &str) -> Self {
        Cow::Owned(value.to_owned())
    }

    fn owned(value: String) -> Self {
        Cow::Owned(value)
    }

    fn fixed(value: &'static str) -> Self {
        Cow::Borrowed(value)
    }
}

impl<T: ArgValue> ArgSink for Vec<T> {
    fn push_str(&mut self, value: &str) {
        self.push(T::copied(value));
    }

    fn push_string(&mut self, value: String) {
        self.push(T::owned(value));
    }

    fn push_static(&mut self, value: &'static str) {
        self.push(T::fixed(value));
    }

    fn reserve(&mut self, additional: usize) {
        Vec::reserve_exact(self, additional);
    }

    fn len(&self) -> usize {
        Vec::len(self)
    }

    fn truncate(&mut self, len: usize) {
        Vec::truncate(self, len);
    }
}

/// `newNodeFromLine`: keyword, flags, then the instruction's argument parser. The line becomes
/// the node's `original`.
pub(super) fn node_from_line(
    line: String,
    escape: char,
    comments: Vec<String>,
    depth: usize,
) -> Result<Node, ParseErrorKind> {
    let mut next = Vec::new();
    let mut node = Node::default();
    node_into(&mut node, &line, escape, comments, depth, &mut next)?;
    node.original = line;
    if !next.is_empty() {
        node.next = next;
    }
    Ok(node)
}

/// [`node_from_line`] into the empty node `node`, with the arguments written to `args` (an
/// ONBUILD's go to the node's `next` all the same: its trigger is a sub-tree), and `original`
/// left empty.
pub(super) fn node_into<A: ArgSink>(
    node: &mut Node,
    line: &str,
    escape: char,
    comments: Vec<String>,
    depth: usize,
    args_out: &mut A,
) -> Result<(), ParseErrorKind> {
    let (cmd, flags, args) = split_command(line, escape);
    let args = args.as_ref();
    let mut next = Vec::new();
    let out = args_out;
    let json = with_lowercase(cmd, |lower| {
        Ok(match lower {
            "add" | "copy" | "volume" => parse_maybe_json_to_list(args, out)?,
            "arg" => {
                parse_name_or_name_val(args, escape, out);
                false
            }
            "cmd" | "entrypoint" | "run" | "shell" => parse_maybe_json(args, out)?,
            "env" => {
                parse_name_val(args, "ENV", escape, out)?;
                false
            }
            "label" => {
                parse_name_val(args, "LABEL", escape, out)?;
                false
            }
            "expose" | "from" => {
                parse_strings_whitespace_delimited(args, out);
                false
            }
            "healthcheck" => parse_health_config(args, out)?,
            "maintainer" | "stopsignal" | "user" | "workdir" => {
                parse_string(args, out);
                false
            }
            "onbuild" => {
                next = parse_sub_command(args, escape, depth)?;
                false
            }
            // Unknown instructions keep one empty argument node, as BuildKit's parseIgnore does.
            _ => {
                out.reserve(1);
                out.push_static("");
                false
            }
        })
    })?;
    node.value = cmd.to_owned();
    node.flags = flags;
    node.next = next;
    node.json = json;
    node.prev_comment = comments;
    Ok(())
}

/// Go's `unicode.IsSpace` applied to a single byte taken as a rune (Latin-1), as BuildKit's
/// byte-wise loops do.
fn is_space_byte(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' | 0x85 | 0xa0)
}

/// The Go regexp `[\t\v\f\r ]+` splitter with Go's `Regexp.Split(s, n)` semantics
/// (`n == 0` meaning no limit), handing each field to `emit`.
fn split_ws<'a>(s: &'a str, n: usize, mut emit: impl FnMut(&'a str)) {
    if s.is_empty() {
        emit("");
        return;
    }
    let is_ws = |b: u8| matches!(b, b'\t' | 0x0b | 0x0c | b'\r' | b' ');
    let bytes = s.as_bytes();
    let mut emitted = 0;
    let mut beg = 0;
    let mut end = 0;
    let mut i = 0;
    while i < bytes.len() {
        if !is_ws(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_ws(bytes[i]) {
            i += 1;
        }
        if n > 0 && emitted == n - 1 {
            break;
        }
        end = start;
        emit(&s[beg..end]);
        emitted += 1;
        beg = i;
    }
    if end != s.len() {
        emit(&s[beg..]);
    }
}

/// `splitCommand`: the keyword, the leading `--flags`, and the trimmed remaining arguments.
fn split_command(line: &str, escape: char) -> (&str, Vec<String>, Cow<'_, str>) {
    let line = go_trim_space(line);
    let is_ws = |b: u8| matches!(b, b'\t' | 0x0b | 0x0c | b'\r' | b' ');
    let Some(cmd_end) = line.bytes().position(is_ws) else {
        return (line, Vec::new(), Cow::Borrowed(""));
    };
    let rest_start = line.as_bytes()[cmd_end..].iter().position(|&b| !is_ws(b)).map_or(line.len(), |p| cmd_end + p);
    let (args, flags) = extract_builder_flags(&line[rest_start..], escape);
    let args = match args {
        Cow::Borrowed(args) => Cow::Borrowed(go_trim_space(args)),
        Cow::Owned(args) => Cow::Owned(go_trim_space(&args).to_owned()),
    };
    (&line[..cmd_end], flags, args)
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Spaces,
    Word,
    Quote,
}

/// `extractBuilderFlags`. BuildKit walks bytes here and turns each byte into a rune, so
/// non-ASCII bytes in flags come out as Latin-1 characters; that is kept.
fn extract_builder_flags(line: &str, escape: char) -> (Cow<'_, str>, Vec<String>) {
    let bytes = line.as_bytes();
    // The rest starts mid-character only after a flag whose last byte looked like a space.
    let rest_from = |pos: usize| line.get(pos..).map_or_else(|| String::from_utf8_lossy(&bytes[pos..]), Cow::Borrowed);
    let esc = u32::from(escape);
    // Length of the run from `pos` of ASCII bytes taken as they are, copied in one go.
    let run = |pos: usize, stop: &dyn Fn(u8) -> bool| {
        bytes[pos..].iter().position(|&b| !b.is_ascii() || u32::from(b) == esc || stop(b)).unwrap_or(bytes.len() - pos)
    };
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = 0u8;
    let mut blank_ok = false;
    let mut pos = 0;
    while pos <= bytes.len() {
        let at_end = pos == bytes.len();
        let ch = if at_end { 0 } else { bytes[pos] };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if is_space_byte(ch) {
                pos += 1;
                continue;
            }
            if ch != b'-' || pos + 1 == bytes.len() || bytes[pos + 1] != b'-' {
                return (rest_from(pos), words);
            }
            phase = Phase::Word;
        }
        if at_end {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            let plain = run(pos, &|b| is_space_byte(b) || b == b'\'' || b == b'"');
            if plain > 0 {
                word.push_str(&line[pos..pos + plain]);
                pos += plain;
                continue;
            }
            if is_space_byte(ch) {
                phase = Phase::Spaces;
                if word == "--" {
                    return (rest_from(pos), words);
                }
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                word.clear();
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == b'\'' || ch == b'"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                pos += 1;
                continue;
            }
            let mut c = ch;
            if u32::from(c) == esc {
                if pos + 1 == bytes.len() {
                    pos += 1;
                    continue;
                }
                pos += 1;
                c = bytes[pos];
            }
            word.push(char::from(c));
            pos += 1;
            continue;
        }
        // Phase::Quote
        let plain = run(pos, &|b| b == quote);
        if plain > 0 {
            word.push_str(&line[pos..pos + plain]);
            pos += plain;
            continue;
        }
        if ch == quote {
            phase = Phase::Word;
            pos += 1;
            continue;
        }
        let mut c = ch;
        if u32::from(c) == esc {
            if pos + 1 == bytes.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            c = bytes[pos];
        }
        word.push(char::from(c));
        pos += 1;
    }
    (Cow::Borrowed(""), words)
}

/// `parseWords`: splits on whitespace keeping quotes and escapes in the words. Every character
/// but a final escape is kept, so each word is a slice of `rest`.
pub(super) fn parse_words(rest: &str, escape: char) -> Words<'_> {
    Words { rest, escape, pos: 0 }
}

/// The words of [`parse_words`], found one at a time.
#[derive(Clone)]
pub(super) struct Words<'a> {
    rest: &'a str,
    escape: char,
    pos: usize,
}

impl Words<'_> {
    /// The character at byte `pos`, decoded only when it is not ASCII.
    fn char_at(&self, pos: usize) -> Option<char> {
        match *self.rest.as_bytes().get(pos)? {
            b if b.is_ascii() => Some(char::from(b)),
            _ => self.rest.get(pos..)?.chars().next(),
        }
    }
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let bytes = self.rest.as_bytes();
        let mut phase = Phase::Spaces;
        let mut quote = '\0';
        let mut start = 0;
        let mut end = 0;
        while let Some(ch) = self.char_at(self.pos) {
            let i = self.pos;
            self.pos += ch.len_utf8();
            if phase == Phase::Spaces {
                if ch.is_whitespace() {
                    continue;
                }
                phase = Phase::Word;
                start = i;
            }
            let escaped = if phase == Phase::Word {
                if ch.is_whitespace() {
                    if end > start {
                        return Some(&self.rest[start..end]);
                    }
                    phase = Phase::Spaces;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    quote = ch;
                    phase = Phase::Quote;
                }
                ch == self.escape
            } else {
                if ch == quote {
                    phase = Phase::Word;
                }
                ch == self.escape && quote != '\''
            };
            end = self.pos;
            if escaped {
                match self.char_at(self.pos) {
                    Some(next) => {
                        self.pos += next.len_utf8();
                        end = self.pos;
                    }
                    // An escape that ends the input is dropped.
                    None => end = i,
                }
            } else if phase == Phase::Word {
                // The common case: a run of ASCII characters with no meaning here.
                let plain = |b: u8| {
                    b.is_ascii()
                        && !b.is_ascii_whitespace()
                        && b != 0x0b
                        && !matches!(b, b'\'' | b'"')
                        && char::from(b) != self.escape
                };
                while bytes.get(self.pos).is_some_and(|&b| plain(b)) {
                    self.pos += 1;
                }
                end = self.pos;
            }
        }
        (phase != Phase::Spaces && end > start).then(|| &self.rest[start..end])
    }
}

fn key_value_nodes<A: ArgSink>(out: &mut A, key: &str, value: &str, sep: &'static str) {
    out.push_str(key);
    out.push_str(value);
    out.push_static(sep);
}

/// `parseNameVal` for ENV and LABEL: `name=value ...`, or the legacy `name value` form.
fn parse_name_val<A: ArgSink>(
    rest: &str,
    instruction: &'static str,
    escape: char,
    out: &mut A,
) -> Result<(), ParseErrorKind> {
    let mut words = parse_words(rest, escape);
    let Some(first) = words.next() else {
        return Ok(());
    };
    if find_byte(first, b'=').is_none() {
        out.reserve(3);
        let mut parts = Vec::with_capacity(2);
        split_ws(rest, 2, |part| parts.push(part));
        if parts.len() < 2 {
            return Err(ParseErrorKind::MissingValue { instruction });
        }
        key_value_nodes(out, parts[0], parts[1], "");
        return Ok(());
    }
    // Every word holds an `=`, so their count bounds the pairs without splitting the words twice
    // (capped: values may hold many more).
    out.reserve(rest.bytes().filter(|&b| b == b'=').count().min(16) * 3);
    for word in std::iter::once(first).chain(words) {
        let Some((key, value)) = split_once_byte(word, b'=') else {
            return Err(ParseErrorKind::MissingEquals { word: go_quote(word) });
        };
        key_value_nodes(out, key, value, "=");
    }
    Ok(())
}

/// `parseNameOrNameVal` for ARG: the words as they are.
fn parse_name_or_name_val<A: ArgSink>(rest: &str, escape: char, out: &mut A) {
    for word in parse_words(rest, escape) {
        out.push_str(word);
    }
}

/// `parseStringsWhitespaceDelimited`.
fn parse_strings_whitespace_delimited<A: ArgSink>(rest: &str, out: &mut A) {
    if rest.is_empty() {
        return;
    }
    let mut count = 0;
    split_ws(rest, 0, |_| count += 1);
    out.reserve(count);
    split_ws(rest, 0, |field| out.push_str(field));
}

/// `parseString`: the whole rest as one argument.
fn parse_string<A: ArgSink>(rest: &str, out: &mut A) {
    if !rest.is_empty() {
        out.reserve(1);
        out.push_str(rest);
    }
}

/// A JSON array of strings read straight into argument values, as `Vec<String>` would be read.
struct StringArgs<'o, A>(&'o mut A);

impl<'de, A: ArgSink> DeserializeSeed<'de> for StringArgs<'_, A> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, A: ArgSink> Visitor<'de> for StringArgs<'_, A> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of strings")
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
        self.0.reserve(seq.size_hint().unwrap_or(0));
        while let Some(s) = seq.next_element::<String>()? {
            self.0.push_string(s);
        }
        Ok(())
    }
}

enum JsonOutcome {
    Strings,
    NotJson,
    NotStrings,
}

/// `parseJSON`: a JSON array of strings (written to `out`), or why not (`out` left as it was).
fn parse_json<A: ArgSink>(rest: &str, out: &mut A) -> JsonOutcome {
    let rest = rest.trim_start_matches(char::is_whitespace);
    if !rest.starts_with('[') {
        return JsonOutcome::NotJson;
    }
    // Arrays of strings, the usual case, are read directly; anything else takes the general
    // path that tells non-strings from non-JSON.
    let before = out.len();
    let mut de = serde_json::Deserializer::from_str(rest);
    if StringArgs(&mut *out).deserialize(&mut de).and_then(|()| de.end()).is_ok() {
        return JsonOutcome::Strings;
    }
    out.truncate(before);
    match serde_json::from_str::<Vec<serde_json::Value>>(rest) {
        Err(_) => JsonOutcome::NotJson,
        Ok(values) => {
            if !values.iter().all(serde_json::Value::is_string) {
                return JsonOutcome::NotStrings;
            }
            out.reserve(values.len());
            for value in values {
                if let serde_json::Value::String(s) = value {
                    out.push_string(s);
                }
            }
            JsonOutcome::Strings
        }
    }
}

/// `parseMaybeJSON`: exec form, else the whole rest as one shell-form argument.
fn parse_maybe_json<A: ArgSink>(rest: &str, out: &mut A) -> LineResult {
    if rest.is_empty() {
        return Ok(false);
    }
    match parse_json(rest, out) {
        JsonOutcome::Strings => Ok(true),
        JsonOutcome::NotStrings => Err(ParseErrorKind::NotStringArray),
        JsonOutcome::NotJson => {
            out.reserve(1);
            out.push_str(rest);
            Ok(false)
        }
    }
}

/// `parseMaybeJSONToList`: exec form, else whitespace-separated words.
fn parse_maybe_json_to_list<A: ArgSink>(rest: &str, out: &mut A) -> LineResult {
    match parse_json(rest, out) {
        JsonOutcome::Strings => Ok(true),
        JsonOutcome::NotStrings => Err(ParseErrorKind::NotStringArray),
        JsonOutcome::NotJson => {
            parse_strings_whitespace_delimited(rest, out);
            Ok(false)
        }
    }
}

/// `parseHealthConfig`: a type word (`CMD`, `NONE`) then a maybe-JSON command. BuildKit finds
/// the type's end byte-wise, which is kept.
fn parse_health_config<A: ArgSink>(rest: &str, out: &mut A) -> LineResult {
    let bytes = rest.as_bytes();
    let sep = bytes.iter().position(|&b| is_space_byte(b)).unwrap_or(bytes.len());
    if sep == 0 {
        return Ok(false);
    }
    let next = bytes[sep..].iter().position(|&b| !is_space_byte(b)).map_or(bytes.len(), |p| sep + p);
    out.reserve(1);
    out.push_string(String::from_utf8_lossy(&bytes[..sep]).into_owned());
    let cmd = String::from_utf8_lossy(&bytes[next..]);
    parse_maybe_json(&cmd, out)
}

/// `parseSubCommand` for ONBUILD: the trigger instruction becomes the only child.
fn parse_sub_command(rest: &str, escape: char, depth: usize) -> Result<Vec<Node>, ParseErrorKind> {
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    if depth >= MAX_ONBUILD_DEPTH {
        return Err(ParseErrorKind::OnbuildTooDeep);
    }
    let child = node_from_line(rest.to_owned(), escape, Vec::new(), depth + 1)?;
    Ok(vec![Node { children: vec![child], ..Node::default() }])
}
