//! Listing a build context the way BuildKit's file sync (tonistiigi/fsutil) lists it.
//!
//! Our own walker (the `ignore` crate's walker cannot hand a directory's match results to its
//! children, which Docker's rules need). It reads directories on several threads and applies
//! a [`PatternMatcher`] as fsutil does:
//!
//! - each entry is matched with [`PatternMatcher::matches_using_parent_results`], given its
//!   parent directory's results;
//! - an excluded directory is not entered, unless some `!` exception could match inside it:
//!   when every exception is a plain path (no `*?[]^\` once a trailing `/*` or `/**` is dropped),
//!   only if one of them lies under the directory; otherwise always;
//! - the directories above an included entry are listed even when they are excluded themselves;
//! - symlinks are listed with their target and never followed; sockets, FIFOs and devices are
//!   left out and reported in [`WalkResult::unsupported`];
//! - a directory that cannot be read is an error when it is included, and skipped when it is
//!   excluded and the error is a permission error (fsutil's rule);
//! - names are bytes: names that are not UTF-8 are kept as they are.
//!
//! Entries come out in BuildKit's order: by path, component by component, in byte order
//! (fsutil's `ComparePath`: `a/b` sorts before `a-b`, because `/` sorts first).

use std::cmp::Ordering;
use std::ffi::OsString;
use std::fs::{DirEntry, Metadata};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Condvar, Mutex, PoisonError};

use super::ignore::{IgnoreFileError, MatchInfo, PatternError, PatternMatcher, find_ignore_file, read_ignore_file};
use super::{Entry, EntryKind, StatInfo};

/// Why a context could not be walked.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// The context root does not exist, cannot be resolved, or is not a directory.
    #[error("build context {}: {source}", path.display())]
    Root {
        /// The root as given.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The ignore file could not be read or parsed.
    #[error("ignore file {}: {source}", path.display())]
    IgnoreFile {
        /// The ignore file.
        path: PathBuf,
        /// What went wrong.
        source: IgnoreFileError,
    },
    /// The ignore patterns are invalid.
    #[error("ignore patterns{}: {source}", from.as_ref().map(|p| format!(" from {}", p.display())).unwrap_or_default())]
    Patterns {
        /// The ignore file they came from, if any.
        from: Option<PathBuf>,
        /// What is wrong with them.
        source: PatternError,
    },
    /// Matching a path against the patterns failed (a pattern Go's `regexp` refuses).
    #[error("matching {} against the ignore patterns: {source}", path.display())]
    Match {
        /// The path being matched, relative to the context root.
        path: PathBuf,
        /// What is wrong with the pattern.
        source: PatternError,
    },
    /// An included directory could not be read.
    #[error("reading directory {}: {source}", path.display())]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// An included entry could not be examined (`lstat`, or reading a symlink's target).
    #[error("examining {}: {source}", path.display())]
    Stat {
        /// The entry.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

impl WalkError {
    /// The path an error is about, used to report the same error whatever the thread timing.
    fn path(&self) -> &Path {
        match self {
            Self::Root { path, .. }
            | Self::IgnoreFile { path, .. }
            | Self::Match { path, .. }
            | Self::ReadDir { path, .. }
            | Self::Stat { path, .. } => path,
            Self::Patterns { .. } => Path::new(""),
        }
    }
}

/// Entry and byte counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Number of entries (files, directories, symlinks).
    pub entries: u64,
    /// Total size of the regular files among them.
    pub bytes: u64,
}

impl Stats {
    fn add(&mut self, size: u64) {
        self.entries += 1;
        self.bytes += size;
    }
}

/// What kind of special file was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsupportedKind {
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
    /// A block device.
    BlockDevice,
    /// A character device.
    CharDevice,
}

/// An included entry that a build context cannot carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// Path relative to the context root.
    pub path: PathBuf,
    /// What it is.
    pub kind: UnsupportedKind,
}

