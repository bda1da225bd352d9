//! A small build-context walker for tests, producing the engine's sorted `Entry` list.

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
                EntryKind::Symlink { target: std::fs::read_link(item.path()).unwrap() }
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
