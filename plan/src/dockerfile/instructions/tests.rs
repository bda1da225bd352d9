//! Expected messages are BuildKit's (`instructions/parse_test.go`, `bflag_test.go` and the
//! error strings in its code).

use super::*;
use crate::dockerfile::parser;

fn typed(text: &str) -> Parsed {
    let ast = parser::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{text:?}: {e}")).ast;
    parse(&ast)
}

fn only_error(text: &str) -> InstructionError {
    let parsed = typed(text);
    assert_eq!(parsed.errors.len(), 1, "{text:?}: {:?}", parsed.errors);
    parsed.errors.into_iter().next().unwrap_or_else(|| unreachable!())
}

fn first_command(text: &str) -> Command {
    let parsed = typed(text);
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    parsed.stages[0].commands[0].clone()
}

fn run(text: &str) -> RunCommand {
    match first_command(text) {
        Command::Run(r) => r,
        other => panic!("not RUN: {other:?}"),
    }
}

#[test]
fn buildkit_error_cases() {
    let cases = [
        ("COPY\t\n", "COPY requires at least two arguments"),
        ("ONBUILD FROM scratch", "FROM isn't allowed as an ONBUILD trigger"),
        ("MAINTAINER --boo joe@example.com", "unknown flag: --boo"),
        ("ONBUILD ONBUILD RUN touch foobar", "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
        ("FOO bar", "unknown instruction: FOO"),
        ("foo bar", "unknown instruction: foo"),
    ];
    for (line, message) in cases {
        let e = only_error(&format!("FROM a\n{line}"));
        assert!(e.message.contains(message), "{line}: {}", e.message);
        assert_eq!(e.line, 2, "{line}");
    }
}

#[test]
fn all_errors_are_collected() {
    let parsed = typed(concat!(
        "RUN early\n",
        "FROM a AS 1bad\n",
        "RUN --netwrk=none x\n",
        "COPY --from=a\n",
        "RUNN x\n",
        "WORKDIR\n",
        "HEALTHCHECK --interval=1ns CMD x\n",
        "SHELL sh -c\n",
        "RUN ok\n",
    ));
    let got: Vec<(usize, InstructionErrorKind, &str)> =
        parsed.errors.iter().map(|e| (e.line, e.kind, e.message.as_str())).collect();
    assert_eq!(
        got,
        [
            (1, InstructionErrorKind::NoBuildStage, "no build stage in current context"),
            (
                2,
                InstructionErrorKind::InvalidValue,
                "invalid name for build stage: \"1bad\", name can't start with a number or contain symbols"
            ),
            (3, InstructionErrorKind::Flag, "unknown flag: --netwrk (did you mean network?)"),
            (
                4,
                InstructionErrorKind::Arguments,
                "COPY requires at least two arguments, but only one was provided. Destination could not be determined"
            ),
            (5, InstructionErrorKind::UnknownInstruction, "unknown instruction: RUNN (did you mean RUN?)"),
            (6, InstructionErrorKind::Arguments, "WORKDIR requires exactly one argument"),
            (7, InstructionErrorKind::InvalidValue, "Interval \"interval\" cannot be less than 1ms"),
            (8, InstructionErrorKind::Arguments, "SHELL requires the arguments to be in JSON form"),
        ]
    );
    // The broken FROM still opened a stage holding the good RUN.
    assert_eq!(parsed.stages.len(), 1);
    assert_eq!(parsed.stages[0].commands.len(), 1);
}

#[test]
fn stages_and_meta_args() {
    let parsed = typed(concat!(
        "# BASE the image to use\n",
        "ARG BASE=alpine VERSION\n",
        "# build compiles things\n",
        "from --platform=$BUILDPLATFORM ${BASE} as Build\n",
        "ARG VERSION\n",
        "FROM scratch\n",
    ));
    assert!(parsed.errors.is_empty());
    let meta = &parsed.meta_args[0];
    assert_eq!(meta.args[0].key, "BASE");
    assert_eq!(meta.args[0].value.as_deref(), Some("alpine"));
    assert_eq!(meta.args[0].doc_comment.as_deref(), Some("the image to use"));
    assert_eq!(meta.args[1].value, None);
    let s = &parsed.stages[0];
    assert_eq!(s.name.as_deref(), Some("build"));
    assert_eq!(s.original_name.as_deref(), Some("Build"));
    assert_eq!(s.as_keyword.as_deref(), Some("as"));
    assert_eq!(s.meta.keyword, "from");
    assert_eq!(s.base_name, "${BASE}");
    assert_eq!(s.platform.as_deref(), Some("$BUILDPLATFORM"));
    assert_eq!(s.doc_comment.as_deref(), Some("compiles things"));
    assert_eq!(s.meta.location, Location { start_line: 4, end_line: 4 });
    assert!(matches!(s.commands[0], Command::Arg(_)));
    assert_eq!(parsed.stages[1].name, None);
}

#[test]
fn run_flags() {
    let r = run(
        "FROM a\nRUN --network=none --security=insecure --mount=type=secret,id=tok,env=TOKEN \\\n  --mount=type=cache,target=/c,id=$X echo hi\n",
    );
    assert_eq!(r.network, NetworkMode::None);
    assert_eq!(r.security, Security::Insecure);
    assert_eq!(r.cmd_line, ["echo hi"]);
    assert!(r.prepend_shell);
    assert_eq!(r.flags_used, ["network", "security", "mount"]);
    let secret = r.mounts[0].parsed.as_ref().unwrap_or_else(|| unreachable!());
    assert_eq!(secret.kind, MountType::Secret);
    assert_eq!(secret.id.as_deref(), Some("tok"));
    assert_eq!(secret.env.as_deref(), Some("TOKEN"));
    assert!(secret.read_only);
    // A value with a variable is kept raw for expansion later.
    assert_eq!(r.mounts[1].raw, "type=cache,target=/c,id=$X");
    assert_eq!(r.mounts[1].parsed, None);
    assert_eq!(r.meta.location, Location { start_line: 2, end_line: 3 });

    let r = run("FROM a\nRUN [\"echo\", \"hi\"]\n");
    assert_eq!(r.cmd_line, ["echo", "hi"]);
    assert!(!r.prepend_shell && r.meta.json);
    assert_eq!(r.network, NetworkMode::Default);
    assert_eq!(r.security, Security::Sandbox);
}

#[test]
fn run_flag_errors() {
    let cases = [
        ("RUN --network=bridge x", "invalid network mode \"bridge\""),
        ("RUN --security=root x", "security \"root\" is not valid"),
        ("RUN --network x", "missing a value on flag: --network"),
        ("RUN --network=none --network=host x", "duplicate flag specified: --network"),
        ("RUN --mount= x", "failed to parse csv mounts: EOF"),
        ("RUN --mount=type=foo x", "unsupported mount type \"foo\""),
        ("RUN --mount=type=cahce x", "unsupported mount type \"cahce\" (did you mean cache?)"),
        ("RUN --mount=type=bind,size=1m x", "unexpected key 'size' for mount type 'bind'"),
        ("RUN --mount=type=tmpfs,size=1q x", "invalid value for size: 1q"),
        ("RUN --mount=type=cache,sharing=all x", "unsupported sharing value \"all\""),
        ("RUN --mount=type=bind,sharing=locked x", "invalid cache sharing set for bind mount"),
        ("RUN --mount=type=secret x", "invalid secret mount. one of source, target required"),
        ("RUN --mount=type=secret,id=a,source=b x", "both source and id can't be set"),
        ("RUN --mount=type=secret,id=a,from=b x", "secret mount should not have a from"),
        ("RUN --mount=type=bind,mode=0644 x", "mode not allowed for \"bind\" type mounts"),
        ("RUN --mount=type=cache,uid=-1 x", "invalid value -1 for uid"),
        ("RUN --mount=type=cache,mode=9 x", "invalid value 9 for mode"),
        ("RUN --mount=type=cache,ro=maybe x", "invalid value for ro: maybe"),
        ("RUN --mount=type=bind,required x", "unexpected key 'required' for mount type 'bind'"),
        ("RUN --mount=type=cache,foo=bar x", "unexpected key 'foo' in 'foo=bar'"),
        ("RUN --mount=type=cache,targt=/x x", "unexpected key 'targt' in 'targt=/x' (did you mean target?)"),
        ("RUN --mount=type=cache,nokey x", "invalid field 'nokey' must be a key=value pair"),
        ("RUN --mount=from=$STAGE x", "'from' doesn't support variable expansion, define alias stage instead"),
        ("RUN --mount=type=bind,src=\\\"a x", "failed to parse csv mounts"),
    ];
    for (line, message) in cases {
        let e = only_error(&format!("FROM a\n{line}\n"));
        assert!(e.message.starts_with(message), "{line}: {}", e.message);
        assert_eq!(e.line, 2);
    }
}

#[test]
fn mount_values() {
    let id = |v: &str| -> Result<String, String> { Ok(v.to_owned()) };
    let m = parse_mount("type=tmpfs,dst=/t,size=64m", &mut { id }).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((m.kind, m.target.as_deref(), m.size_limit), (MountType::Tmpfs, Some("/t"), Some(64 << 20)));
    assert!(!m.read_only);
    let m = parse_mount("target=/src,rw,from=build,source=/out", &mut { id }).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.kind, MountType::Bind);
    assert!(!m.read_only);
    assert_eq!(m.from.as_deref(), Some("build"));
    let m = parse_mount("type=ssh,required,mode=0600,uid=1000", &mut { id }).unwrap_or_else(|e| panic!("{e}"));
    assert!(m.required && m.read_only);
    assert_eq!((m.mode, m.uid), (Some(0o600), Some(1000)));
    let m = parse_mount("type=cache,target=/c,readonly=true,sharing=PRIVATE", &mut { id })
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(m.read_only);
    assert_eq!(m.sharing, Some(ShareMode::Private));
    // The expander runs on values, so expansion errors surface.
    let e = parse_mount("type=cache,target=$X", &mut |_| Err("X: is not allowed to be unset".to_owned()));
    assert_eq!(e, Err("X: is not allowed to be unset".to_owned()));
}

