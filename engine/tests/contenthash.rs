//! Context hashing against real directory trees: BuildKit's own asserted digests, the cache-key
//! properties (what must and must not change a digest), hardlinks, errors and the stat cache.

use nullspace_engine::cas::Digest;
use nullspace_engine::context::contenthash::{
    ChecksumOptions, ContextHashes, HashError, Ownership, checksum_path, hash_context,
};
use nullspace_engine::context::statcache::StatCache;
use nullspace_engine::context::{Entry, EntryKind, StatInfo};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Digests asserted by BuildKit's `cache/contenthash/checksum_test.go`.
const DATA0: &str = "sha256:cd8e75bca50f2d695f220d0cb0997d8ead387e4f926e8669a92d7f104cc9885b";
const DATA1: &str = "sha256:c2b5e234f5f38fc5864da7def04782f82501a40d46192e4207d5b3f0c3c4732b";
const DIR_D0: &str = "sha256:d47454417d2c554067fbefe5f5719edc49f3cfe969c36b62e34a187a4da0cc9a";
const UNORDERED_D0: &str = "sha256:14276c302c940a80f82ca5477bf766c98a24702d6a9948ee71bb277cdad3ae05";

/// Lists `root` the way the context walker does (every entry, lstat, relative paths).
fn walk(root: &Path) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        for item in fs::read_dir(root.join(&rel)).unwrap() {
            let item = item.unwrap();
            let path = rel.join(item.file_name());
            let full = root.join(&path);
            let meta = fs::symlink_metadata(&full).unwrap();
            let kind = if meta.is_dir() {
                pending.push(path.clone());
                EntryKind::Dir
            } else if meta.file_type().is_symlink() {
                EntryKind::Symlink { target: fs::read_link(&full).unwrap() }
            } else {
                EntryKind::File
            };
            out.push(Entry {
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
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn file(root: &Path, rel: &str, content: &str, mode: u32) {
    let path = root.join(rel);
    fs::write(&path, content).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
}

fn dir(root: &Path, rel: &str) {
    let path = root.join(rel);
    fs::create_dir(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// BuildKit's `TestChecksumBasicFile` tree.
fn basic_tree(root: &Path) {
    file(root, "foo", "data0", 0o644);
    file(root, "bar", "data1", 0o644);
    dir(root, "d0");
    file(root, "d0/abc", "data0", 0o644);
    symlink("abc", root.join("d0/def")).unwrap();
    symlink("nosuchfile", root.join("d0/ghi")).unwrap();
}

fn hash(root: &Path) -> ContextHashes {
    hash_context(root, &walk(root), None).unwrap()
}

fn all_digests(h: &ContextHashes) -> BTreeMap<PathBuf, Digest> {
    let mut map: BTreeMap<PathBuf, Digest> = h.iter().map(|(p, d)| (p.to_owned(), d.digest)).collect();
    map.insert(PathBuf::from("/"), h.digest());
    map
}

fn d(s: &str) -> Digest {
    s.parse().unwrap()
}

#[test]
fn context_digests_match_buildkit() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    basic_tree(root);
    let h = hash(root);
    assert_eq!(h.get(Path::new("foo")).unwrap().digest, d(DATA0));
    assert_eq!(h.get(Path::new("bar")).unwrap().digest, d(DATA1));
    assert_eq!(h.get(Path::new("d0/abc")).unwrap().digest, d(DATA0));
    assert_eq!(h.get(Path::new("d0")).unwrap().digest, d(DIR_D0));
    assert_eq!(h.checksum(Path::new("d0/def"), true).unwrap(), d(DATA0));
    assert_ne!(h.checksum(Path::new("d0/def"), false).unwrap(), d(DATA0));
    assert!(matches!(h.checksum(Path::new("d0/ghi"), true), Err(HashError::NotFound { .. })));
    assert!(matches!(h.checksum(Path::new("nosuch"), true), Err(HashError::NotFound { .. })));

    // A received context's root header is the digest of the empty string (BuildKit fakes it), so
    // its digest is made of the children's digests alone.
    let mut root_hash = Sha256::new();
    root_hash.update(format!("\0{}", Digest::of(b"")));
    root_hash.update(format!("\0bar{DATA1}\0d0{DIR_D0}\0foo{DATA0}"));
    assert_eq!(h.digest(), Digest::from_hasher(root_hash));
    assert_eq!(h.checksum(Path::new("/"), true).unwrap(), h.digest());
    assert_eq!(h.checksum(Path::new("d0/.."), true).unwrap(), h.digest());
}

#[test]
fn sibling_order_is_bytewise_by_name() {
    // BuildKit's TestChecksumUnorderedFiles: "foo" < "foo-subdir" < "foo.subdir".
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    dir(root, "d0");
    dir(root, "d0/foo");
    file(root, "d0/foo/bar", "data0", 0o644);
    dir(root, "d0/foo-subdir");
    file(root, "d0/foo.subdir", "data1", 0o644);
    assert_eq!(hash(root).get(Path::new("d0")).unwrap().digest, d(UNORDERED_D0));
    let snapshot = checksum_path(root, Path::new("d0"), &ChecksumOptions::default()).unwrap();
    assert_eq!(snapshot, d(UNORDERED_D0));
}

#[test]
fn mtime_and_ownership_do_not_change_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    basic_tree(root);
    let before = all_digests(&hash(root));

    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    for rel in ["foo", "d0", "d0/abc"] {
        fs::File::open(root.join(rel)).unwrap().set_modified(old).unwrap();
    }
    for rel in ["foo", "bar", "d0", "d0/abc", "d0/def"] {
        lchown(root.join(rel), Some(1234), Some(5678)).unwrap();
    }
    let after = all_digests(&hash(root));
    assert_eq!(before, after);
    assert_eq!(walk(root)[0].stat.uid, 1234, "the chown took effect");

    // A snapshot checksum with on-disk ownership does see the owner, as BuildKit's does.
    let reset = checksum_path(root, Path::new("foo"), &ChecksumOptions::default()).unwrap();
    let on_disk = ChecksumOptions { follow_links: false, ownership: Ownership::OnDisk };
    assert_eq!(reset, d(DATA0));
    assert_ne!(checksum_path(root, Path::new("foo"), &on_disk).unwrap(), reset);
}

#[test]
fn mode_and_content_change_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    basic_tree(root);
    let base = all_digests(&hash(root));

    fs::set_permissions(root.join("foo"), fs::Permissions::from_mode(0o755)).unwrap();
    let chmodded = all_digests(&hash(root));
    assert_ne!(chmodded[Path::new("foo")], base[Path::new("foo")]);

    file(root, "foo", "data1", 0o644);
    let rewritten = all_digests(&hash(root));
    assert_eq!(rewritten[Path::new("foo")], d(DATA1), "same content and mode as bar");

    fs::set_permissions(root.join("d0"), fs::Permissions::from_mode(0o700)).unwrap();
    let dir_mode = all_digests(&hash(root));
    assert_ne!(dir_mode[Path::new("d0")], rewritten[Path::new("d0")]);
    assert_eq!(dir_mode[Path::new("d0/abc")], rewritten[Path::new("d0/abc")]);
}

#[test]
fn a_change_reaches_the_file_and_its_parents_only() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    basic_tree(root);
    dir(root, "d0/sub");
    file(root, "d0/sub/leaf", "x", 0o644);
    dir(root, "d1");
    file(root, "d1/other", "x", 0o644);
    let before = all_digests(&hash(root));
    file(root, "d0/sub/leaf", "y", 0o644);
    let after = all_digests(&hash(root));
    let changed: Vec<&Path> = before.keys().filter(|p| before[*p] != after[*p]).map(PathBuf::as_path).collect();
    let mut expected = vec![Path::new("/"), Path::new("d0"), Path::new("d0/sub"), Path::new("d0/sub/leaf")];
    expected.sort();
    assert_eq!(changed, expected);
}

#[test]
fn snapshot_checksum_agrees_with_context_below_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    basic_tree(root);
    let h = hash(root);
    for (path, follow) in [("foo", true), ("d0", true), ("d0/def", true), ("d0/def", false), ("d0/ghi", false)] {
        let opts = ChecksumOptions { follow_links: follow, ownership: Ownership::Reset };
        assert_eq!(
            checksum_path(root, Path::new(path), &opts).unwrap(),
            h.checksum(Path::new(path), follow).unwrap(),
            "{path} follow={follow}"
        );
    }
}

