//! COPY source selection: Go's `filepath.Match` table (from Go's own `match_test.go`
//! expectations) and directory/exclude semantics on a real tree.

use nullspace_native::executor::select::{glob_match, select, walk};

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
    assert!(select(&entries, &["nope/*".into()], &[]).is_err());
    assert!(select(&entries, &["missing".into()], &[]).is_err());
    assert!(select(&entries, &["../etc".into()], &[]).is_err());
}
