//! Layer writing: content checked with independent readers (the `tar` crate, GNU tar),
//! determinism across machines-like differences (paths, inodes, mtimes), whiteout order.

#[path = "common/walk.rs"]
mod walk;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nullspace_native::layer::{
    Change, Chown, Compression, CopyOptions, Layer, LayerEntry, LayerEntryKind, LayerInfo, LayerOptions,
};
use sha2::{Digest, Sha256};

/// A small context: a file, a 0755 script, a 0600 secret, a symlink, a hardlink, a nested dir.
fn make_context(dir: &Path) {
    std::fs::create_dir_all(dir.join("sub/deeper")).unwrap();
    std::fs::write(dir.join("file"), "hello from file\n").unwrap();
    std::fs::write(dir.join("run.sh"), "#!/bin/sh\necho script ran\n").unwrap();
    std::fs::set_permissions(dir.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("secret"), "s3cret\n").unwrap();
    std::fs::set_permissions(dir.join("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("file", dir.join("link")).unwrap();
    std::fs::hard_link(dir.join("file"), dir.join("hard")).unwrap();
    std::fs::write(dir.join("sub/deeper/nested.txt"), "nested\n").unwrap();
}

fn build(ctx: &Path, opts: &LayerOptions) -> (LayerInfo, Vec<u8>) {
    let mut layer = Layer::new();
    let copy = CopyOptions { dest: "/app".into(), chown: Some(Chown { uid: 1000, gid: 1000 }), chmod: None };
    layer.add_copy(ctx, &walk::walk(ctx), &copy).unwrap();
    let mut blob = Vec::new();
    let info = layer.write(&mut blob, opts).unwrap();
    (info, blob)
}

fn gunzip(blob: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(blob).read_to_end(&mut out).unwrap();
    out
}

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[derive(Debug, PartialEq)]
struct Seen {
    path: String,
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    link: Option<String>,
    uname: Vec<u8>,
    content: Vec<u8>,
}

/// Reads a tar with the `tar` crate (an independent reader).
fn read_tar(tar_bytes: &[u8]) -> Vec<Seen> {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut out = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let mut content = Vec::new();
        e.read_to_end(&mut content).unwrap();
        out.push(Seen {
            path: e.path().unwrap().to_string_lossy().trim_end_matches('/').to_owned(),
            kind: h.entry_type(),
            mode: h.mode().unwrap(),
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
            mtime: h.mtime().unwrap(),
            link: e.link_name().unwrap().map(|l| l.to_string_lossy().into_owned()),
            uname: h.username_bytes().unwrap_or_default().to_vec(),
            content,
        });
    }
    out
}

#[test]
fn copy_layer_has_expected_entries_digests_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    make_context(dir.path());
    let opts = LayerOptions { source_date_epoch: 1_700_000_000, ..LayerOptions::default() };
    let (info, blob) = build(dir.path(), &opts);

    // Digests and sizes match the bytes, computed independently here.
    let tar_bytes = gunzip(&blob);
    assert_eq!(info.digest.to_string(), sha(&blob));
    assert_eq!(info.size, blob.len() as u64);
    assert_eq!(info.diff_id.to_string(), sha(&tar_bytes));
    assert_eq!(info.uncompressed_size, tar_bytes.len() as u64);
    assert_eq!(tar_bytes.len() % 512, 0);

    let seen = read_tar(&tar_bytes);
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "app",
            "app/file",
            "app/hard",
            "app/link",
            "app/run.sh",
            "app/secret",
            "app/sub",
            "app/sub/deeper",
            "app/sub/deeper/nested.txt"
        ]
    );
    for s in &seen {
        assert_eq!(s.mtime, 1_700_000_000, "{}", s.path);
        assert_eq!((s.uid, s.gid), (1000, 1000), "{}", s.path);
        assert!(s.uname.is_empty(), "{}", s.path);
    }
    let by = |p: &str| seen.iter().find(|s| s.path == p).unwrap();
    assert_eq!(by("app").kind, tar::EntryType::Directory);
    assert_eq!(by("app").mode, 0o755);
    assert_eq!(by("app/file").content, b"hello from file\n");
    assert_eq!(by("app/file").mode, 0o644);
    // The first of two links to one inode holds the data; the second is a hardlink to it.
    assert_eq!(by("app/hard").kind, tar::EntryType::Link);
    assert_eq!(by("app/hard").link.as_deref(), Some("app/file"));
    assert_eq!(by("app/link").kind, tar::EntryType::Symlink);
    assert_eq!(by("app/link").link.as_deref(), Some("file"));
    assert_eq!(by("app/link").mode, 0o777);
    assert_eq!(by("app/run.sh").mode, 0o755);
    assert_eq!(by("app/secret").mode, 0o600);
    assert_eq!(by("app/sub/deeper/nested.txt").content, b"nested\n");
}

