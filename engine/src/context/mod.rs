//! The build context: what a build may read from the user's directory.
//!
//! [`walk`] lists the context applying [`ignore`] rules; [`contenthash`] computes BuildKit's
//! per-path digests; [`statcache`] remembers digests of unchanged files between runs;
//! [`select`] picks what each COPY/ADD copies; [`inspect`] reports on a whole context before a
//! build.

pub mod contenthash;
mod hugepages;
pub mod ignore;
pub mod inspect;
pub mod select;
pub mod statcache;
pub mod walk;

use std::path::PathBuf;

/// What kind of filesystem object a context entry is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link, recorded with its target and never followed while walking.
    Symlink {
        /// The link's target, exactly as stored in the link.
        target: PathBuf,
    },
}

/// One entry of a walked build context.
///
/// `path` is relative to the context root, `/`-separated, with no leading `./`; on Unix it may hold
/// any bytes (non-UTF-8 names are kept as they are).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    /// Path relative to the context root.
    pub path: PathBuf,
    /// File, directory or symlink.
    pub kind: EntryKind,
    /// Permission and special bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Size in bytes (0 for directories; the target length for symlinks).
    pub size: u64,
    /// Identity and timestamps, used by the stat cache and to detect hardlinks.
    pub stat: StatInfo,
}

/// The `stat(2)` fields that tell whether a file changed since it was last hashed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct StatInfo {
    /// Device id.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Number of hard links.
    pub nlink: u64,
    /// Modification time in nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Status change time in nanoseconds since the epoch.
    pub ctime_ns: i128,
    /// Owner user id (never part of a digest or cache key).
    pub uid: u32,
    /// Owner group id (never part of a digest or cache key).
    pub gid: u32,
}
