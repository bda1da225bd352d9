//! A persisted stat cache, so that re-hashing an unchanged context only stats its files.
//!
//! Like git's index, it maps a context path to the `stat(2)` fields that change whenever the
//! file does (device, inode, size, mtime, ctime, mode and kind) and to the digest computed from
//! it: for a regular file its BuildKit file digest, for a directory its header digest, for a
//! symlink its record digest (see [`contenthash`](super::contenthash)). uid and gid are not part of
//! the key because they are not part of a build context's digests.
//!
//! **Racy entries.** A file modified twice within one timestamp tick keeps its mtime, so a stat
//! match cannot tell that the second write happened after it was hashed. As in git's racy-git
//! rule, an entry is trusted only if its mtime and ctime are older, by at least the racy window
//! (the timestamp granularity, [`DEFAULT_RACY_WINDOW`]), than both the moment the file was
//! stat-verified for hashing and the cache file's own write time. Racy entries are simply left
//! out and re-hashed next time.
//!
//! **Format** (all integers little-endian): the magic `NSSTATC\0`, a `u32` version, a `u32` of
//! reserved zero, a `u64` record count, the records (`u32` path length, path bytes, `u8` kind,
//! `u32` mode, `u64` dev, `u64` ino, `u64` size, `i128` mtime ns, `i128` ctime ns, 32 digest
//! bytes) in path order (fsutil's, `/` first), then the SHA-256 of everything before it. The file
//! is mapped rather than read, and entries looked up in path order walk along its records; a file
//! whose records are in another order (older ones: byte order) is indexed by path instead. A
//! missing file is an empty cache; a corrupt, truncated or foreign one is an empty cache and a
//! `tracing` warning. Writes go to a temp file
//! that is renamed over the old one. Neither is fsynced: after a crash the file may be the old
//! one (still sound: its records are trusted against its own write time) or torn, which the
//! checksum turns into an empty cache. Losing a cache only costs a re-hash, while two fsyncs of
//! a multi-megabyte file would cost more than the re-hash of an unchanged context.

use std::fs::{self, OpenOptions};
use std::hash::BuildHasher;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hashbrown::HashTable;
use hashbrown::hash_table::Entry as TableEntry;
use rustc_hash::FxBuildHasher;
use sha2::{Digest as _, Sha256};

use super::walk::path_order_bytes;
use super::{Entry, EntryKind};
use crate::cas::Digest;

/// The timestamp granularity assumed when deciding that an entry is racy: wide enough for
/// filesystems with whole-second (or FAT's two-second) timestamps.
pub const DEFAULT_RACY_WINDOW: Duration = Duration::from_secs(2);

const MAGIC: &[u8; 8] = b"NSSTATC\0";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 4 + 8;
/// Every field of a record but the path bytes.
const RECORD_FIXED_LEN: usize = 4 + 1 + 4 + 8 + 8 + 8 + 16 + 16 + 32;