#[test]
fn symlinks_resolve_within_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    dir(root, "a");
    file(root, "a/f", "data0", 0o644);
    symlink("../../../../a", root.join("a/up")).unwrap();
    symlink("/a/f", root.join("abs")).unwrap();
    symlink("loop2", root.join("loop1")).unwrap();
    symlink("loop1", root.join("loop2")).unwrap();
    let h = hash(root);
    let opts = ChecksumOptions { follow_links: true, ownership: Ownership::Reset };
    for path in ["a/up/f", "abs", "a/up/up/up/f"] {
        assert_eq!(h.checksum(Path::new(path), true).unwrap(), d(DATA0), "{path}");
        assert_eq!(checksum_path(root, Path::new(path), &opts).unwrap(), d(DATA0), "{path}");
    }
    assert!(matches!(h.checksum(Path::new("loop1"), true), Err(HashError::TooManyLinks { .. })));
    assert!(matches!(checksum_path(root, Path::new("loop1/x"), &opts), Err(HashError::TooManyLinks { .. })));
}

#[test]
fn hardlinks_are_read_once_and_share_a_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    file(root, "a", "data0", 0o644);
    fs::hard_link(root.join("a"), root.join("b")).unwrap();
    fs::hard_link(root.join("a"), root.join("c")).unwrap();
    file(root, "d", "data0", 0o644);
    let h = hash(root);
    for p in ["a", "b", "c", "d"] {
        assert_eq!(h.get(Path::new(p)).unwrap().digest, d(DATA0));
    }
    assert_eq!(h.stats().files_hashed, 2, "a/b/c share an inode");
    assert_eq!(h.stats().bytes_hashed, 10);
}