/// The outcome of [`Walker::walk`].
#[derive(Debug, Clone)]
pub struct WalkResult {
    /// What would be sent, in BuildKit's order (see the module documentation).
    pub entries: Vec<Entry>,
    /// Counts of [`Self::entries`] (and bytes of its regular files).
    pub included: Stats,
    /// Counts of the entries the walk saw and left out. An excluded directory that was not
    /// entered counts as one entry: what it holds was never looked at.
    pub excluded: Stats,
    /// Included sockets, FIFOs and devices, left out of [`Self::entries`], sorted by path.
    pub unsupported: Vec<Unsupported>,
    /// The ignore file that was applied, if any.
    pub ignore_file: Option<PathBuf>,
    /// The exclude patterns that were applied, as [`super::ignore::read_all`] returns them.
    pub patterns: Vec<Vec<u8>>,
}

/// Walks a build context. See the module documentation for the rules.
///
/// ```
/// use nullspace_engine::context::{walk::Walker, EntryKind};
///
/// let dir = tempfile::tempdir()?;
/// std::fs::create_dir_all(dir.path().join("docs/img"))?;
/// std::fs::write(dir.path().join("docs/README.md"), "r")?;
/// std::fs::write(dir.path().join("docs/img/logo.png"), "png")?;
/// std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n")?;
/// std::fs::write(dir.path().join(".dockerignore"), "docs\n!docs/README.md\n")?;
///
/// let result = Walker::new(dir.path()).dockerfile("Dockerfile").walk()?;
/// let listed: Vec<_> = result.entries.iter().map(|e| e.path.to_str().unwrap_or("?")).collect();
/// assert_eq!(listed, [".dockerignore", "Dockerfile", "docs", "docs/README.md"]);
/// assert_eq!(result.entries[2].kind, EntryKind::Dir);
/// assert_eq!(result.ignore_file, Some(dir.path().join(".dockerignore")));
///
/// // Explicit patterns instead of an ignore file:
/// let result = Walker::new(dir.path()).patterns(["*", "!docs/img"]).walk()?;
/// assert_eq!(result.entries.len(), 3); // docs, docs/img, docs/img/logo.png
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Walker {
    root: PathBuf,
    dockerfile: Option<PathBuf>,
    patterns: Option<Vec<Vec<u8>>>,
    threads: usize,
    count_excluded_bytes: bool,
}

impl Walker {
    /// A walker for the context directory `root`. Without [`Self::dockerfile`] or
    /// [`Self::patterns`], `root/.dockerignore` applies if it exists.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self { root: root.into(), dockerfile: None, patterns: None, threads, count_excluded_bytes: true }
    }

    /// The Dockerfile being built (relative to the root unless absolute): its
    /// `<Dockerfile>.dockerignore`, if present, is used instead of `.dockerignore`.
    pub fn dockerfile(mut self, path: impl Into<PathBuf>) -> Self {
        self.dockerfile = Some(path.into());
        self
    }

    /// Uses these exclude patterns (as [`super::ignore::read_all`] returns them) instead of
    /// any ignore file.
    pub fn patterns<I, S>(mut self, patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        self.patterns = Some(patterns.into_iter().map(|p| p.as_ref().to_vec()).collect());
        self
    }

    /// Whether to `lstat` excluded files to count their bytes in [`WalkResult::excluded`]
    /// (default: yes). Without it `excluded.bytes` stays 0 and an excluded file costs no system
    /// call beyond reading its directory: worth it when only the included entries matter, as
    /// when hashing a context.
    pub fn count_excluded_bytes(mut self, count: bool) -> Self {
        self.count_excluded_bytes = count;
        self
    }

    /// How many threads read directories (at least one; default: the available cores).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Walks the context.
    pub fn walk(&self) -> Result<WalkResult, WalkError> {
        let root_error = |source| WalkError::Root { path: self.root.clone(), source };
        // fsutil resolves the root's symlinks before walking.
        let root = self.root.canonicalize().map_err(root_error)?;
        if !root.metadata().map_err(root_error)?.is_dir() {
            return Err(root_error(io::Error::from(io::ErrorKind::NotADirectory)));
        }
        let (ignore_file, patterns) = match &self.patterns {
            Some(patterns) => (None, patterns.clone()),
            None => match find_ignore_file(&root, self.dockerfile.as_deref()) {
                Some(file) => {
                    let patterns = read_ignore_file(&file)
                        .map_err(|source| WalkError::IgnoreFile { path: file.clone(), source })?;
                    (Some(file), patterns)
                }
                None => (None, Vec::new()),
            },
        };
        let matcher = PatternMatcher::new(&patterns)
            .map_err(|source| WalkError::Patterns { from: ignore_file.clone(), source })?;
        let walked = walk_tree(&root, &matcher, self.threads, self.count_excluded_bytes)?;
        let mut result = assemble(walked);
        result.ignore_file = ignore_file;
        result.patterns = patterns;
        tracing::debug!(
            root = %root.display(),
            included = result.included.entries,
            excluded = result.excluded.entries,
            unsupported = result.unsupported.len(),
            "walked build context"
        );
        Ok(result)
    }
}

