//! Writing OCI layer tarballs, reproducibly.
//!
//! A [`Layer`] is a set of entries keyed by their path inside the layer. It is filled from a
//! walked build context ([`Layer::add_copy`], one call per `COPY` source), from the changes a
//! `RUN` step made to a root filesystem ([`Layer::add_changes`]), or entry by entry
//! ([`Layer::insert`]). [`Layer::write`] then streams the tar through gzip into any [`Write`],
//! hashing the uncompressed bytes (the `diff_id`) and the compressed bytes (the blob digest) in
//! the same pass, so a layer is never held in memory. The gzip is compressed on all cores, in
//! fixed blocks, with bytes that do not depend on the number of cores (module `gzip`).
//!
//! The bytes depend only on the entries: paths sorted component by component (whiteouts first
//! among their siblings), every mtime set to `SOURCE_DATE_EPOCH` (0 by default), no user or
//! group names, no access or change times, ustar headers with PAX records where ustar falls
//! short. Missing parent directories are added (mode 0755, owner 0:0, or the copy's `--chown`).
//! Regular files sharing an inode (and metadata) become hardlinks to the first of them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nullspace_engine::context::{Entry, EntryKind};
use oci_spec::image::{Descriptor, Digest, MediaType};
use sha2::{Digest as _, Sha256};

use crate::tarfmt;

mod gzip;

/// Prefix of a whiteout entry: `.wh.NAME` deletes `NAME` from lower layers.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the entry that makes its directory opaque (hides all lower-layer children).
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

/// Errors while collecting or writing a layer.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// A file could not be read or the output could not be written.
    #[error("layer I/O on {path}: {source}")]
    Io {
        /// The file concerned (empty for the output stream).
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A path cannot be placed in a layer.
    #[error("invalid layer path {path:?}: {reason}")]
    InvalidPath {
        /// The offending path.
        path: PathBuf,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A file's size changed between the walk and the write.
    #[error("{path} changed while being written to the layer: expected {expected} bytes, read {actual}")]
    SizeChanged {
        /// The file.
        path: PathBuf,
        /// The size recorded when the entry was added.
        expected: u64,
        /// The bytes actually read.
        actual: u64,
    },
    /// `SOURCE_DATE_EPOCH` is set but not a non-negative integer.
    #[error("SOURCE_DATE_EPOCH={value:?} is not a non-negative integer of seconds")]
    SourceDateEpoch {
        /// The variable's value.
        value: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LayerError + '_ {
    move |source| LayerError::Io { path: path.to_path_buf(), source }
}

/// What one layer entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerEntryKind {
    /// A directory.
    Dir,
    /// A regular file whose content is read from `source` when the layer is written.
    File {
        /// Where the content is read from (opened without following a final symlink).
        source: PathBuf,
        /// Expected size; writing fails if the file no longer has it.
        size: u64,
        /// `(dev, ino)` of a file with several links: files of one layer sharing it (and their
        /// mode and owner) are written once, the others as hardlinks.
        inode: Option<(u64, u64)>,
    },
    /// A symbolic link.
    Symlink {
        /// The link target, stored as is.
        target: PathBuf,
    },
    /// A hardlink to another path of the same layer.
    Hardlink {
        /// The linked path, relative to the layer root.
        target: PathBuf,
    },
    /// A named pipe.
    Fifo,
    /// A character or block device.
    Device {
        /// Block device if true, character device otherwise.
        block: bool,
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// Deletes the path from lower layers (written as `.wh.NAME` in its parent).
    Whiteout,
    /// Hides everything lower layers have in this directory (written as `DIR/.wh..wh..opq`).
    Opaque,
}

/// One entry to put in a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerEntry {
    /// Path inside the layer (a leading `/` is ignored; `..` is refused).
    pub path: PathBuf,
    /// What it is.
    pub kind: LayerEntryKind,
    /// Permission and special bits (`& 0o7777` is kept).
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
}

/// Owner given by `COPY --chown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chown {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// How one `COPY`-like source lands in the layer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyOptions {
    /// Destination directory inside the image (`/` when empty).
    pub dest: PathBuf,
    /// Owner of every copied entry and of created parents; `0:0` when `None`.
    pub chown: Option<Chown>,
    /// Mode of every copied file and directory (symlinks keep 0777); kept when `None`.
    pub chmod: Option<u32>,
}

