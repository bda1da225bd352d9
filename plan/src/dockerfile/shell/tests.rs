//! Cases beyond the conformance corpora. Expectations come from BuildKit's own tests
//! (`lex_test.go`) where they exist, otherwise from tracing BuildKit's Go code by hand (noted).

use super::pattern::{compile, reverse_pattern};
use super::text::go_quote;
use super::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};

fn lex() -> Lex {
    Lex::new('\\')
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn error_of(word: &str, env: &[(&str, &str)]) -> String {
    match lex().process_word(word, env) {
        Ok(v) => panic!("{word:?} expanded to {v:?}, expected an error"),
        Err(e) => e.to_string(),
    }
}

/// BuildKit's `TestProcessWithMatches`: (input, env, expected, matched, unmatched).
#[test]
fn matches_and_unmatched_as_buildkit() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, &'a [&'a str], &'a [&'a str]);
    let foo_bar: &[(&str, &str)] = &[("FOO", "xxx"), ("BAR", "")];
    let cases: &[Case] = &[
        ("x", &[("DUMMY", "dummy")], "x", &[], &[]),
        ("x ${UNUSED}", &[("DUMMY", "dummy")], "x ", &[], &["UNUSED"]),
        ("x ${FOO}", &[("FOO", "y")], "x y", &["FOO"], &[]),
        ("${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", foo_bar, "xxx  ccc", &["FOO", "BAR"], &["BAZ"]),
        ("${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", foo_bar, "xxx bbb ccc", &["FOO", "BAR"], &["BAZ"]),
        ("${FOO:-}", foo_bar, "xxx", &["FOO"], &[]),
        ("${FOO:-}", &[], "", &[], &["FOO"]),
        ("${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", foo_bar, "aaa bbb ", &["FOO", "BAR"], &["BAZ"]),
        ("${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", foo_bar, "aaa  ", &["FOO", "BAR"], &["BAZ"]),
        ("${FOO?aaa}", foo_bar, "xxx", &["FOO"], &[]),
        ("${BAR?bbb}", foo_bar, "", &["BAR"], &[]),
        ("${FOO:?aaa}", foo_bar, "xxx", &["FOO"], &[]),
        ("${FOO#()[]{\\}^$.\\*\\?|\\\\}", &[("FOO", "()[]{}^$.*?|\\x")], "x", &["FOO"], &[]),
        ("${FOO%%\\**}", &[("FOO", "xx**")], "xx", &["FOO"], &[]),
        ("${FOO#*x*y}", &[("FOO", "xxyy")], "y", &["FOO"], &[]),
        ("${FOO#*}", &[("FOO", "xxyy")], "xxyy", &["FOO"], &[]),
        ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "x")], "xyy", &["FOO", "BAR"], &[]),
        ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "")], "xxyy", &["FOO", "BAR"], &[]),
        ("${FOO#}", &[("FOO", "xxyy")], "xxyy", &["FOO"], &[]),
        ("${FOO##*x}", &[("FOO", "xxyy")], "yy", &["FOO"], &[]),
        ("${FOO##}", &[("FOO", "xxyy")], "xxyy", &["FOO"], &[]),
        ("${FOO#?\\?}", &[("FOO", "???y")], "?y", &["FOO"], &[]),
        ("${ABC:-.}${FOO%x}${ABC:-.}", &[("FOO", "xxyy")], ".xxyy.", &["FOO"], &["ABC"]),
        ("${FOO%%\\**\\*}", &[("FOO", "a***yy*")], "a", &["FOO"], &[]),
        ("${FOO%}", &[("FOO", "xxyy")], "xxyy", &["FOO"], &[]),
        ("${FOO%%$BAR}", &[("FOO", "xxyy"), ("BAR", "")], "xxyy", &["FOO", "BAR"], &[]),
        (
            "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
            &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", "\\*/")],
            "/foo.*/*.txt - /foo..*.txt",
            &["FOO", "NEEDLE"],
            &[],
        ),
        (
            "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
            &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")],
            "/tmp/bar.txt - /bar.txt",
            &["FOO", "NEEDLE"],
            &[],
        ),
        (
            "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
            &[("FOO", "/a/foo/b/c.txt"), ("NEEDLE", "/?/"), ("REPLACEMENT", "/")],
            "/foo/b/c.txt - /foo/c.txt",
            &["FOO", "NEEDLE", "REPLACEMENT"],
            &[],
        ),
        (
            "${FOO/$NEEDLE/$REPLACEMENT}",
            &[("FOO", "http://google.de"), ("NEEDLE", "http://"), ("REPLACEMENT", "https://")],
            "https://google.de",
            &["FOO", "NEEDLE", "REPLACEMENT"],
            &[],
        ),
        ("${FOO//\\//\\/}", &[("FOO", "/tmp/foo.txt")], "\\/tmp\\/foo.txt", &["FOO"], &[]),
        ("${FOO/$BAR/ww}", &[("FOO", "xxyy"), ("BAR", "")], "wwxxyy", &["FOO", "BAR"], &[]),
        ("${FOO///}", &[("FOO", "xxyy")], "xxyy", &["FOO"], &[]),
        ("${FOO///}", &[], "", &[], &["FOO"]),
    ];
    for (input, env, expected, matched, unmatched) in cases {
        let out = lex().process_word_with_matches(input, env);
        assert_eq!(out.value.as_deref(), Ok(*expected), "{input}");
        assert_eq!(out.matched, set(matched), "matched for {input}");
        assert_eq!(out.unmatched, set(unmatched), "unmatched for {input}");
    }

    let errors: &[(&str, &[(&str, &str)])] = &[
        ("${BAZ?ccc}", foo_bar),
        ("${BAR:?bbb}", foo_bar),
        ("${BAZ:?ccc}", foo_bar),
        ("${BAZ:?}", foo_bar),
        ("${FOO=aaa}", foo_bar),
        ("${FOO=:aaa}", foo_bar),
        ("${FOO=}", &[]),
        ("${FOO:#}", &[]),
        ("${FOO:##}", &[]),
        ("${FOO:%}", &[]),
        ("${FOO:%%}", &[]),
        ("${FOO//ww}", &[("FOO", "xxyy")]),
        ("${FOO//}", &[("FOO", "xxyy")]),
    ];
    for (input, env) in errors {
        assert!(lex().process_word(input, env).is_err(), "{input} should fail");
    }
}

