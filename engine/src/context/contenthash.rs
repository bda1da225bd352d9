//! BuildKit-compatible content digests (`cache/contenthash`), so that our digest of a context
//! path equals the one BuildKit computes for it, and with it the cache keys of `COPY`/`ADD`.
//!
//! No crate implements this algorithm; this is our own implementation of its behaviour:
//!
//! * **Records.** Every file, symlink and directory has a *record digest*: SHA-256 over a
//!   tarsum-v1 header (`name` empty, `mode`, `uid`, `gid`, `size`, `typeflag`, `linkname`, `uname`
//!   and `gname` empty, `devmajor`, `devminor` – each key followed by its value, no mtime – then
//!   the sorted extended attributes BuildKit keeps: `security.capability` and anything outside
//!   `security.*`/`system.*`), followed, for a regular file, by its content. A file's name is not
//!   part of its digest; a symlink is hashed by its target (mode `0777`, size 0).
//! * **Directories** have two records: the *header* (as above, typeflag `5`, size 0) and the
//!   *contents*: SHA-256 over `"\0"` + header digest, then for each child in byte order of its
//!   name `"\0"` + name + the child's digest, where a child directory contributes its contents
//!   digest. Digests enter these hashes in their `sha256:<hex>` text form.
//! * **Build context** ([`hash_context`]): BuildKit receives the context with uid/gid reset to 0
//!   and fakes the root's header as the digest of the empty string, so neither ownership nor the
//!   root directory's mode affects anything; mtime never does.
//! * **A directory on disk** ([`checksum_path`], BuildKit's `Checksum` of a snapshot): the root
//!   header is the directory's own header, and ownership is taken from disk or reset, as asked.
//! * **Looking up a path** follows symlinks in every component (and in the last one when
//!   `follow_links`), each resolved within the root (`..` stops at the root, absolute targets
//!   start from it), at most 255 links.
//!
//! Regular files are hashed on all cores, streamed through a fixed buffer, hardlinks (same device
//! and inode) once. `sha2` uses the SHA-NI instructions when the CPU has them (runtime detection).

use std::convert::Infallible;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::num::NonZeroUsize;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread;

use hashbrown::HashTable;
use rustc_hash::FxHashMap;
use sha2::{Digest as _, Sha256};

use super::statcache::{StatCache, StatKey, now_ns, path_hash};
use super::walk::path_order;
use super::{Entry, EntryKind, StatInfo};
use crate::cas::Digest;

/// How many symlinks one lookup may follow, as in BuildKit.
const MAX_SYMLINKS: usize = 255;
/// Read buffer per hashing thread.
const READ_BUFFER: usize = 256 * 1024;
/// Files at least this large are hashed first, largest first.
const LARGE_FILE: u64 = 1 << 20;

/// Whose uid/gid go into record headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Ownership {
    /// uid and gid 0, as in a build context BuildKit received (its client resets them). The
    /// default: ownership then never changes a digest or cache key.
    #[default]
    Reset,
    /// The owner on disk, as BuildKit's checksum of a snapshot (e.g. `COPY --from` a stage) sees it.
    OnDisk,
}

/// Options of [`checksum_path`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChecksumOptions {
    /// Resolve the path's last component too when it is a symlink (BuildKit's `FollowLinks`).
    pub follow_links: bool,
    /// Whose uid/gid go into headers.
    pub ownership: Ownership,
}

/// The digests BuildKit keeps for one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathDigest {
    /// The record digest of a file or symlink; a directory's recursive contents digest.
    pub digest: Digest,
    /// A directory's header record digest (`None` for files and symlinks).
    pub dir_header: Option<Digest>,
}

/// What one hashing run did, for diagnostics and to show that a stat cache works.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HashStats {
    /// Regular files whose content was read (each hardlinked inode once).
    pub files_hashed: u64,
    /// Content bytes read.
    pub bytes_hashed: u64,
    /// Directory and symlink headers computed from disk.
    pub headers_hashed: u64,
    /// Entries whose digest came from the stat cache.
    pub cache_hits: u64,
}

/// Why a digest could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The path (after following symlinks) does not exist.
    #[error("{}: not found", path.display())]
    NotFound {
        /// The path as it was asked for.
        path: PathBuf,
    },
    /// Resolving the path followed more than 255 symlinks.
    #[error("{}: too many links", path.display())]
    TooManyLinks {
        /// The path as it was asked for.
        path: PathBuf,
    },
    /// A file, directory or symlink could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file on disk.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A file was replaced or changed type between the walk and the hashing.
    #[error("{}: changed while the context was being hashed", path.display())]
    Changed {
        /// The file on disk.
        path: PathBuf,
    },
    /// A directory holds something other than a file, directory or symlink.
    #[error("{}: unsupported file type (only files, directories and symlinks are hashed)", path.display())]
    Unsupported {
        /// The file on disk.
        path: PathBuf,
    },
    /// An entry's path is empty, absolute, or has an empty, `.` or `..` component.
    #[error("context entry {}: invalid path", path.display())]
    InvalidEntryPath {
        /// The entry's path.
        path: PathBuf,
    },
    /// Two entries have the same path.
    #[error("context entry {}: listed twice", path.display())]
    DuplicateEntry {
        /// The entry's path.
        path: PathBuf,
    },
    /// An entry's parent is not a directory entry.
    #[error("context entry {}: parent {} is not a listed directory", path.display(), parent.display())]
    MissingParent {
        /// The entry's path.
        path: PathBuf,
        /// Its parent's path.
        parent: PathBuf,
    },
}

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> HashError + '_ {
    move |source| HashError::Read { path: path.to_owned(), source }
}

/// Digests of a walked build context: one per entry plus the whole context's.
#[derive(Debug, Clone)]
pub struct ContextHashes {
    tree: Tree,
    stats: HashStats,
}

