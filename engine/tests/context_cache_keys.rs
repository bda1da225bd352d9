//! Cache-key properties on real files: the context is walked, hashed and selected from as a
//! build would, and keys computed for a plan with two context COPY steps.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nullspace_engine::cache::{CacheKeys, Change, KeyContext, ResolvedImages, compute, explain};
use nullspace_engine::context::contenthash::hash_context;
use nullspace_engine::context::select::ContextSelector;
use nullspace_engine::context::statcache::StatCache;
use nullspace_engine::context::walk::Walker;
use nullspace_plan::builder::{CopyOptions, Template};
use nullspace_plan::normalize::{PlanOptions, plan};

fn template() -> Template {
    Template::from_image("busybox:1.36")
        .copy("requirements.txt", "/app/")
        .run_cmd("echo deps")
        .copy_with(["src"], "/app/src", CopyOptions::default().exclude("**/*.pyc"))
        .run_cmd("echo build")
}

fn context() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("src/pkg")).unwrap();
    std::fs::write(root.join("requirements.txt"), "flask==3.0\n").unwrap();
    std::fs::write(root.join("src/main.py"), "print('main')\n").unwrap();
    std::fs::write(root.join("src/pkg/util.py"), "X = 1\n").unwrap();
    std::fs::write(root.join("src/pkg/util.pyc"), "compiled").unwrap();
    std::fs::write(root.join("README.md"), "# readme\n").unwrap();
    std::fs::write(root.join("Dockerfile"), "FROM busybox\n").unwrap();
    dir
}

/// Keys as a build computes them, optionally through a stat cache file.
fn keys(root: &Path, cache_file: Option<&Path>) -> CacheKeys {
    let walked = Walker::new(root).walk().unwrap();
    let mut cache = cache_file.map(StatCache::load);
    let hashes = hash_context(root, &walked.entries, cache.as_mut()).unwrap();
    if let (Some(cache), Some(file)) = (&cache, cache_file) {
        cache.save(file).unwrap();
    }
    let p = plan(&template(), &PlanOptions::default()).plan.unwrap();
    let images: ResolvedImages =
        [("docker.io/library/busybox:1.36".to_string(), format!("sha256:{}", "b".repeat(64)))].into();
    let selector = ContextSelector::new(&walked.entries, &hashes);
    compute(&p, &KeyContext { images: &images, sources: &selector, build_nonce: "n" }).unwrap()
}

fn same(a: &CacheKeys, b: &CacheKeys) -> Vec<bool> {
    a.steps.iter().zip(&b.steps).map(|(x, y)| x.key == y.key).collect()
}

fn set_mtime(path: &Path, secs: i64) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let t = libc::timespec { tv_sec: secs, tv_nsec: 0 };
    // SAFETY: a valid NUL-terminated path and two timespecs.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [t, t].as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    assert_eq!(rc, 0, "utimensat {}", path.display());
}

#[test]
fn mtime_changes_change_no_key_even_through_the_stat_cache() {
    let dir = context();
    let state = tempfile::tempdir().unwrap();
    let cache = state.path().join("stat.cache");
    let before = keys(dir.path(), Some(&cache));
    for p in ["requirements.txt", "src", "src/main.py", "src/pkg/util.py"] {
        set_mtime(&dir.path().join(p), 1_000_000_000);
    }
    assert_eq!(keys(dir.path(), Some(&cache)), before);
    assert_eq!(keys(dir.path(), None), before);
}

#[test]
fn ownership_changes_change_no_key() {
    let dir = context();
    let before = keys(dir.path(), None);
    for p in ["requirements.txt", "src", "src/main.py"] {
        // Changing ownership needs root; elsewhere the current ids are set again, which still
        // changes ctime.
        // SAFETY: geteuid has no preconditions.
        let ids = if unsafe { libc::geteuid() } == 0 { Some((4321, 8765)) } else { None };
        std::os::unix::fs::chown(dir.path().join(p), ids.map(|i| i.0), ids.map(|i| i.1)).unwrap();
    }
    assert_eq!(keys(dir.path(), None), before);
}

#[test]
fn a_mode_change_changes_the_copying_step_and_later_and_is_named() {
    let dir = context();
    let before = keys(dir.path(), None);
    std::fs::set_permissions(dir.path().join("src/main.py"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let after = keys(dir.path(), None);
    assert_eq!(same(&before, &after), [true, true, false, false]);
    let e = explain(&before, &after).unwrap();
    assert_eq!((e.stage, e.step), (0, 2));
    assert!(
        matches!(&e.changes[..], [Change::File { path, old: Some(_), new: Some(_) }] if path == "src/main.py"),
        "{:?}",
        e.changes
    );

    // A directory's mode counts too, and is named as the directory.
    std::fs::set_permissions(dir.path().join("src/pkg"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let e = explain(&after, &keys(dir.path(), None)).unwrap();
    assert!(matches!(&e.changes[..], [Change::File { path, .. }] if path == "src/pkg/"), "{:?}", e.changes);
}

#[test]
fn files_no_copy_selects_change_no_key() {
    let dir = context();
    let before = keys(dir.path(), None);
    // Not copied at all, excluded by the COPY's --exclude, and a new unrelated file.
    std::fs::write(dir.path().join("README.md"), "# changed\n").unwrap();
    std::fs::write(dir.path().join("src/pkg/util.pyc"), "recompiled").unwrap();
    std::fs::write(dir.path().join("src/pkg/new.pyc"), "new").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "new").unwrap();
    assert_eq!(keys(dir.path(), None), before);
}

#[test]
fn a_changed_copied_file_changes_its_step_and_later_ones_and_is_named() {
    let dir = context();
    let state = tempfile::tempdir().unwrap();
    let cache = state.path().join("stat.cache");
    let before = keys(dir.path(), Some(&cache));
    std::fs::write(dir.path().join("src/pkg/util.py"), "X = 2\n").unwrap();
    // Through the stat cache (the file is re-read because its size/mtime/ctime changed).
    let after = keys(dir.path(), Some(&cache));
    assert_eq!(same(&before, &after), [true, true, false, false]);
    let e = explain(&before, &after).unwrap();
    assert_eq!((e.stage, e.step), (0, 2));
    assert!(
        matches!(&e.changes[..], [Change::File { path, old: Some(a), new: Some(b) }] if path == "src/pkg/util.py" && a != b),
        "{:?}",
        e.changes
    );

    // The first COPY's file: every key changes from the first step on.
    std::fs::write(dir.path().join("requirements.txt"), "flask==3.1\n").unwrap();
    let third = keys(dir.path(), Some(&cache));
    assert_eq!(same(&after, &third), [false, false, false, false]);
    let e = explain(&after, &third).unwrap();
    assert_eq!((e.stage, e.step), (0, 0));
    assert!(matches!(&e.changes[..], [Change::File { path, .. }] if path == "requirements.txt"));

    // A file added inside a copied directory is named as added.
    std::fs::write(dir.path().join("src/extra.py"), "").unwrap();
    let e = explain(&third, &keys(dir.path(), Some(&cache))).unwrap();
    assert!(matches!(&e.changes[..], [Change::File { path, old: None, new: Some(_) }] if path == "src/extra.py"));
}