#[test]
fn copy_and_add() {
    let text = "FROM a\nCOPY --from=build --chown=1:1 --chmod=755 --link --exclude=*.md --exclude=x --parents a b /dst/\n\
ADD --checksum=sha256:abc --keep-git-dir=false --unpack https://x/y.tar /z\n\
COPY <<-EOF <<'RAW' /d/\n\thello $X\n\tEOF\nraw $Y\nRAW\n";
    let parsed = typed(text);
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    let Command::Copy(c) = &parsed.stages[0].commands[0] else { panic!("not COPY") };
    assert_eq!(c.sources, ["a", "b"]);
    assert_eq!(c.dest, "/dst/");
    assert_eq!(c.from.as_deref(), Some("build"));
    assert_eq!(c.chown.as_deref(), Some("1:1"));
    assert_eq!(c.chmod.as_deref(), Some("755"));
    assert!(c.link && c.parents);
    assert_eq!(c.excludes, ["*.md", "x"]);
    let Command::Add(a) = &parsed.stages[0].commands[1] else { panic!("not ADD") };
    assert_eq!(a.checksum.as_deref(), Some("sha256:abc"));
    assert_eq!(a.keep_git_dir, Some(false));
    assert_eq!(a.unpack, Some(true));
    assert!(!a.link);
    let Command::Copy(h) = &parsed.stages[0].commands[2] else { panic!("not COPY") };
    assert!(h.sources.is_empty());
    assert_eq!(
        h.source_contents,
        [
            SourceContent { path: "EOF".into(), data: "hello $X\n".into(), expand: true },
            SourceContent { path: "RAW".into(), data: "raw $Y\n".into(), expand: false },
        ]
    );
    assert_eq!(h.meta.location, Location { start_line: 4, end_line: 8 });

    for (line, message) in [
        ("COPY --checksum=x a b", "unknown flag: --checksum"),
        ("COPY --keep-git-dir a b", "unknown flag: --keep-git-dir"),
        ("COPY --link=maybe a b", "expecting boolean value for flag --link, not: maybe"),
        ("COPY --link= a b", "missing a value on flag: --link"),
        ("COPY a <<EOF\nx\nEOF", "COPY cannot accept a heredoc as a destination"),
    ] {
        let e = only_error(&format!("FROM a\n{line}\n"));
        assert!(e.message.starts_with(message), "{line}: {}", e.message);
        assert_eq!(
            e.kind,
            if message.contains("heredoc") { InstructionErrorKind::Arguments } else { InstructionErrorKind::Flag }
        );
    }
}