impl ContextHashes {
    /// The whole context's digest: BuildKit's checksum of `/` in the context (`COPY . …`).
    pub fn digest(&self) -> Digest {
        self.tree.nodes[0].digest
    }

    /// The digests of the entry at `path` (relative to the context root, no symlink resolution).
    pub fn get(&self, path: &Path) -> Option<PathDigest> {
        self.tree.find(path.as_os_str().as_bytes()).map(|i| self.tree.path_digest(i))
    }

    /// Every entry's path and digests, in path order (the root is not included).
    pub fn iter(&self) -> impl Iterator<Item = (&Path, PathDigest)> {
        (1..self.tree.nodes.len())
            .map(|i| (Path::new(OsStr::from_bytes(self.tree.text(self.tree.nodes[i].path))), self.tree.path_digest(i)))
    }

    /// What the hashing run did.
    pub fn stats(&self) -> HashStats {
        self.stats
    }

    /// BuildKit's checksum of `path` in this context (relative or `/`-rooted; `.`/`..` are resolved
    /// lexically first), following symlinks within the context, the last one only if
    /// `follow_links`. A directory gives its contents digest.
    pub fn checksum(&self, path: &Path, follow_links: bool) -> Result<Digest, HashError> {
        let resolved = resolve(path, follow_links, |p| {
            Ok(match self.tree.find(p) {
                None => Lookup::Missing,
                Some(i) => self.tree.link_target(i).map_or(Lookup::Other, |target| Lookup::Symlink(target.to_vec())),
            })
        })?;
        match self.tree.find(&resolved) {
            Some(i) => Ok(self.tree.nodes[i].digest),
            None => Err(HashError::NotFound { path: path.to_owned() }),
        }
    }

    /// The digest BuildKit gives a `COPY` whose sources are `paths` (no wildcards) in this context:
    /// the paths are made absolute, those inside another listed path dropped, the rest sorted, each
    /// checksummed (following links as `follow_links`, which Dockerfile `COPY` sets), and the
    /// `sha256:` digests joined with NUL and hashed. No paths means the whole context, as in
    /// BuildKit.
    ///
    /// ```
    /// use nullspace_engine::context::contenthash::hash_context;
    /// use nullspace_engine::context::{Entry, EntryKind, StatInfo};
    /// use std::os::unix::fs::MetadataExt;
    /// use std::path::Path;
    ///
    /// let dir = tempfile::tempdir()?;
    /// std::fs::write(dir.path().join("a.txt"), "hello")?;
    /// let meta = std::fs::symlink_metadata(dir.path().join("a.txt"))?;
    /// let entry = Entry {
    ///     path: "a.txt".into(),
    ///     kind: EntryKind::File,
    ///     mode: meta.mode() & 0o7777,
    ///     size: meta.size(),
    ///     stat: StatInfo {
    ///         dev: meta.dev(),
    ///         ino: meta.ino(),
    ///         nlink: meta.nlink(),
    ///         mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
    ///         ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
    ///         uid: meta.uid(),
    ///         gid: meta.gid(),
    ///     },
    /// };
    /// let hashes = hash_context(dir.path(), &[entry], None)?;
    /// let file = hashes.checksum(Path::new("a.txt"), true)?;
    /// assert_eq!(file, hashes.get(Path::new("a.txt")).unwrap().digest);
    /// let key = hashes.selection_digest(&[Path::new("a.txt")], true)?;
    /// assert_eq!(key, nullspace_engine::cas::Digest::of(file.to_string().as_bytes()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn selection_digest<P: AsRef<Path>>(&self, paths: &[P], follow_links: bool) -> Result<Digest, HashError> {
        let mut absolute: Vec<Vec<u8>> = paths
            .iter()
            .map(|p| {
                let mut abs = b"/".to_vec();
                abs.extend_from_slice(&clean(p.as_ref().as_os_str().as_bytes()).join(&b'/'));
                abs
            })
            .collect();
        if absolute.is_empty() {
            absolute.push(b"/".to_vec());
        }
        absolute.sort();
        absolute.dedup();
        let kept: Vec<&Vec<u8>> = absolute
            .iter()
            .filter(|p1| {
                !absolute.iter().any(|p2| {
                    let parent: Vec<u8> = if p2.ends_with(b"/") { p2.to_vec() } else { [p2.as_slice(), b"/"].concat() };
                    p1 != &p2 && p1.starts_with(&parent)
                })
            })
            .collect();
        let mut joined = Vec::with_capacity(kept.len() * 72);
        for (i, p) in kept.iter().enumerate() {
            if i > 0 {
                joined.push(0);
            }
            let digest = self.checksum(Path::new(OsStr::from_bytes(p)), follow_links)?;
            joined.extend_from_slice(&digest.to_prefixed_bytes());
        }
        Ok(Digest::of(&joined))
    }
}

/// Hashes a walked build context as BuildKit would after receiving it.
///
/// `entries` are the walker's output: paths relative to `root`, every parent directory listed
/// (order does not matter). With a `cache`, entries whose stat fields match a cached record are
/// not read; afterwards `cache` holds exactly the current, non-racy entries (save it with
/// [`StatCache::save`]).
///
/// Fails naming the file when an entry cannot be read or no longer is what the walk saw.
pub fn hash_context(root: &Path, entries: &[Entry], cache: Option<&mut StatCache>) -> Result<ContextHashes, HashError> {
    let (tree, stats) = hash_tree(root, entries, RootHeader::Empty, Ownership::Reset, cache)?;
    Ok(ContextHashes { tree, stats })
}

