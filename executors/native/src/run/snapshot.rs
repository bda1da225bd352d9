//! Read-only per-layer snapshots for overlayfs lower dirs, and flattened root filesystems for
//! the copy fallback.
//!
//! A snapshot is one layer unpacked alone into `ROOT/<chain id hex>/fs`, in overlayfs form: a
//! whiteout `.wh.NAME` becomes a character device 0/0 named `NAME`, an opaque marker becomes
//! `trusted.overlay.opaque=y` on its directory (as containerd's overlay snapshotter does). It is
//! keyed by the layer's *chain id* (the OCI image spec's hash of the diff_ids up to it), so the
//! same layer on the same parents is unpacked once and shared by every step and build. A
//! snapshot is built in a temporary directory and renamed into place, so readers never see a
//! partial one and concurrent builders race harmlessly.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nullspace_engine::cas::{BlobStore, Digest as CasDigest};
use rustix::fs::{FileType, Mode, OFlags};
use sha2::{Digest as _, Sha256};

use super::RunError;
use super::sys::{OPAQUE_XATTR, open_in_root};
use crate::layer::{OPAQUE_WHITEOUT, WHITEOUT_PREFIX};
use crate::unpack::{UnpackOptions, unpack_layer};

/// One layer of a root filesystem: its blob (in the [`BlobStore`]) and its `diff_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRef {
    /// The compressed blob's digest (`sha256:…`).
    pub digest: String,
    /// The uncompressed tar's digest (`sha256:…`), as in the config's `rootfs.diff_ids`.
    pub diff_id: String,
}

/// The chain ids of `diff_ids` (OCI image spec: `chain(0) = diff_id(0)`,
/// `chain(n) = sha256(chain(n-1) + " " + diff_id(n))`).
///
/// ```
/// let ids = nullspace_native::run::chain_ids(&["sha256:aa".to_string(), "sha256:bb".to_string()]);
/// assert_eq!(ids[0], "sha256:aa");
/// assert!(ids[1].starts_with("sha256:") && ids[1].len() == 71);
/// ```
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for id in diff_ids {
        let next = match out.last() {
            None => id.clone(),
            Some(prev) => format!("sha256:{:x}", Sha256::digest(format!("{prev} {id}").as_bytes())),
        };
        out.push(next);
    }
    out
}

/// A directory of layer snapshots.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    root: PathBuf,
}

fn snap_err<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(std::io::Error) -> RunError + 'a {
    move |source| RunError::Io { what, path: path.to_path_buf(), source }
}

fn cas_digest(digest: &str) -> Result<CasDigest, RunError> {
    digest.parse().map_err(|_| RunError::BadDigest { digest: digest.to_string() })
}

impl SnapshotStore {
    /// Opens (creating) the store at `root`.
    ///
    /// # Errors
    /// [`RunError::Io`] if the directory cannot be created.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, RunError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(snap_err(&root, "create snapshot store"))?;
        Ok(Self { root })
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Makes sure every layer has its snapshot and returns their `fs` directories, bottom first.
    ///
    /// # Errors
    /// [`RunError::Io`] / [`RunError::Unpack`] when a blob is missing or cannot be applied.
    pub fn prepare(&self, store: &BlobStore, layers: &[LayerRef]) -> Result<Vec<PathBuf>, RunError> {
        let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
        let chains = chain_ids(&diff_ids);
        let mut dirs = Vec::with_capacity(layers.len());
        for (layer, chain) in layers.iter().zip(&chains) {
            let hex = chain.trim_start_matches("sha256:");
            let dir = self.root.join(hex);
            let fs_dir = dir.join("fs");
            if !fs_dir.is_dir() {
                self.build(store, layer, &dir)?;
            }
            dirs.push(fs_dir);
        }
        Ok(dirs)
    }

