//! BuildKit's `BFlags`: `--name=value` words checked against the flags an instruction accepts.

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
/// (an instruction has a handful at most), so that nothing is copied but the values kept.
pub(super) struct Flags<'a> {
    args: &'a [String],
}

/// `--name=value` split into name and value.
fn split_flag(arg: &str) -> (&str, Option<&str>) {
    let stripped = arg.strip_prefix("--").unwrap_or(arg);
    match split_once_byte(stripped, b'=') {
        Some((n, v)) => (n, Some(v)),
        None => (stripped, None),
    }
}

impl<'a> Flags<'a> {
    /// The values given for `name`, in order (`None` for a bare `--name`).
    fn values(&self, name: &'a str) -> impl Iterator<Item = Option<&'a str>> + 'a {
        // Flag names hold no `=`, so the word names `name` when `=` or nothing follows it.
        self.args.iter().filter_map(move |arg| {
            let rest = arg.get(2..)?.strip_prefix(name)?;
            if rest.is_empty() { Some(None) } else { rest.strip_prefix('=').map(Some) }
        })
    }

    /// A string flag's value when given (possibly empty).
    pub(super) fn string(&self, name: &'a str) -> Option<&'a str> {
        self.values(name).next().flatten()
    }

    /// A string flag's value, `None` when absent or empty (BuildKit treats both alike).
    pub(super) fn non_empty(&self, name: &'a str) -> Option<String> {
        self.string(name).filter(|v| !v.is_empty()).map(str::to_owned)
    }

    /// A bool flag when given: a bare flag is true, a value is compared case-insensitively
    /// ([`parse_flags`] let only `true` and `false` through).
    pub(super) fn opt_bool(&self, name: &'a str) -> Option<bool> {
        self.values(name).next().map(|v| v.is_none_or(|v| v.eq_ignore_ascii_case("true")))
    }

    /// A bool flag: given and true.
    pub(super) fn bool(&self, name: &'a str) -> bool {
        self.opt_bool(name) == Some(true)
    }

    /// Every value of a repeatable flag, in order.
    pub(super) fn strings(&self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.values(name).flatten()
    }

    /// Names of the flags given, in first-use order.
    pub(super) fn used(&self) -> Vec<String> {
        let mut used: Vec<String> = Vec::new();
        for arg in self.args {
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
pub(super) fn parse_flags<'a>(args: &'a [String], defs: &[(&'static str, FlagType)]) -> Result<Flags<'a>, String> {
    let end = args.iter().position(|a| a == "--").unwrap_or(args.len());
    let args = &args[..end];
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
