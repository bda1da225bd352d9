//! Snapshots of directory trees, to compare two unpacked root filesystems.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

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
            out.insert(path, Node { kind, mode: meta.mode() & 0o7777, uid: meta.uid(), gid: meta.gid(), content });
        }
    }
    out
}
