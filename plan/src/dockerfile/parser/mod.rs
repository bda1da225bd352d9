//! Dockerfile text to a thin node tree, exactly as BuildKit's `frontend/dockerfile/parser` does.
//!
//! No crate implements BuildKit's quirks (continuation regex, `parseWords`, the JSON fallback,
//! heredoc detection through its shell lexer), so this module is written here from BuildKit's
//! behaviour. Every instruction becomes one child of the root [`Node`]; its arguments are the
//! node's [`Node::next`] list, shaped per instruction like BuildKit's line parsers. Unknown
//! instructions are kept: [`super::instructions`] reports them.

mod directives;
mod heredoc;
mod lines;

use serde::Serialize;
use std::borrow::Cow;
use thiserror::Error;

pub use heredoc::{chomp_heredoc_content, parse_heredoc};

/// Dockerfiles larger than this (4 MiB) are refused before parsing.
pub const MAX_DOCKERFILE_SIZE: usize = 4 * 1024 * 1024;

/// Longest line BuildKit's scanner accepts, newline included (Go's `bufio.MaxScanTokenSize`).
pub const MAX_LINE_SIZE: usize = 64 * 1024;

/// The escape token used when no `# escape=` directive is given.
pub const DEFAULT_ESCAPE_TOKEN: char = '\\';

/// Deepest `ONBUILD ONBUILD ...` nesting the parser follows; BuildKit rejects any nesting later,
/// the bound only keeps recursion finite.
const MAX_ONBUILD_DEPTH: usize = 16;

/// One node of BuildKit's parse tree.
///
/// The root has one child per instruction. An instruction node holds the keyword as written in
/// [`value`](Self::value) and its arguments in [`next`](Self::next) (BuildKit's `Next` chain,
/// flattened into a list). An `ONBUILD` argument is a node whose single child is the trigger
/// instruction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Node {
    /// The token: the instruction keyword as written, or one argument.
    pub value: String,
    /// The rest of this s-expression, in order.
    pub next: Vec<Node>,
    /// Sub-expressions: the instructions under the root, the trigger under `ONBUILD`.
    pub children: Vec<Node>,
    /// Heredoc bodies attached to a `RUN`, `COPY` or `ADD` (also under `ONBUILD`).
    pub heredocs: Vec<Heredoc>,
    /// Whether the arguments were written in exec (JSON array) form (BuildKit's `json` attribute).
    pub json: bool,
    /// The instruction line as read, continuation lines joined.
    pub original: String,
    /// `--flag` words before the arguments, quotes removed.
    pub flags: Vec<String>,
    /// First line (1-based) of the instruction, heredoc bodies included in the range.
    pub start_line: usize,
    /// Last line (1-based) of the instruction.
    pub end_line: usize,
    /// Comment lines directly above the instruction, `#` and surrounding space removed.
    pub prev_comment: Vec<String>,
}

/// A heredoc body (`<<EOF ... EOF`) attached to an instruction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The delimiter word, quotes removed.
    pub name: String,
    /// The file descriptor written before `<<` (`3<<EOF`), 0 when absent.
    pub file_descriptor: u64,
    /// False when any part of the delimiter was quoted (`<<'EOF'`, `<<"EOF"`, `<<E"OF"`): the
    /// body is then taken literally.
    pub expand: bool,
    /// `<<-EOF`: leading tabs are removed from the body lines and the delimiter line.
    pub chomp: bool,
    /// The body as written, line endings kept, leading tabs not yet removed.
    pub content: String,
}

/// A parser directive (`# syntax=...`, `# escape=...`, `# check=...`) from the top of the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Directive {
    /// Lowercased directive name.
    pub name: String,
    /// The value, surrounding whitespace removed.
    pub value: String,
    /// 1-based line of the directive.
    pub line: usize,
}

/// A problem the parser accepts but reports (BuildKit's parser warnings).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// What the lint rule is (`NoEmptyContinuation`).
    pub rule: &'static str,
    /// One-line description, as BuildKit words it.
    pub short: String,
    /// Longer explanation.
    pub detail: String,
    /// Documentation of the rule.
    pub url: &'static str,
    /// The line BuildKit reports: the last line of the instruction.
    pub line: usize,
    /// First line of the instruction the warning is about.
    pub start_line: usize,
    /// Lines of the empty continuation lines themselves.
    pub empty_lines: Vec<usize>,
}