/// BuildKit's checksum of `path` inside the directory tree at `root` (its `Checksum` of a
/// snapshot), read from disk: a file's or symlink's record digest, or a directory's contents
/// digest, whose own header comes from the directory's metadata.
///
/// `path` is relative to `root` (or `/`-rooted); `.` and `..` are resolved lexically, and symlinks
/// within `root`. For a build context prefer [`hash_context`], which matches what BuildKit
/// receives (ownership reset, root header empty, ignored files absent).
///
/// ```
/// use nullspace_engine::context::contenthash::{checksum_path, ChecksumOptions};
/// use std::path::Path;
/// let dir = tempfile::tempdir()?;
/// let foo = dir.path().join("foo");
/// std::fs::write(&foo, "data0")?;
/// std::fs::set_permissions(&foo, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
/// let digest = checksum_path(dir.path(), Path::new("foo"), &ChecksumOptions::default())?;
/// // The digest BuildKit's own tests assert for this file.
/// assert_eq!(
///     digest.to_string(),
///     "sha256:cd8e75bca50f2d695f220d0cb0997d8ead387e4f926e8669a92d7f104cc9885b"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn checksum_path(root: &Path, path: &Path, options: &ChecksumOptions) -> Result<Digest, HashError> {
    let resolved = resolve(path, options.follow_links, |p| {
        let full = join(root, p);
        match fs::symlink_metadata(&full) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = fs::read_link(&full).map_err(read_err(&full))?;
                Ok(Lookup::Symlink(target.into_os_string().into_encoded_bytes()))
            }
            Ok(_) => Ok(Lookup::Other),
            Err(e) if is_missing(&e) => Ok(Lookup::Missing),
            Err(e) => Err(read_err(&full)(e)),
        }
    })?;
    let full = join(root, &resolved);
    let meta = match fs::symlink_metadata(&full) {
        Ok(meta) => meta,
        Err(e) if is_missing(&e) => {
            return Err(HashError::NotFound { path: path.to_owned() });
        }
        Err(e) => return Err(read_err(&full)(e)),
    };
    let rel = PathBuf::from(OsStr::from_bytes(&resolved));
    let entry = entry_from_metadata(rel, &meta, &full)?;
    if entry.kind != EntryKind::Dir {
        let mut buf = vec![0u8; READ_BUFFER];
        return Ok(leaf_digest(&full, &entry, options.ownership, &mut buf)?.digest);
    }
    let entries = walk_dir(&full)?;
    let header = header_digest(&full, &entry, options.ownership)?;
    let (tree, _) = hash_tree(&full, &entries, RootHeader::Digest(header), options.ownership, None)?;
    Ok(tree.nodes[0].digest)
}

fn is_missing(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::NotADirectory
}

fn join(root: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() { root.to_owned() } else { root.join(OsStr::from_bytes(rel)) }
}

/// Lists the directory tree under `base` (not following symlinks), iteratively.
fn walk_dir(base: &Path) -> Result<Vec<Entry>, HashError> {
    let mut entries = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        let dir = base.join(&rel);
        for item in fs::read_dir(&dir).map_err(read_err(&dir))? {
            let item = item.map_err(read_err(&dir))?;
            let child = rel.join(item.file_name());
            let full = base.join(&child);
            let meta = fs::symlink_metadata(&full).map_err(read_err(&full))?;
            let entry = entry_from_metadata(child, &meta, &full)?;
            if entry.kind == EntryKind::Dir {
                pending.push(entry.path.clone());
            }
            entries.push(entry);
        }
    }
    Ok(entries)
}

fn entry_from_metadata(path: PathBuf, meta: &fs::Metadata, full: &Path) -> Result<Entry, HashError> {
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        EntryKind::File
    } else if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_symlink() {
        EntryKind::Symlink { target: fs::read_link(full).map_err(read_err(full))? }
    } else {
        return Err(HashError::Unsupported { path: full.to_owned() });
    };
    Ok(Entry {
        path,
        size: if kind == EntryKind::Dir { 0 } else { meta.size() },
        kind,
        mode: meta.mode() & 0o7777,
        stat: StatInfo {
            dev: meta.dev(),
            ino: meta.ino(),
            nlink: meta.nlink(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
            uid: meta.uid(),
            gid: meta.gid(),
        },
    })
}

/// What a path component is, for symlink resolution.
enum Lookup {
    Missing,
    Symlink(Vec<u8>),
    Other,
}

/// Splits `path` into components, dropping empty and `.` ones and applying `..` lexically
/// (never above the root), like Go's `path.Join("/", p)`.
fn clean(path: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            _ => out.push(part),
        }
    }
    out
}

/// Resolves `path` within a root, following symlinks in every component and, if
/// `follow_trailing`, in the last; returns the resolved path relative to the root (`""` for the
/// root). Missing components are kept lexically, as BuildKit does.
fn resolve(
    path: &Path,
    follow_trailing: bool,
    mut lookup: impl FnMut(&[u8]) -> Result<Lookup, HashError>,
) -> Result<Vec<u8>, HashError> {
    let mut remaining: Vec<Vec<u8>> =
        clean(path.as_os_str().as_bytes()).into_iter().rev().map(<[u8]>::to_vec).collect();
    let mut current: Vec<Vec<u8>> = Vec::new();
    let mut links = 0;
    while let Some(part) = remaining.pop() {
        match part.as_slice() {
            b"" | b"." => continue,
            b".." => {
                current.pop();
                continue;
            }
            _ => {}
        }
        current.push(part);
        let joined = current.join(&b'/');
        if let Lookup::Symlink(target) = lookup(&joined)?
            && (follow_trailing || !remaining.is_empty())
        {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(HashError::TooManyLinks { path: path.to_owned() });
            }
            current.pop();
            if target.starts_with(b"/") {
                current.clear();
            }
            // `remaining` is a stack: push the target's components last-first.
            remaining.extend(target.split(|&b| b == b'/').rev().map(<[u8]>::to_vec));
        }
    }
    Ok(current.join(&b'/'))
}

/// A run of bytes in [`Tree::text`].
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    len: usize,
}