#[test]
fn chmod_applies_to_files_and_dirs_but_not_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    make_context(dir.path());
    let mut layer = Layer::new();
    let copy = CopyOptions { dest: "etc/app".into(), chown: None, chmod: Some(0o640) };
    layer.add_copy(dir.path(), &walk::walk(dir.path()), &copy).unwrap();
    let mut blob = Vec::new();
    let opts = LayerOptions { compression: Compression::None, ..LayerOptions::default() };
    let info = layer.write(&mut blob, &opts).unwrap();
    assert_eq!(info.digest, info.diff_id);
    let seen = read_tar(&blob);
    for s in &seen {
        let expected = match (s.path.as_str(), s.kind) {
            ("etc" | "etc/app", _) => 0o755,
            (_, tar::EntryType::Symlink) => 0o777,
            _ => 0o640,
        };
        assert_eq!(s.mode, expected, "{}", s.path);
        assert_eq!((s.uid, s.gid), (0, 0));
    }
}

#[test]
fn same_input_in_two_places_gives_identical_digests() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    make_context(a.path());
    // Different creation order, inode numbers, path and mtimes: none may matter.
    std::fs::create_dir_all(b.path().join("x/y")).unwrap();
    make_context(&b.path().join("x/y"));
    let b_ctx = b.path().join("x/y");
    set_mtime(&b_ctx.join("file"), 12345);
    let opts = LayerOptions::default();
    let (ia, blob_a) = build(a.path(), &opts);
    let (ib, blob_b) = build(&b_ctx, &opts);
    assert_eq!(ia, ib);
    assert_eq!(blob_a, blob_b);
    // Same input twice in one place.
    let (ia2, _) = build(a.path(), &opts);
    assert_eq!(ia, ia2);
}

#[test]
fn mtime_change_keeps_digest_and_mode_change_changes_it() {
    let dir = tempfile::tempdir().unwrap();
    make_context(dir.path());
    let opts = LayerOptions::default();
    let (before, _) = build(dir.path(), &opts);
    set_mtime(&dir.path().join("secret"), 999_999);
    set_mtime(&dir.path().join("sub/deeper/nested.txt"), 1);
    let (after_mtime, _) = build(dir.path(), &opts);
    assert_eq!(before.diff_id, after_mtime.diff_id);
    assert_eq!(before.digest, after_mtime.digest);
    std::fs::set_permissions(dir.path().join("secret"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let (after_mode, _) = build(dir.path(), &opts);
    assert_ne!(before.diff_id, after_mode.diff_id);
    assert_ne!(before.digest, after_mode.digest);
    // SOURCE_DATE_EPOCH is part of the content.
    let (later, _) = build(dir.path(), &LayerOptions { source_date_epoch: 1, ..opts });
    assert_ne!(later.diff_id, after_mode.diff_id);
}

#[test]
fn diff_layer_writes_whiteouts_before_siblings_and_keeps_owners() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir_all(r.join("etc/conf.d")).unwrap();
    std::fs::create_dir_all(r.join("var/cache")).unwrap();
    std::fs::write(r.join("etc/a"), "a").unwrap();
    std::fs::write(r.join("etc/zz"), "zz").unwrap();
    std::fs::write(r.join("var/cache/new"), "n").unwrap();
    std::os::unix::fs::chown(r.join("etc/zz"), Some(1000), Some(1001)).unwrap();
    std::fs::set_permissions(r.join("var"), std::fs::Permissions::from_mode(0o750)).unwrap();
    let changes = [
        Change::Write("etc/zz".into()),
        Change::Write("etc/a".into()),
        Change::Delete("etc/b".into()),
        Change::Delete("etc/old.d".into()),
        Change::Opaque("var/cache".into()),
        Change::Write("var/cache/new".into()),
    ];
    let mut layer = Layer::new();
    layer.add_changes(r, &changes).unwrap();
    let mut blob = Vec::new();
    layer.write(&mut blob, &LayerOptions::default()).unwrap();
    let seen = read_tar(&gunzip(&blob));
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "etc",
            "etc/.wh.b",
            "etc/.wh.old.d",
            "etc/a",
            "etc/zz",
            "var",
            "var/cache",
            "var/cache/.wh..wh..opq",
            "var/cache/new"
        ]
    );
    let by = |p: &str| seen.iter().find(|s| s.path == p).unwrap();
    assert_eq!((by("etc/zz").uid, by("etc/zz").gid), (1000, 1001));
    assert_eq!(by("var").mode, 0o750, "parents keep their metadata from the root");
    assert_eq!(by("etc/.wh.b").kind, tar::EntryType::Regular);
    assert!(by("etc/.wh.b").content.is_empty());
}

