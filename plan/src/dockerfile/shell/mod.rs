//! BuildKit's word expansion (`frontend/dockerfile/shell`: `lex.go`, `equal_env_unix.go`),
//! ported to Rust: quotes, escapes, `$name`, `${name}` and the modifiers
//! `${name:-word} ${name-word} ${name:+word} ${name+word} ${name:?word} ${name?word}
//! ${name#pattern} ${name##pattern} ${name%pattern} ${name%%pattern} ${name/pattern/word}
//! ${name//pattern/word}`, with BuildKit's error messages.
//!
//! Written here because no crate does this faithfully: `shellexpand`, `shell-words`,
//! `shlex` and friends follow POSIX sh or bash, while BuildKit's dialect has its own rules
//! (an escape character that the Dockerfile can change, `\` escaping any character outside
//! quotes, positional and special parameters that are simply unset, glob patterns without
//! brackets matched through regular expressions, `:=` refused, word splitting that keeps
//! `<<` markers whole, and a few quirks kept here on purpose, each noted where it lives).
//!
//! Variable names are case-sensitive (Unix semantics). Input is a `&str`, so the invalid UTF-8
//! that Go would read as U+FFFD cannot occur. Character classes follow Unicode 16 (Go's tables
//! may be an older version; only letters and digits added since then could differ).
//!
//! How BuildKit configures the lexer, for callers that reproduce it:
//!
//! | where | lexer | call |
//! | --- | --- | --- |
//! | ARG defaults, `FROM` names and platforms | `Lex::new(escape)` | [`Lex::process_word_with_matches`] |
//! | instruction words (paths, flags, `ENV`, `LABEL`, `WORKDIR`, ...) | `Lex::new(escape)` | [`Lex::process_word_with_matches`] per word, or [`Lex::process_word_list`] |
//! | `EXPOSE` ports | `Lex::new(escape)` | [`Lex::process_words_each`] |
//! | heredoc contents with an unquoted delimiter | [`Lex::for_heredoc_content`] | [`Lex::process_word_with_matches`] |
//! | parser: finding heredoc markers in a line | `Lex::new('\\')` with raw quotes, raw escapes and skip-unset-env, against [`NoEnv`] | [`Lex::process_words`] |
//! | step names shown in progress | the stage lexer with raw quotes and skip-unset-env | [`Lex::process_word`], falling back to the text on error |
//!
//! Work is bounded: every character is read once, nesting is limited to [`MAX_NESTING`]
//! levels, and patterns are matched by the `regex` crate in linear time.

mod env;
mod error;
mod lex;
mod pattern;
mod text;

#[cfg(test)]
mod tests;

pub use env::{EnvEntry, EnvGetter, NoEnv};
pub use error::{PatternError, ShellError, ShellErrorKind};
pub use lex::{Expansion, Lex, MAX_NESTING};
