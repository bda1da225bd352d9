//! The lexer proper: BuildKit's `Lex` and `shellWord` (`frontend/dockerfile/shell/lex.go`).

use super::env::EnvGetter;
use super::error::{ShellError, ShellErrorKind};
use super::pattern;
use super::text::{is_digit, is_letter, rune_text};
use std::borrow::Cow;
use std::collections::BTreeSet;

/// How deeply `${name:-...}` (and the other modifiers) may nest inside one another before the
/// word is refused with [`ShellErrorKind::TooDeep`]. BuildKit has no limit (Go's stack grows);
/// this keeps ours bounded, far beyond anything a Dockerfile writes.
pub const MAX_NESTING: usize = 128;

/// BuildKit's word expander (`shell.Lex`): quotes, escapes and `$` expansion of one word, as
/// `dockerfile2llb` and the Dockerfile parser use it.
///
/// The options mirror BuildKit's fields; each `with_*` returns a changed copy. A `Lex` holds no
/// state between calls, so one can be shared freely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lex {
    escape: char,
    raw_quotes: bool,
    raw_escapes: bool,
    skip_process_quotes: bool,
    skip_unset_env: bool,
}

/// The outcome of an expansion together with the variables it looked up, as BuildKit's
/// `ProcessWordResult`. The names are recorded even when expansion fails part-way (BuildKit
/// reports `UndefinedVar` for them all the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expansion<T> {
    /// The expanded value, or why expansion failed.
    pub value: Result<T, ShellError>,
    /// Names looked up and defined (even if defined as empty).
    pub matched: BTreeSet<String>,
    /// Names looked up and not defined: what BuildKit's `UndefinedVar` lint reports (after
    /// removing the stage's build args and a few well-known names).
    pub unmatched: BTreeSet<String>,
}

impl Lex {
    /// A lexer with BuildKit's defaults and `escape` as its escape character (`\`, or the
    /// `# escape=` directive's character).
    #[must_use]
    pub const fn new(escape: char) -> Self {
        Self { escape, raw_quotes: false, raw_escapes: false, skip_process_quotes: false, skip_unset_env: false }
    }

    /// The lexer BuildKit expands heredoc contents with (`COPY <<EOF`, `RUN <<EOF` whose
    /// delimiter is unquoted): escape character `\` whatever the Dockerfile's `escape`
    /// directive says, and quotes left as they are.
    #[must_use]
    pub const fn for_heredoc_content() -> Self {
        Self::new('\\').with_skip_process_quotes(true)
    }

    /// The escape character.
    #[must_use]
    pub const fn escape(&self) -> char {
        self.escape
    }

    /// Keep quote characters in the output (BuildKit's `RawQuotes`).
    #[must_use]
    pub const fn with_raw_quotes(mut self, on: bool) -> Self {
        self.raw_quotes = on;
        self
    }

    /// Keep escape characters in the output (BuildKit's `RawEscapes`).
    #[must_use]
    pub const fn with_raw_escapes(mut self, on: bool) -> Self {
        self.raw_escapes = on;
        self
    }

    /// Treat `'` and `"` as ordinary characters (BuildKit's `SkipProcessQuotes`).
    #[must_use]
    pub const fn with_skip_process_quotes(mut self, on: bool) -> Self {
        self.skip_process_quotes = on;
        self
    }

    /// Leave references to undefined variables as written, e.g. `${X:-a}` (BuildKit's
    /// `SkipUnsetEnv`).
    #[must_use]
    pub const fn with_skip_unset_env(mut self, on: bool) -> Self {
        self.skip_unset_env = on;
        self
    }