#[test]
fn diff_layer_refuses_symlinked_parents() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("host-secret"), "x").unwrap();
    std::os::unix::fs::symlink(outside.path(), root.path().join("escape")).unwrap();
    let mut layer = Layer::new();
    let err = layer.add_changes(root.path(), &[Change::Write("escape/host-secret".into())]).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
}

#[test]
fn long_and_non_ascii_paths_use_pax_and_are_read_back_by_gnu_tar() {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("data"), "d").unwrap();
    let long: PathBuf = (0..12).map(|i| format!("directory-number-{i:02}")).collect();
    let long_link = "t".repeat(150);
    let mut layer = Layer::new();
    for (path, kind) in [
        (long.join("file.txt"), LayerEntryKind::File { source: src.path().join("data"), size: 1, inode: None }),
        (PathBuf::from("café/naïve"), LayerEntryKind::Symlink { target: long_link.clone().into() }),
    ] {
        layer.insert(LayerEntry { path, kind, mode: 0o644, uid: 3_000_000, gid: 7 }).unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    let tar_path = out.path().join("layer.tar");
    let opts = LayerOptions { compression: Compression::None, ..LayerOptions::default() };
    layer.write(std::fs::File::create(&tar_path).unwrap(), &opts).unwrap();
    let listing = Command::new("tar")
        .args(["--numeric-owner", "-tvf"])
        .arg(&tar_path)
        .output()
        .expect("GNU tar must be installed");
    assert!(listing.status.success(), "{}", String::from_utf8_lossy(&listing.stderr));
    let text = String::from_utf8_lossy(&listing.stdout);
    let expected_file = format!("{}/file.txt", long.display());
    assert!(text.contains(&expected_file), "{text}");
    assert!(text.contains(&format!("café/naïve -> {long_link}")), "{text}");
    assert!(text.contains("3000000/7"), "{text}");
    // Every entry of the long path has its parent directory.
    let dirs = text.lines().filter(|l| l.starts_with('d')).count();
    assert_eq!(dirs, 12 + 1, "{text}");
}

#[test]
fn invalid_paths_are_refused() {
    let mut layer = Layer::new();
    let entry = |p: &str| LayerEntry { path: p.into(), kind: LayerEntryKind::Dir, mode: 0o755, uid: 0, gid: 0 };
    assert!(layer.insert(entry("a/../../b")).is_err());
    assert!(layer.insert(entry("/")).is_err());
    let link = LayerEntry { kind: LayerEntryKind::Hardlink { target: "../x".into() }, ..entry("a") };
    assert!(layer.insert(link).is_err());
    assert!(layer.is_empty());
    // A hardlink to a path that is not (yet) a file of the layer cannot be written.
    let dangling = LayerEntry { kind: LayerEntryKind::Hardlink { target: "z".into() }, ..entry("a") };
    layer.insert(dangling).unwrap();
    let err = layer.write(std::io::sink(), &LayerOptions::default()).unwrap_err();
    assert!(err.to_string().contains("hardlink target"), "{err}");
}