/// Why a stat cache could not be saved (loading never fails).
#[derive(Debug, thiserror::Error)]
pub enum StatCacheError {
    /// A filesystem operation on the cache file or its temp file failed.
    #[error("stat cache {op} {path}: {source}")]
    Io {
        /// The operation, e.g. `rename`.
        op: &'static str,
        /// The file it was applied to.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// The stat fields an entry's digest is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StatKey {
    kind: u8,
    mode: u32,
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl StatKey {
    /// The key of a walked entry.
    pub(crate) fn of_entry(entry: &Entry) -> Self {
        Self {
            kind: kind_code(&entry.kind),
            mode: entry.mode & 0o7777,
            dev: entry.stat.dev,
            ino: entry.stat.ino,
            size: entry.size,
            mtime_ns: entry.stat.mtime_ns,
            ctime_ns: entry.stat.ctime_ns,
        }
    }

    /// The key of what `lstat`/`fstat` says now, in the same terms as [`of_entry`](Self::of_entry).
    pub(crate) fn of_metadata(meta: &fs::Metadata) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let ft = meta.file_type();
        let kind = if ft.is_file() {
            0
        } else if ft.is_dir() {
            1
        } else if ft.is_symlink() {
            2
        } else {
            return None;
        };
        Some(Self {
            kind,
            mode: meta.mode() & 0o7777,
            dev: meta.dev(),
            ino: meta.ino(),
            size: if kind == 1 { 0 } else { meta.size() },
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        })
    }

    /// Whether a change made after `observed_at_ns` could still leave these timestamps unchanged.
    fn racy(&self, observed_at_ns: i128, window_ns: i128) -> bool {
        self.mtime_ns >= observed_at_ns - window_ns || self.ctime_ns >= observed_at_ns - window_ns
    }
}

fn path_key(entry: &Entry) -> &[u8] {
    entry.path.as_os_str().as_bytes()
}

fn kind_code(kind: &EntryKind) -> u8 {
    match kind {
        EntryKind::File => 0,
        EntryKind::Dir => 1,
        EntryKind::Symlink { .. } => 2,
    }
}

/// The current wall-clock time in nanoseconds since the epoch.
pub(crate) fn now_ns() -> i128 {
    system_time_ns(SystemTime::now())
}

fn system_time_ns(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// Digests of context entries keyed by their stat fields; see the [module docs](self).
///
/// Records are kept in their file layout in one buffer (for a loaded cache, the mapped file
/// itself), found by path through a table of offsets or, for entries in path order, by walking
/// along them: loading a cache of 50,000 entries allocates once, not 50,000 times.
///
/// ```
/// use nullspace_engine::context::statcache::StatCache;
/// let dir = tempfile::tempdir()?;
/// let file = dir.path().join("stat.cache");
/// let cache = StatCache::load(&file); // missing: empty
/// assert!(cache.is_empty());
/// cache.save(&file)?;
/// assert!(StatCache::load(&file).is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct StatCache {
    /// Encoded records (see the format in the [module docs](self)), possibly with bytes that no
    /// offset points at (a header, or a record replaced since).
    data: Records,
    /// The offset in `data` of each live record, hashed by its path; built on first use when
    /// `ordered` is there.
    table: OnceLock<HashTable<usize>>,
    /// The offsets of all records in path order, when a loaded file had them so (as `save`
    /// writes them): entries looked up in path order then walk along them (see [`Cursor`]),
    /// without the table.
    ordered: Option<Vec<usize>>,
    /// The write time of the file this cache was loaded from, when it was.
    file_written_ns: Option<i128>,
    racy_window_ns: i128,
    /// The file this cache was loaded from and still equals (same records), if any: saving
    /// there again would write the same records, so [`save`](Self::save) skips it.
    clean_at: Option<PathBuf>,
}

impl std::fmt::Debug for StatCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatCache")
            .field("records", &self.len())
            .field("file_written_ns", &self.file_written_ns)
            .field("racy_window_ns", &self.racy_window_ns)
            .field("clean_at", &self.clean_at)
            .finish()
    }
}

/// The hash both offset tables of the context (this cache's and the content-hash tree's) use
/// for path bytes.
pub(crate) fn path_hash(path: &[u8]) -> u64 {
    FxBuildHasher.hash_one(path)
}

/// The bytes of a stat cache: the file's pages mapped as they are in the page cache (no copy,
/// no fresh memory to fault in), or a buffer once records are added.
#[derive(Clone, Default)]
struct Records {
    /// The bytes, unless mapped.
    owned: Vec<u8>,
    mapped: Option<Arc<memmap2::Mmap>>,
}

impl std::ops::Deref for Records {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.mapped {
            Some(map) => map,
            None => &self.owned,
        }
    }
}

impl Records {
    /// The bytes as a buffer that records can be appended to (copied out of a mapping first).
    fn to_mut(&mut self) -> &mut Vec<u8> {
        if let Some(map) = self.mapped.take() {
            self.owned = map.to_vec();
        }
        &mut self.owned
    }
}