/// Everything [`parse`] produces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ParseResult {
    /// The root node; one child per instruction.
    pub ast: Node,
    /// `\` unless an `# escape=` directive chose `` ` ``.
    pub escape_token: char,
    /// The parser directives at the top of the file, in order.
    pub directives: Vec<Directive>,
    /// Non-fatal findings (empty continuation lines).
    pub warnings: Vec<Warning>,
}

/// Why a Dockerfile could not be parsed, and where.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("Dockerfile line {line}: {kind}")]
pub struct ParseError {
    /// 1-based line where the problem starts.
    pub line: usize,
    /// 1-based line where it ends (equal to `line` for one-line problems).
    pub end_line: usize,
    /// What went wrong.
    pub kind: ParseErrorKind,
}

/// The kinds of [`ParseError`].
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ParseErrorKind {
    /// The input is over [`MAX_DOCKERFILE_SIZE`].
    #[error("Dockerfile is {size} bytes, over the {max} byte limit")]
    TooLarge {
        /// Input size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The input is not UTF-8.
    #[error("Dockerfile is not valid UTF-8")]
    InvalidUtf8,
    /// A line is longer than BuildKit's scanner accepts.
    #[error("dockerfile line greater than max allowed size of {}", MAX_LINE_SIZE - 1)]
    LineTooLong,
    /// Nothing but comments, directives and blank lines.
    #[error("file with no instructions")]
    NoInstructions,
    /// A parser directive appears twice.
    #[error("only one {name} parser directive can be used")]
    DuplicateDirective {
        /// The directive name.
        name: String,
    },
    /// `# escape=` names something other than `\` or `` ` ``.
    #[error("invalid escape token '{value}' does not match ` or \\")]
    InvalidEscapeToken {
        /// The value given.
        value: String,
    },
    /// An exec-form array holds something other than strings.
    #[error("when using JSON array syntax, arrays must be comprised of strings only")]
    NotStringArray,
    /// `ENV name` / `LABEL name` without a value in the legacy form.
    #[error("{instruction} must have two arguments")]
    MissingValue {
        /// `ENV` or `LABEL`.
        instruction: &'static str,
    },
    /// A word in `name=value` form lacks its `=`.
    #[error("Syntax error - can't find = in {word}. Must be of the form: name=value")]
    MissingEquals {
        /// The word, Go-quoted as BuildKit prints it.
        word: String,
    },
    /// A heredoc delimiter could not be lexed.
    #[error("invalid heredoc: {message}")]
    InvalidHeredoc {
        /// The lexer's message.
        message: String,
    },
    /// The file ended before a heredoc's delimiter line.
    #[error("unterminated heredoc")]
    UnterminatedHeredoc,
    /// `ONBUILD` nested deeper than the parser follows.
    #[error("ONBUILD nested too deeply")]
    OnbuildTooDeep,
}

impl ParseError {
    fn new(line: usize, end_line: usize, kind: ParseErrorKind) -> Self {
        Self { line, end_line: end_line.max(line), kind }
    }
}

impl Node {
    /// The node in BuildKit's dump form: one s-expression per instruction, as the `result`
    /// files of BuildKit's parser tests show.
    ///
    /// ```
    /// use nullspace_plan::dockerfile::parser::parse;
    /// let result = parse(b"FROM alpine\nRUN [\"echo\", \"hi\"]\n").unwrap();
    /// assert_eq!(result.ast.dump(), "(from \"alpine\")\n(run \"echo\" \"hi\")");
    /// ```
    pub fn dump(&self) -> String {
        let mut out = String::new();
        self.dump_into(&mut out);
        out.trim_matches(char::is_whitespace).to_owned()
    }

    fn dump_into(&self, out: &mut String) {
        out.push_str(&self.value.to_lowercase());
        if !self.flags.is_empty() {
            out.push_str(" [");
            for (i, flag) in self.flags.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(&go_quote(flag));
            }
            out.push(']');
        }
        for child in &self.children {
            out.push('(');
            out.push_str(&child.dump());
            out.push_str(")\n");
        }
        for next in &self.next {
            out.push(' ');
            if next.children.is_empty() {
                out.push_str(&go_quote(&next.value));
            } else {
                out.push_str(&next.dump());
            }
        }
    }

    /// The instruction's arguments as BuildKit's instruction layer sees them: the values of
    /// [`next`](Self::next), an `ONBUILD` trigger flattened to its keyword and arguments.
    pub fn args(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.arg_strs_into(&mut out);
        out.into_iter().map(str::to_owned).collect()
    }

    /// [`args`](Self::args) borrowed from the tree into `out` (cleared first), so that callers
    /// can reuse one buffer and copy only what they keep.
    pub(crate) fn arg_strs_into<'a>(&'a self, out: &mut Vec<&'a str>) {
        out.clear();
        // Only an ONBUILD argument has children; every other node is a flat list.
        if self.next.iter().all(|n| n.children.is_empty()) {
            out.extend(self.next.iter().map(|n| n.value.as_str()));
            return;
        }
        let mut stack: Vec<std::slice::Iter<'_, Node>> = vec![self.next.iter()];
        while let Some(iter) = stack.last_mut() {
            match iter.next() {
                None => {
                    stack.pop();
                }
                Some(arg) if arg.children.is_empty() => out.push(arg.value.as_str()),
                Some(arg) if arg.children.len() == 1 => {
                    out.push(arg.children[0].value.as_str());
                    stack.push(arg.children[0].next.iter());
                }
                Some(_) => {}
            }
        }
    }

    fn can_contain_heredoc(&self) -> bool {
        let mut node = self;
        if node.value.eq_ignore_ascii_case("onbuild")
            && let Some(sub) = node.next.first().and_then(|n| n.children.first())
        {
            node = sub;
        }
        !node.json && with_lowercase(&node.value, |keyword| matches!(keyword, "add" | "copy" | "run"))
    }
}