#[test]
fn a_file_that_changed_size_fails_the_write() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), "12345").unwrap();
    let mut layer = Layer::new();
    layer
        .insert(LayerEntry {
            path: "f".into(),
            kind: LayerEntryKind::File { source: dir.path().join("f"), size: 3, inode: None },
            mode: 0o644,
            uid: 0,
            gid: 0,
        })
        .unwrap();
    let err = layer.write(std::io::sink(), &LayerOptions::default()).unwrap_err();
    assert!(err.to_string().contains("expected 3 bytes"), "{err}");
}

/// Sets a file's mtime (to prove mtimes do not matter).
fn set_mtime(path: &Path, secs: u64) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)).unwrap();
}

/// The layer of the same tar compressed serially, block by block, the way the parallel writer
/// is specified to: 1 MiB blocks of raw deflate at the level, each from a new compressor primed
/// with the previous 32 KiB, sync-flushed (the last one finished), in one gzip member with a
/// fixed header and the CRC-32 and size of the whole tar.
fn serial_block_gzip(tar: &[u8], level: u32) -> Vec<u8> {
    use flate2::{Compress, FlushCompress, Status};
    // XFL as gzip sets it: 4 for the fastest level, 2 for the best; OS 255 (unknown).
    let xfl = match level {
        1 => 4,
        9 => 2,
        _ => 0,
    };
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255];
    let blocks: Vec<&[u8]> = tar.chunks(1 << 20).collect();
    for (i, block) in blocks.iter().enumerate() {
        let mut deflate = Compress::new(flate2::Compression::new(level), false);
        if i > 0 {
            let prev = blocks[i - 1];
            deflate.set_dictionary(&prev[prev.len() - 32 * 1024..]).unwrap();
        }
        let last = i + 1 == blocks.len();
        let mut buf = Vec::with_capacity(2 * block.len() + 1024);
        let flush = if last { FlushCompress::Finish } else { FlushCompress::Sync };
        let status = deflate.compress_vec(block, &mut buf, flush).unwrap();
        assert_eq!(deflate.total_in(), block.len() as u64);
        assert!(!last || status == Status::StreamEnd);
        out.extend_from_slice(&buf);
    }
    let mut crc = flate2::Crc::new();
    crc.update(tar);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(tar.len() as u32).to_le_bytes());
    out
}

/// `gzip -dc` of the system, an independent decoder that checks the CRC and size too.
fn system_gunzip(blob: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("layer.tar.gz");
    std::fs::write(&path, blob).unwrap();
    let out = Command::new("gzip").arg("-dc").arg(&path).output().unwrap();
    assert!(out.status.success(), "gzip -d: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// The gzip layer is compressed on several threads, but its bytes are those of the serial
/// block-by-block encoding (so they depend neither on the core count nor on timing), it is one
/// gzip member that the system's gzip and flate2 both decode to the plain tar, and the digests
/// are those of these bytes.
#[test]
fn parallel_gzip_equals_the_serial_block_encoding_and_decodes_with_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path();
    let mut state = 7u64;
    for i in 0..40 {
        let size = if i % 10 == 0 { 1_300_000 } else { 20_000 + i * 977 };
        let bytes: Vec<u8> = (0..size)
            .map(|j| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                if j % 3 == 0 { (state >> 59) as u8 + b'a' } else { b"the quick brown fox "[j % 20] }
            })
            .collect();
        std::fs::write(ctx.join(format!("f{i:02}")), bytes).unwrap();
    }
    let (plain_info, tar) = build(ctx, &LayerOptions { source_date_epoch: 5, compression: Compression::None });
    assert!(tar.len() > 5 << 20, "only {} bytes: not several blocks", tar.len());
    for level in [6, 1] {
        let gz = LayerOptions { source_date_epoch: 5, compression: Compression::Gzip(level) };
        let (info, blob) = build(ctx, &gz);
        assert!(blob == serial_block_gzip(&tar, level), "level {level}: differs from the serial encoding");
        assert!(system_gunzip(&blob) == tar, "level {level}");
        assert!(gunzip(&blob) == tar, "level {level}");
        assert_eq!(info.digest.to_string(), sha(&blob));
        assert_eq!(info.size, blob.len() as u64);
        assert_eq!(info.diff_id, plain_info.digest);
        assert_eq!(info.uncompressed_size, tar.len() as u64);
        assert!(build(ctx, &gz).1 == blob, "level {level}: a second write differs");
    }
}