#[test]
fn healthchecks() {
    let Command::Healthcheck(h) = first_command(
        "FROM a\nHEALTHCHECK --interval=5s --timeout=1m30s --start-period=0s --retries=3 CMD curl -f x\n",
    ) else {
        panic!("not HEALTHCHECK")
    };
    assert_eq!(
        h.health,
        Healthcheck::Cmd {
            test: vec!["CMD-SHELL".into(), "curl -f x".into()],
            interval: Some(Duration::from_secs(5)),
            timeout: Some(Duration::from_secs(90)),
            start_period: None,
            start_interval: None,
            retries: Some(3),
        }
    );
    let Command::Healthcheck(h) = first_command("FROM a\nHEALTHCHECK CMD [\"x\", \"y\"]\n") else {
        panic!("not HEALTHCHECK")
    };
    assert!(matches!(&h.health, Healthcheck::Cmd { test, .. } if test == &["CMD", "x", "y"]));
    let Command::Healthcheck(h) = first_command("FROM a\nHEALTHCHECK none\n") else { panic!() };
    assert_eq!(h.health, Healthcheck::None);

    for (line, message) in [
        ("HEALTHCHECK NONE x", "HEALTHCHECK NONE takes no arguments"),
        ("HEALTHCHECK CONNECT x", "Unknown type \"CONNECT\" in HEALTHCHECK (try CMD)"),
        ("HEALTHCHECK CMD", "Missing command after HEALTHCHECK CMD"),
        ("HEALTHCHECK --retries=-1 CMD x", "--retries cannot be negative (-1)"),
        ("HEALTHCHECK --retries=x CMD x", "strconv.ParseInt: parsing \"x\": invalid syntax"),
        ("HEALTHCHECK --timeout=5 CMD x", "time: missing unit in duration \"5\""),
        ("HEALTHCHECK --start-period=1d CMD x", "time: unknown unit \"d\" in duration \"1d\""),
        ("HEALTHCHECK --intervall=1s CMD x", "unknown flag: --intervall (did you mean interval?)"),
    ] {
        let e = only_error(&format!("FROM a\n{line}\n"));
        assert_eq!(e.message, message, "{line}");
    }
}