/// Names are still reported when expansion fails, as BuildKit's lint relies on.
#[test]
fn names_reported_on_failure() {
    let out = lex().process_word_with_matches("${BAZ?ccc}$FOO", &[("FOO", "1")]);
    assert!(out.value.is_err());
    assert_eq!(out.unmatched, set(&["BAZ"]));
    assert!(out.matched.is_empty(), "expansion stops at the error");
}

/// BuildKit's `TestShellParserMandatoryEnvVars`.
#[test]
fn mandatory_variables() {
    let set_env = vec!["VAR=plain".to_owned(), "ARG=x".to_owned()];
    let empty_env = vec!["VAR=".to_owned(), "ARG=x".to_owned()];
    let unset_env = vec!["ARG=x".to_owned()];
    let no_empty = "${VAR:?message here$ARG}";
    let no_unset = "${VAR?message here$ARG}";

    assert_eq!(lex().process_word(no_empty, &set_env).unwrap(), "plain");
    for env in [&empty_env, &unset_env] {
        let err = lex().process_word(no_empty, env).unwrap_err();
        assert!(err.to_string().contains("message herex"), "{err}");
        assert_eq!(err.kind, ShellErrorKind::Required { name: "VAR".into(), message: "message herex".into() });
    }
    assert_eq!(lex().process_word(no_unset, &set_env).unwrap(), "plain");
    assert_eq!(lex().process_word(no_unset, &empty_env).unwrap(), "");
    assert!(lex().process_word(no_unset, &unset_env).unwrap_err().to_string().contains("message herex"));
}