/// One path of a hashed tree; 56 bytes, as a large context has tens of thousands.
#[derive(Debug, Clone)]
struct Node {
    path: Span,
    /// Components in the path (the root's is 0).
    depth: u32,
    /// A file's or symlink's record digest; a directory's contents digest.
    digest: Digest,
    kind: NodeKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeKind {
    Dir,
    File,
    Symlink,
}

/// A hashed tree: `nodes[0]` is the root, the others follow in path order. Paths (`/`-joined,
/// relative) and symlink targets live in one buffer, so a tree of 50,000 entries costs a
/// handful of allocations rather than 100,000. What only some nodes have (a directory's header,
/// a symlink's target) is kept aside, by node in ascending order. The index by path is built
/// on the first lookup: a context hashed only for its digest never needs it.
#[derive(Debug, Clone)]
struct Tree {
    nodes: Vec<Node>,
    text: Vec<u8>,
    dir_headers: Vec<(usize, Digest)>,
    link_targets: Vec<(usize, Span)>,
    index: OnceLock<HashTable<usize>>,
}

impl Tree {
    fn text(&self, span: Span) -> &[u8] {
        &self.text[span.start..span.start + span.len]
    }

    fn path_digest(&self, i: usize) -> PathDigest {
        let node = &self.nodes[i];
        let dir_header = match node.kind {
            NodeKind::Dir => aside(&self.dir_headers, i).copied(),
            _ => None,
        };
        PathDigest { digest: node.digest, dir_header }
    }

    fn link_target(&self, i: usize) -> Option<&[u8]> {
        match self.nodes[i].kind {
            NodeKind::Symlink => aside(&self.link_targets, i).map(|&span| self.text(span)),
            _ => None,
        }
    }