/// One change of a root filesystem, relative to its root, for [`Layer::add_changes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The path was added or modified: it is written with its current content and metadata
    /// (directories are not recursed into: list each changed path).
    Write(PathBuf),
    /// The path was deleted: a whiteout is written.
    Delete(PathBuf),
    /// The directory was replaced: lower layers' content of it is hidden.
    Opaque(PathBuf),
}

/// Compression of the written layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar (`application/vnd.oci.image.layer.v1.tar`).
    None,
    /// gzip at this level, 0..=9 (`application/vnd.oci.image.layer.v1.tar+gzip`).
    Gzip(u32),
}

/// Options of [`Layer::write`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerOptions {
    /// The mtime of every entry, in seconds since the epoch.
    pub source_date_epoch: u64,
    /// How the tar is compressed.
    pub compression: Compression,
}

impl Default for LayerOptions {
    fn default() -> Self {
        Self { source_date_epoch: 0, compression: Compression::Gzip(6) }
    }
}

impl LayerOptions {
    /// Default options, with the mtime taken from `SOURCE_DATE_EPOCH` if it is set.
    ///
    /// # Errors
    /// [`LayerError::SourceDateEpoch`] if the variable is set but not an integer.
    pub fn from_env() -> Result<Self, LayerError> {
        let mut opts = Self::default();
        if let Some(value) = std::env::var_os("SOURCE_DATE_EPOCH") {
            let value = value.to_string_lossy().into_owned();
            opts.source_date_epoch = value.trim().parse().map_err(|_| LayerError::SourceDateEpoch { value })?;
        }
        Ok(opts)
    }
}

/// The identity of a written layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// sha256 of the uncompressed tar (goes into the config's `rootfs.diff_ids`).
    pub diff_id: Digest,
    /// sha256 of the bytes written (the blob digest).
    pub digest: Digest,
    /// Number of bytes written.
    pub size: u64,
    /// Size of the uncompressed tar.
    pub uncompressed_size: u64,
    /// Media type matching the compression.
    pub media_type: MediaType,
}

impl LayerInfo {
    /// The descriptor that references this layer from a manifest.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(self.media_type.clone(), self.size, self.digest.clone())
    }
}

/// Sort key of one path: per component, whiteouts (opaque first) sort before other siblings.
type SortKey = Vec<(u8, Vec<u8>)>;

fn sort_key(components: &[Vec<u8>]) -> SortKey {
    components
        .iter()
        .map(|c| {
            let rank = if c.as_slice() == OPAQUE_WHITEOUT.as_bytes() {
                0
            } else if c.starts_with(WHITEOUT_PREFIX.as_bytes()) {
                1
            } else {
                2
            };
            (rank, c.clone())
        })
        .collect()
}

/// An entry as it will be written, keyed by its tar path.
#[derive(Debug, Clone)]
struct Item {
    components: Vec<Vec<u8>>,
    entry: LayerEntry,
}

/// A set of layer entries, written as a reproducible tar by [`Layer::write`].
///
/// ```
/// use nullspace_native::layer::{Layer, LayerEntry, LayerEntryKind, LayerOptions};
///
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("hello"), "hi\n")?;
/// let mut layer = Layer::new();
/// layer.insert(LayerEntry {
///     path: "app/hello".into(),
///     kind: LayerEntryKind::File { source: dir.path().join("hello"), size: 3, inode: None },
///     mode: 0o644,
///     uid: 0,
///     gid: 0,
/// })?;
/// let mut blob = Vec::new();
/// let info = layer.write(&mut blob, &LayerOptions::default())?;
/// assert_eq!(info.size, blob.len() as u64);
/// assert!(info.diff_id.to_string().starts_with("sha256:"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Layer {
    items: BTreeMap<SortKey, Item>,
}

/// Splits a layer path into normal components, refusing `..` and empty paths.
fn layer_components(path: &Path) -> Result<Vec<Vec<u8>>, LayerError> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(name) => out.push(name.as_bytes().to_vec()),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(LayerError::InvalidPath {
                    path: path.to_path_buf(),
                    reason: "`..` is not allowed in a layer path",
                });
            }
        }
    }
    Ok(out)
}

fn join_components(components: &[Vec<u8>]) -> PathBuf {
    let joined = components.join(&b'/');
    PathBuf::from(std::ffi::OsStr::from_bytes(&joined))
}

