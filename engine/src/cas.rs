//! A content-addressed blob store on the local filesystem.
//!
//! Blobs live at `ROOT/blobs/sha256/ab/abcd…` (the first two hex digits fan the store out over at
//! most 256 directories). Every write goes to a temp file under `ROOT/tmp/`, is fsynced, and is
//! renamed onto its real name, after which the fan-out directory is fsynced: a crash leaves at
//! worst a temp file, never a partial blob under a real name. Concurrent writers of the same blob
//! each write their own temp file; the renames replace identical content, so either one wins.
//!
//! A writer holds an exclusive `flock` on its temp file for as long as it lives. [`BlobStore::gc`]
//! removes a temp file only when it can take that lock, which it can once the writer has finished,
//! given up or died (the kernel drops the lock with the process), so `gc` may run while other
//! processes write.
//!
//! Written here rather than taken from a crate: the OCI-layout crates do not give these crash and
//! concurrency guarantees.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{FlockOperation, flock};
use sha2::{Digest as _, Sha256};

/// A SHA-256 digest, written `sha256:<64 lowercase hex digits>` (the OCI and BuildKit form).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The digest whose raw bytes are `bytes`.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The SHA-256 digest of `data`.
    ///
    /// ```
    /// use nullspace_engine::cas::Digest;
    /// assert_eq!(
    ///     Digest::of(b"").to_string(),
    ///     "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    /// );
    /// ```
    pub fn of(data: &[u8]) -> Self {
        Self(Sha256::digest(data).into())
    }

    /// Finishes `hasher` into a digest.
    pub fn from_hasher(hasher: Sha256) -> Self {
        Self(hasher.finalize().into())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 lowercase hex digits, without the `sha256:` prefix.
    pub fn hex(&self) -> String {
        let mut out = [0u8; 64];
        self.write_hex(&mut out);
        out.iter().map(|&b| char::from(b)).collect()
    }

    /// Writes the 64 hex digits into `out`; no allocation, as directory hashing does this for
    /// every entry of a context.
    fn write_hex(&self, out: &mut [u8; 64]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (pair, b) in out.chunks_exact_mut(2).zip(self.0) {
            pair[0] = HEX[usize::from(b >> 4)];
            pair[1] = HEX[usize::from(b & 0xf)];
        }
    }

    /// The full `sha256:<hex>` form as bytes, which is what BuildKit feeds into its hashes.
    pub(crate) fn to_prefixed_bytes(self) -> [u8; 71] {
        let mut out = [0u8; 71];
        out[..7].copy_from_slice(b"sha256:");
        let mut hex = [0u8; 64];
        self.write_hex(&mut hex);
        out[7..].copy_from_slice(&hex);
        out
    }

    /// Parses the 64 hex digits of a digest without its prefix.
    pub fn from_hex(hex: &str) -> Result<Self, DigestParseError> {
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return Err(DigestParseError::new(hex, "expected 64 hex digits"));
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = hex_value(pair[0]);
            let lo = hex_value(pair[1]);
            match (hi, lo) {
                (Some(hi), Some(lo)) => out[i] = hi << 4 | lo,
                _ => return Err(DigestParseError::new(hex, "expected lowercase hex digits")),
            }
        }
        Ok(Self(out))
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A string that is not a `sha256:<hex>` digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest {input:?}: {reason}")]
pub struct DigestParseError {
    /// The text that failed to parse.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl DigestParseError {
    fn new(input: &str, reason: &'static str) -> Self {
        Self { input: input.to_owned(), reason }
    }
}

impl FromStr for Digest {
    type Err = DigestParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("sha256:") {
            Some(hex) => Self::from_hex(hex).map_err(|e| DigestParseError::new(s, e.reason)),
            None => Err(DigestParseError::new(s, "expected the prefix sha256:")),
        }
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What went wrong in the blob store.
#[derive(Debug, thiserror::Error)]
pub enum CasError {
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation, e.g. `rename`.
        op: &'static str,
        /// The file or directory it was applied to.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The store holds no blob with this digest.
    #[error("blob {digest} not found")]
    NotFound {
        /// The digest asked for.
        digest: Digest,
    },
    /// A writer was told which digest to expect and the content hashed to another.
    #[error("blob content hashes to {actual}, expected {expected}")]
    DigestMismatch {
        /// The digest the caller expected.
        expected: Digest,
        /// The digest of what was written.
        actual: Digest,
    },
    /// A stored blob no longer hashes to its name.
    #[error("blob {digest} is corrupt: its content hashes to {actual} ({path})")]
    Corrupt {
        /// The blob's name.
        digest: Digest,
        /// What its content hashes to.
        actual: Digest,
        /// Where it is stored.
        path: PathBuf,
    },
}

fn io_err(op: &'static str, path: &Path, source: io::Error) -> CasError {
    CasError::Io { op, path: path.to_owned(), source }
}

/// What [`BlobStore::gc`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcStats {
    /// Blobs (and stray files among them) removed.
    pub blobs_removed: u64,
    /// Their total size in bytes.
    pub bytes_removed: u64,
    /// Abandoned temp files removed.
    pub temps_removed: u64,
}

/// A content-addressed blob store rooted at a directory.
///
/// ```
/// use nullspace_engine::cas::BlobStore;
/// let dir = tempfile::tempdir()?;
/// let store = BlobStore::new(dir.path())?;
/// let digest = store.put(b"hello")?;
/// assert!(store.contains(&digest)?);
/// assert_eq!(store.read_verified(&digest)?, b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
    blobs: PathBuf,
    tmp: PathBuf,
}

