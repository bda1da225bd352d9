use super::*;
use std::os::unix::fs::{PermissionsExt, symlink};

/// Creates `files` under a new temporary directory; a path ending in `/` is an empty directory.
fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, content) in files {
        let full = dir.path().join(path);
        if path.ends_with('/') {
            std::fs::create_dir_all(&full).expect("mkdir");
        } else {
            std::fs::create_dir_all(full.parent().expect("has parent")).expect("mkdir");
            std::fs::write(&full, content).expect("write");
        }
    }
    dir
}

fn listing(result: &WalkResult) -> Vec<String> {
    result
        .entries
        .iter()
        .map(|e| {
            let kind = match &e.kind {
                EntryKind::File => "file".to_string(),
                EntryKind::Dir => "dir".to_string(),
                EntryKind::Symlink { target } => format!("symlink->{}", target.display()),
            };
            format!("{kind} {}", e.path.display())
        })
        .collect()
}

fn walk(root: &Path, patterns: &[&str]) -> WalkResult {
    Walker::new(root).patterns(patterns).walk().expect("walk succeeds")
}

#[test]
fn path_order_puts_slash_first() {
    let mut paths = vec![PathBuf::from("a-c"), PathBuf::from("a/b"), PathBuf::from("a"), PathBuf::from("a.b")];
    paths.sort_by(|a, b| path_order(a, b));
    assert_eq!(paths, [Path::new("a"), Path::new("a/b"), Path::new("a-c"), Path::new("a.b")]);
}

#[test]
fn walk_order_is_buildkit_order_and_counts_bytes() {
    let dir = tree(&[("a/b", "12345"), ("a-c", "123"), ("a.b/x", "1")]);
    let result = walk(dir.path(), &[]);
    assert_eq!(listing(&result), ["dir a", "file a/b", "file a-c", "dir a.b", "file a.b/x"]);
    assert_eq!(result.included, Stats { entries: 5, bytes: 9 });
    assert_eq!(result.excluded, Stats::default());
    assert_eq!(result.ignore_file, None);
}

#[test]
fn excluded_directory_is_not_entered_without_exceptions() {
    let dir = tree(&[("node_modules/a", "a"), ("node_modules/b/c", "c"), ("keep", "k")]);
    let result = walk(dir.path(), &["node_modules"]);
    assert_eq!(listing(&result), ["file keep"]);
    // Entered, it would have counted its three entries too.
    assert_eq!(result.excluded.entries, 1);
}

#[test]
fn plain_exceptions_enter_only_their_ancestors() {
    let dir = tree(&[("src/keep/a", "a"), ("src/drop", "dd"), ("other/x", "x"), ("top", "t")]);
    let result = walk(dir.path(), &["*", "!src/keep"]);
    assert_eq!(listing(&result), ["dir src", "dir src/keep", "file src/keep/a"]);
    // `other` (not entered), `src/drop` and `top`; `src` is listed as a parent.
    assert_eq!(result.excluded, Stats { entries: 3, bytes: 3 });
}

#[test]
fn excluded_bytes_can_go_uncounted() {
    let dir = tree(&[("src/keep/a", "a"), ("src/drop", "dd"), ("other/x", "x"), ("top", "t")]);
    let counted = Walker::new(dir.path()).patterns(["*", "!src/keep"]).walk().unwrap();
    let uncounted = Walker::new(dir.path()).patterns(["*", "!src/keep"]).count_excluded_bytes(false).walk().unwrap();
    assert_eq!(counted.excluded, Stats { entries: 3, bytes: 3 });
    assert_eq!(uncounted.excluded, Stats { entries: 3, bytes: 0 });
    assert_eq!(uncounted.entries, counted.entries);
    assert_eq!(uncounted.included, counted.included);
}

#[test]
fn glob_exceptions_enter_every_excluded_directory() {
    let dir = tree(&[("node_modules/a/README.md", "r"), ("node_modules/a/index.js", "i"), ("x.md", "x")]);
    let result = walk(dir.path(), &["node_modules", "!**/*.md"]);
    assert_eq!(
        listing(&result),
        ["dir node_modules", "dir node_modules/a", "file node_modules/a/README.md", "file x.md"]
    );
}

