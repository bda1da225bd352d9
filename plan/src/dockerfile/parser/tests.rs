//! Expected values come from BuildKit's own parser tests (`parser_test.go`,
//! `parser_heredoc_test.go`, `directives_test.go`) and from reading its code.

use super::*;

fn ok(text: &str) -> ParseResult {
    parse(text.as_bytes()).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn err(text: &str) -> ParseError {
    match parse(text.as_bytes()) {
        Ok(r) => panic!("{text:?} parsed: {}", r.ast.dump()),
        Err(e) => e,
    }
}

/// Name, content, expand, chomp, file descriptor.
type DocFields = (String, String, bool, bool, u64);

#[test]
fn heredocs_match_buildkit() {
    let text = "\nFROM alpine:3.6\n\nENV NAME=me\n\nRUN ls\n\nUSER <<INVALID\nINVALID\n\n\
RUN <<EMPTY\nEMPTY\n\nRUN 3<<EMPTY2\nEMPTY2\n\nRUN \"<<NOHEREDOC\"\n\n\
RUN <<INDENT\n\tfoo\n\tbar\nINDENT\n\nRUN <<-UNINDENT\n\tbaz\n\tquux\nUNINDENT\n\n\
RUN <<-UNINDENT2\n\tbaz\n\tquux\n\tUNINDENT2\n\nRUN <<-'NOEXPAND'\n\tdon't expand $NAME\nNOEXPAND\n\n\
COPY <<FILE1 <<FILE2 /dest\ncontent 1\nFILE1\ncontent 2\nFILE2\n\n\
COPY <<X <<Y /dest\nY\nX\nX\nY\n\nRUN <<eo'f'\necho foo\neof\n\nRUN <<eo\\'f\necho foo\neo'f\n\n\
RUN <<'e'o\\'f\necho foo\neo'f\n\nRUN <<'one two'\necho bar\none two\n\nRUN <<$EOF\n$EOF\n\n\
RUN <<  EOF  > foo\nEOF\n";
    let r = ok(text);
    let docs: Vec<Vec<DocFields>> = r
        .ast
        .children
        .iter()
        .map(|c| {
            c.heredocs
                .iter()
                .map(|h| (h.name.clone(), h.content.clone(), h.expand, h.chomp, h.file_descriptor))
                .collect()
        })
        .collect();
    let d = |n: &str, c: &str, e: bool, ch: bool, fd: u64| (n.to_owned(), c.to_owned(), e, ch, fd);
    let expected = vec![
        vec![],
        vec![],
        vec![],
        vec![],
        vec![], // INVALID: the heredoc-looking USER line is not a heredoc, the next line is an instruction
        vec![d("EMPTY", "", true, false, 0)],
        vec![d("EMPTY2", "", true, false, 3)],
        vec![],
        vec![d("INDENT", "\tfoo\n\tbar\n", true, false, 0)],
        vec![d("UNINDENT", "\tbaz\n\tquux\n", true, true, 0)],
        vec![d("UNINDENT2", "\tbaz\n\tquux\n", true, true, 0)],
        vec![d("NOEXPAND", "\tdon't expand $NAME\n", false, true, 0)],
        vec![d("FILE1", "content 1\n", true, false, 0), d("FILE2", "content 2\n", true, false, 0)],
        vec![d("X", "Y\n", true, false, 0), d("Y", "X\n", true, false, 0)],
        vec![d("eof", "echo foo\n", false, false, 0)],
        vec![d("eo'f", "echo foo\n", true, false, 0)],
        vec![d("eo'f", "echo foo\n", false, false, 0)],
        vec![d("one two", "echo bar\n", false, false, 0)],
        vec![d("$EOF", "", true, false, 0)],
        vec![d("EOF", "", true, false, 0)],
    ];
    assert_eq!(docs, expected);
}

#[test]
fn exec_form_never_has_heredocs() {
    let r = ok("FROM alpine\nRUN [\"<<EOF\"]\nRUN [\"<<'EOF'\"]\n");
    assert!(r.ast.children.iter().all(|c| c.heredocs.is_empty()));
    assert!(r.ast.children[1].json);
}

#[test]
fn onbuild_heredoc_and_dump() {
    let r = ok("FROM a\nONBUILD RUN <<EOF\necho hi\nEOF\nONBUILD ADD --chown=1 x y\n");
    let onbuild = &r.ast.children[1];
    assert_eq!(onbuild.heredocs[0].content, "echo hi\n");
    assert_eq!((onbuild.start_line, onbuild.end_line), (2, 4));
    assert_eq!(r.ast.dump(), "(from \"a\")\n(onbuild (run \"<<EOF\"))\n(onbuild (add [\"--chown=1\"] \"x\" \"y\"))");
    assert_eq!(r.ast.children[2].args(), ["ADD", "x", "y"]);
}

#[test]
fn parse_heredoc_helpers() {
    for src in ["<<EOF", "<<'EOF'", "<<\"EOF\"", "<<-EOF", "<<-'EOF'", "<<-\"EOF\"", "<<EO\"F\"", "<< EOF", "<<- EOF"] {
        assert_eq!(parse_heredoc(src).unwrap().unwrap().name, "EOF", "{src}");
    }
    for src in ["<<'EOF", "<<\"EOF", "<<EOF'", "<<EOF\""] {
        assert!(parse_heredoc(src).is_err(), "{src}");
    }
    for src in ["", "EOF", "<<", "<<-", "<EOF", "<<<EOF", "<<EOF sh"] {
        assert_eq!(parse_heredoc(src).unwrap(), None, "{src}");
    }
    let names = |line: &str| -> Vec<String> {
        heredoc::heredocs_from_line(line).unwrap().into_iter().map(|h| h.name).collect()
    };
    // The lexer keeps `<<-` apart from a spaced-off name, so BuildKit finds no heredoc here
    // (its own test of this line passes vacuously).
    assert!(names("RUN <<- EOF").is_empty());
    assert_eq!(names("RUN << -EOF"), ["-EOF"]);
    assert_eq!(names("RUN 4<<EOF"), ["EOF"]);
    assert_eq!(names("RUN <<EOF <<EOF2"), ["EOF", "EOF2"]);
    assert!(names("RUN '<<EOF'").is_empty());
    assert!(names("RUN \"<<EOF\"").is_empty());
}

#[test]
fn unterminated_heredoc_names_its_lines() {
    let e = err("FROM a\nRUN <<EOF\necho\n");
    assert_eq!(e.kind, ParseErrorKind::UnterminatedHeredoc);
    assert_eq!((e.line, e.end_line), (2, 3));
}

#[test]
fn line_numbers_match_buildkit_testfile_line() {
    // BuildKit's testfile-line/Dockerfile: children at 5-5, 11-12, 17-31.
    let text = "\n\n\n\nFROM brimstone/consul\n\n\n\n\n\n\
RUN hello \\\n  world\n\n\n\n\n\
RUN hello \\\n  world \\\n \\\n  c \\\n   # comment\n  d\\\n\\\n\\\n e \\\n\n# comment\n\n  f \\\n\n g\n";
    let r = ok(text);
    let lines: Vec<(usize, usize)> = r.ast.children.iter().map(|c| (c.start_line, c.end_line)).collect();
    assert_eq!(lines, [(5, 5), (11, 12), (17, 31)]);
    assert_eq!((r.ast.start_line, r.ast.end_line), (5, 31));
}

#[test]
fn empty_continuation_lines_warn() {
    let text = "\nFROM alpine:3.6\n\nRUN valid \\\n    continuation\n\nRUN something \\\n\n    following \\\n\n    more\n\n\
RUN another \\\n\n    thing\n\nRUN non-indented \\\n# this is a comment\n   after-comment\n\n\
RUN indented \\\n    # this is an indented comment\n    comment\n\t";
    let r = ok(text);
    assert_eq!(r.warnings.len(), 2);
    assert!(r.warnings[0].short.contains("RUN something     following     more"));
    assert!(r.warnings[1].short.contains("RUN another     thing"));
    assert_eq!(r.warnings[0].rule, "NoEmptyContinuation");
    assert_eq!((r.warnings[0].start_line, r.warnings[0].line), (7, 11));
    assert_eq!(r.warnings[0].empty_lines, [8, 10]);
}

#[test]
fn directives() {
    let r = ok("# syntax = docker/dockerfile:1\n#ESCAPE=`\n# check=skip=all\n# comment\nFROM a\n");
    let got: Vec<(&str, &str, usize)> =
        r.directives.iter().map(|d| (d.name.as_str(), d.value.as_str(), d.line)).collect();
    assert_eq!(got, [("syntax", "docker/dockerfile:1", 1), ("escape", "`", 2), ("check", "skip=all", 3)]);
    assert_eq!(r.escape_token, '`');
    // Directives are not comments of the first instruction; the plain comment is.
    assert_eq!(r.ast.children[0].prev_comment, ["comment"]);

    // After a blank line, an instruction or another comment, directives are plain comments.
    let r = ok("\n# escape=`\nFROM a\n");
    assert!(r.directives.is_empty());
    assert_eq!(r.escape_token, '\\');
    let r = ok("# hello\n# escape=`\nFROM a\n");
    assert!(r.directives.is_empty());

    let e = err("# escape=`\n# Escape=\\\nFROM a\n");
    assert_eq!(e.kind, ParseErrorKind::DuplicateDirective { name: "escape".into() });
    assert_eq!(e.line, 2);
    let e = err("# escape=x\nFROM a\n");
    assert_eq!(e.kind, ParseErrorKind::InvalidEscapeToken { value: "x".into() });
    assert_eq!(e.line, 1);
}

#[test]
fn backtick_escape_continues_lines() {
    let r = ok("# escape=`\nFROM a\nRUN dir c:\\ `\n  /s\n");
    assert_eq!(r.ast.children[1].next[0].value, "dir c:\\   /s");
    assert_eq!(r.ast.children[1].end_line, 4);
}

#[test]
fn continuation_quirks() {
    // An escaped escape token is not a continuation; a lone token on a line is.
    let r = ok("FROM a\nRUN echo \\\\\nRUN x \\\n\\\ny\n");
    assert_eq!(r.ast.children[1].next[0].value, "echo \\\\");
    assert_eq!(r.ast.children[2].next[0].value, "x y");
    // A trailing continuation at end of file ends the instruction.
    let r = ok("FROM a\nRUN x \\");
    assert_eq!(r.ast.children[1].next[0].value, "x");
    assert_eq!(r.ast.children[1].original, "RUN x ");
}

#[test]
fn comments_and_bom() {
    let r = ok("\u{feff}# one\n  # two\n#\n# three\nFROM a\n");
    // BuildKit drops the first byte of the line, so an indented comment keeps its `#`.
    assert_eq!(r.ast.children[0].prev_comment, ["three"]);
    let r = ok("# one\n  # two\nFROM a\n");
    assert_eq!(r.ast.children[0].prev_comment, ["one", "# two"]);
}

#[test]
fn argument_shapes() {
    let r = ok(concat!(
        "FROM --platform=linux/amd64 a AS b\n",
        "ENV a b c\n",
        "ENV a=1 b=\"2 3\"\n",
        "ARG x y=1\n",
        "EXPOSE 80  443/udp\n",
        "HEALTHCHECK --interval=5s CMD [\"a\", \"b\"]\n",
        "HEALTHCHECK NONE\n",
        "CMD [\"a\", \"b\"\n",
        "COPY [\"a b\", \"/c\"]\n",
        "USER  me  \n",
        "FOO bar\n",
        "RUN -- --not-a-flag\n",
    ));
    let dumps: Vec<String> = r.ast.children.iter().map(Node::dump).collect();
    assert_eq!(
        dumps,
        [
            "from [\"--platform=linux/amd64\"] \"a\" \"AS\" \"b\"",
            "env \"a\" \"b c\" \"\"",
            "env \"a\" \"1\" \"=\" \"b\" \"\\\"2 3\\\"\" \"=\"",
            "arg \"x\" \"y=1\"",
            "expose \"80\" \"443/udp\"",
            "healthcheck [\"--interval=5s\"] \"CMD\" \"a\" \"b\"",
            "healthcheck \"NONE\"",
            "cmd \"[\\\"a\\\", \\\"b\\\"\"",
            "copy \"a b\" \"/c\"",
            "user \"me\"",
            "foo \"\"",
            "run \"--not-a-flag\"",
        ]
    );
    assert!(r.ast.children[5].json);
    assert!(!r.ast.children[7].json);
}

#[test]
fn flag_quotes_are_removed() {
    let r = ok("FROM a\nCOPY --chown=\"a b\" --from='x' s d\n");
    assert_eq!(r.ast.children[1].flags, ["--chown=a b", "--from=x"]);
}

#[test]
fn errors_carry_lines() {
    let e = err("FROM a\n\nENV PATH\n");
    assert_eq!((e.line, e.kind.clone()), (3, ParseErrorKind::MissingValue { instruction: "ENV" }));
    let e = err("FROM a\nLABEL a=b c\n");
    assert_eq!(e.kind, ParseErrorKind::MissingEquals { word: "\"c\"".into() });
    assert_eq!(e.line, 2);
    let e = err("FROM a\nRUN [\"a\", 1]\n");
    assert_eq!((e.line, e.kind), (2, ParseErrorKind::NotStringArray));
    assert_eq!(err("").kind, ParseErrorKind::NoInstructions);
    assert_eq!(err("# a\n\n# b\n").line, 3);
    let e = err_bytes(b"FROM a\nRUN \xff\n");
    assert_eq!((e.line, e.kind), (2, ParseErrorKind::InvalidUtf8));
}

#[test]
fn size_limits() {
    let big = vec![b'#'; MAX_DOCKERFILE_SIZE + 1];
    assert!(matches!(err_bytes(&big).kind, ParseErrorKind::TooLarge { .. }));
    let line = format!("FROM a\nLABEL test={}\n", "a".repeat(MAX_LINE_SIZE));
    let e = err(&line);
    assert_eq!(e.kind, ParseErrorKind::LineTooLong);
    assert_eq!(e.to_string(), "Dockerfile line 2: dockerfile line greater than max allowed size of 65535");
    // Exactly at the limit is accepted: 65535 bytes and the newline.
    let fits = format!("FROM a\nLABEL a={}\n", "a".repeat(MAX_LINE_SIZE - 1 - 8));
    assert_eq!(ok(&fits).ast.children.len(), 2);
}

fn err_bytes(input: &[u8]) -> ParseError {
    parse(input).expect_err("must fail")
}

#[test]
fn deep_onbuild_is_refused_not_overflowed() {
    let text = format!("FROM a\n{}RUN x\n", "ONBUILD \\\n".repeat(10_000));
    assert_eq!(err(&text).kind, ParseErrorKind::OnbuildTooDeep);
}

#[test]
fn go_quote_matches_strconv_quote() {
    assert_eq!(go_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
    assert_eq!(go_quote("\t\n\x01\x7f"), "\"\\t\\n\\x01\\x7f\"");
    assert_eq!(go_quote("é\u{a0}\u{200b}😀"), "\"é\\u00a0\\u200b😀\"");
}

#[test]
fn parse_words_matches_buildkit() {
    let cases: [(&str, &[&str]); 8] = [
        ("foo", &["foo"]),
        ("foo bar", &["foo", "bar"]),
        ("foo\\ bar", &["foo\\ bar"]),
        ("foo=bar", &["foo=bar"]),
        ("foo bar 'abc xyz'", &["foo", "bar", "'abc xyz'"]),
        ("foo bar \"abc xyz\"", &["foo", "bar", "\"abc xyz\""]),
        ("àöû", &["àöû"]),
        ("föo bàr \"âbc xÿz\"", &["föo", "bàr", "\"âbc xÿz\""]),
    ];
    for (input, expected) in cases {
        assert_eq!(lines::parse_words(input, '\\').collect::<Vec<_>>(), expected, "{input}");
    }
}

#[test]
fn arbitrary_token_soup_never_panics() {
    const TOKENS: [&str; 24] = [
        "FROM a",
        "RUN",
        "COPY",
        "ONBUILD",
        "HEALTHCHECK",
        "ENV",
        " ",
        "\t",
        "\n",
        "\\",
        "`",
        "\"",
        "'",
        "<<",
        "<<-",
        "EOF",
        "[",
        "]",
        "#",
        "# escape=`",
        "--mount=",
        "${a:-",
        "}",
        "é\u{a0}",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..3000 {
        let mut text = String::new();
        for _ in 0..40 {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            text.push_str(TOKENS[(state >> 33) as usize % TOKENS.len()]);
        }
        match parse(text.as_bytes()) {
            Ok(r) => {
                let typed = crate::dockerfile::instructions::parse(&r.ast);
                assert!(typed.errors.iter().all(|e| e.line >= 1), "{text:?}");
                let _ = r.ast.dump();
            }
            Err(e) => assert!(e.line >= 1, "{text:?}: {e}"),
        }
    }
}