/// fsutil's `patternWithoutTrailingGlob`.
fn without_trailing_glob(pattern: &[u8]) -> &[u8] {
    let pattern = pattern.strip_suffix(b"/**").unwrap_or(pattern);
    pattern.strip_suffix(b"/*").unwrap_or(pattern)
}

/// When an excluded directory must still be entered (fsutil's `onlyPrefixExcludeExceptions`
/// rule).
enum Descend {
    /// Some exception has glob characters: any excluded directory may hold a match.
    Always,
    /// Only directories that are a prefix of one of these (`exception + "/"`).
    Prefixes(Vec<Vec<u8>>),
}

impl Descend {
    fn new(matcher: &PatternMatcher) -> Self {
        let exceptions: Vec<&[u8]> = matcher
            .patterns()
            .iter()
            .filter(|p| p.is_exclusion())
            .map(|p| without_trailing_glob(p.as_bytes()))
            .collect();
        if exceptions.iter().any(|p| p.iter().any(|b| b"*[]?^\\".contains(b))) {
            return Self::Always;
        }
        Self::Prefixes(exceptions.into_iter().map(|p| [p, b"/"].concat()).collect())
    }

    fn enters(&self, dir: &[u8]) -> bool {
        match self {
            Self::Always => true,
            Self::Prefixes(prefixes) => {
                prefixes.iter().any(|p| p.len() > dir.len() && p.starts_with(dir) && p[dir.len()] == b'/')
            }
        }
    }
}

/// A directory waiting to be read.
struct DirJob {
    /// Where its listing goes in [`Found::listings`] once the threads' results are joined.
    id: usize,
    abs: PathBuf,
    rel: Vec<u8>,
    info: MatchInfo,
    excluded: bool,
}

/// What an entry of a directory's listing leads to.
#[derive(Clone, Copy)]
enum Listed {
    /// A file or symlink (or an included directory's leaf, if it could not be read).
    Leaf,
    /// An included directory, whose own listing has this id.
    Dir(usize),
    /// An excluded directory entered for the sake of exceptions, whose own listing has this id:
    /// it is sent only if something inside it is.
    ExcludedDir(usize),
}

/// One directory's entries, sorted by name.
type Listing = Vec<(Entry, Listed)>;

struct Queue {
    jobs: Vec<DirJob>,
    busy: usize,
}

/// What one thread found.
#[derive(Default)]
struct Found {
    /// The listing of each directory read, by [`DirJob::id`].
    listings: Vec<(usize, Listing)>,
    excluded: Stats,
    unsupported: Vec<Unsupported>,
    errors: Vec<WalkError>,
}

struct Shared<'a> {
    matcher: &'a PatternMatcher,
    /// Whether excluded files are `lstat`ed for their size.
    sizes: bool,
    descend: Descend,
    next_id: AtomicUsize,
    queue: Mutex<Queue>,
    wake: Condvar,
    abort: AtomicBool,
}

