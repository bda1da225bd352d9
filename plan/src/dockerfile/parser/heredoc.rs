//! Heredoc detection, as BuildKit's parser does it: the instruction line is split into words
//! by its shell lexer (raw quotes and escapes, no variables), and each word matching
//! `^(\d*)<<(-?)\s*([^<]*)$` names a heredoc.
//!
//! The lexer here covers only what that needs: BuildKit's `ProcessWords` with an empty
//! environment where unset variables stay as written. Full word expansion lives in
//! [`crate::dockerfile::shell`].

use super::Heredoc;

/// Splits a line into heredocs the way BuildKit's `heredocsFromLine` does. A line the lexer
/// cannot split has no heredocs; a heredoc word whose delimiter cannot be lexed is an error.
pub(super) fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let mut docs = Vec::new();
    if !has_lexer_specials(line) {
        let mut result = Ok(());
        plain_words(line, |word| {
            if result.is_ok() {
                result = parse_heredoc(word).map(|doc| docs.extend(doc));
            }
        });
        return result.map(|()| docs);
    }
    let mut lex = Lexer::new(line, true, true);
    let words = lex.process_words().unwrap_or_default();
    for word in words {
        if let Some(doc) = parse_heredoc(&word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// Whether `s` holds a character the lexer treats specially besides `<` (quotes, the escape,
/// `$`). Without one, its words are plain slices of `s` (see [`plain_words`]).
fn has_lexer_specials(s: &str) -> bool {
    s.bytes().any(|b| matches!(b, b'$' | b'\'' | b'"' | b'\\'))
}

/// The lexer's words of a line without quotes, escapes or `$`: runs of non-space characters,
/// where a `<<` also takes in the blanks (tab, CR, space) right after it.
fn plain_words<'a>(line: &'a str, mut emit: impl FnMut(&'a str)) {
    let mut start = None;
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '<' && chars.next_if(|&(_, next)| next == '<').is_some() {
            while chars.next_if(|&(_, next)| matches!(next, '\t' | '\r' | ' ')).is_some() {}
            start.get_or_insert(i);
        } else if !c.is_whitespace() {
            start.get_or_insert(i);
        } else if let Some(s) = start.take() {
            emit(&line[s..i]);
        }
    }
    if let Some(s) = start {
        emit(&line[s..]);
    }
}

/// Recognises one heredoc word (`<<EOF`, `<<-'EOF'`, `3<<EOF`), like BuildKit's
/// `ParseHeredoc`: `Ok(None)` when the word is not a heredoc, `Err` when its delimiter has an
/// unterminated quote. The returned heredoc has no content yet.
///
/// ```
/// use nullspace_plan::dockerfile::parser::parse_heredoc;
/// let doc = parse_heredoc("<<-'EOF'").unwrap().unwrap();
/// assert_eq!((doc.name.as_str(), doc.chomp, doc.expand), ("EOF", true, false));
/// assert!(parse_heredoc("<<EOF sh").unwrap().is_none());
/// assert!(parse_heredoc("<<'EOF").is_err());
/// ```
pub fn parse_heredoc(src: &str) -> Result<Option<Heredoc>, String> {
    let digits_end = src.find(|c: char| !c.is_ascii_digit()).unwrap_or(src.len());
    let digits = &src[..digits_end];
    let Some(after) = src[digits_end..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, after) = match after.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, after),
    };
    let rest = after.trim_start_matches(['\t', '\n', '\x0c', '\r', ' ']);
    if rest.contains('<') || rest.is_empty() {
        return Ok(None);
    }
    // Go's strconv.ParseUint gives the maximum on overflow; the error is ignored there.
    let file_descriptor = match digits.parse::<u64>() {
        Ok(fd) => fd,
        Err(_) if !digits.is_empty() => u64::MAX,
        Err(_) => 0,
    };

    if !has_lexer_specials(rest) {
        // Without quotes, escapes or `$` (and no `<` here), the lexer's words are the runs of
        // non-space characters, raw or not, and the delimiter is expanded.
        let mut words = rest.split(char::is_whitespace).filter(|w| !w.is_empty());
        return Ok(match (words.next(), words.next()) {
            (Some(name), None) => {
                Some(Heredoc { name: name.to_owned(), file_descriptor, expand: true, chomp, content: String::new() })
            }
            _ => None,
        });
    }
    let words = Lexer::new(rest, false, false).process_words()?;
    if words.len() != 1 {
        return Ok(None);
    }
    let raw_words = Lexer::new(rest, true, false).process_words()?;
    if raw_words.len() != words.len() {
        return Err(format!("internal lexing of heredoc produced inconsistent results: {rest}"));
    }
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    let name = words.into_iter().next().unwrap_or_default();
    let expand = quotes(&name) == quotes(&raw_words[0]);
    Ok(Some(Heredoc { name, file_descriptor, expand, chomp, content: String::new() }))
}

/// Removes leading tabs from every line of a `<<-` heredoc body (BuildKit's
/// `ChompHeredocContent`).
///
/// ```
/// use nullspace_plan::dockerfile::parser::chomp_heredoc_content;
/// assert_eq!(chomp_heredoc_content("\thello\n\t\tworld\n"), "hello\nworld\n");
/// ```
pub fn chomp_heredoc_content(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    for line in src.split_inclusive('\n') {
        out.push_str(line.trim_start_matches('\t'));
    }
    out
}

/// BuildKit's `wordsStruct`; its buffer lives in the lexer because BuildKit shares one buffer
/// across nested calls (a nested `${...}` resets the word being built, which is kept).
#[derive(Default)]
struct Words {
    words: Vec<String>,
    in_word: bool,
}