/// Maps a cache file, and tells when it was written.
fn map_file(path: &Path) -> io::Result<(Records, i128)> {
    let file = fs::File::open(path)?;
    let meta = file.metadata()?;
    let written = system_time_ns(meta.modified()?);
    if meta.len() == 0 {
        return Ok((Records::default(), written));
    }
    // SAFETY: the mapping is read-only and private. `save` never rewrites a cache file in place
    // (it writes a new file and renames it over the old one), so the mapped bytes do not change
    // while mapped unless something outside nullspace truncates the file; git maps its index
    // under the same assumption.
    let map = unsafe { memmap2::MmapOptions::new().populate().map(&file)? };
    Ok((Records { owned: Vec::new(), mapped: Some(Arc::new(map)) }, written))
}

/// The path of the record at `offset` (which [`parse`] or [`encode_record`] checked).
fn record_path(data: &[u8], offset: usize) -> &[u8] {
    let len = u32::from_le_bytes(data[offset..offset + 4].try_into().unwrap_or_default()) as usize;
    &data[offset + 4..offset + 4 + len]
}

/// The whole record at `offset`.
fn record_bytes(data: &[u8], offset: usize) -> &[u8] {
    let end = offset + RECORD_FIXED_LEN + record_path(data, offset).len();
    &data[offset..end]
}

/// The stat key and digest of the record at `offset`.
fn record_fields(data: &[u8], offset: usize) -> (StatKey, Digest) {
    let fixed = &data[offset + 4 + record_path(data, offset).len()..];
    // The record was bounds-checked when it entered `data`: every field is there.
    let field = |at: usize, n: usize| &fixed[at..at + n];
    let key = StatKey {
        kind: fixed[0],
        mode: u32::from_le_bytes(field(1, 4).try_into().unwrap_or_default()),
        dev: u64::from_le_bytes(field(5, 8).try_into().unwrap_or_default()),
        ino: u64::from_le_bytes(field(13, 8).try_into().unwrap_or_default()),
        size: u64::from_le_bytes(field(21, 8).try_into().unwrap_or_default()),
        mtime_ns: i128::from_le_bytes(field(29, 16).try_into().unwrap_or_default()),
        ctime_ns: i128::from_le_bytes(field(45, 16).try_into().unwrap_or_default()),
    };
    (key, Digest::from_bytes(field(61, 32).try_into().unwrap_or_default()))
}

/// Appends one record in the file layout.
fn encode_record(out: &mut Vec<u8>, path: &[u8], key: &StatKey, digest: &Digest) {
    out.extend_from_slice(&(path.len() as u32).to_le_bytes());
    out.extend_from_slice(path);
    out.push(key.kind);
    out.extend_from_slice(&key.mode.to_le_bytes());
    out.extend_from_slice(&key.dev.to_le_bytes());
    out.extend_from_slice(&key.ino.to_le_bytes());
    out.extend_from_slice(&key.size.to_le_bytes());
    out.extend_from_slice(&key.mtime_ns.to_le_bytes());
    out.extend_from_slice(&key.ctime_ns.to_le_bytes());
    out.extend_from_slice(digest.as_bytes());
}

impl Default for StatCache {
    fn default() -> Self {
        Self::new()
    }
}

fn save_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StatCacheError + 'a {
    move |source| StatCacheError::Io { op, path: path.to_owned(), source }
}

impl StatCache {
    /// An empty cache with the [`DEFAULT_RACY_WINDOW`].
    pub fn new() -> Self {
        Self {
            data: Records::default(),
            table: OnceLock::from(HashTable::new()),
            ordered: None,
            file_written_ns: None,
            racy_window_ns: DEFAULT_RACY_WINDOW.as_nanos() as i128,
            clean_at: None,
        }
    }

    /// Sets the timestamp granularity used for the racy rule (builder style).
    pub fn with_racy_window(mut self, window: Duration) -> Self {
        self.racy_window_ns = window.as_nanos().min(i128::MAX as u128) as i128;
        self
    }