/// BuildKit's `TestGetEnv`, through `"k=v"` strings.
#[test]
fn env_from_strings() {
    let lookup = |entries: &[&str], key: &str| -> Option<String> {
        let env: Vec<String> = entries.iter().map(|s| (*s).to_owned()).collect();
        EnvGetter::get(&env, key).map(str::to_owned)
    };
    assert_eq!(lookup(&[], "foo"), None);
    assert_eq!(lookup(&["foo"], "foo").as_deref(), Some(""));
    assert_eq!(lookup(&["foo="], "foo").as_deref(), Some(""));
    assert_eq!(lookup(&["foo=bar"], "foo").as_deref(), Some("bar"));
    assert_eq!(lookup(&["foo=bar", "car=hat"], "car").as_deref(), Some("hat"));
    assert_eq!(lookup(&["foo=bar", "car=hat", "car=bike"], "car").as_deref(), Some("bike"));
    assert_eq!(lookup(&["a=b=c"], "a").as_deref(), Some("b=c"));
    assert_eq!(lookup(&["Foo=1"], "foo"), None, "names are case-sensitive");
    let env = ["car=hat", "foo=1", "car=bike"];
    assert_eq!(EnvGetter::keys(&env), ["car", "foo"]);
}

#[test]
fn env_containers() {
    let word = "${A}-${B-unset}-${C:-empty}";
    let expected = "1-unset-empty";
    let pairs = [("A", "1"), ("C", "")];
    let owned: Vec<(String, String)> = pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
    let btree: BTreeMap<&str, &str> = pairs.into_iter().collect();
    let hash: HashMap<String, String> = owned.iter().cloned().collect();
    assert_eq!(lex().process_word(word, &pairs).unwrap(), expected);
    assert_eq!(lex().process_word(word, &owned).unwrap(), expected);
    assert_eq!(lex().process_word(word, &btree).unwrap(), expected);
    assert_eq!(lex().process_word(word, &hash).unwrap(), expected);
    let dynamic: &dyn EnvGetter = &btree;
    assert_eq!(lex().process_word(word, dynamic).unwrap(), expected);
    assert_eq!(lex().process_word("${A:-x}$A", &NoEnv).unwrap(), "x");
    assert_eq!(EnvGetter::keys(&btree), ["A", "C"]);
    assert!(NoEnv.keys().is_empty());
}

/// BuildKit's `TestProcessWithMatchesPlatform`.
#[test]
fn release_name_with_optional_variant() {
    let word = "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz";
    let base = [("VERSION", "v1.2.3"), ("TARGETOS", "linux")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut env = base.to_vec();
        env.extend_from_slice(extra);
        lex().process_word_with_matches(word, &env).value.unwrap()
    };
    assert_eq!(with(&[("TARGETARCH", "arm"), ("TARGETVARIANT", "v7")]), "something-v1.2.3.linux-arm-v7.tar.gz");
    assert_eq!(with(&[("TARGETARCH", "arm64"), ("TARGETVARIANT", "")]), "something-v1.2.3.linux-arm64.tar.gz");
    assert_eq!(with(&[("TARGETARCH", "arm64")]), "something-v1.2.3.linux-arm64.tar.gz");
}

/// BuildKit's `TestReversePattern`.
#[test]
fn reversing_patterns_keeps_escapes() {
    for (pattern, expected) in [
        ("a\\*c", "c\\*a"),
        ("\\\\\\ab", "b\\a\\\\"),
        ("ab\\", "\\ba"),
        ("👽\\🚀🖖", "🖖\\🚀👽"),
        ("\\\\b", "b\\\\"),
        ("", ""),
    ] {
        assert_eq!(reverse_pattern(pattern), expected, "{pattern}");
    }
}

fn match_end(pattern: &str, text: &str) -> Option<usize> {
    compile(pattern, true, true).unwrap().find_at(text, 0).map(|(_, end)| end)
}