struct Lexer<'a> {
    input: &'a str,
    pos: usize,
    raw_quotes: bool,
    raw_escapes: bool,
    buf: String,
}

const ESCAPE: char = '\\';

impl<'a> Lexer<'a> {
    fn new(input: &'a str, raw_quotes: bool, raw_escapes: bool) -> Self {
        Self { input, pos: 0, raw_quotes, raw_escapes, buf: String::new() }
    }

    fn peek(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if let Some(c) = c {
            self.pos += c.len_utf8();
        }
        c
    }

    fn process_words(&mut self) -> Result<Vec<String>, String> {
        let raw = self.raw_escapes;
        self.process_stop_on(None, raw).map(|(_, words)| words)
    }

    fn add_char(&mut self, w: &mut Words, c: char) {
        if c.is_whitespace() && w.in_word {
            if !self.buf.is_empty() {
                w.words.push(std::mem::take(&mut self.buf));
                w.in_word = false;
            }
        } else if !c.is_whitespace() {
            self.add_raw_char(w, c);
        }
    }

    fn add_raw_char(&mut self, w: &mut Words, c: char) {
        self.buf.push(c);
        w.in_word = true;
    }

    fn get_words(&mut self, w: &mut Words) -> Vec<String> {
        if !self.buf.is_empty() {
            w.words.push(std::mem::take(&mut self.buf));
            w.in_word = false;
        }
        std::mem::take(&mut w.words)
    }

    fn process_stop_on(&mut self, stop: Option<char>, raw_escapes: bool) -> Result<(String, Vec<String>), String> {
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let out = self.stop_on_inner(stop);
        self.raw_escapes = saved;
        out
    }

    fn stop_on_inner(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), String> {
        let mut result = String::new();
        self.buf.clear();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if stop == Some(ch) {
                self.next();
                return Ok((result, self.get_words(&mut words)));
            }
            let special = match ch {
                '$' => Some(self.process_dollar()?),
                '<' => Some(self.process_possible_heredoc()),
                '\'' => Some(self.process_single_quote()?),
                '"' => Some(self.process_double_quote()?),
                _ => None,
            };
            if let Some(tmp) = special {
                result.push_str(&tmp);
                if ch == '$' {
                    for c in tmp.chars() {
                        self.add_char(&mut words, c);
                    }
                } else {
                    self.buf.push_str(&tmp);
                    words.in_word = true;
                }
                continue;
            }
            let mut ch = ch;
            self.next();
            if ch == ESCAPE {
                if self.raw_escapes {
                    self.add_raw_char(&mut words, ch);
                    result.push(ch);
                }
                match self.next() {
                    None => break,
                    Some(c) => {
                        ch = c;
                        self.add_raw_char(&mut words, ch);
                    }
                }
            } else {
                self.add_char(&mut words, ch);
            }
            result.push(ch);
        }
        if let Some(stop) = stop {
            return Err(format!("unexpected end of statement while looking for matching {stop}"));
        }
        Ok((result, self.get_words(&mut words)))
    }

    fn process_single_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        let open = self.next();
        if self.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err("unexpected end of statement while looking for matching single-quote".into());
                }
                Some('\'') => {
                    if self.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        let open = self.next();
        if self.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err("unexpected end of statement while looking for matching double-quote".into());
                }
                Some('"') => {
                    self.next();
                    if self.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                }
                Some(_) => {
                    let Some(mut ch) = self.next() else { continue };
                    if ch == ESCAPE {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == ESCAPE => {
                                self.next();
                                ch = c;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    /// `$name`, `${name}` and `${name<op>word}` with every variable unset: the text is kept.
    fn process_dollar(&mut self) -> Result<String, String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            return Ok(format!("${name}"));
        }
        self.next();
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            Some(_) => {}
        }
        let name = self.process_name();
        let ch = self.next();
        let mut chs: String = ch.map_or_else(|| "\u{fffd}".to_owned(), String::from);
        let modifier = match ch {
            Some('}') => return Ok(format!("${{{name}}}")),
            Some(':') => {
                let c = self.next();
                chs.push(c.unwrap_or('\u{fffd}'));
                if matches!(c, Some('#' | '%')) {
                    return Err(format!("unsupported modifier ({chs}) in substitution"));
                }
                c
            }
            Some(c @ ('+' | '-' | '?' | '#' | '%')) => Some(c),
            Some('/') => {
                if self.peek() == Some('/') {
                    self.next();
                }
                let (pattern, _) = self.stop_or_missing('/', "syntax error: missing '/' in ${}")?;
                let (replacement, _) = self.stop_or_missing('}', "syntax error: missing '}'")?;
                return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
            }
            _ => return Err(format!("unsupported modifier ({chs}) in substitution")),
        };
        let raw = matches!(modifier, Some('#' | '%'));
        let (word, _) = self
            .process_stop_on(Some('}'), raw)
            .map_err(|e| if self.peek().is_none() { "syntax error: missing '}'".to_owned() } else { e })?;
        Ok(format!("${{{name}{chs}{word}}}"))
    }

    fn stop_or_missing(&mut self, stop: char, missing: &str) -> Result<(String, Vec<String>), String> {
        self.process_stop_on(Some(stop), true).map_err(|e| if self.peek().is_none() { missing.to_owned() } else { e })
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_numeric() {
                while let Some(d) = self.peek().filter(|c| c.is_numeric()) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }

    fn process_possible_heredoc(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".into();
        }
        self.next();
        let mut out = String::from("<<");
        while let Some(c) = self.peek().filter(|c| matches!(c, '\t' | '\r' | ' ')) {
            out.push(c);
            self.next();
        }
        out
    }
}
