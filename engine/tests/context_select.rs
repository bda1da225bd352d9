//! COPY source selection: Go's `filepath.Match` table (from Go's own `match_test.go`
//! expectations), directory/exclude semantics on a real tree, BuildKit's own `--exclude`
//! integration expectations (`frontend/dockerfile/exclude_patterns_test.go`) and `--parents`.

use std::path::Path;

use nullspace_engine::context::select::{SelectError, Selected, glob_match, select, select_parents, walk};

#[test]
fn go_filepath_match_table() {
    // (pattern, name, Some(matches) or None for ErrBadPattern)
    let cases: &[(&str, &str, Option<bool>)] = &[
        ("abc", "abc", Some(true)),
        ("*", "abc", Some(true)),
        ("*c", "abc", Some(true)),
        ("a*", "a", Some(true)),
        ("a*", "abc", Some(true)),
        ("a*", "ab/c", Some(false)),
        ("a*/b", "abc/b", Some(true)),
        ("a*/b", "a/c/b", Some(false)),
        ("a*b*c*d*e*/f", "axbxcxdxe/f", Some(true)),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Some(true)),
        ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Some(false)),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Some(false)),
        ("a*b?c*x", "abxbbxdbxebxczzx", Some(true)),
        ("a*b?c*x", "abxbbxdbxebxczzy", Some(false)),
        ("ab[c]", "abc", Some(true)),
        ("ab[b-d]", "abc", Some(true)),
        ("ab[e-g]", "abc", Some(false)),
        ("ab[^c]", "abc", Some(false)),
        ("ab[^b-d]", "abc", Some(false)),
        ("ab[^e-g]", "abc", Some(true)),
        ("a\\*b", "a*b", Some(true)),
        ("a\\*b", "ab", Some(false)),
        ("a?b", "a☺b", Some(true)),
        ("a[^a]b", "a☺b", Some(true)),
        ("a???b", "a☺b", Some(false)),
        ("a[^a][^a][^a]b", "a☺b", Some(false)),
        ("[a-ζ]*", "α", Some(true)),
        ("*[a-ζ]", "A", Some(false)),
        ("a?b", "a/b", Some(false)),
        ("a*b", "a/b", Some(false)),
        ("[\\]a]", "]", Some(true)),
        ("[\\-]", "-", Some(true)),
        ("[x\\-]", "x", Some(true)),
        ("[x\\-]", "-", Some(true)),
        ("[x\\-]", "z", Some(false)),
        ("[\\-x]", "x", Some(true)),
        ("[\\-x]", "-", Some(true)),
        ("[\\-x]", "a", Some(false)),
        ("[]a]", "]", None),
        ("[-]", "-", None),
        ("[x-]", "x", None),
        ("[x-]", "-", None),
        ("[x-]", "z", None),
        ("[-x]", "x", None),
        ("[-x]", "-", None),
        ("[-x]", "a", None),
        ("\\", "a", None),
        ("[a-b-c]", "a", None),
        ("[", "a", None),
        ("[^", "a", None),
        ("[^bc", "a", None),
        ("a[", "a", None),
        ("a[", "ab", None),
        ("a[", "x", None),
        ("a/b[", "x", None),
        ("*x", "xxx", Some(true)),
    ];
    for (pattern, name, expected) in cases {
        let got = glob_match(pattern, name).ok();
        assert_eq!(got, *expected, "Match({pattern:?}, {name:?})");
    }
}

