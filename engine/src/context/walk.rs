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
//! (fsutil's `ComparePath`: `a/b` sorts before `a-b`, because `/` sorts first). Each directory's
//! entries are sorted by name where they are read, and the listings are joined depth first, so
//! no sort of the whole context is needed.
//!
//! Directories are read with `getdents64` into a reused buffer, and each directory and entry is
//! opened or `lstat`ed relative to its parent's descriptor (`openat`, `fstatat`): one path
//! component to look up rather than the whole path, and no allocation per name read.

use std::cmp::Ordering;
use std::ffi::{CStr, OsStr, OsString};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, RawDir, Stat};

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
        let founds = walk_tree(&root, &matcher, self.threads, self.count_excluded_bytes)?;
        let mut result = assemble(founds);
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
    /// Where its listing goes once the threads' results are joined.
    id: usize,
    /// The directory it sits in, opened (`None` for the root): it is opened relative to that,
    /// one path component to look up instead of the whole path.
    parent: Option<Arc<OwnedFd>>,
    rel: Vec<u8>,
    info: MatchInfo,
    excluded: bool,
}

/// What an entry of a directory's listing leads to.
#[derive(Clone, Copy)]
enum Listed {
    /// A file or symlink.
    Leaf,
    /// An included directory, whose own listing has this id.
    Dir(usize),
    /// An excluded directory entered for the sake of exceptions, whose own listing has this id:
    /// it is sent only if something inside it is.
    ExcludedDir(usize),
}

/// One directory's entries, sorted by name: indices into its thread's [`Found::entries`].
type Listing = Vec<(usize, Listed)>;

struct Queue {
    jobs: Vec<DirJob>,
    busy: usize,
    /// Workers waiting for a job: only then is a wake-up (a system call) worth making.
    waiting: usize,
}

/// What one thread found.
#[derive(Default)]
struct Found {
    /// Every entry this thread listed, taken out in order when the listings are joined.
    entries: Vec<Option<Entry>>,
    /// The listing of each directory this thread read, by [`DirJob::id`].
    listings: Vec<(usize, Listing)>,
    excluded: Stats,
    unsupported: Vec<Unsupported>,
    errors: Vec<WalkError>,
}

struct Shared<'a> {
    root: &'a Path,
    matcher: &'a PatternMatcher,
    /// Whether excluded files are `lstat`ed for their size.
    sizes: bool,
    descend: Descend,
    next_id: AtomicUsize,
    queue: Mutex<Queue>,
    wake: Condvar,
    abort: AtomicBool,
}

impl Shared<'_> {
    /// The absolute path of an entry, for messages.
    fn abs(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() { self.root.to_owned() } else { self.root.join(OsStr::from_bytes(rel)) }
    }
}

fn walk_tree(root: &Path, matcher: &PatternMatcher, threads: usize, sizes: bool) -> Result<Vec<Found>, WalkError> {
    let root_job = DirJob { id: 0, parent: None, rel: Vec::new(), info: MatchInfo::default(), excluded: false };
    let shared = Shared {
        root,
        matcher,
        sizes,
        descend: Descend::new(matcher),
        next_id: AtomicUsize::new(1),
        queue: Mutex::new(Queue { jobs: vec![root_job], busy: 0, waiting: 0 }),
        wake: Condvar::new(),
        abort: AtomicBool::new(false),
    };
    let mut founds: Vec<Found> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads).map(|_| scope.spawn(|| worker(&shared))).collect();
        // A worker panics only on a bug: pass the panic on rather than return a partial listing.
        workers.into_iter().map(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    });
    let mut errors: Vec<WalkError> = founds.iter_mut().flat_map(|f| f.errors.drain(..)).collect();
    match errors.iter().enumerate().min_by(|a, b| path_order(a.1.path(), b.1.path())).map(|(i, _)| i) {
        Some(first) => Err(errors.swap_remove(first)),
        None => Ok(founds),
    }
}

