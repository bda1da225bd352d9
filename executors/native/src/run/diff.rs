//! What a RUN step changed, as [`Change`]s for [`crate::layer::Layer::add_changes`].
//!
//! With overlayfs the upper directory *is* the change set: a character device 0/0 is a deletion,
//! a directory with `trusted.overlay.opaque=y` replaced its lower namesake, anything else was
//! written. Without it, the root filesystem is scanned before and after the command and the
//! two scans compared: a path whose type, mode, owner, size, inode, mtime or ctime differs was
//! written (ctime cannot be set from user space, so every write shows), a path gone while its
//! parent is still a directory was deleted.
//!
//! Both walks are iterative (no recursion on deep trees) and never follow symlinks. Paths in
//! `excluded` (mount points of the step) and everything below them are left out.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::RunError;
use super::sys::is_opaque;
use crate::layer::Change;

fn walk_err(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io { what: "scan root filesystem", path: path.to_path_buf(), source }
}

/// Children of `dir` (relative `rel`), sorted by name.
fn children(root: &Path, rel: &Path) -> Result<Vec<PathBuf>, RunError> {
    let dir = root.join(rel);
    let mut out = Vec::new();
    for item in std::fs::read_dir(&dir).map_err(walk_err(&dir))? {
        let item = item.map_err(walk_err(&dir))?;
        out.push(rel.join(item.file_name()));
    }
    out.sort();
    Ok(out)
}

fn is_excluded(rel: &Path, excluded: &HashSet<PathBuf>) -> bool {
    rel.ancestors().any(|a| excluded.contains(a))
}

/// The changes recorded in an overlayfs upper directory.
///
/// # Errors
/// [`RunError::Io`] if the directory cannot be read.
pub fn upper_changes(upper: &Path, excluded: &HashSet<PathBuf>) -> Result<Vec<Change>, RunError> {
    let mut out = Vec::new();
    let mut stack = children(upper, Path::new(""))?;
    stack.reverse();
    while let Some(rel) = stack.pop() {
        if is_excluded(&rel, excluded) {
            continue;
        }
        let full = upper.join(&rel);
        let meta = std::fs::symlink_metadata(&full).map_err(walk_err(&full))?;
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            out.push(Change::Delete(rel));
            continue;
        }
        if ft.is_dir() {
            out.push(if is_opaque(&full) { Change::Opaque(rel.clone()) } else { Change::Write(rel.clone()) });
            let mut kids = children(upper, &rel)?;
            kids.reverse();
            stack.extend(kids);
        } else {
            out.push(Change::Write(rel));
        }
    }
    Ok(out)
}

/// What a scan records of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    ino: u64,
    rdev: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    link: Option<PathBuf>,
}

/// A scan of a root filesystem, for the copy fallback.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    paths: BTreeMap<PathBuf, State>,
}

impl Scan {
    /// Records every path under `root` except `excluded` ones.
    ///
    /// # Errors
    /// [`RunError::Io`] if a directory cannot be read.
    pub fn take(root: &Path, excluded: &HashSet<PathBuf>) -> Result<Self, RunError> {
        let mut paths = BTreeMap::new();
        let mut stack = children(root, Path::new(""))?;
        while let Some(rel) = stack.pop() {
            if is_excluded(&rel, excluded) {
                continue;
            }
            let full = root.join(&rel);
            let meta = std::fs::symlink_metadata(&full).map_err(walk_err(&full))?;
            let link = if meta.file_type().is_symlink() {
                Some(std::fs::read_link(&full).map_err(walk_err(&full))?)
            } else {
                None
            };
            if meta.is_dir() {
                stack.extend(children(root, &rel)?);
            }
            let state = State {
                mode: meta.mode(),
                uid: meta.uid(),
                gid: meta.gid(),
                // A directory's size changes with its entries, which are compared on their own.
                size: if meta.is_dir() { 0 } else { meta.size() },
                ino: meta.ino(),
                rdev: meta.rdev(),
                mtime: if meta.is_dir() { (0, 0) } else { (meta.mtime(), meta.mtime_nsec()) },
                ctime: if meta.is_dir() { (0, 0) } else { (meta.ctime(), meta.ctime_nsec()) },
                link,
            };
            paths.insert(rel, state);
        }
        Ok(Self { paths })
    }

    /// What changed from `self` (before) to `after`.
    pub fn changes(&self, after: &Scan) -> Vec<Change> {
        let mut out = Vec::new();
        for (path, state) in &after.paths {
            if self.paths.get(path) != Some(state) {
                out.push(Change::Write(path.clone()));
            }
        }
        for path in self.paths.keys() {
            if after.paths.contains_key(path) {
                continue;
            }
            // Only the topmost deleted path gets a whiteout: its parent must still be a
            // directory (the root always is).
            let parent_is_dir = match path.parent() {
                None => true,
                Some(p) if p.as_os_str().is_empty() => true,
                Some(p) => after.paths.get(p).is_some_and(|s| s.mode & 0o170000 == 0o040000),
            };
            if parent_is_dir {
                out.push(Change::Delete(path.clone()));
            }
        }
        out
    }
}