impl Layer {
    /// An empty layer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries added so far (implicit parents not counted).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Adds an entry, replacing any entry previously added at the same path.
    ///
    /// # Errors
    /// [`LayerError::InvalidPath`] if the path holds `..`, is the root itself (except for
    /// [`LayerEntryKind::Opaque`]), or is a hardlink whose target holds `..`.
    pub fn insert(&mut self, entry: LayerEntry) -> Result<(), LayerError> {
        let mut components = layer_components(&entry.path)?;
        match &entry.kind {
            LayerEntryKind::Opaque => components.push(OPAQUE_WHITEOUT.as_bytes().to_vec()),
            LayerEntryKind::Whiteout => {
                let Some(last) = components.last_mut() else {
                    return Err(LayerError::InvalidPath { path: entry.path, reason: "the root cannot be deleted" });
                };
                let mut name = WHITEOUT_PREFIX.as_bytes().to_vec();
                name.extend_from_slice(last);
                *last = name;
            }
            LayerEntryKind::Hardlink { target } if layer_components(target)?.is_empty() => {
                return Err(LayerError::InvalidPath {
                    path: target.clone(),
                    reason: "a hardlink cannot point to the root",
                });
            }
            _ => {}
        }
        if components.is_empty() {
            return Err(LayerError::InvalidPath {
                path: entry.path,
                reason: "the root directory itself is not a layer entry",
            });
        }
        self.items.insert(sort_key(&components), Item { components, entry });
        Ok(())
    }

    /// Adds a parent directory unless an entry already exists there.
    fn insert_parent(&mut self, components: &[Vec<u8>], mode: u32, uid: u32, gid: u32) {
        self.items.entry(sort_key(components)).or_insert_with(|| Item {
            components: components.to_vec(),
            entry: LayerEntry { path: join_components(components), kind: LayerEntryKind::Dir, mode, uid, gid },
        });
    }

    /// Adds a walked build context (`entries`, relative to `root`) under `copy.dest`, as
    /// `COPY --chown --chmod` does. The destination and its parents are added as directories
    /// (0755, owned by the chown) unless already present.
    ///
    /// # Errors
    /// [`LayerError::InvalidPath`] if an entry path or the destination holds `..`.
    pub fn add_copy(&mut self, root: &Path, entries: &[Entry], copy: &CopyOptions) -> Result<(), LayerError> {
        let dest = layer_components(&copy.dest)?;
        let (uid, gid) = copy.chown.map_or((0, 0), |c| (c.uid, c.gid));
        for depth in 1..=dest.len() {
            self.insert_parent(&dest[..depth], 0o755, uid, gid);
        }
        for e in entries {
            let rel = layer_components(&e.path)?;
            if rel.is_empty() {
                continue;
            }
            let mut components = dest.clone();
            components.extend(rel);
            let (kind, mode) = match &e.kind {
                EntryKind::Dir => (LayerEntryKind::Dir, copy.chmod.unwrap_or(e.mode)),
                EntryKind::File => (
                    LayerEntryKind::File {
                        source: root.join(&e.path),
                        size: e.size,
                        inode: (e.stat.nlink > 1).then_some((e.stat.dev, e.stat.ino)),
                    },
                    copy.chmod.unwrap_or(e.mode),
                ),
                EntryKind::Symlink { target } => (LayerEntryKind::Symlink { target: target.clone() }, 0o777),
            };
            self.insert(LayerEntry { path: join_components(&components), kind, mode, uid, gid })?;
        }
        Ok(())
    }

    /// Adds the changes a step made to the root filesystem at `root`: written paths with their
    /// current metadata (owner included), deletions as whiteouts, replaced directories as
    /// opaque. Parents of changed paths are added with their metadata in `root`.
    ///
    /// No symlink is followed inside `root`: a parent that is not a real directory is an error.
    ///
    /// # Errors
    /// [`LayerError::Io`] if a path cannot be read, [`LayerError::InvalidPath`] for `..` or a
    /// parent that is a symlink or not a directory.
    pub fn add_changes(&mut self, root: &Path, changes: &[Change]) -> Result<(), LayerError> {
        let mut checked: HashSet<Vec<Vec<u8>>> = HashSet::new();
        for change in changes {
            let path = match change {
                Change::Write(p) | Change::Delete(p) | Change::Opaque(p) => p,
            };
            let components = layer_components(path)?;
            // Parents: real directories of the root, recorded with their own metadata.
            for depth in 1..components.len() {
                let parent = &components[..depth];
                if checked.contains(parent) {
                    continue;
                }
                let host = root.join(join_components(parent));
                let meta = std::fs::symlink_metadata(&host).map_err(io_err(&host))?;
                if !meta.is_dir() {
                    return Err(LayerError::InvalidPath {
                        path: host,
                        reason: "a parent of a changed path is not a directory",
                    });
                }
                self.insert_parent(parent, meta.mode() & 0o7777, meta.uid(), meta.gid());
                checked.insert(parent.to_vec());
            }
            match change {
                Change::Delete(_) => self.insert(LayerEntry {
                    path: path.clone(),
                    kind: LayerEntryKind::Whiteout,
                    mode: 0,
                    uid: 0,
                    gid: 0,
                })?,
                Change::Opaque(_) => {
                    self.add_written(root, &components)?;
                    self.insert(LayerEntry {
                        path: path.clone(),
                        kind: LayerEntryKind::Opaque,
                        mode: 0,
                        uid: 0,
                        gid: 0,
                    })?;
                }
                Change::Write(_) => self.add_written(root, &components)?,
            }
        }
        Ok(())
    }

