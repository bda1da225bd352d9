//! Dockerfile input through `plan`/`validate`: ARG scoping, stage resolution and pruning, and
//! BuildKit's lint rules. Expected values follow BuildKit's `dockerfile2llb` behaviour.

use nullspace_plan::builder::{Backend, Template};
use nullspace_plan::diagnostic::{Severity, Span};
use nullspace_plan::normalize::{PlanOptions, plan, validate};
use nullspace_plan::plan::{BuildPlan, Command, CopyFrom, Mount, Op};
use nullspace_plan::reference::BaseImage;

fn planned(text: &str) -> BuildPlan {
    let outcome = plan(&Template::from_dockerfile_content(text), &PlanOptions::default());
    outcome.plan.unwrap_or_else(|| panic!("no plan: {:#?}", outcome.diagnostics))
}

fn codes(text: &str) -> Vec<(String, Severity, usize)> {
    validate(&Template::from_dockerfile_content(text), &PlanOptions::default())
        .into_iter()
        .map(|d| {
            let line = match d.span {
                Some(Span::Dockerfile { line, .. }) => line,
                _ => 0,
            };
            (d.code, d.severity, line)
        })
        .collect()
}

fn code_names(text: &str) -> Vec<String> {
    codes(text).into_iter().map(|(c, _, _)| c).collect()
}

#[test]
fn global_args_expand_from_and_build_args_override() {
    let text = "ARG V=3.12\nARG IMG=python:${V}-slim\nFROM ${IMG}\nRUN true\n";
    let p = planned(text);
    assert_eq!(p.stages[0].base, BaseImage::Registry { reference: "docker.io/library/python:3.12-slim".into() });
    let mut options = PlanOptions::default();
    options.build_args.insert("V".into(), "3.11".into());
    let p = plan(&Template::from_dockerfile_content(text), &options).plan.unwrap();
    assert_eq!(p.stages[0].base, BaseImage::Registry { reference: "docker.io/library/python:3.11-slim".into() });
}

#[test]
fn global_args_are_invisible_in_stages_until_redeclared() {
    let text = "ARG V=1\nFROM busybox\nENV A=${V}\nARG V\nENV B=${V}\n";
    let p = planned(text);
    let envs: Vec<&Vec<(String, String)>> = p.stages[0]
        .steps
        .iter()
        .filter_map(|s| match &s.op {
            Op::Env { vars } => Some(vars),
            _ => None,
        })
        .collect();
    assert_eq!(envs[0], &vec![("A".to_string(), String::new())]);
    assert_eq!(envs[1], &vec![("B".to_string(), "1".to_string())]);
    assert_eq!(code_names(text), ["UndefinedVar"]);
}

#[test]
fn run_sees_stage_args_as_build_args() {
    let p = planned("FROM busybox\nARG A=1\nARG B\nRUN echo $A\n");
    let Op::Run { build_args, command, .. } = &p.stages[0].steps[0].op else { panic!() };
    assert_eq!(build_args.iter().collect::<Vec<_>>(), [(&"A".to_string(), &"1".to_string())]);
    // RUN is not expanded by the frontend: the shell does it.
    assert_eq!(command, &Command::Shell("echo $A".into()));
}

