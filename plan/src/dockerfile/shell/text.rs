//! Go's character classes (`unicode.IsLetter`, `unicode.IsDigit`, `unicode.IsPrint`) and Go's
//! `%q` quoting, which BuildKit's lexer and error messages depend on. Rust's `char` predicates
//! differ (`is_alphabetic` takes in marks and letter-numbers, `is_numeric` all of `N`), so the
//! General Category is looked up directly.

use unicode_general_category::{GeneralCategory as Gc, get_general_category};

/// Go's `unicode.IsLetter`: General Category `L`.
pub(super) fn is_letter(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphabetic();
    }
    matches!(
        get_general_category(c),
        Gc::UppercaseLetter | Gc::LowercaseLetter | Gc::TitlecaseLetter | Gc::ModifierLetter | Gc::OtherLetter
    )
}

/// Go's `unicode.IsDigit`: General Category `Nd`.
pub(super) fn is_digit(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    get_general_category(c) == Gc::DecimalNumber
}

/// Go's `unicode.IsPrint` / `strconv.IsPrint`: categories `L`, `M`, `N`, `P`, `S`, and the
/// ASCII space (other spaces are not printable).
fn is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    !matches!(
        get_general_category(c),
        Gc::Control
            | Gc::Format
            | Gc::Surrogate
            | Gc::PrivateUse
            | Gc::Unassigned
            | Gc::SpaceSeparator
            | Gc::LineSeparator
            | Gc::ParagraphSeparator
    )
}

/// Quotes `s` as Go's `fmt` verb `%q` (`strconv.Quote`) does, so error messages read exactly
/// like BuildKit's.
pub(super) fn go_quote(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            _ if is_print(c) => out.push(c),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            _ => {
                let code = u32::from(c);
                let (prefix, digits) = if code < 0x20 || code == 0x7f {
                    ("\\x", 2)
                } else if code < 0x10000 {
                    ("\\u", 4)
                } else {
                    ("\\U", 8)
                };
                out.push_str(prefix);
                for shift in (0..digits).rev() {
                    out.push(char::from(HEX[((code >> (4 * shift)) & 0xf) as usize]));
                }
            }
        }
    }
    out.push('"');
    out
}

/// How Go's `string(r)` renders a rune the scanner returned: `EOF` (-1) becomes U+FFFD.
pub(super) fn rune_text(c: Option<char>) -> char {
    c.unwrap_or(char::REPLACEMENT_CHARACTER)
}
