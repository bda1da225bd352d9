//! The runtime `config.json` of a RUN step, built with `oci-spec`'s runtime types, and the
//! resolution of `USER` through the root filesystem's `/etc/passwd` and `/etc/group`.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxCapabilitiesBuilder, LinuxNamespaceType, Mount, MountBuilder, ProcessBuilder, RootBuilder, Spec,
    UserBuilder,
};

use super::RunError;
use super::sys::read_in_root;

/// A user resolved to ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (from `/etc/group` membership when the user was named).
    pub additional_gids: Vec<u32>,
}

/// Resolves `user[:group]` (names or ids) as Docker does: names are looked up in the root
/// filesystem's `/etc/passwd` and `/etc/group`; a uid with no passwd entry gets gid 0; an empty
/// spec is root.
///
/// ```
/// let root = tempfile::tempdir()?;
/// std::fs::create_dir(root.path().join("etc"))?;
/// std::fs::write(root.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n")?;
/// std::fs::write(root.path().join("etc/group"), "root:x:0:\napp:x:1001:\nwheel:x:10:app\n")?;
/// let u = nullspace_native::run::resolve_user(root.path(), "app")?;
/// assert_eq!((u.uid, u.gid, u.additional_gids), (1000, 1001, vec![10]));
/// let u = nullspace_native::run::resolve_user(root.path(), "42:wheel")?;
/// assert_eq!((u.uid, u.gid), (42, 10));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`RunError::User`] when a name is not found or the files cannot be read.
pub fn resolve_user(root: &Path, spec: &str) -> Result<ResolvedUser, RunError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let fail = |reason: String| RunError::User { user: spec.to_string(), reason };
    let read = |file: &str| -> Result<Vec<Vec<String>>, RunError> {
        match read_in_root(root, Path::new(file)) {
            Ok(bytes) => Ok(String::from_utf8_lossy(&bytes)
                .lines()
                .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
                .map(|l| l.split(':').map(str::to_string).collect())
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(fail(format!("reading {file}: {e}"))),
        }
    };
    let passwd = read("/etc/passwd")?;
    let field = |row: &Vec<String>, i: usize| row.get(i).and_then(|v| v.parse::<u32>().ok());
    let (uid, mut gid, name) = if user.is_empty() {
        (0, 0, Some("root".to_string()))
    } else if let Ok(uid) = user.parse::<u32>() {
        let row = passwd.iter().find(|r| field(r, 2) == Some(uid));
        (uid, row.and_then(|r| field(r, 3)).unwrap_or(0), row.and_then(|r| r.first().cloned()))
    } else {
        let row = passwd
            .iter()
            .find(|r| r.first().map(String::as_str) == Some(user))
            .ok_or_else(|| fail(format!("no user `{user}` in /etc/passwd")))?;
        let uid = field(row, 2).ok_or_else(|| fail(format!("bad uid for `{user}` in /etc/passwd")))?;
        (uid, field(row, 3).unwrap_or(0), Some(user.to_string()))
    };
    let groups = read("/etc/group")?;
    if let Some(g) = group.filter(|g| !g.is_empty()) {
        gid = match g.parse::<u32>() {
            Ok(id) => id,
            Err(_) => groups
                .iter()
                .find(|r| r.first().map(String::as_str) == Some(g))
                .and_then(|r| field(r, 2))
                .ok_or_else(|| fail(format!("no group `{g}` in /etc/group")))?,
        };
    }
    let mut additional_gids = Vec::new();
    if group.is_none() {
        if let Some(name) = &name {
            for row in &groups {
                let members = row.get(3).map(String::as_str).unwrap_or("");
                if members.split(',').any(|m| m == name) {
                    if let Some(id) = field(row, 2).filter(|id| *id != gid) {
                        additional_gids.push(id);
                    }
                }
            }
        }
    }
    Ok(ResolvedUser { uid, gid, additional_gids })
}

/// Docker's default capability set for containers (and so for build steps).
const CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// A bind mount of `source` at `destination`.
pub(crate) fn bind(source: &Path, destination: &str, readonly: bool) -> Result<Mount, RunError> {
    let mut options = vec!["rbind".to_string(), "nosuid".to_string(), "nodev".to_string()];
    options.push(if readonly { "ro" } else { "rw" }.to_string());
    MountBuilder::default()
        .destination(PathBuf::from(destination))
        .typ("bind")
        .source(source.to_path_buf())
        .options(options)
        .build()
        .map_err(|e| RunError::Spec(e.to_string()))
}

/// A tmpfs at `destination`.
pub(crate) fn tmpfs(destination: &str, size: Option<u64>) -> Result<Mount, RunError> {
    let mut options = vec!["nosuid".to_string(), "nodev".to_string(), "mode=1777".to_string()];
    if let Some(size) = size {
        options.push(format!("size={size}"));
    }
    MountBuilder::default()
        .destination(PathBuf::from(destination))
        .typ("tmpfs")
        .source(PathBuf::from("tmpfs"))
        .options(options)
        .build()
        .map_err(|e| RunError::Spec(e.to_string()))
}

/// What goes into one step's runtime spec.
pub(crate) struct SpecInput<'a> {
    pub rootfs: &'a Path,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: ResolvedUser,
    pub host_network: bool,
    pub mounts: Vec<Mount>,
}

/// Builds the runtime spec: oci-spec's defaults (proc, dev, sys, masked paths), Docker's
/// capabilities, the host network namespace unless `host_network` is false.
pub(crate) fn build_spec(input: SpecInput<'_>) -> Result<Spec, RunError> {
    let spec_err = |e: oci_spec::OciSpecError| RunError::Spec(e.to_string());
    let caps: oci_spec::runtime::Capabilities = CAPABILITIES.into_iter().collect();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .build()
        .map_err(spec_err)?;
    let user = UserBuilder::default()
        .uid(input.user.uid)
        .gid(input.user.gid)
        .additional_gids(input.user.additional_gids)
        .build()
        .map_err(spec_err)?;
    let process = ProcessBuilder::default()
        .terminal(false)
        .args(input.args)
        .env(input.env)
        .cwd(input.cwd)
        .user(user)
        .capabilities(capabilities)
        .no_new_privileges(false)
        .build()
        .map_err(spec_err)?;
    let root = RootBuilder::default().path(input.rootfs.to_path_buf()).readonly(false).build().map_err(spec_err)?;
    let mut spec = Spec::default();
    spec.set_process(Some(process));
    spec.set_root(Some(root));
    spec.set_hostname(Some("nullspace".to_string()));
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    // A build step has no business with the host's cgroups.
    mounts.retain(|m| m.destination() != Path::new("/sys/fs/cgroup"));
    mounts.extend(input.mounts);
    spec.set_mounts(Some(mounts));
    if let Some(linux) = spec.linux_mut() {
        if let Some(namespaces) = linux.namespaces_mut() {
            namespaces.retain(|ns| ns.typ() != LinuxNamespaceType::Cgroup);
            if input.host_network {
                namespaces.retain(|ns| ns.typ() != LinuxNamespaceType::Network);
            }
        }
    }
    Ok(spec)
}