#[test]
fn directories_by_content_files_by_name_and_excludes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("src/pkg/cache")).unwrap();
    std::fs::write(root.join("src/main.py"), "m").unwrap();
    std::fs::write(root.join("src/pkg/mod.py"), "p").unwrap();
    std::fs::write(root.join("src/pkg/cache/x.pyc"), "c").unwrap();
    std::fs::write(root.join("README"), "r").unwrap();
    let entries = walk(root).unwrap();

    let sel = select(&entries, &["src".into()], &["cache".into(), "pkg/cache".into()]).unwrap();
    assert_eq!(sel.len(), 1);
    assert!(sel[0].dir);
    let paths: Vec<String> = sel[0].entries.iter().map(|e| e.path.display().to_string()).collect();
    assert_eq!(paths, ["main.py", "pkg", "pkg/mod.py"]);

    let sel = select(&entries, &["src/*.py".into(), "README".into()], &[]).unwrap();
    let picked: Vec<(String, bool, Vec<String>)> = sel
        .iter()
        .map(|s| {
            (s.path.display().to_string(), s.dir, s.entries.iter().map(|e| e.path.display().to_string()).collect())
        })
        .collect();
    assert_eq!(
        picked,
        [
            ("src/main.py".to_string(), false, vec!["main.py".to_string()]),
            ("README".to_string(), false, vec!["README".to_string()])
        ]
    );
    // BuildKit's Dockerfile COPY allows a wildcard that matches nothing (AllowEmptyWildcard).
    assert_eq!(select(&entries, &["nope/*".into()], &[]).unwrap(), []);
    assert!(select(&entries, &["missing".into()], &[]).is_err());
    assert!(select(&entries, &["../etc".into()], &[]).is_err());
}

fn tree(files: &[(&str, Option<&str>)], links: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, content) in files {
        let full = dir.path().join(path);
        match content {
            Some(c) => {
                std::fs::create_dir_all(full.parent().unwrap()).unwrap();
                std::fs::write(full, c).unwrap();
            }
            None => std::fs::create_dir_all(full).unwrap(),
        }
    }
    for (link, target) in links {
        std::os::unix::fs::symlink(target, dir.path().join(link)).unwrap();
    }
    dir
}

