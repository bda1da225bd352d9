//! `RUN --mount` and `RUN --device` values, BuildKit's `parseMount` and `ParseDevice`.

use std::borrow::Cow;

use serde::Serialize;

use super::suggest;
use super::values::{csv_fields, ram_in_bytes};
use crate::dockerfile::parser::{find_byte, lowercase, split_once_byte};

/// The kind of a `RUN --mount`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    /// A read-only (by default) view of a stage, image or the build context.
    Bind,
    /// A persistent cache directory.
    Cache,
    /// An empty in-memory filesystem.
    Tmpfs,
    /// A secret file (or environment variable).
    Secret,
    /// An SSH agent socket.
    Ssh,
}

impl MountType {
    /// The name as written in a Dockerfile.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bind => "bind",
            Self::Cache => "cache",
            Self::Tmpfs => "tmpfs",
            Self::Secret => "secret",
            Self::Ssh => "ssh",
        }
    }
}

/// How concurrent builds share a cache mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ShareMode {
    /// Used by all writers at once (the default).
    Shared,
    /// Each writer gets its own copy.
    Private,
    /// Writers wait for each other.
    Locked,
}

/// A parsed `--mount` value. Empty strings in BuildKit's struct are `None` here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// `type=`, bind when absent.
    pub kind: MountType,
    /// `from=`: stage, image or named context.
    pub from: Option<String>,
    /// `source=`/`src=`.
    pub source: Option<String>,
    /// `target=`/`dst=`/`destination=`.
    pub target: Option<String>,
    /// `readonly`/`ro`/`rw`; defaults to read-only except for cache and tmpfs.
    pub read_only: bool,
    /// `size=` of a tmpfs, bytes.
    pub size_limit: Option<i64>,
    /// `id=`: cache id or secret id.
    pub id: Option<String>,
    /// `sharing=` of a cache.
    pub sharing: Option<ShareMode>,
    /// `required` of a secret or ssh mount.
    pub required: bool,
    /// `env=` of a secret: the variable to expose it as (`Some("")` means the default).
    pub env: Option<String>,
    /// `mode=` (octal).
    pub mode: Option<u32>,
    /// `uid=`.
    pub uid: Option<u32>,
    /// `gid=`.
    pub gid: Option<u32>,
}

const ALL_TYPES: [&str; 5] = ["bind", "cache", "tmpfs", "secret", "ssh"];
const ALL_SHARING: [&str; 3] = ["shared", "private", "locked"];
const ALL_KEYS: [&str; 19] = [
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "env",
];

/// Go's `strconv.ParseBool`.
fn go_bool(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("invalid value for {key}: {value}")),
    }
}

/// `strconv.ParseUint(value, radix, 32)`, which accepts no sign.
fn go_u32(value: &str, radix: u32) -> Option<u32> {
    if value.starts_with(['+', '-']) {
        return None;
    }
    u32::from_str_radix(value, radix).ok()
}

/// A `--mount` value split into its CSV fields.
fn mount_fields(raw: &str) -> Result<Vec<Cow<'_, str>>, String> {
    csv_fields(raw).map_err(|e| format!("failed to parse csv mounts: {e}"))
}

/// The checks BuildKit makes on a `--mount` value before variables are expanded (CSV syntax, no
/// variable in `from`), then, when `parse` is set (the value needs no expansion), the mount.
pub(super) fn precheck_and_parse(raw: &str, parse: bool) -> Result<Option<Mount>, String> {
    let fields = mount_fields(raw)?;
    for field in &fields {
        if let Some((key, value)) = split_once_byte(field, b'=')
            && key.eq_ignore_ascii_case("from")
            && find_byte(value, b'$').is_some_and(|i| i != value.len() - 1)
        {
            return Err(format!(
                "'{}' doesn't support variable expansion, define alias stage instead",
                key.to_lowercase()
            ));
        }
    }
    if !parse {
        return Ok(None);
    }
    mount_from_fields(&fields, &mut |v| Ok(Cow::Borrowed(v))).map(Some)
}

/// Parses a `--mount` value like BuildKit's `parseMount` with an expander: every value goes
/// through `expand` (word expansion) before it is checked.
///
/// ```
/// use nullspace_plan::dockerfile::instructions::{parse_mount, MountType};
/// let m = parse_mount("type=cache,target=/root/.cache,sharing=locked", &mut |v| Ok(v.to_owned())).unwrap();
/// assert_eq!(m.kind, MountType::Cache);
/// assert!(!m.read_only);
/// assert!(parse_mount("type=bind,size=1m", &mut |v| Ok(v.to_owned())).is_err());
/// ```
pub fn parse_mount(raw: &str, expand: &mut dyn FnMut(&str) -> Result<String, String>) -> Result<Mount, String> {
    mount_from_fields(&mount_fields(raw)?, &mut |v| expand(v).map(Cow::Owned))
}