/// Go's `strconv.Quote`, which BuildKit's dump uses.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if go_is_print(c) => out.push(c),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Go's `unicode.IsPrint`, approximated without Unicode category tables: controls, spaces other
/// than U+0020, format characters, private-use and non-characters are not printable.
fn go_is_print(c: char) -> bool {
    let u = c as u32;
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let format = matches!(u,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x890..=0x891 | 0x8E2 | 0x180E
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF
        | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F);
    let private = matches!(u, 0xE000..=0xF8FF | 0xF0000..=0xFFFFD | 0x100000..=0x10FFFD);
    let nonchar = (u & 0xFFFE) == 0xFFFE || (0xFDD0..=0xFDEF).contains(&u);
    !(format || private || nonchar)
}

/// Calls `f` with the lowercase form of `word` (Unicode rules, as Go's `strings.ToLower`); short
/// ASCII words, which every instruction keyword is, are lowered on the stack instead of the heap.
pub(crate) fn with_lowercase<R>(word: &str, f: impl FnOnce(&str) -> R) -> R {
    let mut buf = [0u8; 16];
    if word.len() <= buf.len() && word.is_ascii() {
        let lower = &mut buf[..word.len()];
        lower.copy_from_slice(word.as_bytes());
        lower.make_ascii_lowercase();
        if let Ok(lower) = std::str::from_utf8(lower) {
            return f(lower);
        }
    }
    f(&word.to_lowercase())
}

/// The lowercase form of `word` (Unicode rules), borrowed when it already is lowercase ASCII.
pub(crate) fn lowercase(word: &str) -> std::borrow::Cow<'_, str> {
    if word.bytes().any(|b| b.is_ascii_uppercase() || !b.is_ascii()) {
        std::borrow::Cow::Owned(word.to_lowercase())
    } else {
        std::borrow::Cow::Borrowed(word)
    }
}

/// The index of the ASCII byte `b` in `s`: memchr, cheaper than a char search on the short
/// strings (fields, flags, words) it is used on.
pub(crate) fn find_byte(s: &str, b: u8) -> Option<usize> {
    memchr::memchr(b, s.as_bytes())
}

/// `s.split_once(b)` for an ASCII byte `b` (see [`find_byte`]).
pub(crate) fn split_once_byte(s: &str, b: u8) -> Option<(&str, &str)> {
    let i = find_byte(s, b)?;
    Some((&s[..i], &s[i + 1..]))
}

/// Go's `strings.TrimSpace`.
pub(crate) fn go_trim_space(s: &str) -> &str {
    s.trim_matches(char::is_whitespace)
}