fn worker(shared: &Shared<'_>) -> Found {
    let mut found = Found::default();
    let mut reader = Reader { buf: vec![MaybeUninit::uninit(); READ_DIR_BUFFER], rel: Vec::new() };
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
                queue.waiting += 1;
                queue = shared.wake.wait(queue).unwrap_or_else(PoisonError::into_inner);
                queue.waiting -= 1;
            }
        };
        let guard = PanicGuard(shared);
        let mut subdirs = Vec::new();
        let mut listing = Vec::new();
        if let Err(error) = reader.read_dir(shared, &job, &mut listing, &mut found, &mut subdirs) {
            found.errors.push(error);
            shared.abort.store(true, AtomicOrdering::Relaxed);
        }
        // Siblings share their parent's path, so their names alone decide their order.
        let name_at = job.rel.len() + usize::from(!job.rel.is_empty());
        let name = |i: usize| found.entries[i].as_ref().map_or(&[][..], |e| &e.path.as_os_str().as_bytes()[name_at..]);
        listing.sort_unstable_by(|&(a, _), &(b, _)| name(a).cmp(name(b)));
        found.listings.push((job.id, listing));
        std::mem::forget(guard);
        let mut queue = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.busy -= 1;
        let added = !subdirs.is_empty();
        // Reverse so that popping from the end visits the first names first.
        queue.jobs.extend(subdirs.into_iter().rev());
        if queue.waiting > 0 && (added || queue.busy == 0 || shared.abort.load(AtomicOrdering::Relaxed)) {
            shared.wake.notify_all();
        }
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

/// Bytes of `getdents64` records read per call.
const READ_DIR_BUFFER: usize = 32 * 1024;

fn rel_path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsString::from_vec(bytes.to_vec()))
}

/// Whether a read error means "it is gone", which fsutil skips silently.
fn vanished(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory)
}

/// Opens the directory of `job`: relative to its parent, or the root by path. `O_NOFOLLOW`: a
/// directory swapped for a symlink since it was listed is not followed out of the context.
fn open_dir(shared: &Shared<'_>, job: &DirJob) -> io::Result<OwnedFd> {
    let rel = &job.rel;
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let name = &rel[rel.iter().rposition(|&b| b == b'/').map_or(0, |slash| slash + 1)..];
    match job.parent.as_deref() {
        Some(parent) => match rfs::openat(parent, OsStr::from_bytes(name), flags, Mode::empty()) {
            // Out of descriptors (parents are kept open while their children wait): by path.
            Err(rustix::io::Errno::MFILE) => rfs::open(shared.abs(rel), flags, Mode::empty()),
            other => other,
        },
        None => rfs::open(shared.root, flags, Mode::empty()),
    }
    .map_err(io::Error::from)
}

/// A worker's reusable buffers.
struct Reader {
    buf: Vec<MaybeUninit<u8>>,
    rel: Vec<u8>,
}

impl Reader {
    fn read_dir(
        &mut self,
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
                tracing::debug!(dir = %shared.abs(&job.rel).display(), "skipping unreadable excluded directory");
                return Ok(());
            }
            Err(WalkError::ReadDir { path: shared.abs(&job.rel), source })
        };
        let dir = match open_dir(shared, job) {
            Ok(dir) => Arc::new(dir),
            Err(source) => return unreadable(source),
        };
        let mut entries = RawDir::new(dir.as_fd(), &mut self.buf);
        while let Some(entry) = entries.next() {
            let entry = match entry {
                Ok(entry) => entry,
                Err(source) => return unreadable(source.into()),
            };
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            self.rel.clear();
            if !job.rel.is_empty() {
                self.rel.extend_from_slice(&job.rel);
                self.rel.push(b'/');
            }
            self.rel.extend_from_slice(name);
            let child = Child { dir: &dir, name: entry.file_name(), d_type: entry.file_type(), rel: &self.rel };
            visit(shared, job, &child, listing, found, subdirs)?;
        }
        Ok(())
    }
}

/// One name read from a directory.
struct Child<'a> {
    dir: &'a Arc<OwnedFd>,
    name: &'a CStr,
    /// The type `getdents` reported (`Unknown` on filesystems that do not say).
    d_type: FileType,
    rel: &'a [u8],
}

