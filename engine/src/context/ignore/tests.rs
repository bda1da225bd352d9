use super::*;

fn excluded(patterns: &[&str], path: &str) -> bool {
    let matcher = PatternMatcher::new(patterns).unwrap_or_else(|e| panic!("{patterns:?}: {e}"));
    matcher.matches_or_parent_matches(path).unwrap_or_else(|e| panic!("{patterns:?} on {path:?}: {e}"))
}

/// Runs `MatchesUsingParentResults` down the path's ancestors, as fsutil's walk does.
fn excluded_walking(matcher: &PatternMatcher, path: &[u8]) -> Result<bool, PatternError> {
    let mut info = MatchInfo::default();
    let mut result = false;
    let cuts = path.iter().enumerate().filter(|&(_, &b)| b == b'/').map(|(i, _)| i);
    for end in cuts.chain(std::iter::once(path.len())) {
        let (hit, next) = matcher.matches_using_parent_results(&path[..end], &info)?;
        result = hit;
        info = next;
    }
    Ok(result)
}

#[test]
fn double_star_forms() {
    assert!(excluded(&["**"], "a/b/c"));
    assert!(excluded(&["**/"], "file"));
    assert!(excluded(&["**/foo"], "foo"));
    assert!(excluded(&["**/foo"], "a/b/foo"));
    assert!(!excluded(&["**/.foo"], "bar.foo"));
    assert!(excluded(&["**foo"], "barfoo"), "a leading ** is a plain suffix");
    assert!(excluded(&["a/**/b"], "a/b"));
    assert!(excluded(&["a/**/b"], "a/x/y/b"));
    assert!(!excluded(&["a/**/b"], "a/xb"));
    assert!(!excluded(&["abc/**"], "abc"), "dir/** does not match the directory itself");
    assert!(excluded(&["abc/**"], "abc/d/e"));
    assert!(excluded(&["abc**"], "abcdef"));
    assert!(excluded(&["**/*.txt"], "x.txt"));
    assert!(!excluded(&["**/*.txt"], "x.txt2"));
}

#[test]
fn anchored_at_root_unlike_gitignore() {
    assert!(excluded(&["*.md"], "README.md"));
    assert!(!excluded(&["*.md"], "docs/README.md"));
    assert!(!excluded(&["foo"], "sub/foo"));
    assert!(excluded(&["foo"], "foo/bar/baz"), "a match on a parent excludes its children");
    // read_all strips the leading slash; the matcher alone only cleans.
    let from_file = read_all(b"/foo/").expect("parses");
    assert!(PatternMatcher::new(&from_file).expect("valid").matches_or_parent_matches("foo").expect("matches"));
    assert!(!excluded(&["/foo/"], "foo"));
    assert!(excluded(&["*/b"], "a/b/c"));
}