    fn find(&self, path: &[u8]) -> Option<usize> {
        let index = self.index.get_or_init(|| {
            let mut index = HashTable::with_capacity(self.nodes.len());
            for (i, node) in self.nodes.iter().enumerate() {
                // Paths were checked to be unique while the tree was built.
                index.insert_unique(path_hash(self.text(node.path)), i, |&j| path_hash(self.text(self.nodes[j].path)));
            }
            index
        });
        index.find(path_hash(path), |&i| self.text(self.nodes[i].path) == path).copied()
    }
}

/// The value kept aside for node `i`, in a list sorted by node.
fn aside<T>(list: &[(usize, T)], i: usize) -> Option<&T> {
    list.binary_search_by_key(&i, |&(node, _)| node).ok().map(|k| &list[k].1)
}

/// The root directory's header record.
enum RootHeader {
    /// The digest of the empty string, which BuildKit uses for a received context's root.
    Empty,
    /// A given digest (the directory's own header, for a snapshot).
    Digest(Digest),
}

fn valid_entry_path(path: &[u8]) -> bool {
    !path.is_empty() && path.split(|&b| b == b'/').all(|c| !matches!(c, b"" | b"." | b".."))
}

/// Hashes `entries` found under `base`; see the module docs.
///
/// Everything runs over the entries in path order (sorted here unless they already are, as a
/// walk gives them): every directory's subtree is then contiguous and its children come in byte
/// order of their names, which is the order the contents hash wants; a duplicate sits next to
/// its twin; and a stack of the directories still open checks parents and hashes contents in
/// one pass each.
fn hash_tree(
    base: &Path,
    entries: &[Entry],
    root_header: RootHeader,
    ownership: Ownership,
    cache: Option<&mut StatCache>,
) -> Result<(Tree, HashStats), HashError> {
    let root_digest = match root_header {
        RootHeader::Empty => Digest::of(b""),
        RootHeader::Digest(d) => d,
    };
    // A walk gives its entries in path order: try that first, and sort only if it is not so.
    let (order, (mut text, mut nodes)) = match lay_out(entries, None, root_digest)? {
        Some(laid_out) => (None, laid_out),
        None => {
            let mut order: Vec<usize> = (0..entries.len()).collect();
            order.sort_unstable_by(|&a, &b| path_order(&entries[a].path, &entries[b].path));
            let laid_out = lay_out(entries, Some(&order), root_digest)?.unwrap_or_default();
            (Some(order), laid_out)
        }
    };
    let at = |k: usize| -> &Entry { &entries[order.as_ref().map_or(k, |o| o[k])] };

    let mut stats = HashStats::default();
    let mut known = vec![false; entries.len()];
    let mut carried = Vec::new();
    if let Some(old) = cache.as_deref() {
        lookup_all(old, &at, &mut nodes[1..], &mut known);
        carried.extend((0..entries.len()).filter(|&k| known[k]).map(&at));
        stats.cache_hits = carried.len() as u64;
    }

    // One job per path to read, hardlinked files grouped so that their content is read once.
    let mut jobs: Vec<Vec<usize>> = Vec::new();
    let mut by_inode: FxHashMap<(u64, u64), usize> = FxHashMap::default();
    for k in (0..entries.len()).filter(|&k| !known[k]) {
        let e = at(k);
        if e.kind == EntryKind::File && e.stat.nlink > 1 {
            match by_inode.get(&(e.stat.dev, e.stat.ino)) {
                Some(&job) => jobs[job].push(k),
                None => {
                    by_inode.insert((e.stat.dev, e.stat.ino), jobs.len());
                    jobs.push(vec![k]);
                }
            }
        } else {
            jobs.push(vec![k]);
        }
    }
    drop(known);
    // Large files first: one taken up last would leave the other cores idle while it is read.
    let size_of_job = |job: &[usize]| if at(job[0]).kind == EntryKind::File { at(job[0]).size } else { 0 };
    let (mut dispatch, rest): (Vec<usize>, Vec<usize>) =
        (0..jobs.len()).partition(|&j| size_of_job(&jobs[j]) >= LARGE_FILE);
    dispatch.sort_by_key(|&j| std::cmp::Reverse(size_of_job(&jobs[j])));
    dispatch.extend(rest);
    let results = parallel_map(
        &dispatch,
        || vec![0u8; READ_BUFFER],
        |j, buf| {
            let e = at(jobs[j][0]);
            leaf_digest(&base.join(&e.path), e, ownership, buf)
        },
    )?;
    for (job, out) in jobs.iter().zip(&results) {
        match at(job[0]).kind {
            EntryKind::File => {
                stats.files_hashed += 1;
                stats.bytes_hashed += out.bytes;
            }
            _ => stats.headers_hashed += 1,
        }
        for &k in job {
            nodes[k + 1].digest = out.digest;
        }
    }
    if let Some(cache) = cache {
        let computed = jobs
            .iter()
            .zip(&results)
            .flat_map(|(job, out)| job.iter().map(move |&k| (at(k), out.verified, out.observed_at_ns, out.digest)));
        cache.update(&carried, computed);
    }

    let dir_headers = hash_all_contents(&mut nodes, &text);

    let mut link_targets = Vec::new();
    for (k, e) in (0..entries.len()).map(|k| (k, at(k))) {
        if let EntryKind::Symlink { target } = &e.kind {
            let target = target.as_os_str().as_bytes();
            link_targets.push((k + 1, Span { start: text.len(), len: target.len() }));
            text.extend_from_slice(target);
        }
    }
    Ok((Tree { nodes, text, dir_headers, link_targets, index: OnceLock::new() }, stats))
}

/// Below this many nodes, directory contents are hashed on one thread.
const PARALLEL_CONTENTS: usize = 8192;

/// Hashes every directory's contents (see the module docs): a directory's node digest, its
/// header until then, becomes its contents digest; the headers are returned by node.
///
/// Subtrees of a suitable size are hashed on all cores first, each on its own (a subtree is
/// contiguous in path order); one last pass then hashes what lies above them, taking each
/// subtree's root as a finished child.
fn hash_all_contents(nodes: &mut [Node], text: &[u8]) -> Vec<(usize, Digest)> {
    let workers = thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let tasks = if workers > 1 && nodes.len() >= PARALLEL_CONTENTS { subtrees(nodes, workers * 8) } else { Vec::new() };
    let mut headers = Vec::new();
    if !tasks.is_empty() {
        // Split the nodes into the tasks' disjoint slices.
        let mut parts = Vec::with_capacity(tasks.len());
        let mut rest = &mut nodes[..];
        let mut offset = 0;
        for task in &tasks {
            let (_, tail) = rest.split_at_mut(task.start - offset);
            let (part, tail) = tail.split_at_mut(task.len());
            parts.push((task.start, part));
            rest = tail;
            offset = task.end;
        }
        let found = for_each_part(parts, |(start, nodes)| {
            let mut found = Vec::new();
            hash_contents(nodes, *start, text, &[], &mut found);
            found
        });
        headers.extend(found.into_iter().flatten());
    }
    hash_contents(nodes, 0, text, &tasks, &mut headers);
    headers.sort_unstable_by_key(|&(d, _)| d);
    headers
}

/// Subtrees (ranges of nodes: a directory and everything under it) of at most
/// `nodes.len() / pieces` nodes, as large as possible, disjoint and in order.
fn subtrees(nodes: &[Node], pieces: usize) -> Vec<std::ops::Range<usize>> {
    let limit = (nodes.len() / pieces).max(1);
    // Where each directory's subtree ends: at the next node no deeper than it.
    let mut end = vec![nodes.len(); nodes.len()];
    let mut open: Vec<usize> = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        while open.last().is_some_and(|&d| nodes[d].depth >= node.depth) {
            if let Some(d) = open.pop() {
                end[d] = i;
            }
        }
        if node.kind == NodeKind::Dir {
            open.push(i);
        }
    }
    let mut tasks = Vec::new();
    let mut i = 1;
    while i < nodes.len() {
        if nodes[i].kind != NodeKind::Dir {
            i += 1;
        } else if end[i] - i <= limit {
            // Tiny subtrees are left to the last pass: a task has its own overhead.
            if end[i] - i >= 16 {
                tasks.push(i..end[i]);
            }
            i = end[i];
        } else {
            // Too large: look at its children.
            i += 1;
        }
    }
    tasks
}

/// Hashes the contents of `nodes[0]`, a directory, and of every directory under it, with a
/// stack of the directories still open. `base` is `nodes[0]`'s index in the whole tree (for the
/// returned headers); the subtrees in `done` (relative, sorted) were hashed already and count as
/// finished children.
fn hash_contents(
    nodes: &mut [Node],
    base: usize,
    text: &[u8],
    done: &[std::ops::Range<usize>],
    headers: &mut Vec<(usize, Digest)>,
) {
    let path_of = |node: &Node| &text[node.path.start..node.path.start + node.path.len];
    let open_dir = |header: Digest| {
        let mut h = Sha256::new();
        h.update(b"\0");
        h.update(header.to_prefixed_bytes());
        h
    };
    let add_child = |h: &mut Sha256, path: &[u8], digest: Digest| {
        h.update(b"\0");
        h.update(&path[name_start(path)..]);
        h.update(digest.to_prefixed_bytes());
    };
    let Some(top) = nodes.first() else { return };
    let top_depth = top.depth as usize;
    let mut open: Vec<(usize, Sha256)> = vec![(0, open_dir(top.digest))];
    let mut close_top = |open: &mut Vec<(usize, Sha256)>, nodes: &mut [Node]| {
        if let Some((d, h)) = open.pop() {
            let digest = Digest::from_hasher(h);
            headers.push((base + d, nodes[d].digest));
            nodes[d].digest = digest;
            if let Some((_, parent)) = open.last_mut() {
                add_child(parent, path_of(&nodes[d]), digest);
            }
        }
    };
    let mut done = done.iter().peekable();
    let mut i = 1;
    while i < nodes.len() {
        // The parent sits at depth - 1 on the stack (the top directory at 0): close what is
        // deeper.
        while open.len() > (nodes[i].depth as usize).saturating_sub(top_depth) {
            close_top(&mut open, nodes);
        }
        let node = &nodes[i];
        if let Some(subtree) = done.next_if(|d| d.start == i) {
            if let Some((_, h)) = open.last_mut() {
                add_child(h, path_of(node), node.digest);
            }
            i = subtree.end;
            continue;
        }
        if node.kind == NodeKind::Dir {
            open.push((i, open_dir(node.digest)));
        } else if let Some((_, h)) = open.last_mut() {
            add_child(h, path_of(node), node.digest);
        }
        i += 1;
    }
    while !open.is_empty() {
        close_top(&mut open, nodes);
    }
}

