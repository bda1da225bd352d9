//! BuildKit's `BFlags`: `--name=value` words checked against the flags an instruction accepts.

use std::borrow::Cow;

use super::suggest;
use crate::dockerfile::parser::split_once_byte;

/// What a flag holds.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum FlagType {
    /// `--flag`, `--flag=true|false` (any case).
    Bool,
    /// `--flag=value`, once.
    String,
    /// `--flag=value`, repeatable.
    Strings,
}

/// The flags of one instruction after [`parse_flags`]: the checked words, read back on demand
/// (an instruction has a handful at most). Values that are kept are taken from the words, so
/// that an owned word moves into the instruction instead of being copied.
pub(super) struct Flags<'f, 'v> {
    args: &'f mut [Cow<'v, str>],
}

/// `--name=value` split into name and value.
fn split_flag(arg: &str) -> (&str, Option<&str>) {
    let stripped = arg.strip_prefix("--").unwrap_or(arg);
    match split_once_byte(stripped, b'=') {
        Some((n, v)) => (n, Some(v)),
        None => (stripped, None),
    }
}

/// The value of the word `arg` when it names `name`: `Some(None)` for a bare `--name`.
fn value_of<'s>(arg: &'s str, name: &str) -> Option<Option<&'s str>> {
    // Flag names hold no `=`, so the word names `name` when `=` or nothing follows it.
    let rest = arg.get(2..)?.strip_prefix(name)?;
    if rest.is_empty() { Some(None) } else { rest.strip_prefix('=').map(Some) }
}

/// The value of the `--name=value` word `arg`, taken from it (it is left empty).
fn take_value(arg: &mut Cow<'_, str>, name: &str) -> String {
    let prefix = name.len() + 3;
    match std::mem::take(arg) {
        Cow::Owned(mut word) => {
            word.drain(..prefix);
            word
        }
        Cow::Borrowed(word) => word[prefix..].to_owned(),
    }
}

impl Flags<'_, '_> {
    /// The values given for `name`, in order (`None` for a bare `--name`).
    fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = Option<&'s str>> + 's {
        self.args.iter().filter_map(move |arg| value_of(arg, name))
    }

    /// A string flag's value when given (possibly empty).
    pub(super) fn string<'s>(&'s self, name: &'s str) -> Option<&'s str> {
        self.values(name).next().flatten()
    }

    /// A string flag's value, `None` when absent or empty (BuildKit treats both alike), taken.
    pub(super) fn non_empty(&mut self, name: &str) -> Option<String> {
        let arg = self.args.iter_mut().find(|arg| value_of(arg, name).is_some())?;
        value_of(arg, name).flatten().is_some_and(|v| !v.is_empty()).then(|| take_value(arg, name))
    }

    /// A bool flag when given: a bare flag is true, a value is compared case-insensitively
    /// ([`parse_flags`] let only `true` and `false` through).
    pub(super) fn opt_bool(&self, name: &str) -> Option<bool> {
        self.values(name).next().map(|v| v.is_none_or(|v| v.eq_ignore_ascii_case("true")))
    }

    /// A bool flag: given and true.
    pub(super) fn bool(&self, name: &str) -> bool {
        self.opt_bool(name) == Some(true)
    }

    /// Every value of a repeatable flag, in order.
    pub(super) fn strings<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.values(name).flatten()
    }

    /// Every value of a repeatable flag, in order, taken.
    pub(super) fn take_strings<'s>(&'s mut self, name: &'s str) -> impl Iterator<Item = String> + 's {
        self.args
            .iter_mut()
            .filter_map(move |arg| matches!(value_of(arg, name), Some(Some(_))).then(|| take_value(arg, name)))
    }

    /// Names of the flags given, in first-use order (ask before taking values).
    pub(super) fn used(&self) -> Vec<String> {
        let mut used: Vec<String> = Vec::new();
        for arg in self.args.iter() {
            let (name, _) = split_flag(arg);
            if !used.iter().any(|u| u == name) {
                used.push(name.to_owned());
            }
        }
        used
    }
}

/// Parses `args` (the node's flags) against `defs`, like `BFlags.Parse`: stops at `--`, refuses
/// unknown and repeated flags, checks bool values and requires `=value` for string flags.
pub(super) fn parse_flags<'f, 'v>(
    args: &'f mut [Cow<'v, str>],
    defs: &[(&'static str, FlagType)],
) -> Result<Flags<'f, 'v>, String> {
    let end = args.iter().position(|a| a == "--").unwrap_or(args.len());
    let args = &mut args[..end];
    for (i, arg) in args.iter().enumerate() {
        if !arg.starts_with("--") {
            return Err(format!("arg should start with -- : {arg}"));
        }
        let (name, value) = split_flag(arg);
        let flag_name = || format!("--{name}");
        let Some(&(_, ty)) = defs.iter().find(|d| d.0 == name) else {
            let options: Vec<&str> = defs.iter().map(|d| d.0).collect();
            return Err(suggest(format!("unknown flag: {}", flag_name()), name, &options, true));
        };
        let already = args[..i].iter().any(|a| split_flag(a).0 == name);
        if already && ty != FlagType::Strings {
            return Err(format!("duplicate flag specified: {}", flag_name()));
        }
        match ty {
            FlagType::Bool => match value {
                None => {}
                Some("") => return Err(format!("missing a value on flag: {}", flag_name())),
                // Go lowercases the value first; no non-ASCII character lowercases into
                // `true` or `false`, so an ASCII comparison is the same test.
                Some(v) if v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false") => {}
                Some(v) => {
                    return Err(format!("expecting boolean value for flag {}, not: {v}", flag_name()));
                }
            },
            FlagType::String | FlagType::Strings => {
                if value.is_none() {
                    return Err(format!("missing a value on flag: {}", flag_name()));
                }
            }
        }
    }
    Ok(Flags { args })
}