#[test]
fn last_match_wins_and_exceptions_reinclude() {
    assert!(!excluded(&["*.md", "!README.md"], "README.md"));
    assert!(excluded(&["*.md", "!README.md", "README.md"], "README.md"));
    assert!(!excluded(&["docs", "!docs/README.md"], "docs/README.md"));
    assert!(excluded(&["docs", "!docs/README.md"], "docs/guide.md"));
    assert!(excluded(&["docs", "!docs/README.md"], "docs"));
    // An exception for a directory re-includes what is under it.
    assert!(!excluded(&["**", "!keep"], "keep/a/b"));
    assert!(excluded(&["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo"));
}

#[test]
fn globs_classes_and_escapes() {
    assert!(excluded(&["a?c"], "abc"));
    assert!(!excluded(&["a?c"], "a/c"), "? does not match /");
    assert!(!excluded(&["a*c"], "a/c"), "* does not match /");
    assert!(excluded(&["a[b-d]e"], "ace"));
    assert!(excluded(&["a[^b-d]e"], "aze"));
    assert!(excluded(&["a\\*b"], "a*b"));
    assert!(!excluded(&["a\\*b"], "axb"));
    assert!(excluded(&["a(b)c"], "a(b)c"));
    assert!(excluded(&["a.|)$(}+{bc"], "a.|)$(}+{bc"));
    // Go's regexp reads `[[^/]` as a class holding '[', '^' and '/': `[*]` matches `]` and `^]`.
    assert!(excluded(&["[*]"], "]"));
    assert!(excluded(&["[*]"], "^^]"));
    assert!(!excluded(&["[*]"], "*"));
    // `^` is a regexp anchor once the pattern is a regexp.
    assert!(excluded(&["^a*"], "abc"));
    assert!(excluded(&["^a"], "^a"), "no glob character: compared as text");
    // Go's POSIX classes and `\b` word boundary (ASCII) work as in Docker.
    assert!(excluded(&["[[:alpha:]]"], "q"));
    assert!(!excluded(&["[[:alpha:]]"], "1"));
    assert!(excluded(&["a\\b*"], "a-x"));
    assert!(!excluded(&["a\\b*"], "ab"));
    // `\d` is Go's ASCII digit class.
    assert!(excluded(&["v\\d"], "v7"));
}

#[test]
fn bad_patterns() {
    assert_eq!(PatternMatcher::new(["!"]).err(), Some(PatternError::IllegalExclusion));
    assert!(matches!(PatternMatcher::new(["["]), Err(PatternError::BadPattern { .. })));
    assert!(matches!(PatternMatcher::new(["a[b"]), Err(PatternError::BadPattern { .. })));
    assert!(matches!(PatternMatcher::new(["a\\"]), Err(PatternError::BadPattern { .. })));
    assert!(matches!(PatternMatcher::new(["[]"]), Err(PatternError::BadPattern { .. })));
    // Valid glob, but `\é` is an escape Go's regexp refuses: the error comes when matching.
    let matcher = PatternMatcher::new(["\\é"]).expect("glob syntax is fine");
    assert!(matches!(matcher.matches_or_parent_matches("x"), Err(PatternError::BadRegex { .. })));
    // An exception is not evaluated while nothing is excluded, so its error never shows.
    let matcher = PatternMatcher::new(["!\\é"]).expect("glob syntax is fine");
    assert_eq!(matcher.matches_or_parent_matches("x"), Ok(false));
}

#[test]
fn whitespace_and_empty_patterns() {
    let matcher = PatternMatcher::new(["  ", "", " a "]).expect("valid");
    assert_eq!(matcher.patterns().len(), 1);
    assert!(matcher.matches_or_parent_matches("a").expect("matches"));
    assert!(!matcher.has_exclusions());
    assert!(PatternMatcher::new(["!x"]).expect("valid").has_exclusions());
}

#[test]
fn non_utf8_paths_and_patterns() {
    let matcher = PatternMatcher::new(["*.txt"]).expect("valid");
    assert!(matcher.matches_or_parent_matches(b"\xff.txt").expect("matches"));
    let one = PatternMatcher::new(["?"]).expect("valid");
    assert!(one.matches_or_parent_matches(b"\xff").expect("matches"));
    assert!(!one.matches_or_parent_matches(b"\xff\xfe").expect("matches"), "each invalid byte is one rune");
    assert!(one.matches_or_parent_matches("é").expect("matches"), "a multi-byte rune is one rune");
    let exact = PatternMatcher::new([b"dir\xfe".as_slice()]).expect("valid");
    assert!(exact.matches_or_parent_matches(b"dir\xfe/file").expect("matches"));
    assert!(!exact.matches_or_parent_matches(b"dir\xff/file").expect("matches"));
}

#[test]
fn parent_results_agree_with_parent_matching() {
    let pattern_sets: &[&[&str]] =
        &[&["docs", "!docs/README.md"], &["**", "!a/b"], &["*/b", "!a/b/c*", "a/b/c2"], &["**/x", "!**/x/keep"]];
    let paths = ["docs/README.md", "docs/x", "a/b", "a/b/c1", "a/b/c2/d", "q/x/keep", "q/x/y", "a/z/c/d", "a/b/c"];
    for patterns in pattern_sets {
        let matcher = PatternMatcher::new(*patterns).expect("valid");
        for path in paths {
            let direct = matcher.matches_or_parent_matches(path).expect("matches");
            let walked = excluded_walking(&matcher, path.as_bytes()).expect("matches");
            assert_eq!(direct, walked, "{patterns:?} on {path}");
        }
    }
}

#[test]
fn parent_results_can_differ_from_parent_matching_as_in_go() {
    // `!a/b` is skipped for `a/b` (nothing was excluded yet), so the walk never learns that it
    // matched a parent of `a/b/c`; MatchesOrParentMatches does check the parents. fsutil walks
    // with the former, so Docker sends nothing for `a/b/c` here.
    let matcher = PatternMatcher::new(["a/**/c", "!a/b"]).expect("valid");
    assert!(!matcher.matches_or_parent_matches("a/b/c").expect("matches"));
    assert!(excluded_walking(&matcher, b"a/b/c").expect("matches"));
}

#[test]
fn deprecated_matches_checks_one_ancestor_only() {
    let matcher = PatternMatcher::new(["**/b"]).expect("valid");
    assert!(matcher.matches_or_parent_matches("b/c/d/e").expect("matches"));
    assert!(!matcher.matches("b/c/d/e").expect("matches"), "Go's Matches only looks at `b/c`");
    assert!(matcher.matches("x/b/y").expect("matches"));
}

#[test]
fn match_info_from_another_matcher_is_refused() {
    let two = PatternMatcher::new(["a", "b"]).expect("valid");
    let one = PatternMatcher::new(["a"]).expect("valid");
    let (_, info) = two.matches_using_parent_results("a", &MatchInfo::default()).expect("matches");
    assert_eq!(one.matches_using_parent_results("a/x", &info), Err(PatternError::MatchInfoMismatch));
}