    /// Adds the path at `components` under `root` as it is now.
    fn add_written(&mut self, root: &Path, components: &[Vec<u8>]) -> Result<(), LayerError> {
        let rel = join_components(components);
        let host = root.join(&rel);
        let meta = std::fs::symlink_metadata(&host).map_err(io_err(&host))?;
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            LayerEntryKind::Dir
        } else if ft.is_file() {
            LayerEntryKind::File {
                source: host.clone(),
                size: meta.len(),
                inode: (meta.nlink() > 1).then_some((meta.dev(), meta.ino())),
            }
        } else if ft.is_symlink() {
            LayerEntryKind::Symlink { target: std::fs::read_link(&host).map_err(io_err(&host))? }
        } else if ft.is_fifo() {
            LayerEntryKind::Fifo
        } else if ft.is_char_device() || ft.is_block_device() {
            let rdev = meta.rdev();
            LayerEntryKind::Device {
                block: ft.is_block_device(),
                major: rustix::fs::major(rdev),
                minor: rustix::fs::minor(rdev),
            }
        } else {
            tracing::warn!(path = %host.display(), "socket left out of the layer");
            return Ok(());
        };
        self.insert(LayerEntry { path: rel, kind, mode: meta.mode() & 0o7777, uid: meta.uid(), gid: meta.gid() })
    }

    /// Writes the layer to `out` and returns its digests and sizes.
    ///
    /// With [`Compression::Gzip`] the tar is compressed in 1 MiB blocks on up to one thread per
    /// core (at most 8), with identical bytes whatever the thread count or timing; memory stays
    /// bounded (at most `2 × threads + 1` blocks in flight, about 2.2 MiB each).
    ///
    /// # Errors
    /// [`LayerError::Io`] if a source file or `out` fails, [`LayerError::SizeChanged`] if a
    /// file changed size since it was added.
    pub fn write<W: Write>(&self, out: W, opts: &LayerOptions) -> Result<LayerInfo, LayerError> {
        let compressed = HashWriter::new(out);
        match opts.compression {
            Compression::None => {
                let mut tar = HashWriter::new(compressed);
                self.write_tar(&mut tar, opts.source_date_epoch)?;
                let (diff_id, usize, inner) = tar.finish();
                let (digest, size, _) = inner.finish();
                Ok(LayerInfo { diff_id, digest, size, uncompressed_size: usize, media_type: MediaType::ImageLayer })
            }
            Compression::Gzip(level) => {
                let mut compressed = compressed;
                // The tar is made (files read, diff_id hashed) on its own thread while a pool
                // of workers compresses it block by block; see the `gzip` module.
                let (diff_id, usize) = gzip::compress(&mut compressed, level, gzip::default_workers(), |blocks| {
                    let mut tar = HashWriter::new(blocks);
                    self.write_tar(&mut tar, opts.source_date_epoch)?;
                    let (diff_id, usize, _) = tar.finish();
                    Ok((diff_id, usize))
                })?;
                let (digest, size, _) = compressed.finish();
                Ok(LayerInfo { diff_id, digest, size, uncompressed_size: usize, media_type: MediaType::ImageLayerGzip })
            }
        }
    }

    /// Writes the uncompressed tar stream.
    fn write_tar<W: Write>(&self, w: &mut W, mtime: u64) -> Result<(), LayerError> {
        let out_err = || io_err(Path::new(""));
        // Parents missing from the set are written just before their first child.
        let mut written_dirs: HashSet<Vec<Vec<u8>>> = HashSet::new();
        let mut first_links: HashMap<(u64, u64, u32, u32, u32), Vec<u8>> = HashMap::new();
        // Non-directory paths written so far: the only valid hardlink targets.
        let mut linkable: HashSet<Vec<u8>> = HashSet::new();
        let mut buf = vec![0u8; 64 * 1024];
        for item in self.items.values() {
            let comps = &item.components;
            for depth in 1..comps.len() {
                let parent = &comps[..depth];
                if written_dirs.contains(parent) {
                    continue;
                }
                written_dirs.insert(parent.to_vec());
                if self.items.contains_key(&sort_key(parent)) {
                    // Explicit parents sort before their children and were written already.
                    continue;
                }
                let mut path = parent.join(&b'/');
                path.push(b'/');
                let h = tarfmt::Header { path, typeflag: b'5', mode: 0o755, mtime, ..Default::default() };
                tarfmt::write_header(w, &h).map_err(out_err())?;
            }
            let e = &item.entry;
            let mut h = tarfmt::Header {
                path: comps.join(&b'/'),
                mode: e.mode & 0o7777,
                uid: u64::from(e.uid),
                gid: u64::from(e.gid),
                mtime,
                ..Default::default()
            };
            let mut content: Option<(&Path, u64)> = None;
            match &e.kind {
                LayerEntryKind::Dir => {
                    h.typeflag = b'5';
                    h.path.push(b'/');
                    written_dirs.insert(comps.clone());
                }
                LayerEntryKind::File { source, size, inode } => {
                    let key = inode.map(|(dev, ino)| (dev, ino, h.mode, e.uid, e.gid));
                    match key.and_then(|k| first_links.get(&k)) {
                        Some(first) => {
                            h.typeflag = b'1';
                            h.linkname = first.clone();
                        }
                        None => {
                            if let Some(k) = key {
                                first_links.insert(k, h.path.clone());
                            }
                            h.typeflag = b'0';
                            h.size = *size;
                            content = Some((source, *size));
                        }
                    }
                }
                LayerEntryKind::Symlink { target } => {
                    h.typeflag = b'2';
                    h.linkname = target.as_os_str().as_bytes().to_vec();
                }
                LayerEntryKind::Hardlink { target } => {
                    h.typeflag = b'1';
                    h.linkname = layer_components(target)?.join(&b'/');
                    if !linkable.contains(&h.linkname) {
                        return Err(LayerError::InvalidPath {
                            path: target.clone(),
                            reason: "a hardlink target must be a non-directory entry sorted before the link",
                        });
                    }
                }
                LayerEntryKind::Fifo => h.typeflag = b'6',
                LayerEntryKind::Device { block, major, minor } => {
                    h.typeflag = if *block { b'4' } else { b'3' };
                    h.devmajor = *major;
                    h.devminor = *minor;
                }
                LayerEntryKind::Whiteout | LayerEntryKind::Opaque => {
                    h.typeflag = b'0';
                    h.mode = 0;
                    h.uid = 0;
                    h.gid = 0;
                }
            }
            tarfmt::write_header(w, &h).map_err(out_err())?;
            if h.typeflag != b'5' {
                linkable.insert(h.path.clone());
            }
            if let Some((source, size)) = content {
                copy_file(source, size, w, &mut buf)?;
                tarfmt::write_padding(w, size).map_err(out_err())?;
            }
        }
        tarfmt::write_end(w).map_err(out_err())
    }
}

