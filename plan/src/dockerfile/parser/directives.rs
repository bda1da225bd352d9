//! Parser directives (`# syntax=`, `# escape=`, `# check=`), BuildKit's `DirectiveParser` rules:
//! only at the very top of the file, each at most once, names case-insensitive; the first line
//! that is not a directive ends them.

use super::{Directive, ParseErrorKind};

const VALID: [&str; 3] = ["syntax", "escape", "check"];

/// Tracks directives while the parser reads the first lines.
#[derive(Default)]
pub(super) struct DirectiveParser {
    line: usize,
    done: bool,
    found: Vec<Directive>,
}

impl DirectiveParser {
    /// Feeds one line (newline removed). Returns the directive it holds, if any.
    pub(super) fn parse_line(&mut self, line: &str) -> Result<Option<Directive>, ParseErrorKind> {
        self.line += 1;
        if self.done {
            return Ok(None);
        }
        let Some(rest) = line.strip_prefix('#') else {
            self.done = true;
            return Ok(None);
        };
        let Some((name, value)) = split_directive(rest.trim_start_matches(char::is_whitespace)) else {
            self.done = true;
            return Ok(None);
        };
        let name = name.to_ascii_lowercase();
        if !VALID.contains(&name.as_str()) {
            self.done = true;
            return Ok(None);
        }
        if self.found.iter().any(|d| d.name == name) {
            return Err(ParseErrorKind::DuplicateDirective { name });
        }
        let directive = Directive { name, value: value.to_owned(), line: self.line };
        self.found.push(directive.clone());
        Ok(Some(directive))
    }

    pub(super) fn into_found(self) -> Vec<Directive> {
        self.found
    }
}

/// Go regexp `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` (`\s` is ASCII `[\t\n\f\r ]`).
fn split_directive(s: &str) -> Option<(&str, &str)> {
    let is_space = |c: char| matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ');
    let first = s.chars().next()?;
    if !first.is_ascii_alphabetic() {
        return None;
    }
    let name_end = s.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(s.len());
    let rest = s[name_end..].trim_start_matches(is_space).strip_prefix('=')?;
    let value = rest.trim_start_matches(is_space).trim_end_matches(is_space);
    if !value.is_empty() {
        return Some((&s[..name_end], value));
    }
    // All blanks after `=`: the lazy `(.+?)` still takes one character, the last one.
    let last = rest.chars().next_back()?;
    Some((&s[..name_end], &rest[rest.len() - last.len_utf8()..]))
}

/// Validates the value of an `escape` directive.
pub(super) fn escape_token(value: &str) -> Result<char, ParseErrorKind> {
    match value {
        "\\" => Ok('\\'),
        "`" => Ok('`'),
        _ => Err(ParseErrorKind::InvalidEscapeToken { value: value.to_owned() }),
    }
}