    /// Loads the cache saved at `path`. A missing file gives an empty cache; an unreadable,
    /// corrupt, truncated or foreign one gives an empty cache and a warning.
    pub fn load(path: &Path) -> Self {
        let mut cache = Self::new();
        let (data, written) = match map_file(path) {
            Ok(mapped) => mapped,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::debug!(path = %path.display(), "no stat cache yet");
                return cache;
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read stat cache; starting empty");
                return cache;
            }
        };
        match parse(&data) {
            Ok(Parsed::Ordered(ordered)) => {
                cache.data = data;
                cache.table = OnceLock::new();
                cache.ordered = Some(ordered);
                cache.file_written_ns = Some(written);
                cache.clean_at = Some(path.to_owned());
            }
            Ok(Parsed::Unordered(table)) => {
                cache.data = data;
                cache.table = OnceLock::from(table);
                cache.file_written_ns = Some(written);
                cache.clean_at = Some(path.to_owned());
            }
            Err(why) => {
                tracing::warn!(path = %path.display(), reason = why, "corrupt stat cache; starting empty");
            }
        }
        cache
    }

    /// Starts [`load`](Self::load) on a thread of its own, so that reading a large cache
    /// overlaps the walk of the context it belongs to.
    ///
    /// ```
    /// use nullspace_engine::context::statcache::StatCache;
    /// let dir = tempfile::tempdir()?;
    /// let pending = StatCache::load_in_background(&dir.path().join("stat.cache"));
    /// // ... walk the context meanwhile ...
    /// assert!(pending.wait().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load_in_background(path: &Path) -> PendingStatCache {
        let owned = path.to_owned();
        match std::thread::Builder::new().name("statcache-load".into()).spawn(move || Self::load(&owned)) {
            Ok(handle) => PendingStatCache(Pending::Thread(handle)),
            Err(e) => {
                tracing::debug!(error = %e, "no thread for the stat cache; loading it in line");
                PendingStatCache(Pending::Ready(Self::load(path)))
            }
        }
    }

    /// Writes the cache to `path` atomically (temp file renamed over it; see the
    /// [module docs](self) for why it is not fsynced).
    ///
    /// Nothing is written when the cache was loaded from `path` and a hashing run left its
    /// records unchanged: every record was then trusted against the existing file's write time,
    /// so rewriting it would change nothing a later run sees.
    pub fn save(&self, path: &Path) -> Result<(), StatCacheError> {
        if self.clean_at.as_deref() == Some(path) {
            tracing::debug!(path = %path.display(), "stat cache unchanged; not rewritten");
            return Ok(());
        }
        let data = self.encode();
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut tmp_name = path.file_name().unwrap_or(path.as_os_str()).to_owned();
        tmp_name.push(format!(".tmp-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
        let tmp = dir.join(tmp_name);
        let result = (|| {
            let mut file =
                OpenOptions::new().write(true).create_new(true).open(&tmp).map_err(save_err("create", &tmp))?;
            file.write_all(&data).map_err(save_err("write", &tmp))?;
            drop(file);
            fs::rename(&tmp, path).map_err(save_err("rename", &tmp))
        })();
        if result.is_err()
            && let Err(e) = fs::remove_file(&tmp)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %tmp.display(), error = %e, "cannot remove stat cache temp file");
        }
        result
    }

    /// How many entries the cache holds.
    pub fn len(&self) -> usize {
        match &self.ordered {
            Some(ordered) => ordered.len(),
            None => self.table().len(),
        }
    }

    /// Whether the cache holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn table(&self) -> &HashTable<usize> {
        self.table.get_or_init(|| {
            let data = &self.data;
            let mut table = HashTable::with_capacity(self.ordered.as_ref().map_or(0, Vec::len));
            for &offset in self.ordered.iter().flatten() {
                // Paths in strict path order are unique.
                table.insert_unique(path_hash(record_path(data, offset)), offset, |&o| path_hash(record_path(data, o)));
            }
            table
        })
    }

    fn find(&self, path: &[u8]) -> Option<usize> {
        self.table().find(path_hash(path), |&offset| record_path(&self.data, offset) == path).copied()
    }

    /// The digest cached for `entry`, if its stat fields are unchanged and it is not racy.
    pub fn lookup(&self, entry: &Entry) -> Option<Digest> {
        self.check(self.find(path_key(entry))?, entry)
    }

    /// The digest of the record at `offset` (`entry`'s path), if `entry` still matches it.
    fn check(&self, offset: usize, entry: &Entry) -> Option<Digest> {
        let (cached, digest) = record_fields(&self.data, offset);
        let key = StatKey::of_entry(entry);
        if cached != key {
            return None;
        }
        if let Some(written) = self.file_written_ns
            && key.racy(written, self.racy_window_ns)
        {
            return None;
        }
        Some(digest)
    }

    /// A [`Cursor`] for looking up entries in path order.
    pub(crate) fn cursor(&self) -> Cursor<'_> {
        Cursor { cache: self, at: None }
    }

    /// Adds the record at `offset` in `self.data`, replacing one for the same path.
    fn link(&mut self, offset: usize) {
        self.table();
        self.ordered = None;
        let data = &self.data;
        let Some(table) = self.table.get_mut() else { return };
        let path = record_path(data, offset);
        let hasher = |&o: &usize| path_hash(record_path(data, o));
        match table.entry(path_hash(path), |&o| record_path(data, o) == path, hasher) {
            TableEntry::Occupied(mut slot) => *slot.get_mut() = offset,
            TableEntry::Vacant(slot) => {
                slot.insert(offset);
            }
        }
    }

    /// Replaces the records with the outcome of a hashing run: the entries whose cached digest
    /// was used (`carried`, each after a [`lookup`](Self::lookup) hit) and the digests computed
    /// anew (`computed`: entry, what was stat-verified, when, digest), of which only the
    /// trustworthy ones are kept (see [`record`](Self::record)). When every record was carried
    /// and nothing is added, the cache is left as it is, still equal to the file it came from.
    pub(crate) fn update<'e>(
        &mut self,
        carried: &[&Entry],
        computed: impl IntoIterator<Item = (&'e Entry, StatKey, i128, Digest)>,
    ) {
        let mut next = Self::new();
        next.racy_window_ns = self.racy_window_ns;
        for (entry, verified, observed_at_ns, digest) in computed {
            next.record(entry, verified, observed_at_ns, digest);
        }
        if next.is_empty() && carried.len() == self.len() {
            return;
        }
        // Carried entries come in path order, as they were looked up.
        let mut cursor = self.cursor();
        for entry in carried {
            if let Some(offset) = cursor.offset(path_key(entry)) {
                let at = next.data.len();
                next.data.to_mut().extend_from_slice(record_bytes(&self.data, offset));
                next.link(at);
            }
        }
        *self = next;
    }

    /// Records `digest` for `entry` if what was stat-verified at `observed_at_ns` (`verified`) is
    /// exactly the entry's key and the entry is not racy.
    pub(crate) fn record(&mut self, entry: &Entry, verified: StatKey, observed_at_ns: i128, digest: Digest) {
        let key = StatKey::of_entry(entry);
        let path = path_key(entry);
        // Paths longer than u32::MAX bytes cannot exist on any real filesystem.
        if key == verified && !key.racy(observed_at_ns, self.racy_window_ns) && u32::try_from(path.len()).is_ok() {
            let at = self.data.len();
            encode_record(self.data.to_mut(), path, &key, &digest);
            self.link(at);
            // No longer what the file holds, so `save` must write it.
            self.clean_at = None;
        }
    }

    fn encode(&self) -> Vec<u8> {
        // In path order (fsutil's, as contexts are walked): deterministic, and what lets a
        // later run look entries up in one pass along the records.
        let mut offsets: Vec<usize> = self.table().iter().copied().collect();
        offsets.sort_unstable_by(|&a, &b| path_order_bytes(record_path(&self.data, a), record_path(&self.data, b)));
        let body: usize = offsets.iter().map(|&o| record_bytes(&self.data, o).len()).sum();
        let mut out = Vec::with_capacity(HEADER_LEN + body + 32);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(offsets.len() as u64).to_le_bytes());
        for offset in offsets {
            out.extend_from_slice(record_bytes(&self.data, offset));
        }
        let sum: [u8; 32] = Sha256::digest(&out).into();
        out.extend_from_slice(&sum);
        out
    }
}