/// Copies exactly `size` bytes of `source` into `w`, failing if the file has another size.
fn copy_file<W: Write>(source: &Path, size: u64, w: &mut W, buf: &mut [u8]) -> Result<(), LayerError> {
    let mut file = File::options()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(source)
        .map_err(io_err(source))?;
    let mut total = 0u64;
    loop {
        let n = file.read(buf).map_err(io_err(source))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > size {
            break;
        }
        w.write_all(&buf[..n]).map_err(io_err(Path::new("")))?;
    }
    if total != size {
        return Err(LayerError::SizeChanged { path: source.to_path_buf(), expected: size, actual: total });
    }
    Ok(())
}

/// A writer that hashes and counts what passes through it.
struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashWriter<W> {
    fn new(inner: W) -> Self {
        Self { inner, hasher: Sha256::new(), count: 0 }
    }

    fn finish(self) -> (Digest, u64, W) {
        (sha256_digest(self.hasher), self.count, self.inner)
    }
}

/// Turns a finished hasher into an OCI digest.
pub(crate) fn sha256_digest(hasher: Sha256) -> Digest {
    let hex = hex::encode(hasher.finalize());
    // 64 lowercase hex digits always form a valid sha256 digest.
    let sha: oci_spec::image::Sha256Digest = hex.parse().expect("sha256 hex digest is valid");
    Digest::from(sha)
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