#[test]
fn exception_then_reexclusion_last_match_wins() {
    let dir = tree(&[("docs/README.md", "r"), ("docs/img/logo.png", "p"), ("docs/guide.md", "g")]);
    let result = walk(dir.path(), &["docs", "!docs", "docs/img"]);
    assert_eq!(listing(&result), ["dir docs", "file docs/README.md", "file docs/guide.md"]);
}

#[test]
fn symlinks_are_recorded_not_followed() {
    let dir = tree(&[("real/file", "f")]);
    symlink("real", dir.path().join("linkdir")).expect("symlink");
    symlink("nowhere", dir.path().join("dangling")).expect("symlink");
    let result = walk(dir.path(), &[]);
    assert_eq!(listing(&result), ["symlink->nowhere dangling", "symlink->real linkdir", "dir real", "file real/file"]);
    let link = result.entries.iter().find(|e| e.path == Path::new("linkdir")).expect("listed");
    assert_eq!(link.size, 4, "a symlink's size is its target's length");
}

#[test]
fn fifos_and_sockets_are_reported_unsupported() {
    let dir = tree(&[("file", "f"), ("ignored/", "")]);
    let fifo = |path: &Path| {
        let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("no NUL");
        // SAFETY: `c_path` is a valid NUL-terminated string that outlives the call.
        let rc = unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) };
        assert_eq!(rc, 0, "mkfifo {}: {}", path.display(), io::Error::last_os_error());
    };
    fifo(&dir.path().join("pipe"));
    fifo(&dir.path().join("ignored/pipe"));
    let _socket = std::os::unix::net::UnixListener::bind(dir.path().join("sock")).expect("bind");
    let result = walk(dir.path(), &["ignored"]);
    assert_eq!(listing(&result), ["file file"]);
    assert_eq!(
        result.unsupported,
        [
            Unsupported { path: "pipe".into(), kind: UnsupportedKind::Fifo },
            Unsupported { path: "sock".into(), kind: UnsupportedKind::Socket },
        ]
    );
}

#[test]
fn non_utf8_names_are_kept_and_matched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = |bytes: &[u8]| PathBuf::from(OsString::from_vec(bytes.to_vec()));
    std::fs::create_dir(dir.path().join(name(b"d\xff"))).expect("mkdir");
    std::fs::write(dir.path().join(name(b"d\xff/caf\xe9")), "x").expect("write");
    std::fs::write(dir.path().join(name(b"\xfe.bin")), "x").expect("write");
    let result = walk(dir.path(), &["*.bin"]);
    let paths: Vec<&[u8]> = result.entries.iter().map(|e| e.path.as_os_str().as_bytes()).collect();
    assert_eq!(paths, [b"d\xff".as_slice(), b"d\xff/caf\xe9".as_slice()]);
    assert_eq!(result.excluded.entries, 1);
}

/// Whether this process can read a directory whose permission bits forbid it (root can).
fn permission_bits_bind_us(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_err()
}

#[test]
fn unreadable_directories() {
    let dir =
        tree(&[("open/file", "f"), ("locked/secret", "s"), ("skipped/locked/secret", "s"), ("skipped/keep", "k")]);
    let locked = dir.path().join("locked");
    let inner = dir.path().join("skipped/locked");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    let binding = permission_bits_bind_us(&locked);

    // Under an excluded directory entered for an exception, an unreadable directory is skipped.
    let result = Walker::new(dir.path()).patterns(["locked", "skipped", "!skipped/keep"]).walk();
    let result = result.expect("unreadable excluded directories are not errors");
    assert_eq!(listing(&result), ["dir open", "file open/file", "dir skipped", "file skipped/keep"]);

    // An included unreadable directory is an error naming it.
    let outcome = Walker::new(dir.path()).patterns(["skipped"]).walk();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).expect("chmod back");
    std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o755)).expect("chmod back");
    if binding {
        match outcome {
            Err(WalkError::ReadDir { path, source }) => {
                assert_eq!(path, locked.canonicalize().expect("exists"));
                assert_eq!(source.kind(), io::ErrorKind::PermissionDenied);
            }
            other => panic!("expected a ReadDir error, got {other:?}"),
        }
    } else {
        // Running as root: permission bits do not stop reads, so there is no error to see.
        eprintln!("unreadable_directories: permission bits are not enforced for this user; error case not exercised");
        assert!(outcome.is_ok());
    }
}