/// A tree's path text and its nodes, before their digests are known.
type LaidOut = (Vec<u8>, Vec<Node>);

/// Checks the entries (`entries[order[k]]`, or `entries[k]` without `order`) and lays them out
/// as nodes in that order, their paths in one text buffer; the record digests are filled in
/// later. Without `order`, `None` when the entries turn out not to be in path order.
///
/// Each path is its parent's, checked before it, plus a name: checking the name and that the
/// parent is the directory open on the stack checks the whole path. In path order a duplicate
/// compares equal to the entry before it.
fn lay_out(entries: &[Entry], order: Option<&[usize]>, root_digest: Digest) -> Result<Option<LaidOut>, HashError> {
    let at = |k: usize| -> &Entry { &entries[order.map_or(k, |o| o[k])] };
    let text_len = entries
        .iter()
        .map(|e| match &e.kind {
            EntryKind::Symlink { target } => e.path.as_os_str().len() + target.as_os_str().len(),
            _ => e.path.as_os_str().len(),
        })
        .sum();
    let mut text: Vec<u8> = super::hugepages::vec_with_capacity(text_len);
    let mut nodes: Vec<Node> = super::hugepages::vec_with_capacity(entries.len() + 1);
    let root = Span { start: 0, len: 0 };
    nodes.push(Node { path: root, depth: 0, digest: root_digest, kind: NodeKind::Dir });
    let unset = Digest::of(b"");
    let mut open: Vec<Span> = vec![root];
    let mut previous: &[u8] = &[];
    for k in 0..entries.len() {
        let e = at(k);
        let bytes = e.path.as_os_str().as_bytes();
        let name_at = name_start(bytes);
        if matches!(&bytes[name_at..], b"" | b"." | b"..") {
            return Err(HashError::InvalidEntryPath { path: e.path.clone() });
        }
        if k > 0 {
            match path_order(Path::new(OsStr::from_bytes(previous)), &e.path) {
                std::cmp::Ordering::Equal => return Err(HashError::DuplicateEntry { path: e.path.clone() }),
                std::cmp::Ordering::Greater if order.is_none() => return Ok(None),
                _ => {}
            }
        }
        previous = bytes;
        // `None` is the root.
        let parent = name_at.checked_sub(1).map(|end| &bytes[..end]);
        let is_parent = |open: &[Span]| match open {
            [_root] => parent.is_none(),
            [.., top] => parent == Some(&text[top.start..top.start + top.len]),
            [] => false,
        };
        while open.len() > 1 && !is_parent(&open) {
            open.pop();
        }
        if !is_parent(&open) {
            if !valid_entry_path(bytes) {
                return Err(HashError::InvalidEntryPath { path: e.path.clone() });
            }
            if order.is_none() {
                // Perhaps only out of order: the sorted pass decides.
                return Ok(None);
            }
            return Err(HashError::MissingParent {
                path: e.path.clone(),
                parent: PathBuf::from(OsStr::from_bytes(parent.unwrap_or_default())),
            });
        }
        let span = Span { start: text.len(), len: bytes.len() };
        text.extend_from_slice(bytes);
        let kind = match e.kind {
            EntryKind::Dir => NodeKind::Dir,
            EntryKind::File => NodeKind::File,
            EntryKind::Symlink { .. } => NodeKind::Symlink,
        };
        // At most one component per two bytes of path, so the depth fits unless the path is
        // gigabytes long.
        let depth = u32::try_from(open.len()).unwrap_or(u32::MAX);
        nodes.push(Node { path: span, depth, digest: unset, kind });
        if kind == NodeKind::Dir {
            open.push(span);
        }
    }
    Ok(Some((text, nodes)))
}

/// Where the last component of a `/`-joined path starts.
fn name_start(path: &[u8]) -> usize {
    path.iter().rposition(|&b| b == b'/').map_or(0, |slash| slash + 1)
}

/// Looks up every entry (`at(k)` for `k` in `0..nodes.len()`, in path order) in `cache`: a hit
/// sets the node's digest and marks it `known`. Split across the cores, each part walking along
/// the cache's records with a cursor.
fn lookup_all<'e>(
    cache: &StatCache,
    at: &(impl Fn(usize) -> &'e Entry + Sync),
    nodes: &mut [Node],
    known: &mut [bool],
) {
    const MIN_CHUNK: usize = 4096;
    let workers = thread::available_parallelism().map_or(1, NonZeroUsize::get).min(nodes.len() / MIN_CHUNK).max(1);
    let chunk = nodes.len().div_ceil(workers).max(1);
    let parts: Vec<_> = nodes.chunks_mut(chunk).zip(known.chunks_mut(chunk)).enumerate().collect();
    for_each_part(parts, |(c, (nodes, known))| {
        let mut cursor = cache.cursor();
        for (j, (node, known)) in nodes.iter_mut().zip(known.iter_mut()).enumerate() {
            if let Some(digest) = cursor.lookup(at(*c * chunk + j)) {
                node.digest = digest;
                *known = true;
            }
        }
    });
}