/// Distinguishes temp files written by one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl BlobStore {
    /// Opens (creating if needed) the store at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, CasError> {
        let root = root.into();
        let blobs = root.join("blobs").join("sha256");
        let tmp = root.join("tmp");
        for dir in [&blobs, &tmp] {
            fs::create_dir_all(dir).map_err(|e| io_err("create directory", dir, e))?;
        }
        Ok(Self { root, blobs, tmp })
    }

    /// The directory the store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob named `digest` is (or would be) stored.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.blobs.join(&hex[..2]).join(hex)
    }

    /// A writer for a new blob whose digest is computed as it is written.
    pub fn writer(&self) -> Result<BlobWriter<'_>, CasError> {
        BlobWriter::new(self, None)
    }

    /// A writer for a blob that must hash to `expected`; [`BlobWriter::commit`] refuses anything else.
    pub fn writer_expecting(&self, expected: Digest) -> Result<BlobWriter<'_>, CasError> {
        BlobWriter::new(self, Some(expected))
    }

    /// Stores `data` and returns its digest.
    pub fn put(&self, data: &[u8]) -> Result<Digest, CasError> {
        let mut writer = self.writer()?;
        writer.write_all(data).map_err(|e| io_err("write", &writer.tmp_path, e))?;
        writer.commit()
    }

    /// Streams `reader` into the store and returns the digest of what it yielded.
    pub fn put_reader(&self, reader: &mut impl Read) -> Result<Digest, CasError> {
        let mut writer = self.writer()?;
        io::copy(reader, &mut writer).map_err(|e| io_err("write", &writer.tmp_path, e))?;
        writer.commit()
    }

    /// Whether a blob named `digest` is stored.
    pub fn contains(&self, digest: &Digest) -> Result<bool, CasError> {
        let path = self.blob_path(digest);
        match fs::symlink_metadata(&path) {
            Ok(meta) => Ok(meta.is_file()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("stat", &path, e)),
        }
    }

    /// The size in bytes of the blob named `digest`.
    pub fn size(&self, digest: &Digest) -> Result<u64, CasError> {
        let path = self.blob_path(digest);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => Ok(meta.len()),
            Ok(_) => Err(CasError::NotFound { digest: *digest }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(CasError::NotFound { digest: *digest }),
            Err(e) => Err(io_err("stat", &path, e)),
        }
    }

    /// Opens the blob named `digest` for reading, without checking its content.
    pub fn open(&self, digest: &Digest) -> Result<File, CasError> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                CasError::NotFound { digest: *digest }
            } else {
                io_err("open", &path, e)
            }
        })
    }

    /// Opens the blob named `digest` for reading through a reader that hashes what it yields and
    /// fails at end of file (with an `InvalidData` error wrapping [`CasError::Corrupt`]) when the
    /// content does not match the name.
    pub fn open_verified(&self, digest: &Digest) -> Result<VerifyingReader, CasError> {
        let file = self.open(digest)?;
        Ok(VerifyingReader {
            file,
            hasher: Sha256::new(),
            expected: *digest,
            path: self.blob_path(digest),
            actual: None,
        })
    }

    /// Reads the whole blob named `digest`, checking that it hashes to its name.
    pub fn read_verified(&self, digest: &Digest) -> Result<Vec<u8>, CasError> {
        let mut reader = self.open_verified(digest)?;
        let mut out = Vec::new();
        reader.read_to_end(&mut out).map_err(|e| reader.unwrap_error(e))?;
        Ok(out)
    }

    /// Checks that the blob named `digest` hashes to its name, streaming it.
    pub fn verify(&self, digest: &Digest) -> Result<(), CasError> {
        let mut reader = self.open_verified(digest)?;
        io::copy(&mut reader, &mut io::sink()).map_err(|e| reader.unwrap_error(e))?;
        Ok(())
    }

    /// Every blob name in the store (files whose names are not digests are skipped).
    pub fn list(&self) -> Result<Vec<Digest>, CasError> {
        let mut out = Vec::new();
        self.for_each_blob_file(|path, digest| {
            if let Some(d) = digest
                && path.parent() == self.blob_path(&d).parent()
            {
                out.push(d);
            }
            Ok(())
        })?;
        out.sort();
        Ok(out)
    }

    /// Removes every blob whose digest is not in `keep`, every other file among the blobs, and every
    /// temp file no live writer holds.
    pub fn gc(&self, keep: &HashSet<Digest>) -> Result<GcStats, CasError> {
        let mut stats = GcStats::default();
        self.for_each_blob_file(|path, digest| {
            let wanted = digest.is_some_and(|d| keep.contains(&d) && path == self.blob_path(&d));
            if !wanted {
                let size = fs::symlink_metadata(path).map(|m| m.len()).unwrap_or(0);
                match fs::remove_file(path) {
                    Ok(()) => {
                        stats.blobs_removed += 1;
                        stats.bytes_removed += size;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err("remove", path, e)),
                }
            }
            Ok(())
        })?;
        for entry in fs::read_dir(&self.tmp).map_err(|e| io_err("read directory", &self.tmp, e))? {
            let entry = entry.map_err(|e| io_err("read directory", &self.tmp, e))?;
            let path = entry.path();
            if remove_abandoned_temp(&path)? {
                stats.temps_removed += 1;
            }
        }
        tracing::debug!(?stats, store = %self.root.display(), "blob store gc");
        Ok(stats)
    }

    fn for_each_blob_file(
        &self,
        mut f: impl FnMut(&Path, Option<Digest>) -> Result<(), CasError>,
    ) -> Result<(), CasError> {
        for fan in fs::read_dir(&self.blobs).map_err(|e| io_err("read directory", &self.blobs, e))? {
            let fan = fan.map_err(|e| io_err("read directory", &self.blobs, e))?;
            let fan_path = fan.path();
            let is_dir = fan.file_type().map_err(|e| io_err("stat", &fan_path, e))?.is_dir();
            if !is_dir {
                f(&fan_path, None)?;
                continue;
            }
            for blob in fs::read_dir(&fan_path).map_err(|e| io_err("read directory", &fan_path, e))? {
                let blob = blob.map_err(|e| io_err("read directory", &fan_path, e))?;
                let path = blob.path();
                let digest = blob.file_name().to_str().and_then(|n| Digest::from_hex(n).ok());
                f(&path, digest)?;
            }
        }
        Ok(())
    }
}