#[test]
fn large_files_stream_to_the_tarsum_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let size: usize = 20 * 1024 * 1024 + 123;
    let content: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    fs::write(root.join("big"), &content).unwrap();
    fs::set_permissions(root.join("big"), fs::Permissions::from_mode(0o600)).unwrap();
    let mut expected = Sha256::new();
    expected.update(format!("namemode384uid0gid0size{size}typeflag0linknameunamegnamedevmajor0devminor0"));
    expected.update(&content);
    let h = hash(root);
    assert_eq!(h.get(Path::new("big")).unwrap().digest, Digest::from_hasher(expected));
    assert_eq!(h.stats().bytes_hashed, size as u64);
}

#[test]
fn user_xattrs_are_part_of_the_header() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    file(root, "f", "data0", 0o644);
    let set = rustix::fs::lsetxattr(root.join("f").as_path(), "user.nullspace", b"v1", rustix::fs::XattrFlags::empty());
    if set.is_err() {
        eprintln!("filesystem without user xattrs: {set:?}; skipping");
        return;
    }
    let mut expected = Sha256::new();
    expected.update("namemode420uid0gid0size5typeflag0linknameunamegnamedevmajor0devminor0");
    expected.update("user.nullspacev1data0");
    assert_eq!(hash(root).get(Path::new("f")).unwrap().digest, Digest::from_hasher(expected));
}

#[test]
fn a_vanished_or_replaced_file_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    dir(root, "d");
    file(root, "d/gone", "x", 0o644);
    file(root, "d/swapped", "x", 0o644);
    let entries = walk(root);
    fs::remove_file(root.join("d/gone")).unwrap();
    let err = hash_context(root, &entries, None).unwrap_err();
    assert!(matches!(err, HashError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("d/gone"), "{err}");

    file(root, "d/gone", "x", 0o644);
    let entries = walk(root);
    fs::remove_file(root.join("d/swapped")).unwrap();
    symlink("/etc/passwd", root.join("d/swapped")).unwrap();
    let err = hash_context(root, &entries, None).unwrap_err();
    assert!(err.to_string().contains("d/swapped"), "{err}");
}