/// BuildKit's `TestConvertShellPatternToRegex`, judged by what the patterns match (our
/// regular-expression text escapes differently, and wildcard-free patterns skip it).
#[test]
fn shell_patterns() {
    assert_eq!(match_end("(()[]{\\}^$.\\*\\?|\\\\", "(()[]{}^$.*?|\\tail"), Some(14));
    assert_eq!(match_end("(()[]{\\}^$.\\*\\?|\\\\", "(()[]{}^$x*?|\\tail"), None);
    assert_eq!(match_end("*", "anything"), Some(8));
    assert_eq!(match_end("?", "ab"), Some(1));
    assert_eq!(match_end("?", "\n"), None, "? does not match a newline");
    assert_eq!(match_end("\\*", "*x"), Some(1));
    assert_eq!(match_end("\\*", "x"), None);
    assert_eq!(match_end("a*(", "a((b("), Some(5));
    for invalid in ["\\", "\\x", "\\\\\\"] {
        assert!(compile(invalid, true, true).is_err(), "{invalid}");
    }
    assert_eq!(compile("\\", true, true).err().map(|e| e.to_string()).as_deref(), Some("invalid escape '\\\u{fffd}'"));
}

/// The messages are BuildKit's (traced from `lex.go`).
#[test]
fn error_messages() {
    let env: &[(&str, &str)] = &[("PWD", "/home"), ("NULL", "")];
    let cases = [
        ("${}", "failed to process \"${}\": syntax error: bad substitution"),
        ("${:-x}", "failed to process \"${:-x}\": syntax error: bad substitution"),
        ("a${", "failed to process \"a${\": syntax error: missing '}'"),
        ("${aaa:-bbb", "failed to process \"${aaa:-bbb\": syntax error: missing '}'"),
        ("${aaa:-'bb}", "failed to process \"${aaa:-'bb}\": syntax error: missing '}'"),
        ("${PWD", "failed to process \"${PWD\": unsupported modifier (\u{fffd}) in substitution"),
        ("${PWD:=x}", "failed to process \"${PWD:=x}\": unsupported modifier (:=) in substitution"),
        ("${PWD:#x}", "failed to process \"${PWD:#x}\": unsupported modifier (:#) in substitution"),
        ("${PWD.}", "failed to process \"${PWD.}\": unsupported modifier (.) in substitution"),
        ("${X/a", "failed to process \"${X/a\": syntax error: missing '/' in ${}"),
        ("${X/a/b", "failed to process \"${X/a/b\": syntax error: missing '}'"),
        ("\"abc", "failed to process \"\\\"abc\": unexpected end of statement while looking for matching double-quote"),
        ("'abc", "failed to process \"'abc\": unexpected end of statement while looking for matching single-quote"),
        ("${NULL:?}", "failed to process \"${NULL:?}\": NULL: is not allowed to be empty"),
        ("${X?}", "failed to process \"${X?}\": X: is not allowed to be unset"),
        (
            "${PWD#\\x}",
            "failed to process \"${PWD#\\\\x}\": invalid pattern (\\x) in substitution: invalid escape '\\x'",
        ),
        // `%` reports the reversed pattern.
        (
            "${PWD%a\\x}",
            "failed to process \"${PWD%a\\\\x}\": invalid pattern (\\xa) in substitution: invalid escape '\\x'",
        ),
        ("a\tb\n${", "failed to process \"a\\tb\\n${\": syntax error: missing '}'"),
    ];
    for (word, expected) in cases {
        assert_eq!(error_of(word, env), expected, "{word}");
    }
    // A nested error that does not reach the end of the word is passed through.
    assert_eq!(error_of("${a:-${}}x", env), "failed to process \"${a:-${}}x\": syntax error: bad substitution");
    // `${X:` then a stray character: the whole `${...}` is read before the modifier is judged.
    assert_eq!(error_of("${X:YY}", env), "failed to process \"${X:YY}\": unsupported modifier (:Y) in substitution");
    assert_eq!(
        lex().process_word("${X:YY}", env).unwrap_err().kind,
        ShellErrorKind::UnsupportedModifier { modifier: ":Y".into() }
    );
}