#[test]
fn dockerfile_specific_ignore_file_wins() {
    let dir = tree(&[
        (".dockerignore", "a\n"),
        ("build/app.Dockerfile", "FROM scratch\n"),
        ("build/app.Dockerfile.dockerignore", "b\nbuild\n"),
        ("a", "a"),
        ("b", "b"),
    ]);
    let result = Walker::new(dir.path()).dockerfile("build/app.Dockerfile").walk().expect("walk");
    assert_eq!(listing(&result), [".dockerignore", "a"].map(|p| format!("file {p}")));
    let root = dir.path().canonicalize().expect("exists");
    assert_eq!(result.ignore_file, Some(root.join("build/app.Dockerfile.dockerignore")));
    assert_eq!(result.patterns, [b"b".to_vec(), b"build".to_vec()]);

    let plain = Walker::new(dir.path()).dockerfile("Dockerfile").walk().expect("walk");
    assert_eq!(plain.ignore_file, Some(root.join(".dockerignore")));
    assert!(!listing(&plain).contains(&"file a".to_string()));
}

#[test]
fn bad_ignore_file_is_an_error_naming_it() {
    let dir = tree(&[(".dockerignore", "ok\n[\n")]);
    match Walker::new(dir.path()).walk() {
        Err(WalkError::Patterns { from: Some(from), source: PatternError::BadPattern { pattern } }) => {
            assert!(from.ends_with(".dockerignore"));
            assert_eq!(pattern, "[");
        }
        other => panic!("expected a pattern error, got {other:?}"),
    }
    let missing = Walker::new(dir.path().join("nope")).walk();
    assert!(matches!(missing, Err(WalkError::Root { .. })));
}

#[test]
fn thread_count_does_not_change_the_result() {
    let mut files = Vec::new();
    for d in 0..20 {
        for f in 0..30 {
            files.push((format!("d{d}/s{}/f{f}", f % 3), format!("{d}-{f}")));
        }
    }
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    let dir = tree(&refs);
    let patterns = ["d1*", "!d1/s2", "*/s0/f1*"];
    let one = Walker::new(dir.path()).patterns(patterns).threads(1).walk().expect("walk");
    let many = Walker::new(dir.path()).patterns(patterns).threads(4).walk().expect("walk");
    assert_eq!(one.entries, many.entries);
    assert_eq!((one.included, one.excluded), (many.included, many.excluded));
    // Independently computed: d1 and d10..d19 are excluded except d1/s2 (10 files); every other
    // dir dN keeps s0 minus f1x (f1 and f10..f19 lie in s0 only when f % 3 == 0: f12, f15, f18),
    // so 30 - 3 files, plus the dirs dN, dN/s0, dN/s1, dN/s2.
    let kept_dirs = 20 - 11;
    let expected = kept_dirs * (27 + 4) + (2 + 10);
    assert_eq!(one.entries.len(), expected);
}

#[test]
fn listings_join_in_path_order_and_drop_excluded_dirs_left_empty() {
    let names = ["b", "a-b", "a/x", "c/d/e", "a/b/c", "ab", "c/d/f", "a.b", "z", "c/a", "x/y/keep", "x/y/no"];
    let files: Vec<(&str, &str)> = names.iter().map(|n| (*n, "x")).collect();
    let dir = tree(&files);
    // `x` and `x/y` are excluded but entered for the exception; `c/d` is entered and keeps nothing.
    let patterns = ["x", "c/d", "!x/y/keep", "!c/d/none"];
    let expected = ["a", "a/b", "a/b/c", "a/x", "a-b", "a.b", "ab", "b", "c", "c/a", "x", "x/y", "x/y/keep", "z"];
    // Independent of the walker: the expected list is sorted by `path_order` here as a check.
    let mut sorted = expected.map(Path::new);
    sorted.sort_by(|a, b| path_order(a, b));
    assert_eq!(sorted.map(|p| p.to_str().unwrap_or("?")), expected);
    for threads in [1, 2, 4] {
        let result = Walker::new(dir.path()).patterns(patterns).threads(threads).walk().expect("walk");
        let paths: Vec<_> = result.entries.iter().map(|e| e.path.to_str().unwrap_or("?")).collect();
        assert_eq!(paths, expected, "{threads} threads");
        // c/d (entered, nothing kept), c/d/e, c/d/f and x/y/no.
        assert_eq!(result.excluded.entries, 4, "{threads} threads");
    }
}
