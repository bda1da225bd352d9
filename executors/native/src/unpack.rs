//! Applying layer tarballs (gzip or plain) to a root filesystem directory.
//!
//! The tar is read with the `tar` crate (it decodes PAX and GNU long names); writing is our
//! own, because extraction must treat the target like a chroot: every path is resolved one
//! component at a time from a directory file descriptor of the root, with `O_NOFOLLOW`;
//! symlinks met on the way are followed by hand, with absolute targets and `..` clamped to the
//! root, so no host symlink is ever followed. Final components are created with `*at` calls
//! that never follow links. Entry names or hardlink targets whose `..` climbs above the root
//! are refused outright.
//!
//! Whiteouts (`.wh.NAME`) delete `NAME`, and `.wh..wh..opq` empties its directory, of what
//! lower layers put there (entries of the layer being applied are kept). Device nodes are
//! created only when running as root (or as asked); ownership is applied only as root.

use std::collections::{HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};

use crate::layer::{OPAQUE_WHITEOUT, WHITEOUT_PREFIX};

/// Most symlinks followed while resolving one path (as Linux's `MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

/// Errors while applying a layer.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// Reading the archive failed.
    #[error("reading layer archive (entry {entry:?}): {source}")]
    Archive {
        /// The entry being read, if known.
        entry: Option<PathBuf>,
        /// The underlying error.
        source: io::Error,
    },
    /// An entry's name or hardlink target leaves the root.
    #[error("layer entry {entry:?} is unsafe: {reason}")]
    UnsafePath {
        /// The entry name in the archive.
        entry: PathBuf,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A filesystem operation inside the root failed.
    #[error("applying layer entry {entry:?}: {op}: {source}")]
    Apply {
        /// The entry name in the archive.
        entry: PathBuf,
        /// The operation that failed.
        op: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// The root directory cannot be opened.
    #[error("opening root {path}: {source}")]
    Root {
        /// The root.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// Options of [`unpack_layer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackOptions {
    /// Apply the archive's uid/gid (needs root).
    pub same_owner: bool,
    /// Create device nodes (needs root); skipped with a warning otherwise.
    pub devices: bool,
}

impl Default for UnpackOptions {
    /// Both on when running as root, off otherwise.
    fn default() -> Self {
        let root = rustix::process::geteuid().is_root();
        Self { same_owner: root, devices: root }
    }
}

/// What [`unpack_layer`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackStats {
    /// Entries written (files, directories, links, nodes).
    pub entries: u64,
    /// Whiteouts and opaque markers applied.
    pub whiteouts: u64,
    /// Entries skipped (devices when not allowed, unsupported types).
    pub skipped: u64,
}

/// Applies the layer file at `path` (gzip or plain tar) to `root`.
///
/// # Errors
/// See [`unpack_layer`]; also [`UnpackError::Archive`] if the file cannot be opened.
pub fn unpack_layer_file(path: &Path, root: &Path, opts: &UnpackOptions) -> Result<UnpackStats, UnpackError> {
    let file = File::open(path).map_err(|source| UnpackError::Archive { entry: Some(path.to_path_buf()), source })?;
    unpack_layer(file, root, opts)
}

/// Applies a layer (gzip or plain tar, detected from its first bytes) to the directory `root`.
///
/// ```
/// use nullspace_native::layer::{Layer, LayerEntry, LayerEntryKind, LayerOptions};
/// use nullspace_native::unpack::{unpack_layer, UnpackOptions};
///
/// let mut layer = Layer::new();
/// layer.insert(LayerEntry {
///     path: "etc/motd".into(),
///     kind: LayerEntryKind::Symlink { target: "/does/not/matter".into() },
///     mode: 0o777, uid: 0, gid: 0,
/// })?;
/// let mut blob = Vec::new();
/// layer.write(&mut blob, &LayerOptions::default())?;
/// let root = tempfile::tempdir()?;
/// let stats = unpack_layer(blob.as_slice(), root.path(), &UnpackOptions::default())?;
/// assert_eq!(stats.entries, 2); // etc/ and etc/motd
/// assert!(root.path().join("etc/motd").symlink_metadata()?.is_symlink());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`UnpackError::Archive`] for a malformed archive, [`UnpackError::UnsafePath`] for a name or
/// hardlink target climbing out of the root, [`UnpackError::Apply`] when a filesystem call
/// fails. Entries applied before the error stay applied.
pub fn unpack_layer<R: Read>(layer: R, root: &Path, opts: &UnpackOptions) -> Result<UnpackStats, UnpackError> {
    let mut reader = BufReader::with_capacity(64 * 1024, layer);
    let head = reader.fill_buf().map_err(|source| UnpackError::Archive { entry: None, source })?;
    let gzip = head.starts_with(&[0x1f, 0x8b]);
    let root_fd = rustix::fs::open(root, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| UnpackError::Root { path: root.to_path_buf(), source: e.into() })?;
    let mut unpacker = Unpacker {
        root: root_fd,
        opts: *opts,
        stats: UnpackStats::default(),
        this_layer: HashSet::new(),
        dir_times: Vec::new(),
    };
    if gzip {
        unpacker.run(tar::Archive::new(flate2::read::GzDecoder::new(reader)))?;
    } else {
        unpacker.run(tar::Archive::new(reader))?;
    }
    Ok(unpacker.stats)
}

struct Unpacker {
    root: OwnedFd,
    opts: UnpackOptions,
    stats: UnpackStats,
    /// Normalized paths written by this layer, which its own whiteouts must not delete.
    this_layer: HashSet<Vec<OsString>>,
    /// Directory mtimes, applied at the end since writing children changes them.
    dir_times: Vec<(Vec<OsString>, i64)>,
}

/// Lexically normalizes an archive name; `None` if `..` climbs above the root.
fn normalize(path: &Path) -> Option<Vec<OsString>> {
    let mut out: Vec<OsString> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::ParentDir => {
                out.pop()?;
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

fn apply_err(entry: &Path, op: &'static str) -> impl FnOnce(rustix::io::Errno) -> UnpackError {
    let entry = entry.to_path_buf();
    move |e| UnpackError::Apply { entry, op, source: e.into() }
}

impl Unpacker {
    fn run<R: Read>(&mut self, mut archive: tar::Archive<R>) -> Result<(), UnpackError> {
        let entries = archive.entries().map_err(|source| UnpackError::Archive { entry: None, source })?;
        for entry in entries {
            let mut entry = entry.map_err(|source| UnpackError::Archive { entry: None, source })?;
            self.apply(&mut entry)?;
        }
        // Deepest first, so setting a parent's time is not undone by its children.
        let times = std::mem::take(&mut self.dir_times);
        for (components, mtime) in times.into_iter().rev() {
            let Some((name, parents)) = components.split_last() else {
                continue;
            };
            let shown = PathBuf::from_iter(&components);
            // A later entry may have replaced the directory; its time no longer matters.
            let applied = self
                .resolve_dir(parents, false, &shown)
                .and_then(|parent| set_times(parent.as_fd(), name, mtime, &shown));
            if let Err(e) = applied {
                tracing::warn!(error = %e, "directory time not restored");
            }
        }
        Ok(())
    }

    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let name = entry.path().map_err(|source| UnpackError::Archive { entry: None, source })?.into_owned();
        let Some(components) = normalize(&name) else {
            return Err(UnpackError::UnsafePath { entry: name, reason: "`..` leaves the root" });
        };
        let Some((file_name, parents)) = components.split_last() else {
            // The root itself ("./"): nothing to create.
            return Ok(());
        };
        let header = entry.header().clone();
        let kind = header.entry_type();

        let file_bytes = file_name.as_bytes();
        if file_bytes == OPAQUE_WHITEOUT.as_bytes() {
            let dir = self.resolve_dir(parents, true, &name)?;
            self.clear_lower(dir.as_fd(), parents, &name)?;
            self.stats.whiteouts += 1;
            return Ok(());
        }
        if let Some(target) = file_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            let target = OsStr::from_bytes(target);
            let mut full = parents.to_vec();
            full.push(target.to_os_string());
            if !self.this_layer.contains(&full) {
                let dir = self.resolve_dir(parents, true, &name)?;
                remove_all(dir.as_fd(), target, &name)?;
            }
            self.stats.whiteouts += 1;
            return Ok(());
        }

        let mode = Mode::from_raw_mode(header.mode().unwrap_or(0o644) & 0o7777);
        let mtime = header.mtime().unwrap_or(0).min(i64::MAX as u64) as i64;
        let owner = self.owner(entry, &header);
        let parent = self.resolve_dir(parents, true, &name)?;
        let pfd = parent.as_fd();

        match kind {
            tar::EntryType::Directory => {
                let is_dir =
                    lstat(pfd, file_name).is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
                if !is_dir {
                    remove_all(pfd, file_name, &name)?;
                    rustix::fs::mkdirat(pfd, file_name, Mode::from_raw_mode(0o700))
                        .map_err(apply_err(&name, "mkdir"))?;
                }
                let dir = rustix::fs::openat(
                    pfd,
                    file_name,
                    OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(apply_err(&name, "open directory"))?;
                if let Some((uid, gid)) = owner {
                    rustix::fs::fchown(&dir, Some(uid), Some(gid)).map_err(apply_err(&name, "chown"))?;
                }
                rustix::fs::fchmod(&dir, mode).map_err(apply_err(&name, "chmod"))?;
                self.dir_times.push((components.clone(), mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                remove_all(pfd, file_name, &name)?;
                let fd = rustix::fs::openat(
                    pfd,
                    file_name,
                    OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(apply_err(&name, "create file"))?;
                let mut file = File::from(fd);
                io::copy(entry, &mut file)
                    .map_err(|source| UnpackError::Archive { entry: Some(name.clone()), source })?;
                if let Some((uid, gid)) = owner {
                    rustix::fs::fchown(&file, Some(uid), Some(gid)).map_err(apply_err(&name, "chown"))?;
                }
                // After chown, which clears setuid bits.
                rustix::fs::fchmod(&file, mode).map_err(apply_err(&name, "chmod"))?;
                set_times(pfd, file_name, mtime, &name)?;
            }
            tar::EntryType::Symlink => {
                let target = link_name(entry, &name)?;
                remove_all(pfd, file_name, &name)?;
                rustix::fs::symlinkat(target.as_os_str(), pfd, file_name).map_err(apply_err(&name, "symlink"))?;
                if let Some((uid, gid)) = owner {
                    rustix::fs::chownat(pfd, file_name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(apply_err(&name, "chown"))?;
                }
                set_times(pfd, file_name, mtime, &name)?;
            }
            tar::EntryType::Link => {
                let target = link_name(entry, &name)?;
                let Some(target_components) = normalize(&target) else {
                    return Err(UnpackError::UnsafePath { entry: name, reason: "hardlink target leaves the root" });
                };
                let Some((target_name, target_parents)) = target_components.split_last() else {
                    return Err(UnpackError::UnsafePath { entry: name, reason: "hardlink to the root" });
                };
                let target_dir = self.resolve_dir(target_parents, false, &name)?;
                remove_all(pfd, file_name, &name)?;
                // Flags 0: a symlink target is linked itself, never followed.
                rustix::fs::linkat(target_dir.as_fd(), target_name, pfd, file_name, AtFlags::empty())
                    .map_err(apply_err(&name, "hardlink"))?;
            }
            tar::EntryType::Fifo | tar::EntryType::Char | tar::EntryType::Block => {
                let (ft, is_device) = match kind {
                    tar::EntryType::Fifo => (FileType::Fifo, false),
                    tar::EntryType::Char => (FileType::CharacterDevice, true),
                    _ => (FileType::BlockDevice, true),
                };
                if is_device && !self.opts.devices {
                    tracing::warn!(entry = %name.display(), "device node skipped (not root)");
                    self.stats.skipped += 1;
                    return Ok(());
                }
                let dev = rustix::fs::makedev(
                    header.device_major().ok().flatten().unwrap_or(0),
                    header.device_minor().ok().flatten().unwrap_or(0),
                );
                remove_all(pfd, file_name, &name)?;
                rustix::fs::mknodat(pfd, file_name, ft, mode, dev).map_err(apply_err(&name, "mknod"))?;
                if let Some((uid, gid)) = owner {
                    rustix::fs::chownat(pfd, file_name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(apply_err(&name, "chown"))?;
                }
                rustix::fs::chmodat(pfd, file_name, mode, AtFlags::empty()).map_err(apply_err(&name, "chmod"))?;
                set_times(pfd, file_name, mtime, &name)?;
            }
            other => {
                tracing::warn!(entry = %name.display(), kind = ?other, "unsupported entry type skipped");
                self.stats.skipped += 1;
                return Ok(());
            }
        }
        self.this_layer.insert(components);
        self.stats.entries += 1;
        Ok(())
    }

    /// The owner to apply, from the header or its PAX `uid`/`gid` records.
    fn owner<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        header: &tar::Header,
    ) -> Option<(rustix::fs::Uid, rustix::fs::Gid)> {
        if !self.opts.same_owner {
            return None;
        }
        let mut uid = header.uid().unwrap_or(0);
        let mut gid = header.gid().unwrap_or(0);
        if let Ok(Some(exts)) = entry.pax_extensions() {
            for ext in exts.flatten() {
                let value = ext.value().ok().and_then(|v| v.parse::<u64>().ok());
                match (ext.key(), value) {
                    (Ok("uid"), Some(v)) => uid = v,
                    (Ok("gid"), Some(v)) => gid = v,
                    _ => {}
                }
            }
        }
        let uid = u32::try_from(uid).ok()?;
        let gid = u32::try_from(gid).ok()?;
        Some((rustix::fs::Uid::from_raw(uid), rustix::fs::Gid::from_raw(gid)))
    }

    /// Opens the directory at `components`, resolved inside the root like a chroot would:
    /// symlinks are followed by hand (absolute targets restart at the root, `..` stops at the
    /// root). Missing directories are created (0755) when `create` is set.
    fn resolve_dir(&self, components: &[OsString], create: bool, entry: &Path) -> Result<OwnedFd, UnpackError> {
        let mut stack: Vec<OwnedFd> = Vec::new();
        let mut queue: VecDeque<OsString> = components.iter().cloned().collect();
        let mut links = 0usize;
        while let Some(c) = queue.pop_front() {
            if c == ".." {
                stack.pop();
                continue;
            }
            if c.is_empty() || c == "." {
                continue;
            }
            let cur = stack.last().map_or(self.root.as_fd(), |fd| fd.as_fd());
            let opened = rustix::fs::openat(
                cur,
                c.as_os_str(),
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            );
            let fd = match opened {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) if create => {
                    rustix::fs::mkdirat(cur, c.as_os_str(), Mode::from_raw_mode(0o755))
                        .map_err(apply_err(entry, "create parent directory"))?;
                    queue.push_front(c);
                    continue;
                }
                Err(e) => return Err(apply_err(entry, "open parent directory")(e)),
            };
            let st = rustix::fs::fstat(&fd).map_err(apply_err(entry, "stat parent"))?;
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => stack.push(fd),
                FileType::Symlink => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(apply_err(entry, "resolve parent")(rustix::io::Errno::LOOP));
                    }
                    let target =
                        rustix::fs::readlinkat(cur, c.as_os_str(), Vec::new()).map_err(apply_err(entry, "readlink"))?;
                    let target = PathBuf::from(OsStr::from_bytes(target.to_bytes()));
                    if target.is_absolute() {
                        stack.clear();
                    }
                    for part in target.components().rev() {
                        match part {
                            Component::Normal(n) => queue.push_front(n.to_os_string()),
                            Component::ParentDir => queue.push_front("..".into()),
                            _ => {}
                        }
                    }
                }
                _ => {
                    return Err(apply_err(entry, "parent is not a directory")(rustix::io::Errno::NOTDIR));
                }
            }
        }
        let top = stack.pop();
        match top {
            Some(fd) => {
                // O_PATH descriptors cannot list or write; reopen the directory itself.
                rustix::fs::openat(&fd, ".", OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                    .map_err(apply_err(entry, "open parent directory"))
            }
            None => rustix::io::dup(&self.root).map_err(apply_err(entry, "dup root")),
        }
    }

    /// Removes the children of `dir` that this layer did not write (opaque whiteout).
    fn clear_lower(&self, dir: BorrowedFd<'_>, dir_components: &[OsString], entry: &Path) -> Result<(), UnpackError> {
        let names = list_dir(dir, entry)?;
        for child in names {
            let mut full = dir_components.to_vec();
            full.push(child.clone());
            if !self.this_layer.contains(&full) {
                remove_all(dir, &child, entry)?;
            }
        }
        Ok(())
    }
}

fn link_name<R: Read>(entry: &tar::Entry<'_, R>, name: &Path) -> Result<PathBuf, UnpackError> {
    match entry.link_name() {
        Ok(Some(target)) => Ok(target.into_owned()),
        Ok(None) => Err(UnpackError::Archive {
            entry: Some(name.to_path_buf()),
            source: io::Error::new(io::ErrorKind::InvalidData, "link without a target"),
        }),
        Err(source) => Err(UnpackError::Archive { entry: Some(name.to_path_buf()), source }),
    }
}

fn lstat(dir: BorrowedFd<'_>, name: &OsStr) -> Option<rustix::fs::Stat> {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).ok()
}

fn set_times(dir: BorrowedFd<'_>, name: &OsStr, mtime: i64, entry: &Path) -> Result<(), UnpackError> {
    let t = Timespec { tv_sec: mtime, tv_nsec: 0 };
    let times = Timestamps { last_access: t, last_modification: t };
    rustix::fs::utimensat(dir, name, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(apply_err(entry, "set times"))
}

fn list_dir(dir: BorrowedFd<'_>, entry: &Path) -> Result<Vec<OsString>, UnpackError> {
    let mut out = Vec::new();
    let iter = rustix::fs::Dir::read_from(dir).map_err(apply_err(entry, "read directory"))?;
    for item in iter {
        let item = item.map_err(apply_err(entry, "read directory"))?;
        let n = item.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    Ok(out)
}

/// Removes `name` in `parent` and, for a directory, everything below it, without recursion
/// and without following symlinks. A missing `name` is not an error.
fn remove_all(parent: BorrowedFd<'_>, name: &OsStr, entry: &Path) -> Result<(), UnpackError> {
    let Some(st) = lstat(parent, name) else {
        return Ok(());
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return rustix::fs::unlinkat(parent, name, AtFlags::empty()).map_err(apply_err(entry, "remove"));
    }
    let open_dir = |at: BorrowedFd<'_>, n: &OsStr| {
        rustix::fs::openat(
            at,
            n,
            OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(apply_err(entry, "open directory to remove"))
    };
    // Each level: the open directory and the name it has in the level above.
    let mut stack: Vec<(OwnedFd, OsString)> = vec![(open_dir(parent, name)?, name.to_os_string())];
    while let Some((dir, _)) = stack.last() {
        let mut descend = None;
        for child in list_dir(dir.as_fd(), entry)? {
            match lstat(dir.as_fd(), &child) {
                Some(cst) if FileType::from_raw_mode(cst.st_mode) == FileType::Directory => {
                    descend = Some(child);
                    break;
                }
                Some(_) => rustix::fs::unlinkat(dir.as_fd(), child.as_os_str(), AtFlags::empty())
                    .map_err(apply_err(entry, "remove"))?,
                None => {}
            }
        }
        if let Some(child) = descend {
            let fd = open_dir(dir.as_fd(), &child)?;
            stack.push((fd, child));
            continue;
        }
        let Some((_, dir_name)) = stack.pop() else {
            break;
        };
        let above = stack.last().map_or(parent, |(fd, _)| fd.as_fd());
        rustix::fs::unlinkat(above, dir_name.as_os_str(), AtFlags::REMOVEDIR)
            .map_err(apply_err(entry, "remove directory"))?;
    }
    Ok(())
}