/// A stat cache being loaded; see [`StatCache::load_in_background`].
#[derive(Debug)]
pub struct PendingStatCache(Pending);

#[derive(Debug)]
enum Pending {
    Thread(std::thread::JoinHandle<StatCache>),
    Ready(StatCache),
}

impl PendingStatCache {
    /// Waits for the load to finish. Loading never fails (see [`StatCache::load`]); a panic in
    /// the loading thread is passed on.
    pub fn wait(self) -> StatCache {
        match self.0 {
            Pending::Thread(handle) => handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Pending::Ready(cache) => cache,
        }
    }
}

/// A bounds-checked cursor over the cache file.
struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.data.len() < n {
            return Err("truncated");
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        self.take(N)?.try_into().map_err(|_| "truncated")
    }
}

/// Checks a cache file and indexes its records by their offset in `data`.
/// A checked cache file's records.
enum Parsed {
    /// Their offsets, in strict path order.
    Ordered(Vec<usize>),
    /// Indexed by path (a file from before records were written in path order).
    Unordered(HashTable<usize>),
}

fn parse(data: &[u8]) -> Result<Parsed, &'static str> {
    if data.len() < HEADER_LEN + 32 {
        return Err("truncated");
    }
    let (body, sum) = data.split_at(data.len() - 32);
    if Sha256::digest(body).as_slice() != sum {
        return Err("checksum mismatch");
    }
    let mut r = Reader { data: body };
    if r.take(8)? != MAGIC {
        return Err("not a stat cache");
    }
    if u32::from_le_bytes(r.array()?) != VERSION {
        return Err("unsupported version");
    }
    r.take(4)?;
    let count = u64::from_le_bytes(r.array()?);
    // Each record takes at least RECORD_FIXED_LEN bytes: a larger count is a lie, not a reason to
    // allocate.
    if count > (r.data.len() / RECORD_FIXED_LEN) as u64 {
        return Err("record count exceeds file size");
    }
    let mut offsets = Vec::with_capacity(count as usize);
    let mut in_order = true;
    let mut previous: &[u8] = &[];
    for _ in 0..count {
        let offset = body.len() - r.data.len();
        let len = u32::from_le_bytes(r.array()?) as usize;
        let path = r.take(len)?;
        let fixed = r.take(RECORD_FIXED_LEN - 4)?;
        if fixed[0] > 2 {
            return Err("unknown entry kind");
        }
        in_order = in_order && (offsets.is_empty() || path_order_bytes(previous, path).is_lt());
        previous = path;
        offsets.push(offset);
    }
    if !r.data.is_empty() {
        return Err("trailing bytes");
    }
    if in_order {
        return Ok(Parsed::Ordered(offsets));
    }
    let mut table = HashTable::with_capacity(offsets.len());
    for offset in offsets {
        let path = record_path(body, offset);
        let hash = path_hash(path);
        if table.find(hash, |&o| record_path(body, o) == path).is_some() {
            return Err("duplicate path");
        }
        table.insert_unique(hash, offset, |&o| path_hash(record_path(body, o)));
    }
    Ok(Parsed::Unordered(table))
}