fn walk_tree(root: &Path, matcher: &PatternMatcher, threads: usize, sizes: bool) -> Result<Found, WalkError> {
    let root_job = DirJob { id: 0, abs: root.to_owned(), rel: Vec::new(), info: MatchInfo::default(), excluded: false };
    let shared = Shared {
        matcher,
        sizes,
        descend: Descend::new(matcher),
        next_id: AtomicUsize::new(1),
        queue: Mutex::new(Queue { jobs: vec![root_job], busy: 0 }),
        wake: Condvar::new(),
        abort: AtomicBool::new(false),
    };
    let founds: Vec<Found> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads).map(|_| scope.spawn(|| worker(&shared))).collect();
        // A worker panics only on a bug: pass the panic on rather than return a partial listing.
        workers.into_iter().map(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    });
    let mut all = Found::default();
    for found in founds {
        all.listings.extend(found.listings);
        all.excluded.entries += found.excluded.entries;
        all.excluded.bytes += found.excluded.bytes;
        all.unsupported.extend(found.unsupported);
        all.errors.extend(found.errors);
    }
    match all.errors.iter().enumerate().min_by(|a, b| path_order(a.1.path(), b.1.path())).map(|(i, _)| i) {
        Some(first) => Err(all.errors.swap_remove(first)),
        None => Ok(all),
    }
}

fn worker(shared: &Shared<'_>) -> Found {
    let mut found = Found::default();
    loop {
        let job = {
            let mut queue = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if shared.abort.load(AtomicOrdering::Relaxed) {
                    shared.wake.notify_all();
                    return found;
                }
                if let Some(job) = queue.jobs.pop() {
                    queue.busy += 1;
                    break job;
                }
                if queue.busy == 0 {
                    shared.wake.notify_all();
                    return found;
                }
                queue = shared.wake.wait(queue).unwrap_or_else(PoisonError::into_inner);
            }
        };
        let guard = PanicGuard(shared);
        let mut subdirs = Vec::new();
        let mut listing = Vec::new();
        if let Err(error) = read_dir(shared, &job, &mut listing, &mut found, &mut subdirs) {
            found.errors.push(error);
            shared.abort.store(true, AtomicOrdering::Relaxed);
        }
        // Siblings share their parent's path, so their names alone decide their order.
        let name_at = job.rel.len() + usize::from(!job.rel.is_empty());
        listing.sort_unstable_by(|(a, _), (b, _)| {
            a.path.as_os_str().as_bytes()[name_at..].cmp(&b.path.as_os_str().as_bytes()[name_at..])
        });
        found.listings.push((job.id, listing));
        std::mem::forget(guard);
        let mut queue = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.busy -= 1;
        // Reverse so that popping from the end visits the first names first.
        queue.jobs.extend(subdirs.into_iter().rev());
        shared.wake.notify_all();
    }
}

/// Stops the other workers if this one panics mid-job, so that they do not wait for it forever.
struct PanicGuard<'s, 'm>(&'s Shared<'m>);

impl Drop for PanicGuard<'_, '_> {
    fn drop(&mut self) {
        self.0.abort.store(true, AtomicOrdering::Relaxed);
        let mut queue = self.0.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.busy -= 1;
        self.0.wake.notify_all();
    }
}

fn rel_path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsString::from_vec(bytes.to_vec()))
}

/// Whether a read error means "it is gone", which fsutil skips silently.
fn vanished(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory)
}

fn read_dir(
    shared: &Shared<'_>,
    job: &DirJob,
    listing: &mut Listing,
    found: &mut Found,
    subdirs: &mut Vec<DirJob>,
) -> Result<(), WalkError> {
    let unreadable = |source: io::Error| -> Result<(), WalkError> {
        if vanished(&source) {
            return Ok(());
        }
        if job.excluded && source.kind() == io::ErrorKind::PermissionDenied {
            tracing::debug!(dir = %job.abs.display(), "skipping unreadable excluded directory");
            return Ok(());
        }
        Err(WalkError::ReadDir { path: job.abs.clone(), source })
    };
    let entries = match std::fs::read_dir(&job.abs) {
        Ok(entries) => entries,
        Err(source) => return unreadable(source),
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(source) => return unreadable(source),
        };
        let name = entry.file_name();
        let mut rel = Vec::with_capacity(job.rel.len() + 1 + name.len());
        if !job.rel.is_empty() {
            rel.extend_from_slice(&job.rel);
            rel.push(b'/');
        }
        rel.extend_from_slice(name.as_bytes());
        visit(shared, job, entry, rel, listing, found, subdirs)?;
    }
    Ok(())
}