#[test]
fn go_quoting() {
    assert_eq!(go_quote("안녕 \"x\" \\"), "\"안녕 \\\"x\\\" \\\\\"");
    assert_eq!(go_quote("\u{0}\u{7}\u{1b}\u{7f}"), "\"\\x00\\a\\x1b\\x7f\"");
    assert_eq!(go_quote("\u{a0}\u{200b}\u{e000}"), "\"\\u00a0\\u200b\\ue000\"");
    assert_eq!(go_quote("\u{10fffd}é😀"), "\"\\U0010fffdé😀\"");
}

/// The option combinations BuildKit's parser and dispatcher use (traced from `lex.go`).
#[test]
fn options() {
    let env: &[(&str, &str)] = &[("A", "1")];
    let skip = lex().with_skip_unset_env(true);
    assert_eq!(skip.process_word("$X ${X} ${X:-a} ${X+b} ${X#p} $A", env).unwrap(), "$X ${X} ${X:-a} ${X+b} ${X#p} 1");
    // `//` is written back as `/`.
    assert_eq!(skip.process_word("${X//a/b}", env).unwrap(), "${X/a/b}");
    // Errors in the modifier are not reported for an unset variable.
    assert_eq!(skip.process_word("${X:=a}", env).unwrap(), "${X:=a}");

    // Heredoc detection: quotes are kept with raw quotes, so a quoted delimiter is visible.
    let heredoc = lex().with_skip_unset_env(true);
    assert_eq!(heredoc.process_words("<<\"EOF\"", &NoEnv).unwrap(), ["<<EOF"]);
    assert_eq!(heredoc.with_raw_quotes(true).process_words("<<\"EOF\"", &NoEnv).unwrap(), ["<<\"EOF\""]);
    let line = lex().with_raw_quotes(true).with_raw_escapes(true).with_skip_unset_env(true);
    assert_eq!(
        line.process_words("cat <<  'EOF' \\$x \"a\\tb\" >$out", &NoEnv).unwrap(),
        ["cat", "<<  'EOF'", "\\$x", "\"a\\\\tb\"", ">$out"]
    );

    // Raw escapes inside double quotes: escapable characters keep their escape, others get it
    // twice (the escape is written raw and then kept as a literal).
    let raw = lex().with_raw_escapes(true);
    assert_eq!(raw.process_word("\"\\$A\\\"\\\\\"", env).unwrap(), "\\$A\\\"\\\\");
    assert_eq!(raw.process_word("\"\\t\"", env).unwrap(), "\\\\t");
    assert_eq!(raw.process_word("a\\ b", env).unwrap(), "a\\ b");

    // Heredoc contents: quotes are ordinary characters, `$` still expands, `\` escapes.
    let content = Lex::for_heredoc_content();
    assert_eq!(content.process_word("echo \"$A\" '$A' \\$A\n", env).unwrap(), "echo \"1\" '1' $A\n");
    assert_eq!(Lex::for_heredoc_content().escape(), '\\');

    // Another escape character: `\` is ordinary, the backtick escapes.
    let tick = Lex::new('`');
    assert_eq!(tick.process_word("C:\\dir `$A \"a`\"b\"", env).unwrap(), "C:\\dir $A a\"b");
}