/// Looks entries up in path order: along the records when they are in path order too (one
/// pass, no hashing), through the table otherwise. Entries out of order are only missed, never
/// given a wrong digest.
pub(crate) struct Cursor<'c> {
    cache: &'c StatCache,
    /// Where in the ordered records the last lookup stopped.
    at: Option<usize>,
}

impl Cursor<'_> {
    /// The digest cached for `entry`, as [`StatCache::lookup`] gives it.
    pub(crate) fn lookup(&mut self, entry: &Entry) -> Option<Digest> {
        let offset = self.offset(path_key(entry))?;
        self.cache.check(offset, entry)
    }

    /// The offset of the record for `path`, if there is one.
    fn offset(&mut self, path: &[u8]) -> Option<usize> {
        let Some(ordered) = &self.cache.ordered else {
            return self.cache.find(path);
        };
        let data = &self.cache.data;
        let before = |&offset: &usize| path_order_bytes(record_path(data, offset), path).is_lt();
        let mut at = match self.at {
            Some(at) => at,
            None => ordered.partition_point(before),
        };
        while ordered.get(at).is_some_and(before) {
            at += 1;
        }
        self.at = Some(at);
        let offset = *ordered.get(at)?;
        (record_path(data, offset) == path).then_some(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::StatInfo;

    fn entry(path: &str, mtime_ns: i128) -> Entry {
        Entry {
            path: PathBuf::from(path),
            kind: EntryKind::File,
            mode: 0o644,
            size: 5,
            stat: StatInfo { dev: 1, ino: 2, nlink: 1, mtime_ns, ctime_ns: mtime_ns, uid: 0, gid: 0 },
        }
    }

    fn key_of(e: &Entry) -> StatKey {
        StatKey::of_entry(e)
    }

    const HOUR_NS: i128 = 3_600_000_000_000;

    #[test]
    fn round_trips_and_rejects_changed_stat() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cache");
        let e = entry("a/b", now_ns() - HOUR_NS);
        let mut cache = StatCache::new();
        cache.record(&e, key_of(&e), now_ns(), Digest::of(b"x"));
        cache.save(&file).unwrap();
        let loaded = StatCache::load(&file);
        assert_eq!(loaded.lookup(&e), Some(Digest::of(b"x")));
        let mut changed = e.clone();
        changed.stat.mtime_ns += 1;
        assert_eq!(loaded.lookup(&changed), None);
        let mut resized = e.clone();
        resized.size = 6;
        assert_eq!(loaded.lookup(&resized), None);
        let mut chmodded = e.clone();
        chmodded.mode = 0o755;
        assert_eq!(loaded.lookup(&chmodded), None);
    }

    #[test]
    fn saved_in_path_order_and_looked_up_along_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cache");
        let old = now_ns() - HOUR_NS;
        // Byte order would put `a-b` and `a.b` before `a/x`; path order puts `/` first.
        let names = ["a", "a/x", "a/y", "a-b", "a.b", "b", "c/d/e"];
        let mut cache = StatCache::new();
        for name in names {
            let e = entry(name, old);
            cache.record(&e, key_of(&e), now_ns(), Digest::of(name.as_bytes()));
        }
        cache.save(&file).unwrap();
        let loaded = StatCache::load(&file);
        let written: Vec<&[u8]> =
            loaded.ordered.as_ref().expect("read as ordered").iter().map(|&o| record_path(&loaded.data, o)).collect();
        assert_eq!(written, names.map(str::as_bytes));

        // In path order, with entries the cache lacks and one that changed.
        let mut changed = entry("a/y", old);
        changed.stat.mtime_ns += 1;
        let probes =
            [entry("0", old), entry("a", old), entry("a/w", old), changed, entry("a-b", old), entry("c/d/e", old)];
        let expected = [None, Some(Digest::of(b"a")), None, None, Some(Digest::of(b"a-b")), Some(Digest::of(b"c/d/e"))];
        for start in 0..probes.len() {
            let mut cursor = loaded.cursor();
            let found: Vec<_> = probes[start..].iter().map(|e| cursor.lookup(e)).collect();
            assert_eq!(found, expected[start..], "from probe {start}");
            let by_table: Vec<_> = probes[start..].iter().map(|e| loaded.lookup(e)).collect();
            assert_eq!(by_table, expected[start..]);
        }
        // A cache built in memory has no ordered records: the cursor goes through the table.
        assert!(cache.ordered.is_none());
        let mut cursor = cache.cursor();
        assert_eq!(cursor.lookup(&entry("a-b", old)), Some(Digest::of(b"a-b")));
    }

    #[test]
    fn a_file_in_byte_order_is_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cache");
        let old = now_ns() - HOUR_NS;
        // As files were written before path order: `a-b` before `a/x`.
        let (dash, slash) = (entry("a-b", old), entry("a/x", old));
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&2u64.to_le_bytes());
        encode_record(&mut out, b"a-b", &key_of(&dash), &Digest::of(b"dash"));
        encode_record(&mut out, b"a/x", &key_of(&slash), &Digest::of(b"slash"));
        let sum: [u8; 32] = Sha256::digest(&out).into();
        out.extend_from_slice(&sum);
        fs::write(&file, out).unwrap();
        let loaded = StatCache::load(&file);
        assert!(loaded.ordered.is_none());
        assert_eq!(loaded.len(), 2);
        let mut cursor = loaded.cursor();
        assert_eq!(cursor.lookup(&slash), Some(Digest::of(b"slash")));
        assert_eq!(cursor.lookup(&dash), Some(Digest::of(b"dash")));
    }

    #[test]
    fn racy_entries_are_not_recorded_or_trusted() {
        let now = now_ns();
        let fresh = entry("new", now);
        let mut cache = StatCache::new();
        cache.record(&fresh, key_of(&fresh), now, Digest::of(b"x"));
        assert!(cache.is_empty(), "an entry modified within the racy window must not be recorded");

        // Recorded as old, but the cache file turns out to be written within the window of its
        // timestamps (e.g. clocks disagree): lookup must not trust it.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cache");
        let e = entry("f", now + HOUR_NS);
        cache.record(&e, key_of(&e), now + 2 * HOUR_NS, Digest::of(b"y"));
        assert_eq!(cache.len(), 1);
        cache.save(&file).unwrap();
        assert_eq!(StatCache::load(&file).lookup(&e), None);
    }

    #[test]
    fn a_record_added_to_a_loaded_cache_is_saved() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cache");
        let (a, b) = (entry("a", now_ns() - HOUR_NS), entry("b", now_ns() - HOUR_NS));
        let mut cache = StatCache::new();
        cache.record(&a, key_of(&a), now_ns(), Digest::of(b"a"));
        cache.save(&file).unwrap();
        let mut loaded = StatCache::load(&file);
        loaded.record(&b, key_of(&b), now_ns(), Digest::of(b"b"));
        loaded.save(&file).unwrap();
        let reloaded = StatCache::load(&file).with_racy_window(Duration::ZERO);
        assert_eq!(reloaded.len(), 2);
        assert_eq!(reloaded.lookup(&b), Some(Digest::of(b"b")));
    }

    #[test]
    fn mismatched_verification_is_not_recorded() {
        let e = entry("a", now_ns() - HOUR_NS);
        let mut other = key_of(&e);
        other.ino += 1;
        let mut cache = StatCache::new();
        cache.record(&e, other, now_ns(), Digest::of(b"x"));
        assert!(cache.is_empty());
    }

    #[test]
    fn corrupt_or_truncated_files_load_empty() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cache");
        let mut cache = StatCache::new();
        for i in 0..20 {
            let e = entry(&format!("f{i}"), now_ns() - HOUR_NS);
            cache.record(&e, key_of(&e), now_ns(), Digest::of(b"x"));
        }
        cache.save(&file).unwrap();
        let good = fs::read(&file).unwrap();
        assert_eq!(StatCache::load(&file).len(), 20);
        for cut in [0, 1, 7, HEADER_LEN, good.len() / 2, good.len() - 1] {
            fs::write(&file, &good[..cut]).unwrap();
            assert!(StatCache::load(&file).is_empty(), "truncated at {cut}");
        }
        for flip in [0, 9, HEADER_LEN + 2, good.len() - 40, good.len() - 1] {
            let mut bad = good.clone();
            bad[flip] ^= 0x40;
            fs::write(&file, &bad).unwrap();
            assert!(StatCache::load(&file).is_empty(), "byte {flip} flipped");
        }
        // A well-formed checksum over a lying record count must not allocate or panic.
        let mut lying = good[..HEADER_LEN].to_vec();
        lying[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        let sum: [u8; 32] = Sha256::digest(&lying).into();
        lying.extend_from_slice(&sum);
        fs::write(&file, &lying).unwrap();
        assert!(StatCache::load(&file).is_empty());
    }

    #[test]
    fn save_replaces_atomically_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cache");
        fs::write(&file, b"old junk").unwrap();
        StatCache::new().save(&file).unwrap();
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("cache")]);
        assert!(StatCache::load(&file).is_empty());
        assert!(fs::read(&file).unwrap().starts_with(MAGIC));
    }
}