/// [`parse_mount`] on split fields; `expand` may hand back the value itself.
fn mount_from_fields(
    fields: &[Cow<'_, str>],
    expand: &mut dyn FnMut(&str) -> Result<Cow<'_, str>, String>,
) -> Result<Mount, String> {
    let mut m = Mount {
        kind: MountType::Bind,
        from: None,
        source: None,
        target: None,
        read_only: false,
        size_limit: None,
        id: None,
        sharing: None,
        required: false,
        env: None,
        mode: None,
        uid: None,
        gid: None,
    };
    let mut ro_auto = true;
    let non_empty = |v: Cow<'_, str>| if v.is_empty() { None } else { Some(v.into_owned()) };
    for field in fields {
        let Some((key, value)) = split_once_byte(field, b'=') else {
            match lowercase(field).as_ref() {
                "readonly" | "ro" => {
                    m.read_only = true;
                    ro_auto = false;
                }
                "readwrite" | "rw" => {
                    m.read_only = false;
                    ro_auto = false;
                }
                "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                    m.required = true;
                }
                "required" => {
                    return Err(format!("unexpected key 'required' for mount type '{}'", m.kind.as_str()));
                }
                _ => return Err(format!("invalid field '{field}' must be a key=value pair")),
            }
            continue;
        };
        let key = lowercase(key);
        let value = expand(value)?;
        match key.as_ref() {
            "type" => {
                m.kind = match lowercase(&value).as_ref() {
                    "bind" => MountType::Bind,
                    "cache" => MountType::Cache,
                    "tmpfs" => MountType::Tmpfs,
                    "secret" => MountType::Secret,
                    "ssh" => MountType::Ssh,
                    _ => {
                        return Err(suggest(
                            format!("unsupported mount type {}", crate::dockerfile::parser::go_quote(&value)),
                            &value,
                            &ALL_TYPES,
                            true,
                        ));
                    }
                };
            }
            "from" => m.from = non_empty(value),
            "source" | "src" => m.source = non_empty(value),
            "target" | "dst" | "destination" => m.target = non_empty(value),
            "readonly" | "ro" => {
                m.read_only = go_bool(&key, &value)?;
                ro_auto = false;
            }
            "readwrite" | "rw" => {
                m.read_only = !go_bool(&key, &value)?;
                ro_auto = false;
            }
            "required" => {
                if !matches!(m.kind, MountType::Secret | MountType::Ssh) {
                    return Err(format!("unexpected key '{key}' for mount type '{}'", m.kind.as_str()));
                }
                m.required = go_bool(&key, &value)?;
            }
            "size" => {
                if m.kind != MountType::Tmpfs {
                    return Err(format!("unexpected key '{key}' for mount type '{}'", m.kind.as_str()));
                }
                m.size_limit = Some(ram_in_bytes(&value).map_err(|_| format!("invalid value for {key}: {value}"))?);
            }
            "id" => m.id = non_empty(value),
            "sharing" => {
                m.sharing = Some(match lowercase(&value).as_ref() {
                    "shared" => ShareMode::Shared,
                    "private" => ShareMode::Private,
                    "locked" => ShareMode::Locked,
                    _ => {
                        return Err(suggest(
                            format!("unsupported sharing value {}", crate::dockerfile::parser::go_quote(&value)),
                            &value,
                            &ALL_SHARING,
                            true,
                        ));
                    }
                });
            }
            "mode" => {
                m.mode = Some(go_u32(&value, 8).ok_or_else(|| format!("invalid value {value} for mode"))?);
            }
            "uid" => {
                m.uid = Some(go_u32(&value, 10).ok_or_else(|| format!("invalid value {value} for uid"))?);
            }
            "gid" => {
                m.gid = Some(go_u32(&value, 10).ok_or_else(|| format!("invalid value {value} for gid"))?);
            }
            "env" => m.env = Some(value.into_owned()),
            _ => {
                return Err(suggest(format!("unexpected key '{key}' in '{field}'"), &key, &ALL_KEYS, true));
            }
        }
    }

    let kind = m.kind.as_str();
    if !matches!(m.kind, MountType::Secret | MountType::Ssh | MountType::Cache) {
        for (set, what) in [(m.mode.is_some(), "mode"), (m.uid.is_some(), "uid"), (m.gid.is_some(), "gid")] {
            if set {
                return Err(format!("{what} not allowed for \"{kind}\" type mounts"));
            }
        }
    }
    if ro_auto {
        m.read_only = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    if m.kind == MountType::Secret {
        if m.from.is_some() {
            return Err("secret mount should not have a from".into());
        }
        if m.sharing.is_some() {
            return Err("secret mount should not define sharing".into());
        }
        if m.source.is_none() && m.target.is_none() && m.id.is_none() {
            return Err("invalid secret mount. one of source, target required".into());
        }
        if m.source.is_some() && m.id.is_some() {
            return Err("both source and id can't be set".into());
        }
    }
    if m.sharing.is_some() && m.kind != MountType::Cache {
        return Err(format!("invalid cache sharing set for {kind} mount"));
    }
    Ok(m)
}

/// A parsed `RUN --device` value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Device {
    /// The device name (CDI name or path).
    pub name: String,
    /// Whether the build fails when the device is missing.
    pub required: bool,
}

/// BuildKit's `ParseDevice`.
pub(super) fn parse_device(raw: &str) -> Result<Device, String> {
    let fields = csv_fields(raw).map_err(|e| format!("failed to parse csv devices: {e}"))?;
    let mut d = Device { name: String::new(), required: false };
    for field in &fields {
        let Some((key, value)) = split_once_byte(field, b'=') else {
            if field.eq_ignore_ascii_case("required") {
                d.required = true;
            } else if d.name.is_empty() {
                d.name = field.to_string();
            } else {
                return Err(format!("invalid field '{field}' must be a key=value pair"));
            }
            continue;
        };
        match lowercase(key).as_ref() {
            "name" => {
                if !d.name.is_empty() {
                    return Err(format!("device name already set to {}", d.name));
                }
                d.name = value.to_owned();
            }
            "required" => d.required = go_bool("required", value)?,
            _ if d.name.is_empty() => d.name = field.to_string(),
            k => {
                return Err(suggest(format!("unexpected key '{k}' in '{field}'"), k, &["name", "required"], true));
            }
        }
    }
    Ok(d)
}