#[test]
fn malformed_entry_lists_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    dir(root, "d");
    file(root, "d/f", "x", 0o644);
    let entries = walk(root);
    let orphan: Vec<Entry> = entries.iter().filter(|e| e.path != Path::new("d")).cloned().collect();
    assert!(matches!(hash_context(root, &orphan, None), Err(HashError::MissingParent { .. })));
    let mut twice = entries.clone();
    twice.push(entries[1].clone());
    assert!(matches!(hash_context(root, &twice, None), Err(HashError::DuplicateEntry { .. })));
    let mut dotted = entries.clone();
    dotted[1].path = PathBuf::from("d/../f");
    assert!(matches!(hash_context(root, &dotted, None), Err(HashError::InvalidEntryPath { .. })));
    for bad in ["/d/f", "d//f", "d/", "d/.", "./d/f"] {
        let mut bad_entries = entries.clone();
        bad_entries[1].path = PathBuf::from(bad);
        let result = hash_context(root, &bad_entries, None);
        assert!(matches!(result, Err(HashError::InvalidEntryPath { .. })), "{bad}: {result:?}");
    }
    // A parent that is listed but is a file.
    let mut under_file = entries.clone();
    under_file.push(Entry { path: PathBuf::from("d/f/x"), ..entries[1].clone() });
    let err = hash_context(root, &under_file, None).unwrap_err();
    assert!(matches!(&err, HashError::MissingParent { parent, .. } if parent == Path::new("d/f")), "{err:?}");
}

#[test]
fn selection_digest_is_buildkits_digest_list() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    basic_tree(root);
    let h = hash(root);
    let joined = format!("{DATA1}\0{DIR_D0}");
    let expected = Digest::of(joined.as_bytes());
    assert_eq!(h.selection_digest(&["d0", "bar"], true).unwrap(), expected);
    // Paths inside another selected path add nothing; duplicates neither.
    assert_eq!(h.selection_digest(&["/d0/", "d0/abc", "bar", "bar"], true).unwrap(), expected);
    // A selected symlink is followed or not.
    let link = h.checksum(Path::new("d0/def"), false).unwrap();
    assert_eq!(h.selection_digest(&["d0/def"], false).unwrap(), Digest::of(link.to_string().as_bytes()));
    assert_eq!(h.selection_digest(&["d0/def"], true).unwrap(), Digest::of(DATA0.as_bytes()));
    let none: [&str; 0] = [];
    assert_eq!(h.selection_digest(&none, true).unwrap(), Digest::of(h.digest().to_string().as_bytes()));
    assert!(matches!(h.selection_digest(&["nosuch"], true), Err(HashError::NotFound { .. })));
}