#[test]
fn target_prunes_and_remaps_stage_indexes() {
    let text = "FROM busybox AS a\nRUN a\nFROM busybox AS unused\nRUN u\nFROM busybox AS b\nCOPY --from=a /x /y\nFROM b AS c\nRUN c\n";
    let p = planned(text);
    let names: Vec<_> = p.stages.iter().map(|s| s.name.clone().unwrap()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    let Op::Copy { from, .. } = &p.stages[1].steps[0].op else { panic!() };
    assert_eq!(from, &CopyFrom::Stage { index: 0 });
    assert_eq!(p.stages[2].base, BaseImage::Stage { index: 1 });
    assert_eq!(p.stages[1].source_index, 2);

    let outcome = plan(&Template::from_dockerfile_content(text).target("A"), &PlanOptions::default());
    let p = outcome.plan.unwrap();
    assert_eq!(p.stages.len(), 1);
    assert_eq!(p.stages[0].name.as_deref(), Some("a"));
}

#[test]
fn copy_from_a_later_stage_builds_it_first() {
    let p = planned("FROM busybox AS first\nCOPY --from=later /x /x\nFROM busybox AS later\nRUN touch /x\n");
    // Target is the last stage, which does not need `first`.
    assert_eq!(p.stages.len(), 1);
    let p = plan(
        &Template::from_dockerfile_content(
            "FROM busybox AS first\nCOPY --from=later /x /x\nFROM busybox AS later\nRUN touch /x\n",
        )
        .target("first"),
        &PlanOptions::default(),
    )
    .plan
    .unwrap();
    let names: Vec<_> = p.stages.iter().map(|s| s.name.clone().unwrap()).collect();
    assert_eq!(names, ["later", "first"]);
    let Op::Copy { from, .. } = &p.stages[1].steps[0].op else { panic!() };
    assert_eq!(from, &CopyFrom::Stage { index: 0 });
}

#[test]
fn from_names_only_earlier_stages() {
    // `FROM later` before `later` exists is an image, as in BuildKit.
    let p = planned("FROM later AS first\nRUN x\nFROM busybox AS later\nCOPY --from=first /a /b\n");
    assert_eq!(p.stages[0].base, BaseImage::Registry { reference: "docker.io/library/later:latest".into() });
}

#[test]
fn stage_cycles_are_errors() {
    let text = "FROM busybox AS a\nCOPY --from=b /x /x\nFROM busybox AS b\nCOPY --from=a /y /y\n";
    assert!(
        codes(text).contains(&("StageCycle".into(), Severity::Error, 2))
            || codes(text).contains(&("StageCycle".into(), Severity::Error, 4))
    );
    assert!(plan(&Template::from_dockerfile_content(text), &PlanOptions::default()).plan.is_none());
    assert_eq!(code_names("FROM busybox AS a\nCOPY --from=a /x /x\n"), ["StageCycle"]);
}

#[test]
fn copy_from_index_image_and_unknown() {
    let p = planned(
        "FROM busybox\nRUN a\nFROM busybox\nCOPY --from=0 /a /a\nCOPY --from=nginx:1.27 /etc/nginx /etc/nginx\n",
    );
    let froms: Vec<&CopyFrom> = p.stages[1]
        .steps
        .iter()
        .filter_map(|s| match &s.op {
            Op::Copy { from, .. } => Some(from),
            _ => None,
        })
        .collect();
    assert_eq!(froms[0], &CopyFrom::Stage { index: 0 });
    assert_eq!(froms[1], &CopyFrom::Image { reference: "docker.io/library/nginx:1.27".into() });
    assert_eq!(code_names("FROM busybox AS builder\nFROM busybox\nCOPY --from=buidler /a /a\n"), ["UnknownStage"]);
    let message = validate(
        &Template::from_dockerfile_content("FROM busybox AS builder\nFROM busybox\nCOPY --from=buidler /a /a\n"),
        &PlanOptions::default(),
    )[0]
    .message
    .clone();
    assert!(message.contains("did you mean builder?"), "{message}");
    assert_eq!(code_names("FROM busybox\nCOPY --from=7 /a /a\n"), ["UnknownStage"]);
    assert_eq!(code_names("FROM busybox\nARG S=x\nCOPY --from=$S /a /a\n"), ["InvalidFlag"]);
}

#[test]
fn env_workdir_and_copy_destination_resolution() {
    let p = planned("FROM busybox\nENV BASE=/srv\nWORKDIR $BASE/app\nWORKDIR sub\nCOPY a.txt ./\nCOPY b.txt data/\n");
    let ops: Vec<&Op> = p.stages[0].steps.iter().map(|s| &s.op).collect();
    assert_eq!(ops[1], &Op::Workdir { path: "/srv/app".into() });
    assert_eq!(ops[2], &Op::Workdir { path: "/srv/app/sub".into() });
    let dests: Vec<&String> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Copy { dest, .. } => Some(dest),
            _ => None,
        })
        .collect();
    assert_eq!(dests, ["/srv/app/sub/", "/srv/app/sub/data/"]);
}