/// Removes the temp file at `path` when no writer holds its lock; says whether it did.
fn remove_abandoned_temp(path: &Path) -> Result<bool, CasError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err("open", path, e)),
    };
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => return Ok(false),
        Err(e) => return Err(io_err("lock", path, e.into())),
    }
    // Holding the lock while unlinking: a writer that created this name but had not locked it yet
    // finds the name gone once it gets the lock, and starts over with a new one.
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("remove", path, e)),
    }
}

/// Fsyncs a directory so that a rename or creation inside it is durable.
pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A reader over a stored blob that checks its digest at end of file.
#[derive(Debug)]
pub struct VerifyingReader {
    file: File,
    hasher: Sha256,
    expected: Digest,
    path: PathBuf,
    actual: Option<Digest>,
}

impl VerifyingReader {
    /// Turns an error from this reader back into the [`CasError`] it carries, if it carries one.
    pub fn unwrap_error(&self, error: io::Error) -> CasError {
        if !error.get_ref().is_some_and(|inner| inner.is::<CasError>()) {
            return io_err("read", &self.path, error);
        }
        match error.into_inner().map(|inner| inner.downcast::<CasError>()) {
            Some(Ok(cas)) => *cas,
            _ => io_err("read", &self.path, io::Error::other("blob verification failed")),
        }
    }
}