/// `ProcessWords` word splitting, including BuildKit's shared-buffer quirk: a
/// `${name<modifier>...}` drops the part of the current word before it (traced from
/// `processStopOn`, which clears the shared `wordsBuffer` on entry).
#[test]
fn word_splitting() {
    let env: &[(&str, &str)] = &[("S", " a  b "), ("E", "")];
    assert_eq!(lex().process_words("x${S}y", env).unwrap(), ["x", "a", "b", "y"]);
    assert_eq!(lex().process_words("x\"${S}\"y", env).unwrap(), ["x a  b y"]);
    assert_eq!(lex().process_words("a '' b", env).unwrap(), ["a", "b"]);
    assert!(lex().process_words("  ", env).unwrap().is_empty());
    assert_eq!(lex().process_words("pre${X:-mid}post next", env).unwrap(), ["midpost", "next"]);
    assert_eq!(lex().process_word("pre${X:-mid}post next", env).unwrap(), "premidpost next");
    assert_eq!(lex().process_words("p\"q${X:-r}s\"t", env).unwrap(), ["qrst"]);
    assert_eq!(lex().process_words_each(&["1 2", "${E:-3}"], env).unwrap(), ["1", "2", "3"]);
    assert!(lex().process_words_each(&["1", "'"], env).is_err());
}

#[test]
fn word_lists() {
    let env: &[(&str, &str)] = &[("A", "1")];
    let out = lex().process_word_list(&["$A", "${B?no}", "$C"], env);
    assert_eq!(out.value.unwrap_err().kind, ShellErrorKind::Required { name: "B".into(), message: "no".into() });
    assert_eq!(out.matched, set(&["A"]));
    assert_eq!(out.unmatched, set(&["B"]), "words after the failing one are not expanded");
    let empty: [&str; 0] = [];
    assert_eq!(lex().process_word_list(&empty, env).value.unwrap(), Vec::<String>::new());
}

/// Names, special parameters and the `$` cases (traced from `processName`/`processDollar`).
#[test]
fn names_and_dollars() {
    let env: &[(&str, &str)] = &[("éa", "E"), ("١", "D"), ("_x1", "U"), ("#", "H"), ("$", "P")];
    let cases = [
        ("$éa.", "E."),
        ("$١x", "Dx"), // a Unicode decimal digit starts a numeric name
        ("$ⅷ", "$ⅷ"),  // a letter-number is neither letter nor digit to Go
        ("$_x1-", "U-"),
        ("$#x ${#}", "Hx H"),
        ("$$ ${$}", "P P"),
        ("$ $. $", "$ $. $"),
        ("$0a ${00}b", "a b"),
        ("\u{feff}$_x1\u{feff}", "U\u{feff}"), // only a leading byte-order mark is dropped
        ("\u{feff}a b\u{feff}", "a b\u{feff}"), // also from a word with nothing to expand
        ("a<b<<  c<<", "a<b<<  c<<"),
    ];
    for (word, expected) in cases {
        assert_eq!(lex().process_word(word, env).unwrap(), expected, "{word}");
    }
    // Literal words look nothing up, through either lexer.
    for l in [lex(), Lex::for_heredoc_content()] {
        let out = l.process_word_with_matches("plain/path 'q' \"q\"", env);
        assert!(out.matched.is_empty() && out.unmatched.is_empty());
    }
    assert_eq!(Lex::for_heredoc_content().process_word("a 'b' \"c\"", env).unwrap(), "a 'b' \"c\"");
    assert_eq!(lex().process_word("a 'b' \"c\"", env).unwrap(), "a b c");
}

/// `${name//pattern/replacement}` reads the replacement as a Go regexp template; `${name/...}`
/// does not (traced from `processDollar` and Go's `Regexp.ReplaceAllString`).
#[test]
fn replacement_templates() {
    let env: &[(&str, &str)] =
        &[("F", "foo"), ("R", "<$0>"), ("D", "$$"), ("N", "$x${1}${0}${bad"), ("E", ""), ("M", "a\nb")];
    let cases = [
        ("${F//o/$R}", "f<o><o>"),
        ("${F/o/$R}", "f<$0>o"),
        ("${F//o/$D}", "f$$"),
        ("${F//o/$N}", "fo${bado${bad"),
        ("${F//$E/-}", "-f-o-o-"),
        ("${F//o*/-}", "f-"),
        ("${F//\\//\\$0}", "foo"),
        ("${F//o/\\$0}", "f\\o\\o"),
        ("${M//?/.}", ".\n."),
        ("${M/?\\*/x}", "a\nb"),
        ("${F//?o/$R}", "<fo>o"),
    ];
    for (word, expected) in cases {
        assert_eq!(lex().process_word(word, env).unwrap(), expected, "{word}");
    }
}