    /// Expands `word` against `env` into one string, keeping whitespace (BuildKit's
    /// `ProcessWord`).
    ///
    /// ```
    /// use nullspace_plan::dockerfile::shell::Lex;
    ///
    /// let env = [("NAME", "app"), ("EMPTY", "")];
    /// let lex = Lex::new('\\');
    /// assert_eq!(lex.process_word("/srv/${NAME}-${EMPTY:-x}", &env).unwrap(), "/srv/app-x");
    /// assert_eq!(lex.process_word("'$NAME' \"$NAME\"", &env).unwrap(), "$NAME app");
    /// let err = lex.process_word("${NAME:?}${MISSING?must be set}", &env).unwrap_err();
    /// assert_eq!(err.to_string(), r#"failed to process "${NAME:?}${MISSING?must be set}": MISSING: must be set"#);
    /// ```
    pub fn process_word<E: EnvGetter + ?Sized>(&self, word: &str, env: &E) -> Result<String, ShellError> {
        self.process_word_with_matches(word, env).value
    }

    /// Expands `word` and splits the result into words at unquoted whitespace that did not
    /// come from quotes or escapes (BuildKit's `ProcessWords`, used for `EXPOSE`).
    ///
    /// Faithful to a BuildKit quirk: a `${name<modifier>...}` expansion drops the part of the
    /// current word written before it (`a${X:-b}` gives `["b"]`).
    ///
    /// ```
    /// use nullspace_plan::dockerfile::shell::Lex;
    ///
    /// let env = vec!["PORTS=80/tcp  443".to_string()];
    /// let words = Lex::new('\\').process_words("$PORTS \"8080 x\" 9\\ 0", &env).unwrap();
    /// assert_eq!(words, ["80/tcp", "443", "8080 x", "9 0"]);
    /// ```
    pub fn process_words<E: EnvGetter + ?Sized>(&self, word: &str, env: &E) -> Result<Vec<String>, ShellError> {
        self.run(word, env, true, true).value.map(|(_, words)| words)
    }

    /// Expands `word` like [`Lex::process_word`] and reports which variables it looked up
    /// (BuildKit's `ProcessWordWithMatches`, used for ARG defaults, `FROM` and the
    /// `UndefinedVar` lint).
    ///
    /// ```
    /// use nullspace_plan::dockerfile::shell::Lex;
    /// use std::collections::BTreeMap;
    ///
    /// let env = BTreeMap::from([("VERSION", "1.2"), ("VARIANT", "")]);
    /// let out = Lex::new('\\').process_word_with_matches("v${VERSION}${VARIANT:+-$VARIANT}${OS:-linux}", &env);
    /// assert_eq!(out.value.unwrap(), "v1.2linux");
    /// assert_eq!(out.matched.into_iter().collect::<Vec<_>>(), ["VARIANT", "VERSION"]);
    /// assert_eq!(out.unmatched.into_iter().collect::<Vec<_>>(), ["OS"]);
    /// ```
    pub fn process_word_with_matches<E: EnvGetter + ?Sized>(&self, word: &str, env: &E) -> Expansion<String> {
        self.expand_recording(word, env, true)
    }

    /// [`Lex::process_word_with_matches`] without recording the names found (`matched` stays
    /// empty): what the dispatcher needs for its `UndefinedVar` lint, for less work.
    pub(crate) fn process_word_with_unmatched<E: EnvGetter + ?Sized>(&self, word: &str, env: &E) -> Expansion<String> {
        self.expand_recording(word, env, false)
    }

    fn expand_recording<E: EnvGetter + ?Sized>(&self, word: &str, env: &E, record_matched: bool) -> Expansion<String> {
        // A word with nothing to expand, unquote or unescape comes out as written (after the
        // byte-order mark `run` drops), without looking anything up.
        let src = word.strip_prefix('\u{feff}').unwrap_or(word);
        if self.is_literal(src) {
            return Expansion { value: Ok(src.to_owned()), matched: BTreeSet::new(), unmatched: BTreeSet::new() };
        }
        let out = self.run(word, env, false, record_matched);
        Expansion { value: out.value.map(|(result, _)| result), matched: out.matched, unmatched: out.unmatched }
    }