/// Splits input into lines the way BuildKit's `bufio.Scanner` with its line-keeping split
/// function does, including its line length limit.
#[derive(Clone)]
struct LineScanner<'a> {
    text: &'a str,
    pos: usize,
    too_long: bool,
}

impl<'a> LineScanner<'a> {
    fn new(text: &'a str) -> Self {
        Self { text, pos: 0, too_long: false }
    }

    fn scan(&mut self) -> Option<&'a str> {
        if self.too_long || self.pos >= self.text.len() {
            return None;
        }
        let rest = &self.text[self.pos..];
        // Go's scanner needs the whole token, newline included, in a 64 KiB buffer; a last line
        // without newline must leave one byte free to see the end of input.
        let (len, limit) = match memchr::memchr(b'\n', rest.as_bytes()) {
            Some(i) => (i + 1, MAX_LINE_SIZE),
            None => (rest.len(), MAX_LINE_SIZE - 1),
        };
        if len > limit {
            self.too_long = true;
            return None;
        }
        self.pos += len;
        Some(&rest[..len])
    }
}

/// The number of `\n` bytes.
fn count_newlines(bytes: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', bytes).count()
}

/// The length the continuation lines after an instruction's first line add to it, read ahead
/// on a copy of the scanner with the same rules as the joining loop in [`parse`], so that the
/// joined line is allocated once.
fn continued_len(mut scanner: LineScanner<'_>, escape: char) -> usize {
    let mut len = 0;
    while let Some(raw) = scanner.scan() {
        let line = trim_newline(raw);
        if is_comment(raw) || is_empty_continuation_line(line) {
            continue;
        }
        let (part, end_of_line) = trim_continuation(line, escape);
        len += part.len();
        if end_of_line {
            break;
        }
    }
    len
}

/// Go's `bytes.TrimRight(line, "\r\n")`.
fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    line.trim_start_matches(char::is_whitespace).starts_with('#')
}

fn is_empty_continuation_line(line: &str) -> bool {
    trim_newline(line).trim_start_matches(char::is_whitespace).is_empty()
}

/// BuildKit's continuation regex ``([^E])E[ \t]*$|^E[ \t]*$`` for escape token `E`: returns the
/// line without the continuation token, and whether the instruction ends on this line.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    if let Some(before) = body.strip_suffix(escape)
        && !before.ends_with(escape)
    {
        return (before, false);
    }
    (line, true)
}

/// Parses a Dockerfile like BuildKit's `parser.Parse`.
///
/// ```
/// use nullspace_plan::dockerfile::parser::parse;
///
/// let text = b"# escape=`\nFROM alpine AS base\nRUN echo a `\n    b\nCOPY <<EOF /hello\nhi\nEOF\n";
/// let result = parse(text).unwrap();
/// assert_eq!(result.escape_token, '`');
/// assert_eq!(result.directives[0].name, "escape");
/// let run = &result.ast.children[1];
/// assert_eq!((run.start_line, run.end_line), (3, 4));
/// assert_eq!(run.next[0].value, "echo a     b");
/// let copy = &result.ast.children[2];
/// assert_eq!(copy.heredocs[0].name, "EOF");
/// assert_eq!(copy.heredocs[0].content, "hi\n");
///
/// let err = parse(b"FROM alpine\nENV PATH\n").unwrap_err();
/// assert_eq!(err.line, 2);
/// ```
pub fn parse(input: &[u8]) -> Result<ParseResult, ParseError> {
    let mut tree = TreeSink { root: Node::default(), next: Vec::new() };
    // Every instruction starts a line: the line count bounds the children, and reserving it
    // once spares the regrowth copies of these large nodes.
    tree.root.children.reserve(count_newlines(input) + 1);
    let (escape_token, directives, warnings) = parse_each(input, &mut tree)?;
    Ok(ParseResult { ast: tree.root, escape_token, directives, warnings })
}

/// Where [`parse_each`] puts the instructions it reads: each is made in place (a node is large,
/// and moving it from function to function is a copy each time).
trait Sink<'a> {
    /// Where argument values go.
    type Args: lines::ArgSink;
    /// A new empty node, already stored, for the next instruction, and the argument list.
    fn slot(&mut self) -> (&mut Node, &mut Self::Args);
    /// The instruction in the last slot is complete; `line` is its text.
    fn finish(&mut self, line: Cow<'a, str>);
}

/// [`parse`]'s sink: the root node, arguments as leaf nodes.
struct TreeSink {
    root: Node,
    next: Vec<Node>,
}

