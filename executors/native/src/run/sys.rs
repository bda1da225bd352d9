//! Small system helpers: paths resolved inside a root like a chroot, mounts, xattrs.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};

/// The xattr overlayfs sets on an opaque directory of an upper (or lower) layer.
pub(crate) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Opens `path` (absolute or relative, taken inside `root`) with every symlink resolved as if
/// `root` were `/`: nothing outside `root` is ever reached.
pub(crate) fn open_in_root(root: &Path, path: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let root_fd = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    let rel = relative(path);
    let rel = if rel.as_os_str().is_empty() { PathBuf::from(".") } else { rel };
    Ok(rustix::fs::openat2(
        root_fd.as_fd(),
        &rel,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )?)
}

/// Reads a whole file inside `root` (see [`open_in_root`]).
pub(crate) fn read_in_root(root: &Path, path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let fd = open_in_root(root, path, OFlags::RDONLY)?;
    let mut out = Vec::new();
    std::fs::File::from(fd).read_to_end(&mut out)?;
    Ok(out)
}

/// `path` without its root and `.` components, refusing nothing: `..` is left to the kernel's
/// in-root resolution.
pub(crate) fn relative(path: &Path) -> PathBuf {
    path.components().filter(|c| !matches!(c, Component::RootDir | Component::CurDir)).collect()
}

/// Creates the directory `path` inside `root` and its missing parents (mode 0755, owner of the
/// creating process), like `mkdir -p` in a chroot. Returns whether anything was created.
pub(crate) fn mkdir_all_in_root(root: &Path, path: &Path) -> io::Result<bool> {
    let rel = relative(path);
    let mut created = false;
    let mut so_far = PathBuf::new();
    for c in rel.components() {
        let Component::Normal(name) = c else {
            // `..` inside the root: let the kernel clamp it while resolving.
            so_far.push(c);
            continue;
        };
        let parent = open_in_root(root, &so_far, OFlags::PATH | OFlags::DIRECTORY)?;
        match rustix::fs::mkdirat(parent.as_fd(), name, Mode::from_raw_mode(0o755)) {
            Ok(()) => created = true,
            Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        so_far.push(name);
    }
    // Fails if what is there is not a directory (or a link to one inside the root).
    open_in_root(root, &rel, OFlags::PATH | OFlags::DIRECTORY)?;
    Ok(created)
}

/// Creates an empty file (mode 0644) or directory at `path` inside `root` unless something is
/// there already, creating parents; used for mount points.
pub(crate) fn ensure_mount_point(root: &Path, path: &Path, dir: bool) -> io::Result<()> {
    if dir {
        mkdir_all_in_root(root, path)?;
        return Ok(());
    }
    let rel = relative(path);
    let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad mount point {}", path.display())));
    };
    mkdir_all_in_root(root, parent)?;
    let dir_fd = open_in_root(root, parent, OFlags::PATH | OFlags::DIRECTORY)?;
    match rustix::fs::openat(
        dir_fd.as_fd(),
        name,
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    ) {
        Ok(_) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Mounts a tmpfs at `target` (private to this host path, mode 0700).
pub(crate) fn mount_tmpfs(target: &Path, size: &str) -> io::Result<()> {
    let data = format!("mode=0700,size={size}");
    rustix::mount::mount(
        "tmpfs",
        target,
        "tmpfs",
        rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
        Some(c_string(&data)?.as_c_str()),
    )?;
    Ok(())
}

/// Mounts an overlay at `target`. `lowers` go top first.
pub(crate) fn mount_overlay(lowers: &[PathBuf], upper: Option<(&Path, &Path)>, target: &Path) -> io::Result<()> {
    let lower: Vec<String> = lowers.iter().map(|p| escape_overlay(p)).collect();
    let mut data = format!("lowerdir={}", lower.join(":"));
    if let Some((upper, work)) = upper {
        data.push_str(&format!(",upperdir={},workdir={}", escape_overlay(upper), escape_overlay(work)));
    }
    // Whole-file copy-up and real directory renames keep the upper dir a plain change set.
    data.push_str(",redirect_dir=off,metacopy=off,index=off");
    // mount(2) takes one page of options.
    if data.len() >= 4000 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("overlay options are {} bytes, over the kernel's page limit ({} layers)", data.len(), lowers.len()),
        ));
    }
    let flags = if upper.is_some() { rustix::mount::MountFlags::empty() } else { rustix::mount::MountFlags::RDONLY };
    rustix::mount::mount("overlay", target, "overlay", flags, Some(c_string(&data)?.as_c_str()))?;
    Ok(())
}

fn c_string(s: &str) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in mount options"))
}

/// Overlay option values separate with `:` and `,`; a backslash escapes them.
fn escape_overlay(p: &Path) -> String {
    let s = p.to_string_lossy();
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, ':' | ',' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// Unmounts `target`, detaching it if it is busy; a path that is not mounted is fine.
pub(crate) fn unmount(target: &Path) -> io::Result<()> {
    match rustix::mount::unmount(target, rustix::mount::UnmountFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(rustix::io::Errno::BUSY) => {
            rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH)?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether `path` (not followed) carries `trusted.overlay.opaque=y`.
pub(crate) fn is_opaque(path: &Path) -> bool {
    let mut buf = [0u8; 8];
    matches!(rustix::fs::lgetxattr(path, OPAQUE_XATTR, &mut buf), Ok(n) if &buf[..n] == b"y")
}