fn visit(
    shared: &Shared<'_>,
    job: &DirJob,
    entry: DirEntry,
    rel: Vec<u8>,
    listing: &mut Listing,
    found: &mut Found,
    subdirs: &mut Vec<DirJob>,
) -> Result<(), WalkError> {
    let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
    let (excluded, info) = if shared.matcher.is_empty() {
        Ok((false, MatchInfo::default()))
    } else if is_dir {
        shared.matcher.matches_using_parent_results(&rel, &job.info)
    } else {
        // A file has no children to hand its per-pattern results to.
        shared.matcher.excludes_using_parent_results(&rel, &job.info).map(|excluded| (excluded, MatchInfo::default()))
    }
    .map_err(|source| WalkError::Match { path: rel_path(&rel), source })?;
    if excluded {
        if is_dir && shared.descend.enters(&rel) {
            // Entered for the sake of exceptions; listed only if something inside is included.
            if let Some(listed) = examine(&entry, &rel)? {
                let id = shared.next_id.fetch_add(1, AtomicOrdering::Relaxed);
                listing.push((listed, Listed::ExcludedDir(id)));
                subdirs.push(DirJob { id, abs: entry.path(), rel, info, excluded: true });
            }
        } else {
            let size = if is_dir || !shared.sizes {
                0
            } else {
                entry.metadata().map_or(0, |m| if m.is_file() { m.len() } else { 0 })
            };
            found.excluded.add(size);
        }
        return Ok(());
    }
    let metadata = match entry.metadata() {
        Ok(metadata) => metadata,
        Err(source) if vanished(&source) => return Ok(()),
        Err(source) => {
            return Err(WalkError::Stat { path: entry.path(), source });
        }
    };
    let file_type = metadata.file_type();
    let kind = if file_type.is_fifo() {
        Some(UnsupportedKind::Fifo)
    } else if file_type.is_socket() {
        Some(UnsupportedKind::Socket)
    } else if file_type.is_block_device() {
        Some(UnsupportedKind::BlockDevice)
    } else if file_type.is_char_device() {
        Some(UnsupportedKind::CharDevice)
    } else {
        None
    };
    if let Some(kind) = kind {
        tracing::debug!(path = %entry.path().display(), ?kind, "leaving out unsupported file");
        found.unsupported.push(Unsupported { path: rel_path(&rel), kind });
        return Ok(());
    }
    if file_type.is_dir() {
        if let Some(listed) = to_entry(&entry, rel_path(&rel), &metadata)? {
            let id = shared.next_id.fetch_add(1, AtomicOrdering::Relaxed);
            listing.push((listed, Listed::Dir(id)));
            subdirs.push(DirJob { id, abs: entry.path(), rel, info, excluded: false });
        }
    } else if let Some(listed) = to_entry(&entry, PathBuf::from(OsString::from_vec(rel)), &metadata)? {
        listing.push((listed, Listed::Leaf));
    }
    Ok(())
}

/// `lstat`s an entry into an [`Entry`]; `None` if it vanished meanwhile.
fn examine(entry: &DirEntry, rel: &[u8]) -> Result<Option<Entry>, WalkError> {
    match entry.metadata() {
        Ok(metadata) => to_entry(entry, rel_path(rel), &metadata),
        Err(source) if vanished(&source) => Ok(None),
        Err(source) => Err(WalkError::Stat { path: entry.path(), source }),
    }
}

