//! BuildKit's `BFlags`: `--name=value` words checked against the flags an instruction accepts.

use super::suggest;

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

/// The flags of one instruction after [`parse_flags`].
pub(super) struct Flags {
    values: Vec<(&'static str, FlagType, Option<String>, Vec<String>)>,
    used: Vec<String>,
}

impl Flags {
    fn slot(&self, name: &str) -> Option<&(&'static str, FlagType, Option<String>, Vec<String>)> {
        self.values.iter().find(|v| v.0 == name)
    }

    /// A string flag's value when given (possibly empty).
    pub(super) fn string(&self, name: &str) -> Option<String> {
        self.slot(name).and_then(|v| v.2.clone())
    }

    /// A string flag's value, `None` when absent or empty (BuildKit treats both alike).
    pub(super) fn non_empty(&self, name: &str) -> Option<String> {
        self.string(name).filter(|v| !v.is_empty())
    }

    /// A bool flag: given and true.
    pub(super) fn bool(&self, name: &str) -> bool {
        self.string(name).as_deref() == Some("true")
    }

    /// A bool flag when given.
    pub(super) fn opt_bool(&self, name: &str) -> Option<bool> {
        self.string(name).map(|v| v == "true")
    }

    /// Every value of a repeatable flag, in order.
    pub(super) fn strings(&self, name: &str) -> Vec<String> {
        self.slot(name).map(|v| v.3.clone()).unwrap_or_default()
    }

    /// Names of the flags given, in first-use order.
    pub(super) fn used(&self) -> Vec<String> {
        self.used.clone()
    }
}

/// Parses `args` (the node's flags) against `defs`, like `BFlags.Parse`: stops at `--`, refuses
/// unknown and repeated flags, checks bool values and requires `=value` for string flags.
pub(super) fn parse_flags(args: &[String], defs: &[(&'static str, FlagType)]) -> Result<Flags, String> {
    let mut flags =
        Flags { values: defs.iter().map(|&(name, ty)| (name, ty, None, Vec::new())).collect(), used: Vec::new() };
    for arg in args {
        if arg == "--" {
            break;
        }
        let Some(stripped) = arg.strip_prefix("--") else {
            return Err(format!("arg should start with -- : {arg}"));
        };
        let (name, value) = match stripped.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (stripped, None),
        };
        let flag_name = format!("--{name}");
        let Some(slot) = flags.values.iter_mut().find(|v| v.0 == name) else {
            let options: Vec<&str> = defs.iter().map(|d| d.0).collect();
            return Err(suggest(format!("unknown flag: {flag_name}"), name, &options, true));
        };
        let already = flags.used.iter().any(|u| u == name);
        if already && slot.1 != FlagType::Strings {
            return Err(format!("duplicate flag specified: {flag_name}"));
        }
        if !already {
            flags.used.push(name.to_owned());
        }
        match slot.1 {
            FlagType::Bool => {
                if value == Some("") {
                    return Err(format!("missing a value on flag: {flag_name}"));
                }
                match value.map(str::to_lowercase).as_deref() {
                    None | Some("true") => slot.2 = Some("true".into()),
                    Some("false") => slot.2 = Some("false".into()),
                    Some(_) => {
                        return Err(format!(
                            "expecting boolean value for flag {flag_name}, not: {}",
                            value.unwrap_or_default()
                        ));
                    }
                }
            }
            FlagType::String => {
                let Some(value) = value else {
                    return Err(format!("missing a value on flag: {flag_name}"));
                };
                slot.2 = Some(value.to_owned());
            }
            FlagType::Strings => {
                let Some(value) = value else {
                    return Err(format!("missing a value on flag: {flag_name}"));
                };
                slot.3.push(value.to_owned());
            }
        }
    }
    Ok(flags)
}