impl<'a> Sink<'a> for TreeSink {
    type Args = Vec<Node>;

    fn slot(&mut self) -> (&mut Node, &mut Vec<Node>) {
        self.root.children.push(Node::default());
        let child = self.root.children.last_mut().expect("just pushed");
        (child, &mut self.next)
    }

    fn finish(&mut self, line: Cow<'a, str>) {
        let first = self.root.children.len() == 1;
        let Some(child) = self.root.children.last_mut() else { return };
        child.original = line.into_owned();
        if !self.next.is_empty() {
            child.next = std::mem::take(&mut self.next);
        }
        if first {
            self.root.start_line = child.start_line;
        }
        self.root.end_line = child.end_line;
    }
}

/// [`parse_flat`]'s sink.
struct FlatSink<'a> {
    instructions: Vec<FlatInstruction<'a>>,
    args: Vec<Cow<'static, str>>,
}

impl<'a> Sink<'a> for FlatSink<'a> {
    type Args = Vec<Cow<'static, str>>;

    fn slot(&mut self) -> (&mut Node, &mut Self::Args) {
        let start = self.args.len();
        self.instructions.push(FlatInstruction {
            node: Node::default(),
            original: Cow::Borrowed(""),
            args: start..start,
        });
        let last = self.instructions.last_mut().expect("just pushed");
        (&mut last.node, &mut self.args)
    }

    fn finish(&mut self, line: Cow<'a, str>) {
        if let Some(last) = self.instructions.last_mut() {
            last.original = line;
            last.args.end = self.args.len();
        }
    }
}

/// An instruction node with its argument values kept apart, for a caller that wants only the
/// values: its `next` is empty, but for an ONBUILD, whose trigger stays a sub-tree there.
pub(crate) struct FlatInstruction<'a> {
    /// The instruction, arguments and line apart (its `original` is empty).
    pub(crate) node: Node,
    /// The instruction line (continuation lines joined), borrowed from the text when it is one
    /// line.
    pub(crate) original: Cow<'a, str>,
    /// Where its argument values are in [`FlatParse::args`] (as the leaves of `next` would hold
    /// them).
    pub(crate) args: std::ops::Range<usize>,
}

/// [`parse`] into [`FlatInstruction`]s: no leaf node is made per argument, and the values of
/// all instructions share one list.
pub(crate) struct FlatParse<'a> {
    /// The instructions in order.
    pub(crate) instructions: Vec<FlatInstruction<'a>>,
    /// Every instruction's argument values, in order.
    pub(crate) args: Vec<Cow<'static, str>>,
    /// As [`ParseResult::escape_token`].
    pub(crate) escape_token: char,
    /// As [`ParseResult::directives`].
    pub(crate) directives: Vec<Directive>,
    /// As [`ParseResult::warnings`].
    pub(crate) warnings: Vec<Warning>,
}

/// [`parse`], the arguments of each instruction as a flat list of values.
pub(crate) fn parse_flat(input: &[u8]) -> Result<FlatParse<'_>, ParseError> {
    let lines = count_newlines(input) + 1;
    let mut flat = FlatSink { instructions: Vec::with_capacity(lines), args: Vec::with_capacity(lines) };
    let (escape_token, directives, warnings) = parse_each(input, &mut flat)?;
    Ok(FlatParse { instructions: flat.instructions, args: flat.args, escape_token, directives, warnings })
}