#[test]
fn secrets_are_ids_only_and_merge_with_declared_ones() {
    let text = "FROM busybox\nRUN --mount=type=secret,id=npm_token,env=NPM_TOKEN npm ci\nRUN --mount=type=secret,id=other cat /run/secrets/other\n";
    let t = Template::from_dockerfile_content(text).add_build_secret_env("npm_token", "MY_NPM_TOKEN");
    let p = plan(&t, &PlanOptions::default()).plan.unwrap();
    let ids: Vec<(String, Option<String>)> = p.secrets.iter().map(|s| (s.id.clone(), s.env.clone())).collect();
    assert_eq!(ids, [("npm_token".to_string(), Some("MY_NPM_TOKEN".to_string())), ("other".to_string(), None)]);
    let Op::Run { mounts, .. } = &p.stages[0].steps[0].op else { panic!() };
    assert_eq!(
        mounts[0],
        Mount::Secret {
            id: "npm_token".into(),
            target: None,
            env: Some("NPM_TOKEN".into()),
            required: false,
            mode: 0o400,
            uid: 0,
            gid: 0
        }
    );
    let Op::Run { mounts, .. } = &p.stages[0].steps[1].op else { panic!() };
    assert!(matches!(&mounts[0], Mount::Secret { target: Some(t), .. } if t == "/run/secrets/other"));
}

#[test]
fn native_backend_is_refused_for_dockerfiles() {
    let t = Template::from_dockerfile_content("FROM busybox\n").backend(Backend::Native);
    let diagnostics = validate(&t, &PlanOptions::default());
    assert_eq!(diagnostics.iter().map(|d| d.code.as_str()).collect::<Vec<_>>(), ["NativeBackendDockerfile"]);
    let t = Template::from_dockerfile_content("FROM busybox\n");
    assert_eq!(plan(&t, &PlanOptions::default()).plan.unwrap().backend, Backend::Buildkit);
}

#[test]
fn errors_are_all_reported_with_lines() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/dockerfiles/errors.Dockerfile"))
            .unwrap();
    let found: Vec<(String, usize)> =
        codes(&text).into_iter().filter(|(_, s, _)| *s == Severity::Error).map(|(c, _, l)| (c, l)).collect();
    let expected = [
        ("UnknownInstruction", 2),
        ("InvalidMount", 3),
        ("UnknownFlag", 4),
        ("SourceEscapesContext", 5),
        ("AbsoluteSource", 6),
        ("UnknownStage", 7),
        ("DuplicateStageName", 8),
        ("EmptyRun", 9),
        ("MalformedJson", 10),
        ("InvalidImageReference", 11),
    ];
    assert_eq!(found, expected.map(|(c, l)| (c.to_string(), l)));
}

#[test]
fn lint_rules_fire_under_buildkit_names() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/dockerfiles/lint-warnings.Dockerfile"
    ))
    .unwrap();
    let found: Vec<(String, usize)> = codes(&text)
        .into_iter()
        .map(|(c, s, l)| {
            assert_eq!(s, Severity::Warning, "{c} on line {l} should be a warning");
            (c, l)
        })
        .collect();
    let expected = [
        ("ConsistentInstructionCasing", 1),
        ("StageNameCasing", 1),
        ("MaintainerDeprecated", 2),
        ("SecretsUsedInArgOrEnv", 3),
        ("LegacyKeyValueFormat", 4),
        ("WorkdirRelativePath", 5),
        ("UndefinedVar", 7),
        ("JSONArgsRecommended", 8),
        ("MultipleInstructionsDisallowed", 8),
        ("ExposeInvalidFormat", 10),
        ("ExposeProtoCasing", 10),
        ("FromAsCasing", 11),
        ("FromPlatformFlagConstDisallowed", 11),
    ];
    assert_eq!(found, expected.map(|(c, l)| (c.to_string(), l)));
}