#[test]
fn other_instructions() {
    let parsed = typed(concat!(
        "FROM a\n",
        "ENV A=1 B=\"x\"\n",
        "ENV C D\n",
        "LABEL k=v\n",
        "EXPOSE 8080 443 80/udp\n",
        "VOLUME [\"/a\", \"/b\"]\n",
        "USER app:app\n",
        "WORKDIR /src\n",
        "STOPSIGNAL SIGTERM\n",
        "SHELL [\"/bin/bash\", \"-c\"]\n",
        "ENTRYPOINT []\n",
        "CMD echo $HOME\n",
        "MAINTAINER me\n",
        "ONBUILD RUN echo hi\n",
    ));
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    let cmds = &parsed.stages[0].commands;
    let Command::Env(e) = &cmds[0] else { panic!() };
    assert_eq!(e.env[1], KeyValuePair { key: "B".into(), value: "\"x\"".into(), no_delim: false });
    let Command::Env(e) = &cmds[1] else { panic!() };
    assert!(e.env[0].no_delim);
    let Command::Expose(x) = &cmds[3] else { panic!() };
    assert_eq!(x.ports, ["443", "80/udp", "8080"]);
    let Command::Volume(v) = &cmds[4] else { panic!() };
    assert_eq!(v.volumes, ["/a", "/b"]);
    let Command::Shell(s) = &cmds[8] else { panic!() };
    assert_eq!(s.shell, ["/bin/bash", "-c"]);
    let Command::Entrypoint(ep) = &cmds[9] else { panic!() };
    assert!(ep.cmd_line.is_empty() && ep.meta.json);
    let Command::Cmd(c) = &cmds[10] else { panic!() };
    assert_eq!(c.cmd_line, ["echo $HOME"]);
    let Command::Onbuild(o) = &cmds[12] else { panic!() };
    assert_eq!(o.expression, "RUN echo hi");
    let kinds: Vec<&str> = cmds.iter().map(|c| c.kind().as_str()).collect();
    assert_eq!(kinds[11], "MAINTAINER");
    assert_eq!(InstructionKind::from_keyword("stopSignal"), Some(InstructionKind::StopSignal));
}

