//! Expansion errors, worded as BuildKit words them.

use super::text::go_quote;

/// Why a word could not be expanded: the word as given, and what is wrong with it.
///
/// Displays as BuildKit's message, `failed to process "<word>": <kind>`; the caller adds the
/// instruction and line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {}: {kind}", go_quote(.word))]
pub struct ShellError {
    /// The word whose expansion failed, before expansion.
    pub word: String,
    /// What is wrong with it.
    pub kind: ShellErrorKind,
}

/// What is wrong with a word. Each message is BuildKit's, except [`ShellErrorKind::TooDeep`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShellErrorKind {
    /// A `'` was never closed.
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,
    /// A `"` was never closed.
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,
    /// The word ended inside `${...}`.
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    /// The word ended inside `${name/pattern`.
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    /// `${}`, `${{...`, `${:...`.
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    /// A modifier BuildKit does not support, such as `:=` or `:#`, or a stray character after
    /// the name.
    #[error("unsupported modifier ({modifier}) in substitution")]
    UnsupportedModifier {
        /// The modifier as written (`EOF` shows as U+FFFD, as in BuildKit).
        modifier: String,
    },
    /// `${name?message}` or `${name:?message}` with the variable unset (or empty).
    #[error("{name}: {message}")]
    Required {
        /// The variable.
        name: String,
        /// The word's message, or BuildKit's default one.
        message: String,
    },
    /// A `#`, `%` or `/` pattern that is not a valid shell pattern.
    #[error("invalid pattern ({pattern}) in substitution: {reason}")]
    InvalidPattern {
        /// The pattern, after expansion (reversed for `%` and `%%`, as BuildKit reports it).
        pattern: String,
        /// What is wrong with it.
        reason: PatternError,
    },
    /// `${a:-${b:-...}}` nested deeper than [`MAX_NESTING`](super::MAX_NESTING). BuildKit has
    /// no such limit; this one keeps the recursion bounded.
    #[error("substitutions nested more than {limit} deep")]
    TooDeep {
        /// The limit that was exceeded.
        limit: usize,
    },
}

/// Why a pattern in `${name#pattern}`, `${name%pattern}` or `${name/pattern/...}` is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// A `\` followed by something other than `*`, `?`, `\`, `}` or `/` (or by nothing, shown as
    /// U+FFFD as BuildKit shows it).
    #[error("invalid escape '\\{}'", super::text::rune_text(*.found))]
    InvalidEscape {
        /// The character after the `\`, if any.
        found: Option<char>,
    },
    /// The pattern is too large for the regular-expression engine (a limit BuildKit's Go
    /// engine does not have).
    #[error("{0}")]
    TooLarge(String),
}