    /// Expands each word of a list with [`Lex::process_word`], stopping at the first that
    /// fails, as BuildKit's `Expand` does for an instruction's paths, flags and key/value pairs.
    /// The names looked up are merged over the words processed, the failing one included.
    /// (BuildKit runs its `UndefinedVar` lint once per word; call
    /// [`Lex::process_word_with_matches`] per word to reproduce its duplicates.)
    ///
    /// ```
    /// use nullspace_plan::dockerfile::shell::Lex;
    ///
    /// let env = [("SRC", "app"), ("DEST", "/srv")];
    /// let out = Lex::new('\\').process_word_list(&["$SRC/a", "${SRC}/b", "$DEST/$NOPE"], &env);
    /// assert_eq!(out.value.unwrap(), ["app/a", "app/b", "/srv/"]);
    /// assert!(out.unmatched.contains("NOPE"));
    /// ```
    pub fn process_word_list<S: AsRef<str>, E: EnvGetter + ?Sized>(
        &self,
        words: &[S],
        env: &E,
    ) -> Expansion<Vec<String>> {
        let mut matched = BTreeSet::new();
        let mut unmatched = BTreeSet::new();
        let mut values = Vec::with_capacity(words.len());
        for word in words {
            let out = self.process_word_with_matches(word.as_ref(), env);
            matched.extend(out.matched);
            unmatched.extend(out.unmatched);
            match out.value {
                Ok(value) => values.push(value),
                Err(err) => {
                    return Expansion { value: Err(err), matched, unmatched };
                }
            }
        }
        Expansion { value: Ok(values), matched, unmatched }
    }

    /// Splits each item with [`Lex::process_words`] and concatenates the words, stopping at
    /// the first failure, as BuildKit's `EXPOSE` dispatch does with its ports.
    ///
    /// ```
    /// use nullspace_plan::dockerfile::shell::Lex;
    ///
    /// let env = [("PORTS", "80 443/udp")];
    /// let ports = Lex::new('\\').process_words_each(&["$PORTS", "22"], &env).unwrap();
    /// assert_eq!(ports, ["80", "443/udp", "22"]);
    /// ```
    pub fn process_words_each<S: AsRef<str>, E: EnvGetter + ?Sized>(
        &self,
        items: &[S],
        env: &E,
    ) -> Result<Vec<String>, ShellError> {
        let mut all = Vec::new();
        for item in items {
            all.extend(self.process_words(item.as_ref(), env)?);
        }
        Ok(all)
    }

    /// True when no character of `s` is special to the lexer: no `$`, `<`, escape character,
    /// or (unless quotes are skipped) quote. Such a word expands to itself.
    pub(crate) fn is_literal(&self, s: &str) -> bool {
        let quotes = !self.skip_process_quotes;
        if self.escape.is_ascii() {
            // Every special character is ASCII, so the bytes can be scanned.
            let escape = self.escape as u8;
            let special = |b: u8| matches!(b, b'$' | b'<') || b == escape || (quotes && matches!(b, b'\'' | b'"'));
            return !s.bytes().any(special);
        }
        !s.chars().any(|c| matches!(c, '$' | '<') || c == self.escape || (quotes && matches!(c, '\'' | '"')))
    }

    /// Expands `word`; the split words are only collected when `split` asks for them, the
    /// names found only when `record_matched` does (undefined names always are).
    fn run<E: EnvGetter + ?Sized>(
        &self,
        word: &str,
        env: &E,
        split: bool,
        record_matched: bool,
    ) -> Expansion<(String, Vec<String>)> {
        // Go's text/scanner drops a byte-order mark at the very start of its input.
        let src = word.strip_prefix('\u{feff}').unwrap_or(word);
        let mut sw = ShellWord {
            lex: *self,
            env,
            src,
            pos: 0,
            raw_escapes: self.raw_escapes,
            split,
            record_matched,
            words_buffer: String::new(),
            depth: 0,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
        };
        let value =
            sw.process_stop_on(None, self.raw_escapes).map_err(|kind| ShellError { word: word.to_owned(), kind });
        Expansion { value, matched: sw.matched, unmatched: sw.unmatched }
    }
}