    fn build(&self, store: &BlobStore, layer: &LayerRef, dir: &Path) -> Result<(), RunError> {
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempdir_in(&self.root)
            .map_err(snap_err(&self.root, "create snapshot temp dir"))?;
        let fs_dir = tmp.path().join("fs");
        std::fs::create_dir(&fs_dir).map_err(snap_err(&fs_dir, "create snapshot dir"))?;
        std::fs::set_permissions(&fs_dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(snap_err(&fs_dir, "chmod snapshot dir"))?;
        let digest = cas_digest(&layer.digest)?;
        let blob = store.blob_path(&digest);
        let file = std::fs::File::open(&blob).map_err(snap_err(&blob, "open layer blob"))?;
        unpack_layer(file, &fs_dir, &UnpackOptions::default())?;
        let file = std::fs::File::open(&blob).map_err(snap_err(&blob, "open layer blob"))?;
        convert_whiteouts(file, &fs_dir)?;
        let kept = tmp.keep();
        match std::fs::rename(&kept, dir) {
            Ok(()) => Ok(()),
            // Another builder made it first: theirs is as good as ours.
            Err(_) if dir.join("fs").is_dir() => {
                let _ = std::fs::remove_dir_all(&kept);
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&kept);
                Err(RunError::Io { what: "rename snapshot", path: dir.to_path_buf(), source: e })
            }
        }
    }

    /// Applies the layers, bottom first, to the empty directory `dest` (the copy fallback's root
    /// filesystem).
    ///
    /// # Errors
    /// [`RunError::Io`] / [`RunError::Unpack`].
    pub fn materialize(store: &BlobStore, layers: &[LayerRef], dest: &Path) -> Result<(), RunError> {
        for layer in layers {
            let blob = store.blob_path(&cas_digest(&layer.digest)?);
            let file = std::fs::File::open(&blob).map_err(snap_err(&blob, "open layer blob"))?;
            unpack_layer(file, dest, &UnpackOptions::default())?;
        }
        Ok(())
    }
}

/// Second pass over a layer already unpacked alone into `root`: records its whiteouts the way
/// overlayfs reads them from a lower dir.
fn convert_whiteouts<R: Read>(layer: R, root: &Path) -> Result<(), RunError> {
    let mut reader = BufReader::with_capacity(64 * 1024, layer);
    let gzip = reader.fill_buf().map_err(snap_err(root, "read layer"))?.starts_with(&[0x1f, 0x8b]);
    if gzip {
        convert_entries(tar::Archive::new(flate2::read::GzDecoder::new(reader)), root)
    } else {
        convert_entries(tar::Archive::new(reader), root)
    }
}

fn convert_entries<R: Read>(mut archive: tar::Archive<R>, root: &Path) -> Result<(), RunError> {
    let entries = archive.entries().map_err(snap_err(root, "read layer"))?;
    for entry in entries {
        let entry = entry.map_err(snap_err(root, "read layer"))?;
        let name = entry.path().map_err(snap_err(root, "read layer entry name"))?.into_owned();
        let Some(file_name) = name.file_name() else { continue };
        let parent = name.parent().unwrap_or(Path::new(""));
        let bytes = file_name.as_bytes();
        if bytes == OPAQUE_WHITEOUT.as_bytes() {
            let dir = open_in_root(root, parent, OFlags::RDONLY | OFlags::DIRECTORY)
                .map_err(snap_err(&name, "open opaque directory"))?;
            rustix::fs::fsetxattr(dir.as_fd(), OPAQUE_XATTR, b"y", rustix::fs::XattrFlags::empty())
                .map_err(|e| RunError::Io { what: "mark opaque directory", path: name.clone(), source: e.into() })?;
        } else if let Some(target) = bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            let target = OsStr::from_bytes(target);
            let dir = open_in_root(root, parent, OFlags::RDONLY | OFlags::DIRECTORY)
                .map_err(snap_err(&name, "open whiteout directory"))?;
            match rustix::fs::statat(dir.as_fd(), target, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
                // The layer deletes and re-adds it: a directory must hide what is below.
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                    let sub = rustix::fs::openat(
                        dir.as_fd(),
                        target,
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| RunError::Io {
                        what: "open re-added dir",
                        path: name.clone(),
                        source: e.into(),
                    })?;
                    rustix::fs::fsetxattr(sub.as_fd(), OPAQUE_XATTR, b"y", rustix::fs::XattrFlags::empty())
                        .map_err(|e| RunError::Io { what: "mark opaque", path: name.clone(), source: e.into() })?;
                }
                Ok(_) => {}
                Err(_) => {
                    rustix::fs::mknodat(
                        dir.as_fd(),
                        target,
                        FileType::CharacterDevice,
                        Mode::empty(),
                        rustix::fs::makedev(0, 0),
                    )
                    .map_err(|e| RunError::Io {
                        what: "create whiteout",
                        path: name.clone(),
                        source: e.into(),
                    })?;
                }
            }
        }
    }
    Ok(())
}