#[test]
fn flag_parsing_rules() {
    let defs = [("b", FlagType::Bool), ("s", FlagType::String), ("m", FlagType::Strings)];
    let args = |a: &[&str]| a.iter().map(|s| Cow::Owned((*s).to_owned())).collect::<Vec<Cow<'_, str>>>();
    let mut given = args(&["--b=TRUE", "--s=", "--m=1", "--m=2", "--", "--bogus"]);
    let mut f = parse_flags(&mut given, &defs).unwrap_or_else(|e| panic!("{e}"));
    assert!(f.bool("b"));
    assert_eq!(f.string("s"), Some(""));
    assert_eq!(f.non_empty("s"), None);
    assert_eq!(f.strings("m").collect::<Vec<_>>(), ["1", "2"]);
    assert_eq!(f.used(), ["b", "s", "m"]);
    assert_eq!(f.take_strings("m").collect::<Vec<_>>(), ["1", "2"]);
    assert_eq!(f.strings("m").count(), 0, "taken values are gone");
    assert!(f.bool("b"), "other flags are left as they were");
    assert!(parse_flags(&mut args(&["--b", "--b"]), &defs).is_err());
    assert_eq!(parse_flags(&mut args(&["--s"]), &defs).err().as_deref(), Some("missing a value on flag: --s"));
    assert_eq!(parse_flags(&mut args(&["-x"]), &defs).err().as_deref(), Some("arg should start with -- : -x"));
    // Borrowed words give the same values, copied.
    let mut borrowed = vec![Cow::Borrowed("--s=x"), Cow::Borrowed("--s=y")];
    let mut f = parse_flags(&mut borrowed, &[("s", FlagType::Strings)]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(f.non_empty("s").as_deref(), Some("x"));
    assert_eq!(f.take_strings("s").collect::<Vec<_>>(), ["y"]);
}

#[test]
fn taking_from_the_tree_gives_what_borrowing_does() {
    let large =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/dockerfiles/large-1000.Dockerfile"))
            .unwrap();
    let texts = [
        large.as_str(),
        "# doc comment\n  FROM alpine AS base  \n# V the version\nARG V=1\nRUN <<EOF cat\nhi\nEOF\n",
        "FROM alpine\nONBUILD   RUN echo a\nONBUILD COPY <<EOF /x\nbody\nEOF\n",
        "FROM alpine\nCOPY <<-A <<B /dst/\n\tone\n\tA\ntwo\nB\nADD --chmod=644 <<C /c\nc\nC\n",
        "RUN early\nFROM\nFOO bar\nFROM alpine\nCMD [\"a\"]\nSHELL [\"/bin/bash\", \"-c\"]\n",
        "FROM a b\nENV A 1\nLABEL x=y z=\"w\"\nHEALTHCHECK --interval=5s CMD [\"true\"]\nEXPOSE 80 443/udp\nFOO\n",
        "FROM a\nVOLUME [\"/a\", \"/b\"]\nUSER u\nSTOPSIGNAL 9\nMAINTAINER me\nENTRYPOINT x  y\nHEALTHCHECK NONE\n",
    ];
    for text in texts {
        let ast = parser::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{text:?}: {e}")).ast;
        let mut borrowed = parse(&ast);
        assert!(!borrowed.stages.is_empty(), "{text:?}");
        // Taking leaves the source text of all but ONBUILD empty.
        for stage in &mut borrowed.stages {
            stage.meta.source.clear();
            for command in &mut stage.commands {
                if command.kind() != InstructionKind::Onbuild {
                    command.meta_mut().source.clear();
                }
            }
        }
        for arg in &mut borrowed.meta_args {
            arg.meta.source.clear();
        }
        let flat = parser::parse_flat(text.as_bytes()).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(parse_owned(flat.instructions, flat.args), borrowed, "{text:?}");
    }
}