/// The state of one expansion (BuildKit's `shellWord`).
struct ShellWord<'a, E: ?Sized> {
    lex: Lex,
    env: &'a E,
    src: &'a str,
    pos: usize,
    raw_escapes: bool,
    /// Whether the words are wanted (`process_words`); when not, no words are built.
    split: bool,
    /// Whether defined names are recorded in `matched`.
    record_matched: bool,
    /// Shared by every nesting level, exactly as in BuildKit: a nested `${...}` clears it, which
    /// is what drops the start of the current word in `process_words`.
    words_buffer: String,
    depth: usize,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

/// Word splitting state of one nesting level (BuildKit's `wordsStruct`); its buffer is the
/// shared [`ShellWord::words_buffer`], passed in.
struct Words {
    words: Vec<String>,
    in_word: bool,
    /// False when the caller wants only the expanded text: then nothing is recorded.
    on: bool,
}

impl Words {
    fn new(on: bool) -> Self {
        Self { words: Vec::new(), in_word: false, on }
    }

    fn add_char(&mut self, buf: &mut String, ch: char) {
        if !self.on {
            return;
        }
        if !ch.is_whitespace() {
            self.add_raw_char(buf, ch);
        } else if self.in_word && !buf.is_empty() {
            self.words.push(std::mem::take(buf));
            self.in_word = false;
        }
    }

    fn add_raw_char(&mut self, buf: &mut String, ch: char) {
        if self.on {
            buf.push(ch);
            self.in_word = true;
        }
    }

    fn add_string(&mut self, buf: &mut String, s: &str) {
        if !self.on {
            return;
        }
        for ch in s.chars() {
            self.add_char(buf, ch);
        }
    }

    fn add_raw_string(&mut self, buf: &mut String, s: &str) {
        if self.on {
            buf.push_str(s);
            self.in_word = true;
        }
    }

    fn finish(mut self, buf: &mut String) -> Vec<String> {
        if !buf.is_empty() {
            self.words.push(std::mem::take(buf));
        }
        self.words
    }
}

type Kind = ShellErrorKind;

impl<'a, E: EnvGetter + ?Sized> ShellWord<'a, E> {
    fn peek(&self) -> Option<char> {
        self.src.get(self.pos..).and_then(|rest| rest.chars().next())
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek()?;
        self.pos += ch.len_utf8();
        Some(ch)
    }

    /// Processes up to `stop` (consumed) or the end of the word when `stop` is `None`;
    /// returns the expanded text and its words.
    fn process_stop_on(&mut self, stop: Option<char>, raw_escapes: bool) -> Result<(String, Vec<String>), Kind> {
        if self.depth >= MAX_NESTING {
            return Err(Kind::TooDeep { limit: MAX_NESTING });
        }
        self.depth += 1;
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let out = self.process_stop_on_inner(stop);
        self.raw_escapes = saved;
        self.depth -= 1;
        out
    }