impl Read for VerifyingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        if n == 0 && !buf.is_empty() {
            // End of file: every later read reports the same outcome as this one.
            let actual = *self.actual.get_or_insert_with(|| Digest::from_hasher(self.hasher.clone()));
            if actual != self.expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    CasError::Corrupt { digest: self.expected, actual, path: self.path.clone() },
                ));
            }
            return Ok(0);
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Streams one blob into the store; see [`BlobStore::writer`].
///
/// Dropping a writer without [`commit`](Self::commit) removes its temp file.
#[derive(Debug)]
pub struct BlobWriter<'s> {
    store: &'s BlobStore,
    file: Option<File>,
    tmp_path: PathBuf,
    hasher: Sha256,
    written: u64,
    expected: Option<Digest>,
}

impl<'s> BlobWriter<'s> {
    fn new(store: &'s BlobStore, expected: Option<Digest>) -> Result<Self, CasError> {
        loop {
            let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
            let name = format!("{}-{}-{}.tmp", std::process::id(), TEMP_COUNTER.fetch_add(1, Ordering::Relaxed), nanos);
            let tmp_path = store.tmp.join(name);
            let file = match OpenOptions::new().write(true).create_new(true).open(&tmp_path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("create", &tmp_path, e)),
            };
            flock(&file, FlockOperation::LockExclusive).map_err(|e| io_err("lock", &tmp_path, e.into()))?;
            // gc may have unlinked the name between our create and our lock; if so, start over.
            let ours = file.metadata().map_err(|e| io_err("stat", &tmp_path, e))?;
            match fs::symlink_metadata(&tmp_path) {
                Ok(on_disk) if on_disk.ino() == ours.ino() && on_disk.dev() == ours.dev() => {
                    return Ok(Self { store, file: Some(file), tmp_path, hasher: Sha256::new(), written: 0, expected });
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("stat", &tmp_path, e)),
            }
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Makes the blob durable under its digest and returns the digest.
    ///
    /// Fails with [`CasError::DigestMismatch`] (storing nothing) when the writer was made with
    /// [`BlobStore::writer_expecting`] and the content hashes to something else.
    pub fn commit(mut self) -> Result<Digest, CasError> {
        let Some(file) = self.file.take() else {
            return Err(io_err("commit", &self.tmp_path, io::Error::other("writer already closed")));
        };
        let digest = Digest::from_hasher(std::mem::take(&mut self.hasher));
        if let Some(expected) = self.expected
            && expected != digest
        {
            drop(file);
            remove_quietly(&self.tmp_path);
            return Err(CasError::DigestMismatch { expected, actual: digest });
        }
        if let Err(e) = file.sync_all() {
            drop(file);
            remove_quietly(&self.tmp_path);
            return Err(io_err("fsync", &self.tmp_path, e));
        }
        let dest = self.store.blob_path(&digest);
        let result = self.install(&dest);
        // The lock goes with the descriptor, after the rename so gc never sees an unlocked temp
        // file that is about to be renamed.
        drop(file);
        if result.is_err() {
            remove_quietly(&self.tmp_path);
        }
        result.map(|()| digest)
    }

    fn install(&self, dest: &Path) -> Result<(), CasError> {
        let fan = dest.parent().unwrap_or(&self.store.blobs);
        match fs::create_dir(fan) {
            Ok(()) => fsync_dir(&self.store.blobs).map_err(|e| io_err("fsync", &self.store.blobs, e))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("create directory", fan, e)),
        }
        fs::rename(&self.tmp_path, dest).map_err(|e| io_err("rename", &self.tmp_path, e))?;
        fsync_dir(fan).map_err(|e| io_err("fsync", fan, e))
    }
}

fn remove_quietly(path: &Path) {
    if let Err(e) = fs::remove_file(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "could not remove temp file");
    }
}

impl Write for BlobWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self.file.as_mut().ok_or_else(|| io::Error::other("writer already closed"))?;
        let n = file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for BlobWriter<'_> {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            remove_quietly(&self.tmp_path);
        }
    }
}