/// Runs `f(i, state)` for every index `i` of `dispatch` (a permutation of `0..dispatch.len()`,
/// taken in that order) on all cores, the calling thread included, each worker with its own
/// `state` from `init`; returns the results by index, or the error of the lowest failing index.
fn parallel_map<S, T: Send, E: Send>(
    dispatch: &[usize],
    init: impl Fn() -> S + Sync,
    f: impl Fn(usize, &mut S) -> Result<T, E> + Sync,
) -> Result<Vec<T>, E> {
    let n = dispatch.len();
    let workers = thread::available_parallelism().map_or(1, NonZeroUsize::get).min(n);
    if workers <= 1 {
        let mut state = init();
        return (0..n).map(|i| f(i, &mut state)).collect();
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let work = || {
        let mut state = init();
        let mut out = Vec::new();
        while !failed.load(Ordering::Relaxed) {
            let Some(&i) = dispatch.get(next.fetch_add(1, Ordering::Relaxed)) else {
                break;
            };
            let r = f(i, &mut state);
            if r.is_err() {
                failed.store(true, Ordering::Relaxed);
            }
            out.push((i, r));
        }
        out
    };
    let per_worker: Vec<Vec<(usize, Result<T, E>)>> = thread::scope(|s| {
        let helpers: Vec<_> = (1..workers).map(|_| s.spawn(work)).collect();
        let mut all = vec![work()];
        all.extend(helpers.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))));
        all
    });
    let mut all: Vec<(usize, Result<T, E>)> = per_worker.into_iter().flatten().collect();
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, r)| r).collect()
}

/// [`parallel_map`] over disjoint mutable parts, in order: each part is handed to one worker.
fn for_each_part<P: Send, T: Send>(parts: Vec<P>, f: impl Fn(&mut P) -> T + Sync) -> Vec<T> {
    let dispatch: Vec<usize> = (0..parts.len()).collect();
    // Each part is locked once, by the one worker that takes its index: never contended.
    let parts: Vec<Mutex<P>> = parts.into_iter().map(Mutex::new).collect();
    let Ok(out) = parallel_map(
        &dispatch,
        || (),
        |i, ()| Ok::<_, Infallible>(f(&mut parts[i].lock().unwrap_or_else(PoisonError::into_inner))),
    );
    out
}

/// A record digest computed from disk, with what the stat cache needs to know about it.
struct LeafOut {
    digest: Digest,
    bytes: u64,
    /// The entry's stat as observed right before it was read.
    verified: StatKey,
    observed_at_ns: i128,
}

/// Computes the record digest of the file, symlink or directory header at `full`.
fn leaf_digest(full: &Path, entry: &Entry, ownership: Ownership, buf: &mut [u8]) -> Result<LeafOut, HashError> {
    let observed_at_ns = now_ns();
    if entry.kind != EntryKind::File {
        let meta = fs::symlink_metadata(full).map_err(read_err(full))?;
        let verified = same_inode(full, entry, &meta)?;
        let digest = header_digest(full, entry, ownership)?;
        return Ok(LeafOut { digest, bytes: 0, verified, observed_at_ns });
    }
    // O_NOFOLLOW and the inode check: a file swapped for a symlink after the walk must not make us
    // read something outside the context. O_NONBLOCK: a FIFO swapped in must not block the open
    // (it has no effect on regular files).
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
        .open(full)
        .map_err(read_err(full))?;
    let meta = file.metadata().map_err(read_err(full))?;
    let verified = same_inode(full, entry, &meta)?;
    let mut h = Sha256::new();
    write_header(&mut h, entry, ownership, &read_xattrs(XattrSource::Fd(&file)).map_err(read_err(full))?);
    let mut bytes = 0u64;
    loop {
        let got = match file.read(buf) {
            Ok(0) => break,
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(full)(e)),
        };
        h.update(&buf[..got]);
        bytes += got as u64;
        // A short read that reaches the size just observed is the end: most files fit in one
        // read, and this saves each of them the second read that would return nothing.
        if got < buf.len() && bytes >= meta.len() {
            break;
        }
    }
    Ok(LeafOut { digest: Digest::from_hasher(h), bytes, verified, observed_at_ns })
}

/// Checks that `meta` (observed now) is still the inode and kind the walk recorded for `entry`.
fn same_inode(full: &Path, entry: &Entry, meta: &fs::Metadata) -> Result<StatKey, HashError> {
    let key = StatKey::of_metadata(meta).ok_or_else(|| HashError::Changed { path: full.to_owned() })?;
    let same_kind = match entry.kind {
        EntryKind::File => meta.file_type().is_file(),
        EntryKind::Dir => meta.file_type().is_dir(),
        EntryKind::Symlink { .. } => meta.file_type().is_symlink(),
    };
    if !same_kind || meta.dev() != entry.stat.dev || meta.ino() != entry.stat.ino {
        return Err(HashError::Changed { path: full.to_owned() });
    }
    Ok(key)
}

/// The header record digest of a directory or symlink.
fn header_digest(full: &Path, entry: &Entry, ownership: Ownership) -> Result<Digest, HashError> {
    let xattrs = read_xattrs(XattrSource::Path(full)).map_err(read_err(full))?;
    let mut h = Sha256::new();
    write_header(&mut h, entry, ownership, &xattrs);
    Ok(Digest::from_hasher(h))
}

