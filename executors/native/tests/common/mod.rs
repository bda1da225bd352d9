//! Helpers shared by the integration tests: a small context walker and tree snapshots.

#![allow(unreachable_pub)]

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nullspace_engine::context::{Entry, EntryKind, StatInfo};

/// Walks `root` (not following symlinks) into sorted entries, as the engine's walk will.
pub fn walk(root: &Path) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for item in std::fs::read_dir(root.join(&rel)).unwrap() {
            let item = item.unwrap();
            let path = rel.join(item.file_name());
            let meta = item.path().symlink_metadata().unwrap();
            let kind = if meta.is_dir() {
                stack.push(path.clone());
                EntryKind::Dir
            } else if meta.file_type().is_symlink() {
                EntryKind::Symlink {
                    target: std::fs::read_link(item.path()).unwrap(),
                }
            } else {
                EntryKind::File
            };
            out.push(Entry {
                path,
                size: if meta.is_dir() { 0 } else { meta.len() },
                kind,
                mode: meta.mode() & 0o7777,
                stat: StatInfo {
                    dev: meta.dev(),
                    ino: meta.ino(),
                    nlink: meta.nlink(),
                    mtime_ns: i128::from(meta.mtime()) * 1_000_000_000,
                    ctime_ns: i128::from(meta.ctime()) * 1_000_000_000,
                    uid: meta.uid(),
                    gid: meta.gid(),
                },
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// One file-system object as seen by `snapshot`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub content: Vec<u8>,
}

/// Everything under `root` (type, mode, owner, content or link target), keyed by path.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for item in std::fs::read_dir(root.join(&rel)).unwrap() {
            let item = item.unwrap();
            let path = rel.join(item.file_name());
            let meta = item.path().symlink_metadata().unwrap();
            let ft = meta.file_type();
            let (kind, content) = if ft.is_dir() {
                stack.push(path.clone());
                ("dir", Vec::new())
            } else if ft.is_symlink() {
                let t = std::fs::read_link(item.path()).unwrap();
                ("symlink", t.into_os_string().into_encoded_bytes())
            } else if ft.is_file() {
                ("file", std::fs::read(item.path()).unwrap())
            } else {
                ("other", Vec::new())
            };
            out.insert(
                path,
                Node {
                    kind,
                    mode: meta.mode() & 0o7777,
                    uid: meta.uid(),
                    gid: meta.gid(),
                    content,
                },
            );
        }
    }
    out
}

/// Sets a file's mtime (to prove mtimes do not matter).
pub fn set_mtime(path: &Path, secs: u64) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .unwrap();
}