impl Child<'_> {
    fn lstat(&self) -> io::Result<Stat> {
        rfs::statat(self.dir.as_fd(), self.name, AtFlags::SYMLINK_NOFOLLOW).map_err(io::Error::from)
    }

    fn is_dir(&self) -> bool {
        match self.d_type {
            FileType::Unknown => {
                self.lstat().is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
            }
            d_type => d_type == FileType::Directory,
        }
    }
}

fn visit(
    shared: &Shared<'_>,
    job: &DirJob,
    child: &Child<'_>,
    listing: &mut Listing,
    found: &mut Found,
    subdirs: &mut Vec<DirJob>,
) -> Result<(), WalkError> {
    let rel = child.rel;
    let is_dir = child.is_dir();
    let (excluded, info) = if shared.matcher.is_empty() {
        Ok((false, MatchInfo::default()))
    } else if is_dir {
        shared.matcher.matches_using_parent_results(rel, &job.info)
    } else {
        // A file has no children to hand its per-pattern results to.
        shared.matcher.excludes_using_parent_results(rel, &job.info).map(|excluded| (excluded, MatchInfo::default()))
    }
    .map_err(|source| WalkError::Match { path: rel_path(rel), source })?;
    let mut add = |found: &mut Found, entry: Entry, listed: Listed| {
        listing.push((found.entries.len(), listed));
        super::hugepages::reserve_one(&mut found.entries);
        found.entries.push(Some(entry));
    };
    if excluded {
        if is_dir && shared.descend.enters(rel) {
            // Entered for the sake of exceptions; listed only if something inside is included.
            if let Some(Examined::Listed(entry)) = examine(shared, child)? {
                let id = shared.next_id.fetch_add(1, AtomicOrdering::Relaxed);
                add(found, entry, Listed::ExcludedDir(id));
                let parent = Some(Arc::clone(child.dir));
                subdirs.push(DirJob { id, parent, rel: rel.to_vec(), info, excluded: true });
            }
        } else {
            let size = if is_dir || !shared.sizes {
                0
            } else {
                child.lstat().map_or(0, |st| if is_regular(&st) { file_size(&st) } else { 0 })
            };
            found.excluded.add(size);
        }
        return Ok(());
    }
    match examine(shared, child)? {
        None => {}
        Some(Examined::Unsupported(kind)) => {
            tracing::debug!(path = %shared.abs(rel).display(), ?kind, "leaving out unsupported file");
            found.unsupported.push(Unsupported { path: rel_path(rel), kind });
        }
        Some(Examined::Listed(entry)) if entry.kind == EntryKind::Dir => {
            let id = shared.next_id.fetch_add(1, AtomicOrdering::Relaxed);
            add(found, entry, Listed::Dir(id));
            let parent = Some(Arc::clone(child.dir));
            subdirs.push(DirJob { id, parent, rel: rel.to_vec(), info, excluded: false });
        }
        Some(Examined::Listed(entry)) => add(found, entry, Listed::Leaf),
    }
    Ok(())
}

fn is_regular(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
}

fn file_size(st: &Stat) -> u64 {
    u64::try_from(st.st_size).unwrap_or(0)
}

/// What `lstat` says an included name is.
enum Examined {
    Listed(Entry),
    Unsupported(UnsupportedKind),
}