#[test]
fn stat_cache_skips_unchanged_files_and_rehashes_changed_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("ctx");
    fs::create_dir(&root).unwrap();
    basic_tree(&root);
    fs::create_dir(root.join("many")).unwrap();
    for i in 0..50 {
        file(&root, &format!("many/f{i}"), &format!("content {i}"), 0o644);
    }
    let cache_file = tmp.path().join("stat.cache");
    // Everything was just written: all of it is racy now, so wait out the window once.
    std::thread::sleep(Duration::from_millis(300));
    let window = Duration::from_millis(100);

    let mut cache = StatCache::load(&cache_file).with_racy_window(window);
    let first = hash_context(&root, &walk(&root), Some(&mut cache)).unwrap();
    assert_eq!(first.stats().files_hashed, 53);
    assert_eq!(first.stats().cache_hits, 0);
    let entry_count = walk(&root).len();
    assert_eq!(cache.len(), entry_count);
    cache.save(&cache_file).unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let mut cache = StatCache::load(&cache_file).with_racy_window(window);
    let second = hash_context(&root, &walk(&root), Some(&mut cache)).unwrap();
    assert_eq!(second.stats().files_hashed, 0);
    assert_eq!(second.stats().headers_hashed, 0);
    assert_eq!(second.stats().cache_hits as usize, entry_count);
    assert_eq!(all_digests(&first), all_digests(&second));
    // Nothing changed: saving leaves the file alone (a rewrite would rename a new inode in).
    let ino = |p: &Path| fs::metadata(p).unwrap().ino();
    let before = (ino(&cache_file), fs::read(&cache_file).unwrap());
    cache.save(&cache_file).unwrap();
    assert_eq!((ino(&cache_file), fs::read(&cache_file).unwrap()), before);
    // Saved elsewhere, it is written.
    let copy = tmp.path().join("copy.cache");
    cache.save(&copy).unwrap();
    assert_eq!(fs::read(&copy).unwrap(), before.1);

    // One file changes (same size): only it is read again, and it is racy until the window passes.
    file(&root, "many/f7", "CONTENT 7", 0o644);
    let third = hash_context(&root, &walk(&root), Some(&mut cache)).unwrap();
    assert_eq!(third.stats().files_hashed, 1);
    assert_ne!(third.get(Path::new("many/f7")).unwrap().digest, first.get(Path::new("many/f7")).unwrap().digest);
    assert_eq!(cache.len(), entry_count - 1, "the racy file is left out");
    let fourth = hash_context(&root, &walk(&root), Some(&mut cache)).unwrap();
    assert_eq!(fourth.stats().files_hashed, 1, "a racy file is read again");
    assert_eq!(all_digests(&third), all_digests(&fourth));
    // Changed records are written.
    cache.save(&cache_file).unwrap();
    assert_ne!(ino(&cache_file), before.0);
    assert_eq!(StatCache::load(&cache_file).len(), entry_count - 1);

    // A deleted file leaves the cache, though nothing new was hashed.
    std::thread::sleep(Duration::from_millis(300));
    let mut cache = StatCache::load(&cache_file).with_racy_window(window);
    fs::remove_file(root.join("many/f3")).unwrap();
    let fifth = hash_context(&root, &walk(&root), Some(&mut cache)).unwrap();
    assert_eq!(fifth.stats().files_hashed, 1, "only the file that was racy is read");
    assert_eq!(fifth.stats().headers_hashed, 1, "and the directory whose mtime changed");
    assert!(fifth.get(Path::new("many/f3")).is_none());
    cache.save(&cache_file).unwrap();
    let saved = StatCache::load(&cache_file).with_racy_window(window);
    assert_eq!(saved.len(), entry_count - 2, "f3 gone, `many` racy (just modified), f7 back");
    let racy: Vec<_> = walk(&root).into_iter().filter(|e| saved.lookup(e).is_none()).map(|e| e.path).collect();
    assert_eq!(racy, [Path::new("many")]);
}

#[test]
fn entry_order_does_not_change_any_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    basic_tree(root);
    for name in ["a", "a-b", "a/b", "ab", "a.b/c"] {
        fs::create_dir_all(root.join("tree").join(name)).unwrap();
        file(root, &format!("tree/{name}/f"), name, 0o644);
    }
    let mut entries = walk(root);
    entries.sort_by(|a, b| nullspace_engine::context::walk::path_order(&a.path, &b.path));
    let sorted = hash_context(root, &entries, None).unwrap();
    entries.reverse();
    let reversed = hash_context(root, &entries, None).unwrap();
    assert_eq!(all_digests(&sorted), all_digests(&reversed));
    // And the directory with the tricky sibling names hashes as when read from disk, which
    // never sees this entry list.
    let options = ChecksumOptions { ownership: Ownership::Reset, ..Default::default() };
    let on_disk = checksum_path(root, Path::new("tree"), &options).unwrap();
    assert_eq!(sorted.get(Path::new("tree")).unwrap().digest, on_disk);
}
