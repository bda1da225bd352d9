//! Heredoc detection, as BuildKit's parser does it: the instruction line is split into words
//! by its shell lexer (raw quotes and escapes, no variables), and each word matching
//! `^(\d*)<<(-?)\s*([^<]*)$` names a heredoc.
//!
//! The words come from [`crate::dockerfile::shell`]'s lexer set up as BuildKit's parser sets
//! it: `\\` escapes, unset variables kept as written, against an empty environment.

use super::Heredoc;
use crate::dockerfile::shell::{Lex, NoEnv};

/// BuildKit's parser lexer: `NewLex('\\')` with `SkipUnsetEnv`.
const PARSER_LEX: Lex = Lex::new('\\').with_skip_unset_env(true);

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
    let lex = PARSER_LEX.with_raw_quotes(true).with_raw_escapes(true);
    let words = lex.process_words(line, &NoEnv).unwrap_or_default();
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
    let words = PARSER_LEX.process_words(rest, &NoEnv).map_err(|e| e.to_string())?;
    if words.len() != 1 {
        return Ok(None);
    }
    let raw_words = PARSER_LEX.with_raw_quotes(true).process_words(rest, &NoEnv).map_err(|e| e.to_string())?;
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