/// The parser: makes each instruction in a slot of `sink` (its `original` left empty, its line
/// handed to the sink when it is complete), and returns the escape token, directives and
/// warnings.
fn parse_each<'a>(
    input: &'a [u8],
    sink: &mut impl Sink<'a>,
) -> Result<(char, Vec<Directive>, Vec<Warning>), ParseError> {
    use ParseErrorKind as K;
    if input.len() > MAX_DOCKERFILE_SIZE {
        return Err(ParseError::new(1, 1, K::TooLarge { size: input.len(), max: MAX_DOCKERFILE_SIZE }));
    }
    let text = std::str::from_utf8(input).map_err(|e| {
        let line = input[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
        ParseError::new(line, line, K::InvalidUtf8)
    })?;

    let mut directives = directives::DirectiveParser::default();
    let mut escape = DEFAULT_ESCAPE_TOKEN;
    let mut current_line = 0usize;
    let mut count = 0usize;
    let mut scanner = LineScanner::new(text);
    let mut warnings = Vec::new();
    let mut comments: Vec<String> = Vec::new();

    while let Some(raw) = scanner.scan() {
        let raw = if current_line == 0 { raw.strip_prefix('\u{feff}').unwrap_or(raw) } else { raw };
        if is_comment(raw) {
            // BuildKit drops the first byte, not the `#`, so indented comments keep their `#`.
            let comment = String::from_utf8_lossy(&raw.as_bytes()[1..]);
            let comment = go_trim_space(&comment);
            if comment.is_empty() {
                comments.clear();
            } else {
                comments.push(comment.to_owned());
            }
        }
        let line = trim_newline(raw).trim_start_matches(char::is_whitespace);
        let directive =
            directives.parse_line(line).map_err(|kind| ParseError::new(current_line + 1, current_line + 1, kind))?;
        if let Some(d) = &directive {
            if d.name == "escape" {
                escape = directives::escape_token(&d.value)
                    .map_err(|kind| ParseError::new(current_line + 1, current_line + 1, kind))?;
            }
            comments.pop();
        }
        let line = if is_comment(line) { "" } else { line };
        current_line += 1;
        let start_line = current_line;

        let (first, mut end_of_line) = trim_continuation(line, escape);
        if end_of_line && first.is_empty() {
            continue;
        }
        // A one-line instruction is a slice of the text; continuation lines are joined into a
        // string allocated once.
        let single = end_of_line;
        let mut buf = String::new();
        if !single {
            buf.reserve_exact(first.len() + continued_len(scanner.clone(), escape));
            buf.push_str(first);
        }
        let mut empty_lines = Vec::new();
        while !end_of_line {
            let Some(raw) = scanner.scan() else { break };
            directives
                .parse_line(trim_newline(raw))
                .map_err(|kind| ParseError::new(current_line + 1, current_line + 1, kind))?;
            current_line += 1;
            if is_comment(raw) {
                continue;
            }
            let line = trim_newline(raw);
            if is_empty_continuation_line(line) {
                empty_lines.push(current_line);
                continue;
            }
            let (part, eol) = trim_continuation(line, escape);
            end_of_line = eol;
            buf.push_str(part);
        }

        let line: Cow<'_, str> = if single { Cow::Borrowed(first) } else { Cow::Owned(buf) };
        if !empty_lines.is_empty() {
            warnings.push(Warning {
                rule: "NoEmptyContinuation",
                short: format!("Empty continuation line found in: {line}"),
                detail: "Empty continuation lines will become errors in a future release".into(),
                url: "https://docs.docker.com/go/dockerfile/rule/no-empty-continuation/",
                line: current_line,
                start_line,
                empty_lines,
            });
        }

        let (child, args) = sink.slot();
        lines::node_into(child, &line, escape, std::mem::take(&mut comments), 0, args)
            .map_err(|kind| ParseError::new(start_line, current_line, kind))?;

        if line.contains("<<") && child.can_contain_heredoc() {
            let heredocs = heredoc::heredocs_from_line(&line)
                .map_err(|message| ParseError::new(start_line, current_line, K::InvalidHeredoc { message }))?;
            for mut doc in heredocs {
                // The body is the lines up to the delimiter line, contiguous in the text.
                let body_start = scanner.pos;
                let mut body_end = None;
                while let Some(raw) = scanner.scan() {
                    current_line += 1;
                    let mut candidate = trim_newline(raw);
                    if doc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == doc.name {
                        body_end = Some(scanner.pos - raw.len());
                        break;
                    }
                }
                let Some(body_end) = body_end else {
                    return Err(ParseError::new(start_line, current_line, K::UnterminatedHeredoc));
                };
                doc.content.push_str(&text[body_start..body_end]);
                child.heredocs.push(doc);
            }
        }

        child.start_line = start_line;
        child.end_line = current_line;
        count += 1;
        sink.finish(line);
    }

    if count == 0 {
        let line = current_line.max(1);
        return Err(ParseError::new(line, line, K::NoInstructions));
    }
    if scanner.too_long {
        return Err(ParseError::new(current_line + 1, current_line + 1, K::LineTooLong));
    }
    Ok((escape, directives.into_found(), warnings))
}

#[cfg(test)]
mod tests;