/// Prefix and suffix trimming, shortest and longest, as any POSIX shell does it.
#[test]
fn trims() {
    let env: &[(&str, &str)] = &[("P", "/usr/local/bin"), ("F", "archive.tar.gz")];
    let cases = [
        ("${P%/*}", "/usr/local"),
        ("${P%%/*}", ""),
        ("${P#*/}", "usr/local/bin"),
        ("${P##*/}", "bin"),
        ("${F%.*}", "archive.tar"),
        ("${F%%.*}", "archive"),
        ("${F#*.}", "tar.gz"),
        ("${F##*.}", "gz"),
        ("${F%.gz}", "archive.tar"),
        ("${F#archive}", ".tar.gz"),
        ("${F%?}", "archive.tar.g"),
        ("${F#x*}", "archive.tar.gz"),
    ];
    for (word, expected) in cases {
        assert_eq!(lex().process_word(word, env).unwrap(), expected, "{word}");
    }
    let word = "${F##*.}".repeat(500);
    assert_eq!(lex().process_word(&word, env).unwrap(), "gz".repeat(500));
}

fn nested(depth: usize, close: bool) -> String {
    let mut word = "${a:-".repeat(depth);
    word.push('x');
    if close {
        word.push_str(&"}".repeat(depth));
    }
    word
}

#[test]
fn nesting_is_limited() {
    let deepest = MAX_NESTING - 1;
    assert_eq!(lex().process_word(&nested(deepest, true), &NoEnv).unwrap(), "x");
    for word in [nested(MAX_NESTING, true), nested(100_000, true), nested(100_000, false)] {
        let err = lex().process_word(&word, &NoEnv).unwrap_err();
        assert_eq!(err.kind, ShellErrorKind::TooDeep { limit: MAX_NESTING });
    }
    // Quotes between the levels do not get around the limit.
    let quoted = "\"${a:-".repeat(10_000);
    assert_eq!(lex().process_word(&quoted, &NoEnv).unwrap_err().kind, ShellErrorKind::TooDeep { limit: MAX_NESTING });
}

/// Arbitrary input never panics, under every option combination (a fixed-seed generator,
/// biased towards the characters the lexer treats specially).
#[test]
fn arbitrary_input_never_panics() {
    const ALPHABET: &[char] = &[
        '$', '{', '}', ':', '-', '+', '?', '#', '%', '/', '\\', '`', '\'', '"', '<', ' ', '\t', '\n', '*', '.', 'a',
        'A', '_', '0', '9', '١', 'é', '한', '\u{feff}', '\u{0}', '@', '!', '=',
    ];
    let env: &[(&str, &str)] = &[("a", "x*y\\"), ("A", ""), ("0", "z"), ("_", "a b")];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let len = (next() % 24) as usize;
        let word: String = (0..len).map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize]).collect();
        let bits = next();
        let lex = Lex::new(if bits & 16 == 0 { '\\' } else { '`' })
            .with_raw_quotes(bits & 1 != 0)
            .with_raw_escapes(bits & 2 != 0)
            .with_skip_process_quotes(bits & 4 != 0)
            .with_skip_unset_env(bits & 8 != 0);
        let _ = lex.process_word_with_matches(&word, env);
        let _ = lex.process_words(&word, env);
    }
}

#[test]
fn large_input_is_linear() {
    let env: &[(&str, &str)] = &[("A", "value")];
    let word = "$A${A:-x}${A#v}\"$A\"'$A'\\$ ".repeat(20_000);
    let out = lex().process_word(&word, env).unwrap();
    assert_eq!(out.len(), "valuevaluealue\"value\"$A$ ".len() * 20_000 - 20_000 * 2);
    assert_eq!(lex().process_words(&word, env).unwrap().len(), 20_000);
}