/// The destination paths (relative to the COPY destination directory) of every non-directory
/// entry a selection copies, as `COPY src… /dest/` lays them out.
fn dest_files(selected: &[Selected]) -> Vec<String> {
    let mut out = Vec::new();
    for s in selected {
        for e in &s.entries {
            if e.kind != nullspace_engine::context::EntryKind::Dir {
                out.push(e.path.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// BuildKit's `testExcludedFilesOnCopy`: the same tree, the same six COPY/ADD lines, and the
/// files its assertions say exist afterwards.
#[test]
fn buildkit_exclude_integration_expectations() {
    let dir = tree(
        &[
            ("dir1/file-101.png", Some("2")),
            ("dir1/file-102.txt", Some("3")),
            ("dir1/file-103.jpeg", Some("4")),
            ("dir2/file-201.pdf", Some("6")),
            ("dir2/file-202.jpeg", Some("7")),
            ("dir2/file-203.png", Some("8")),
            ("dir3/file-301.mp3", Some("9")),
            ("dir3/file-302.mpeg", Some("10")),
            ("dir4/file-401.txt", Some("11")),
        ],
        &[("dir4/file-402.txt", "file-401.txt"), ("dir4/file-403.txt", "file-404.txt")],
    );
    let entries = walk(dir.path()).unwrap();
    let copy = |sources: &[&str], exclude: &[&str]| {
        dest_files(&select(&entries, &strings(sources), &strings(exclude)).unwrap())
    };

    // COPY --exclude=*/*.png --exclude=*/*.jpeg . /1
    assert_eq!(
        copy(&["."], &["*/*.png", "*/*.jpeg"]),
        [
            "dir1/file-102.txt",
            "dir2/file-201.pdf",
            "dir3/file-301.mp3",
            "dir3/file-302.mpeg",
            "dir4/file-401.txt",
            "dir4/file-402.txt",
            "dir4/file-403.txt"
        ]
    );
    // COPY --exclude=*/*.pdf --exclude=*/*.txt . /2
    assert_eq!(
        copy(&["."], &["*/*.pdf", "*/*.txt"]),
        [
            "dir1/file-101.png",
            "dir1/file-103.jpeg",
            "dir2/file-202.jpeg",
            "dir2/file-203.png",
            "dir3/file-301.mp3",
            "dir3/file-302.mpeg"
        ]
    );
    // ADD --exclude=*.mp3 dir3/ /3/
    assert_eq!(copy(&["dir3/"], &["*.mp3"]), ["file-302.mpeg"]);
    // COPY --exclude=*.mp3 --exclude=*.jpeg --exclude=*.png --exclude=*.pdf --exclude=*.txt dir* /4/
    assert_eq!(copy(&["dir*"], &["*.mp3", "*.jpeg", "*.png", "*.pdf", "*.txt"]), ["file-302.mpeg"]);
    // ADD --exclude=*.mp* --exclude=*.jpeg --exclude=*.png --exclude=*.pdf dir* /5
    assert_eq!(
        copy(&["dir*"], &["*.mp*", "*.jpeg", "*.png", "*.pdf"]),
        ["file-102.txt", "file-401.txt", "file-402.txt", "file-403.txt"]
    );
    // ADD --exclude=* dir* /6
    assert_eq!(copy(&["dir*"], &["*"]), Vec::<String>::new());
}

#[test]
fn exclude_uses_patternmatcher_rules() {
    let dir = tree(
        &[
            ("app/src/main.rs", Some("m")),
            ("app/src/gen/out.rs", Some("g")),
            ("app/target/debug/bin", Some("b")),
            ("app/target/keep.txt", Some("k")),
            ("app/deep/a/b/c.log", Some("l")),
            ("app/top.log", Some("t")),
        ],
        &[],
    );
    let entries = walk(dir.path()).unwrap();
    let copy = |exclude: &[&str]| dest_files(&select(&entries, &strings(&["app"]), &strings(exclude)).unwrap());
    // `**` crosses directories; a plain `*.log` is anchored at the source.
    assert_eq!(copy(&["**/*.log"]), ["src/gen/out.rs", "src/main.rs", "target/debug/bin", "target/keep.txt"]);
    assert_eq!(
        copy(&["*.log"]),
        ["deep/a/b/c.log", "src/gen/out.rs", "src/main.rs", "target/debug/bin", "target/keep.txt"]
    );
    // A `!` exception re-includes a file inside an excluded directory, which is kept as its parent.
    let sel = select(&entries, &strings(&["app"]), &strings(&["target", "!target/keep.txt"])).unwrap();
    let listed: Vec<String> = sel[0].entries.iter().map(|e| e.path.to_string_lossy().into_owned()).collect();
    assert!(listed.contains(&"target".to_string()), "{listed:?}");
    assert!(listed.contains(&"target/keep.txt".to_string()));
    assert!(!listed.iter().any(|p| p.starts_with("target/debug")), "{listed:?}");
    // Excludes are relative to the source, never to the context root...
    assert_eq!(
        copy(&["app/src"]),
        ["deep/a/b/c.log", "src/gen/out.rs", "src/main.rs", "target/debug/bin", "target/keep.txt", "top.log"]
    );
    // ...and never applied to a source itself.
    assert_eq!(dest_files(&select(&entries, &strings(&["app/top.log"]), &strings(&["*.log"])).unwrap()), ["top.log"]);
    assert!(matches!(select(&entries, &strings(&["app"]), &strings(&["!"])), Err(SelectError::Exclude { .. })));
}

#[test]
fn parents_keep_paths_below_the_pivot() {
    let dir = tree(
        &[
            ("x/a/one.txt", Some("1")),
            ("x/a/two.md", Some("2")),
            ("x/b/three.txt", Some("3")),
            ("y/four.txt", Some("4")),
        ],
        &[],
    );
    let entries = walk(dir.path()).unwrap();
    let parents = |sources: &[&str], exclude: &[&str]| select_parents(&entries, &strings(sources), &strings(exclude));
    // No pivot: paths stay relative to the context.
    let sel = parents(&["x/*/*.txt"], &[]).unwrap();
    assert_eq!(sel[0].path, Path::new(""));
    let listed: Vec<String> = sel[0].entries.iter().map(|e| e.path.to_string_lossy().into_owned()).collect();
    assert_eq!(listed, ["x", "x/a", "x/a/one.txt", "x/b", "x/b/three.txt"]);
    // A pivot: paths relative to it; a directory brings its contents.
    let sel = parents(&["x/./a"], &["**/*.md"]).unwrap();
    assert_eq!(sel[0].path, Path::new("x"));
    assert_eq!(dest_files(&sel), ["a/one.txt"]);
    // A plain path must exist; a wildcard may match nothing.
    assert!(matches!(parents(&["x/./c"], &[]), Err(SelectError::NotFound { .. })));
    assert_eq!(dest_files(&parents(&["y/./*.rs"], &[]).unwrap()), Vec::<String>::new());
}