    fn process_stop_on_inner(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), Kind> {
        // The whole word usually expands to about its own length; nested parts are short.
        let mut result = if stop.is_none() { String::with_capacity(self.src.len()) } else { String::new() };
        self.words_buffer.clear();
        let mut words = Words::new(self.split);
        let quotes = !self.lex.skip_process_quotes;

        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish(&mut self.words_buffer)));
            }
            let special = match ch {
                '$' => Some(self.process_dollar()?),
                '<' => Some(Cow::Owned(self.process_possible_heredoc())),
                '\'' if quotes => Some(Cow::Owned(self.process_single_quote()?)),
                '"' if quotes => Some(Cow::Owned(self.process_double_quote()?)),
                _ => None,
            };
            if let Some(tmp) = special {
                result.push_str(&tmp);
                if ch == '$' {
                    words.add_string(&mut self.words_buffer, &tmp);
                } else {
                    words.add_raw_string(&mut self.words_buffer, &tmp);
                }
                continue;
            }
            self.next();
            let mut ch = ch;
            if ch == self.lex.escape {
                if self.raw_escapes {
                    words.add_raw_char(&mut self.words_buffer, ch);
                    result.push(ch);
                }
                // The escape escapes anything; at the end of the word it is dropped.
                match self.next() {
                    Some(escaped) => ch = escaped,
                    None => break,
                }
                words.add_raw_char(&mut self.words_buffer, ch);
            } else {
                words.add_char(&mut self.words_buffer, ch);
            }
            result.push(ch);
        }
        // BuildKit first reports "unexpected end of statement while looking for matching
        // <stop>", then replaces it with these, as the word has ended.
        match stop {
            Some('/') => return Err(Kind::MissingSlash),
            Some(_) => return Err(Kind::MissingBrace),
            None => {}
        }
        Ok((result, words.finish(&mut self.words_buffer)))
    }

    fn process_single_quote(&mut self) -> Result<String, Kind> {
        let mut out = String::new();
        self.next();
        if self.lex.raw_quotes {
            out.push('\'');
        }
        loop {
            match self.next() {
                None => return Err(Kind::UnterminatedSingleQuote),
                Some('\'') => {
                    if self.lex.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(ch) => out.push(ch),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, Kind> {
        let mut out = String::new();
        self.next();
        if self.lex.raw_quotes {
            out.push('"');
        }
        loop {
            match self.peek() {
                None => return Err(Kind::UnterminatedDoubleQuote),
                Some('"') => {
                    self.next();
                    if self.lex.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    out.push_str(&value);
                }
                Some(mut ch) => {
                    self.next();
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            out.push(ch);
                        }
                        // Only `"`, `$` and the escape itself are escaped; otherwise the
                        // escape character stays (and with raw escapes appears twice).
                        match self.peek() {
                            None => continue,
                            Some(next) if next == '"' || next == '$' || next == self.lex.escape => {
                                self.next();
                                ch = next;
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    /// Errors from inside `${...}`: reaching the end of the word means the brace (or slash) is
    /// missing, whatever the inner error was.
    fn at_end_means(&self, err: Kind, missing: Kind) -> Kind {
        match err {
            Kind::TooDeep { .. } => err,
            _ if self.peek().is_none() => missing,
            _ => err,
        }
    }

    /// One `$` expansion; a variable's value is borrowed from the environment.
    fn process_dollar(&mut self) -> Result<Cow<'a, str>, Kind> {
        self.next();

        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok(Cow::Borrowed("$"));
            }
            return Ok(match self.get_env(name) {
                Some(value) => Cow::Borrowed(value),
                None if self.lex.skip_unset_env => Cow::Owned(format!("${name}")),
                None => Cow::Borrowed(""),
            });
        }

        self.next();
        match self.peek() {
            None => return Err(Kind::MissingBrace),
            Some('{' | '}' | ':') => return Err(Kind::BadSubstitution),
            Some(_) => {}
        }
        let name = self.process_name();
        let ch = self.next();

        match ch {
            Some('}') => Ok(match self.get_env(name) {
                Some(value) => Cow::Borrowed(value),
                None if self.lex.skip_unset_env => Cow::Owned(format!("${{{name}}}")),
                None => Cow::Borrowed(""),
            }),
            Some(':' | '+' | '-' | '?' | '#' | '%') => {
                let null_is_unset = ch == Some(':');
                let op = if null_is_unset { self.next() } else { ch };
                // The modifier as written, for messages.
                let modifier = || {
                    let mut m = String::from(rune_text(ch));
                    if null_is_unset {
                        m.push(rune_text(op));
                    }
                    m
                };
                let raw_escapes = matches!(op, Some('#' | '%'));
                if null_is_unset && raw_escapes {
                    return Err(Kind::UnsupportedModifier { modifier: modifier() });
                }
                let word = match self.process_stop_on(Some('}'), raw_escapes) {
                    Ok((word, _)) => word,
                    Err(err) => return Err(self.at_end_means(err, Kind::MissingBrace)),
                };

                let value = self.get_env(name);
                if self.lex.skip_unset_env && value.is_none() {
                    return Ok(Cow::Owned(format!("${{{name}{}{word}}}", modifier())));
                }
                let empty = null_is_unset && value == Some("");
                match op {
                    Some('-') => Ok(match value {
                        Some(value) if !empty => Cow::Borrowed(value),
                        _ => Cow::Owned(word),
                    }),
                    Some('+') => Ok(match value {
                        Some(_) if !empty => Cow::Owned(word),
                        _ => Cow::Borrowed(""),
                    }),
                    Some('?') => match value {
                        None => Err(required(name, word, "is not allowed to be unset")),
                        Some(_) if empty => Err(required(name, word, "is not allowed to be empty")),
                        Some(value) => Ok(Cow::Borrowed(value)),
                    },
                    Some(op @ ('#' | '%')) => {
                        // `##` and `%%` match the longest pattern, `#` and `%` the shortest.
                        let (pattern, greedy) = match word.strip_prefix(op) {
                            Some(rest) => (rest, true),
                            None => (word.as_str(), false),
                        };
                        let value = value.unwrap_or("");
                        let trimmed = if op == '%' {
                            pattern::trim_suffix(pattern, value, greedy)
                        } else {
                            pattern::trim_prefix(pattern, value, greedy)
                        };
                        trimmed.map(Cow::Owned).map_err(|(pattern, reason)| Kind::InvalidPattern { pattern, reason })
                    }
                    _ => Err(Kind::UnsupportedModifier { modifier: modifier() }),
                }
            }
            Some('/') => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let pattern = match self.process_stop_on(Some('/'), true) {
                    Ok((pattern, _)) => pattern,
                    Err(err) => return Err(self.at_end_means(err, Kind::MissingSlash)),
                };
                let replacement = match self.process_stop_on(Some('}'), true) {
                    Ok((replacement, _)) => replacement,
                    Err(err) => return Err(self.at_end_means(err, Kind::MissingBrace)),
                };
                let value = self.get_env(name);
                if self.lex.skip_unset_env && value.is_none() {
                    // BuildKit writes `${name/p/r}` back even for `${name//p/r}`.
                    return Ok(Cow::Owned(format!("${{{name}/{pattern}/{replacement}}}")));
                }
                pattern::replace(&pattern, value.unwrap_or(""), &replacement, all)
                    .map(Cow::Owned)
                    .map_err(|(pattern, reason)| Kind::InvalidPattern { pattern, reason })
            }
            _ => Err(Kind::UnsupportedModifier { modifier: String::from(rune_text(ch)) }),
        }
    }

    /// A variable name: a run of digits, one special parameter (`@*#?-$!0`), or letters,
    /// digits and `_`; empty when none of these follows. Always a contiguous part of the word.
    fn process_name(&mut self) -> &'a str {
        let src: &'a str = self.src;
        let start = self.pos;
        let mut empty = true;
        while let Some(ch) = self.peek() {
            if empty && is_digit(ch) {
                while self.peek().is_some_and(is_digit) {
                    self.next();
                }
                return &src[start..self.pos];
            }
            if empty && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return &src[start..self.pos];
            }
            if !is_letter(ch) && !is_digit(ch) && ch != '_' {
                break;
            }
            self.next();
            empty = false;
        }
        &src[start..self.pos]
    }

    /// `<<` and the blanks after it stay together so a heredoc marker is one word.
    fn process_possible_heredoc(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".to_owned();
        }
        self.next();
        let mut out = String::from("<<");
        while let Some(blank) = self.peek().filter(|c| matches!(c, '\t' | '\r' | ' ')) {
            self.next();
            out.push(blank);
        }
        out
    }

    /// Looks `name` up and records it as matched or unmatched.
    fn get_env(&mut self, name: &str) -> Option<&'a str> {
        let env: &'a E = self.env;
        let value = env.get(name);
        let seen = match value {
            Some(_) if !self.record_matched => return value,
            Some(_) => &mut self.matched,
            None => &mut self.unmatched,
        };
        if !seen.contains(name) {
            seen.insert(name.to_owned());
        }
        value
    }
}

fn required(name: &str, word: String, default: &str) -> Kind {
    let message = if word.is_empty() { default.to_owned() } else { word };
    Kind::Required { name: name.to_owned(), message }
}