#[test]
fn more_lint_rules() {
    assert_eq!(code_names("FROM busybox AS scratch\n"), ["ReservedStageName"]);
    assert_eq!(code_names("FROM ${NOPE}busybox\n"), ["UndefinedArgInFrom"]);
    // Valid with the build arg a real build passes, but not with the defaults alone.
    let mut options = PlanOptions::default();
    options.build_args.insert("TAG".into(), "1.36".into());
    let with_arg = validate(&Template::from_dockerfile_content("ARG TAG\nFROM busybox:${TAG}\n"), &options);
    assert_eq!(with_arg.iter().map(|d| d.code.as_str()).collect::<Vec<_>>(), ["InvalidDefaultArgInFrom"]);
    assert_eq!(code_names("ARG TAG\nFROM busybox:${TAG}\n"), ["InvalidImageReference", "InvalidDefaultArgInFrom"]);
    assert_eq!(code_names("FROM --platform=$TARGETPLATFORM busybox\n"), ["RedundantTargetPlatform"]);
    assert_eq!(code_names("FROM busybox\nRUN a \\\n\n  b\n"), ["NoEmptyContinuation"]);
    assert_eq!(code_names("FROM busybox\nARG GITHUB_TOKEN\nARG PUBLIC_KEY\n"), ["SecretsUsedInArgOrEnv"]);
    assert_eq!(code_names("FROM busybox\nHEALTHCHECK NONE\nHEALTHCHECK NONE\n"), ["MultipleInstructionsDisallowed"]);
    // An explicit SHELL makes shell-form CMD deliberate.
    assert_eq!(code_names("FROM busybox\nSHELL [\"/bin/ash\", \"-c\"]\nCMD echo hi\n"), Vec::<String>::new());
}

#[test]
fn check_directive_skips_and_escalates() {
    let base = "FROM busybox AS Builder\nCMD echo hi\n";
    assert_eq!(code_names(base), ["StageNameCasing", "JSONArgsRecommended"]);
    assert_eq!(code_names(&format!("# check=skip=StageNameCasing\n{base}")), ["JSONArgsRecommended"]);
    assert_eq!(code_names(&format!("# check=skip=all\n{base}")), Vec::<String>::new());
    let escalated = codes(&format!("# check=error=true\n{base}"));
    assert!(escalated.iter().all(|(_, s, _)| *s == Severity::Error) && escalated.len() == 2);
    assert!(
        plan(&Template::from_dockerfile_content(format!("# check=error=true\n{base}")), &PlanOptions::default())
            .plan
            .is_none()
    );
    assert_eq!(code_names(&format!("# check=bogus=1\n{base}"))[0], "InvalidCheckDirective");
}

#[test]
fn unreachable_stage_errors_do_not_fail_the_build() {
    let text = "FROM busybox AS unused\nCOPY ../x /x\nFROM busybox\nRUN ok\n";
    let c = codes(text);
    assert_eq!(c, [("SourceEscapesContext".to_string(), Severity::Warning, 2)]);
    assert!(plan(&Template::from_dockerfile_content(text), &PlanOptions::default()).plan.is_some());
}

#[test]
fn unknown_target_suggests() {
    let d = validate(
        &Template::from_dockerfile_content("FROM busybox AS build\n").target("biuld"),
        &PlanOptions::default(),
    );
    assert_eq!(d[0].code, "UnknownTarget");
    assert!(d[0].message.contains("did you mean build?"), "{}", d[0].message);
}