/// `lstat`s a child (and reads a symlink's target); `None` if it vanished meanwhile.
fn examine(shared: &Shared<'_>, child: &Child<'_>) -> Result<Option<Examined>, WalkError> {
    let stat_error = |source: io::Error| WalkError::Stat { path: shared.abs(child.rel), source };
    let st = match child.lstat() {
        Ok(st) => st,
        Err(source) if vanished(&source) => return Ok(None),
        Err(source) => return Err(stat_error(source)),
    };
    let unsupported = |kind| Ok(Some(Examined::Unsupported(kind)));
    let (kind, size) = match FileType::from_raw_mode(st.st_mode) {
        FileType::Fifo => return unsupported(UnsupportedKind::Fifo),
        FileType::Socket => return unsupported(UnsupportedKind::Socket),
        FileType::BlockDevice => return unsupported(UnsupportedKind::BlockDevice),
        FileType::CharacterDevice => return unsupported(UnsupportedKind::CharDevice),
        FileType::Directory => (EntryKind::Dir, 0),
        FileType::Symlink => {
            let target = match rfs::readlinkat(child.dir.as_fd(), child.name, Vec::new()) {
                Ok(target) => PathBuf::from(OsString::from_vec(target.into_bytes())),
                Err(errno) => {
                    let source = io::Error::from(errno);
                    if vanished(&source) {
                        return Ok(None);
                    }
                    return Err(stat_error(source));
                }
            };
            let size = target.as_os_str().len() as u64;
            (EntryKind::Symlink { target }, size)
        }
        _ => (EntryKind::File, file_size(&st)),
    };
    let nanos = |secs: i64, nsec: u64| i128::from(secs) * 1_000_000_000 + i128::from(nsec);
    #[allow(clippy::useless_conversion)] // The field types differ between architectures.
    let stat = StatInfo {
        dev: u64::from(st.st_dev),
        ino: u64::from(st.st_ino),
        nlink: u64::from(st.st_nlink),
        mtime_ns: nanos(i64::from(st.st_mtime), u64::from(st.st_mtime_nsec)),
        ctime_ns: nanos(i64::from(st.st_ctime), u64::from(st.st_ctime_nsec)),
        uid: st.st_uid,
        gid: st.st_gid,
    };
    Ok(Some(Examined::Listed(Entry { path: rel_path(child.rel), kind, mode: st.st_mode & 0o7777, size, stat })))
}

/// fsutil's `ComparePath`: byte order where `/` sorts before every other byte, which is the
/// order of a depth-first walk with each directory read in name order.
pub fn path_order(a: &Path, b: &Path) -> Ordering {
    path_order_bytes(a.as_os_str().as_bytes(), b.as_os_str().as_bytes())
}

/// [`path_order`] of two paths given as bytes.
pub(crate) fn path_order_bytes(a: &[u8], b: &[u8]) -> Ordering {
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
fn assemble(founds: Vec<Found>) -> WalkResult {
    let mut excluded = Stats::default();
    let mut unsupported = Vec::new();
    let mut stores = Vec::with_capacity(founds.len());
    let mut by_id: Vec<Option<(usize, Listing)>> = Vec::new();
    let mut total = 0;
    for (thread, found) in founds.into_iter().enumerate() {
        excluded.entries += found.excluded.entries;
        excluded.bytes += found.excluded.bytes;
        unsupported.extend(found.unsupported);
        total += found.entries.len();
        for (id, listing) in found.listings {
            if by_id.len() <= id {
                by_id.resize_with(id + 1, || None);
            }
            by_id[id] = Some((thread, listing));
        }
        stores.push(found.entries);
    }
    let mut take = |id: usize| {
        let (thread, listing) = by_id.get_mut(id).and_then(Option::take).unwrap_or_default();
        (thread, listing.into_iter())
    };
    let mut entries = super::hugepages::vec_with_capacity(total);
    // Each open directory: the thread that read it, its remaining entries, and for an excluded
    // one, where its own entry sits in `entries`.
    let (thread, rest) = take(0);
    let mut open = vec![(thread, rest, None::<usize>)];
    while let Some((thread, rest, _)) = open.last_mut() {
        let thread = *thread;
        match rest.next() {
            Some((index, listed)) => {
                if let Some(entry) = stores[thread].get_mut(index).and_then(Option::take) {
                    entries.push(entry);
                }
                match listed {
                    Listed::Leaf => {}
                    Listed::Dir(id) => {
                        let (thread, rest) = take(id);
                        open.push((thread, rest, None));
                    }
                    Listed::ExcludedDir(id) => {
                        let (thread, rest) = take(id);
                        open.push((thread, rest, Some(entries.len() - 1)));
                    }
                }
            }
            None => {
                if let Some((_, _, Some(at))) = open.pop()
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