fn to_entry(entry: &DirEntry, path: PathBuf, metadata: &Metadata) -> Result<Option<Entry>, WalkError> {
    let file_type = metadata.file_type();
    let (kind, size) = if file_type.is_dir() {
        (EntryKind::Dir, 0)
    } else if file_type.is_symlink() {
        let target = match std::fs::read_link(entry.path()) {
            Ok(target) => target,
            Err(source) if vanished(&source) => return Ok(None),
            Err(source) => {
                return Err(WalkError::Stat { path: entry.path(), source });
            }
        };
        let size = target.as_os_str().len() as u64;
        (EntryKind::Symlink { target }, size)
    } else {
        (EntryKind::File, metadata.len())
    };
    let nanos = |secs: i64, nsec: i64| i128::from(secs) * 1_000_000_000 + i128::from(nsec);
    Ok(Some(Entry {
        path,
        kind,
        mode: metadata.mode() & 0o7777,
        size,
        stat: StatInfo {
            dev: metadata.dev(),
            ino: metadata.ino(),
            nlink: metadata.nlink(),
            mtime_ns: nanos(metadata.mtime(), metadata.mtime_nsec()),
            ctime_ns: nanos(metadata.ctime(), metadata.ctime_nsec()),
            uid: metadata.uid(),
            gid: metadata.gid(),
        },
    }))
}

/// fsutil's `ComparePath`: byte order where `/` sorts before every other byte, which is the
/// order of a depth-first walk with each directory read in name order.
pub fn path_order(a: &Path, b: &Path) -> Ordering {
    let (a, b) = (a.as_os_str().as_bytes(), b.as_os_str().as_bytes());
    // Only the first differing byte decides. Neighbours in a sort share long prefixes, so the
    // prefix is skipped eight bytes at a time.
    let common = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= common && a[i..i + 8] == b[i..i + 8] {
        i += 8;
    }
    match a[i..common].iter().zip(&b[i..common]).position(|(x, y)| x != y) {
        Some(d) => {
            let key = |c: u8| if c == b'/' { 0 } else { c };
            key(a[i + d]).cmp(&key(b[i + d]))
        }
        None => a.len().cmp(&b.len()),
    }
}

/// Joins the directories' listings depth first, which is [`path_order`] since each listing is
/// sorted by name: no sort of the whole context is needed. An excluded directory that was
/// entered is kept only if something under it was included.
fn assemble(found: Found) -> WalkResult {
    let Found { listings, mut excluded, mut unsupported, .. } = found;
    let mut by_id: Vec<Option<Listing>> = Vec::new();
    by_id.resize_with(listings.iter().map(|(id, _)| id + 1).max().unwrap_or(0), || None);
    let total = listings.iter().map(|(_, l)| l.len()).sum();
    for (id, listing) in listings {
        by_id[id] = Some(listing);
    }
    let mut take = |id: usize| by_id.get_mut(id).and_then(Option::take).unwrap_or_default().into_iter();
    let mut entries = Vec::with_capacity(total);
    // Each open directory: its remaining entries, and for an excluded one, where its own entry
    // sits in `entries`.
    let mut open = vec![(take(0), None::<usize>)];
    while let Some((rest, _)) = open.last_mut() {
        match rest.next() {
            Some((entry, listed)) => {
                entries.push(entry);
                match listed {
                    Listed::Leaf => {}
                    Listed::Dir(id) => open.push((take(id), None)),
                    Listed::ExcludedDir(id) => open.push((take(id), Some(entries.len() - 1))),
                }
            }
            None => {
                if let Some((_, Some(at))) = open.pop()
                    && entries.len() == at + 1
                {
                    entries.pop();
                    excluded.add(0);
                }
            }
        }
    }
    unsupported.sort_unstable_by(|a, b| path_order(&a.path, &b.path));
    let mut stats = Stats::default();
    for entry in &entries {
        stats.add(if entry.kind == EntryKind::File { entry.size } else { 0 });
    }
    WalkResult { entries, included: stats, excluded, unsupported, ignore_file: None, patterns: Vec::new() }
}

#[cfg(test)]
mod tests;
