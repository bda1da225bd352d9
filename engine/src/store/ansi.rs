//! Removing terminal escape sequences from log text.
//!
//! The `vte` crate parses the byte stream as a terminal would; we keep printed characters, tabs and
//! newlines and drop every escape sequence (CSI, OSC, DCS, ...) and other control byte.
//! `strip-ansi-escapes` does the same but also drops tabs, which matter in build output.

use std::borrow::Cow;

/// Collects what a terminal would print.
struct Printed(String);

impl vte::Perform for Printed {
    fn print(&mut self, c: char) {
        self.0.push(c);
    }

    fn execute(&mut self, byte: u8) {
        if byte == b'\n' || byte == b'\t' {
            self.0.push(char::from(byte));
        }
    }
}

/// `s` without ANSI escape sequences or control characters other than tab and newline.
///
/// ```
/// use nullspace_engine::store::strip_ansi;
/// assert_eq!(strip_ansi("\x1b[1;31merror\x1b[0m:\tdone"), "error:\tdone");
/// assert!(matches!(strip_ansi("plain"), std::borrow::Cow::Borrowed(_)));
/// assert_eq!(strip_ansi("plain"), "plain");
/// ```
pub fn strip_ansi(s: &str) -> Cow<'_, str> {
    // Most lines hold no control character at all; skip the parser for them.
    if !s.chars().any(|c| c.is_control() && c != '\t') {
        return Cow::Borrowed(s);
    }
    let mut out = Printed(String::with_capacity(s.len()));
    let mut parser = vte::Parser::new();
    parser.advance(&mut out, s.as_bytes());
    Cow::Owned(out.0)
}