/// Feeds BuildKit's tarsum-v1 header for `entry` into `h`.
fn write_header(h: &mut Sha256, entry: &Entry, ownership: Ownership, xattrs: &[(Vec<u8>, Vec<u8>)]) {
    let (uid, gid) = match ownership {
        Ownership::Reset => (0, 0),
        Ownership::OnDisk => (entry.stat.uid, entry.stat.gid),
    };
    let (typeflag, size, linkname, mode): (&[u8], u64, &[u8], u32) = match &entry.kind {
        EntryKind::File => (b"0", entry.size, b"", entry.mode),
        EntryKind::Dir => (b"5", 0, b"", entry.mode),
        EntryKind::Symlink { target } => (b"2", 0, target.as_os_str().as_bytes(), entry.mode | 0o777),
    };
    h.update(b"name");
    h.update(b"mode");
    h.update(mode.to_string());
    h.update(b"uid");
    h.update(uid.to_string());
    h.update(b"gid");
    h.update(gid.to_string());
    h.update(b"size");
    h.update(size.to_string());
    h.update(b"typeflag");
    h.update(typeflag);
    h.update(b"linkname");
    h.update(linkname);
    h.update(b"unamegnamedevmajor0devminor0");
    for (name, value) in xattrs {
        h.update(name);
        h.update(value);
    }
}

enum XattrSource<'a> {
    Path(&'a Path),
    Fd(&'a File),
}

/// The extended attributes BuildKit puts in a header, sorted by name: those fsutil sends (all but
/// `com.apple.*`) that tarsum v1 keeps (`security.capability`, and none other in `security.*` or
/// `system.*`). A filesystem without xattr support has none.
fn read_xattrs(src: XattrSource<'_>) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let names = match read_sized(|buf| match &src {
        XattrSource::Path(p) => rustix::fs::llistxattr(*p, buf),
        XattrSource::Fd(f) => rustix::fs::flistxattr(f.as_fd(), buf),
    }) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTSUP.raw_os_error()) => {
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let kept = !name.starts_with(b"com.apple.")
            && (name == b"security.capability" || !(name.starts_with(b"security.") || name.starts_with(b"system.")));
        if !kept {
            continue;
        }
        let cname = OsStr::from_bytes(name);
        let value = read_sized(|buf| match &src {
            XattrSource::Path(p) => rustix::fs::lgetxattr(*p, cname, buf),
            XattrSource::Fd(f) => rustix::fs::fgetxattr(f.as_fd(), cname, buf),
        });
        // fsutil skips attributes it cannot read (e.g. removed meanwhile).
        if let Ok(value) = value {
            out.push((name.to_vec(), value));
        }
    }
    out.sort();
    Ok(out)
}

/// Calls an xattr syscall with a buffer that grows until the result fits.
fn read_sized(mut call: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    for _ in 0..16 {
        match call(&mut buf) {
            Ok(len) => {
                buf.truncate(len);
                return Ok(buf);
            }
            Err(rustix::io::Errno::RANGE) => {
                let bigger = call(&mut [])?.max(buf.len() * 2);
                buf.resize(bigger, 0);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::Error::other("extended attributes keep growing"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A laid-out tree of `dirs` directories, each with `subdirs` subdirectories of `files`
    /// files (names chosen so that `-` and `.` siblings test path order), every node's digest set
    /// from its path.
    fn synthetic(dirs: usize, subdirs: usize, files: usize) -> (Vec<u8>, Vec<Node>) {
        let mut paths = Vec::new();
        for d in 0..dirs {
            paths.push((format!("d{d}"), EntryKind::Dir));
            for s in 0..subdirs {
                paths.push((format!("d{d}/s{s}"), EntryKind::Dir));
                for f in 0..files {
                    paths.push((format!("d{d}/s{s}/f{f}"), EntryKind::File));
                }
                paths.push((format!("d{d}/s{s}-x"), EntryKind::File));
            }
        }
        let entries: Vec<Entry> = paths
            .into_iter()
            .map(|(path, kind)| Entry { path: path.into(), kind, mode: 0o644, size: 0, stat: StatInfo::default() })
            .collect();
        let mut order: Vec<usize> = (0..entries.len()).collect();
        order.sort_by(|&a, &b| path_order(&entries[a].path, &entries[b].path));
        let (text, mut nodes) = lay_out(&entries, Some(&order), Digest::of(b"root")).unwrap().unwrap();
        for node in &mut nodes[1..] {
            node.digest = Digest::of(&text[node.path.start..node.path.start + node.path.len]);
        }
        (text, nodes)
    }

    #[test]
    fn contents_hashed_in_parallel_subtrees_equal_one_pass() {
        let (text, nodes) = synthetic(12, 20, 40);
        assert!(nodes.len() >= PARALLEL_CONTENTS);
        assert!(!subtrees(&nodes, 16).is_empty(), "the tree must be split for this test to mean anything");
        let mut parallel = nodes.clone();
        let parallel_headers = hash_all_contents(&mut parallel, &text);
        let mut serial = nodes;
        let mut serial_headers = Vec::new();
        hash_contents(&mut serial, 0, &text, &[], &mut serial_headers);
        serial_headers.sort_unstable_by_key(|&(d, _)| d);
        let digests = |nodes: &[Node]| nodes.iter().map(|n| n.digest).collect::<Vec<_>>();
        assert_eq!(digests(&parallel), digests(&serial));
        assert_eq!(parallel_headers, serial_headers);
        assert_eq!(parallel_headers.len(), 1 + 12 + 12 * 20);
    }

    #[test]
    fn subtrees_are_disjoint_whole_directories() {
        let (_, nodes) = synthetic(3, 4, 50);
        let tasks = subtrees(&nodes, 8);
        assert!(!tasks.is_empty());
        for pair in tasks.windows(2) {
            assert!(pair[0].end <= pair[1].start);
        }
        for task in &tasks {
            let top = &nodes[task.start];
            assert_eq!(top.kind, NodeKind::Dir);
            assert!(nodes[task.start + 1..task.end].iter().all(|n| n.depth > top.depth));
            assert!(nodes.get(task.end).is_none_or(|n| n.depth <= top.depth));
            assert!(task.len() <= nodes.len() / 8);
        }
    }
}