#[test]
fn heredoc_copy_contents_are_expanded_unless_quoted() {
    let p = planned("FROM busybox\nENV WHO=world\nCOPY <<EOF /a\nhello $WHO\nEOF\nCOPY <<'EOF' /b\nhello $WHO\nEOF\n");
    let contents: Vec<String> = p.stages[0]
        .steps
        .iter()
        .filter_map(|s| match &s.op {
            Op::Copy { heredocs, .. } => Some(heredocs[0].content.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(contents, ["hello world\n", "hello $WHO\n"]);
}

#[test]
fn expose_ports_normalize_and_expand_ranges() {
    let p = planned("FROM busybox\nENV P=8080\nEXPOSE 80 $P/udp 9000-9002\n");
    let Op::Expose { ports } = &p.stages[0].steps[1].op else { panic!() };
    // BuildKit sorts the raw words before expanding them.
    assert_eq!(ports, &["8080/udp", "80/tcp", "9000/tcp", "9001/tcp", "9002/tcp"]);
    assert_eq!(code_names("FROM busybox\nEXPOSE http\n"), ["InvalidPort"]);
}

#[test]
fn empty_and_fromless_dockerfiles() {
    assert_eq!(code_names(""), ["EmptyDockerfile"]);
    assert_eq!(code_names("# only a comment\n"), ["EmptyDockerfile"]);
    assert_eq!(code_names("ARG A=1\n"), ["NoFrom"]);
    assert_eq!(code_names("RUN echo\n"), ["NoBuildStage"]);
}

#[test]
fn the_large_fixture_plans_without_problems() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/dockerfiles/large-1000.Dockerfile"))
            .unwrap();
    let outcome = plan(&Template::from_dockerfile_content(text), &PlanOptions::default());
    assert_eq!(outcome.diagnostics, []);
    let p = outcome.plan.unwrap();
    let steps: usize = p.stages.iter().map(|s| s.steps.len()).sum();
    // 10 stages chained FROM one another: all needed; ARGs make no steps.
    assert_eq!(p.stages.len(), 11);
    assert!(steps > 900, "{steps}");
}

#[test]
fn plan_digest_is_stable_and_covers_content() {
    let a = planned("FROM busybox\nRUN echo a\n");
    let b = planned("FROM busybox\nRUN echo a\n");
    let c = planned("FROM busybox\nRUN echo b\n");
    assert_eq!(a.plan_digest(), b.plan_digest());
    assert_ne!(a.plan_digest(), c.plan_digest());
    // The digest is sha256 of the canonical JSON, checked here with an independent hasher run.
    let canonical = a.canonical_json();
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&canonical).unwrap();
    let out = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
    assert_eq!(a.plan_digest(), format!("sha256:{}", &out[..64]));
}

#[test]
fn oversized_and_hostile_input_is_refused_cleanly() {
    let huge = format!("FROM busybox\nRUN echo {}\n", "x".repeat(5 * 1024 * 1024));
    assert_eq!(code_names(&huge), ["DockerfileTooLarge"]);
    // A line longer than BuildKit's scanner allows.
    let long_line = format!("FROM busybox\nRUN echo {}\n", "y".repeat(100 * 1024));
    assert_eq!(code_names(&long_line), ["ParseError"]);
    // Deeply nested expansions and ONBUILD chains end in errors, not stack overflows.
    let nested = format!("FROM busybox\nENV A={}x{}\n", "${B:-".repeat(10_000), "}".repeat(10_000));
    assert_eq!(code_names(&nested), ["ExpansionError"]);
    let onbuild = format!("FROM busybox\n{}RUN x\n", "ONBUILD ".repeat(1000));
    assert!(!code_names(&onbuild).is_empty());
}

#[test]
fn serialised_plan_carries_the_digest_and_reads_back_equal() {
    let p = planned("FROM busybox\nARG V=1\nRUN --mount=type=secret,id=tok echo $V\n");
    let json = serde_json::to_string(&p).unwrap();
    // The digest follows the version; without it, the text is the canonical form.
    let digest_field = format!("\"plan_digest\":\"{}\",", p.compute_digest());
    assert!(json.starts_with(&format!("{{\"schema_version\":1,{digest_field}\"input\":")), "{json}");
    assert_eq!(json.replacen(&digest_field, "", 1).into_bytes(), p.canonical_json());
    let back: BuildPlan = serde_json::from_str(&json).unwrap();
    assert_eq!(back, p);
    assert_eq!(back.plan_digest(), p.plan_digest());
    // RUN steps of a stage share its shell and build arguments, and both serialise as before.
    let Op::Run { shell, build_args, .. } = &back.stages[0].steps[0].op else { panic!("not RUN") };
    assert_eq!(&shell[..], ["/bin/sh", "-c"]);
    assert_eq!(build_args.get("V").map(String::as_str), Some("1"));
}

#[test]
fn seal_recomputes_the_digest_after_a_change() {
    let mut p = planned("FROM busybox\nRUN echo a\n");
    let before = p.plan_digest().to_owned();
    p.stages[0].steps[0].no_cache = true;
    assert_eq!(p.plan_digest(), before, "kept until sealed");
    let p = p.seal();
    assert_ne!(p.plan_digest(), before);
    assert_eq!(p.plan_digest(), p.compute_digest());
}

#[test]
fn workdir_and_destinations_are_cleaned_like_go_path_join() {
    let text =
        "FROM busybox\nWORKDIR /a/b/../c/./d\nWORKDIR ..\nCOPY x sub/\nWORKDIR ../../..\nCOPY y .\nCOPY z ./q/../r\n";
    let p = planned(text);
    let seen: Vec<&str> = p.stages[0]
        .steps
        .iter()
        .map(|s| match &s.op {
            Op::Workdir { path } => path.as_str(),
            Op::Copy { dest, .. } => dest.as_str(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(seen, ["/a/c/d", "/a/c", "/a/c/sub/", "/", "/", "/r"]);
}
