//! Declarative steps to plan steps. Package installs expand to documented shell commands:
//!
//! - `pip_install(p…)`: `pip install --no-cache-dir p…`
//! - `apt_install(p…)` (as root): `apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install
//!   -y --no-install-recommends p… && rm -rf /var/lib/apt/lists/*`
//! - `npm_install(p…, global)`: `npm install [-g] p…`
//!
//! Every RUN step of a template with build secrets mounts each of them at `/run/secrets/<id>`.

use super::checks::{
    SourcePathProblem, check_duration, check_source_path, check_url, parse_octal_mode, shell_quote, valid_apt_package,
    valid_env_name, valid_owner, valid_secret_id,
};
use crate::builder::{Base, ReadyCheck, Step, Template};
use crate::diagnostic::{Diagnostic, Span};
use crate::plan::{Command, CopyFrom, Mount, Op, PlanStep, SecretRef, Stage};
use crate::reference::BaseImage;
use std::collections::{BTreeMap, BTreeSet};

const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

fn at(index: usize, field: &str) -> Span {
    Span::Builder { index, field: Some(field.to_string()) }
}

/// The stage a `from_python_image` / `from_image` template starts with.
pub(super) fn base_stage(template: &Template, diagnostics: &mut Vec<Diagnostic>) -> Vec<Stage> {
    let (written, field) = match &template.from {
        Base::Python { version, variant } => {
            if version.is_empty() {
                diagnostics.push(
                    Diagnostic::error("InvalidImageReference", "the Python version is empty")
                        .at(Span::Template { field: "from.version".into() })
                        .hint("give a version such as `3.12`"),
                );
                return Vec::new();
            }
            let tag = match variant {
                Some(v) => format!("{version}-{v}"),
                None => version.clone(),
            };
            (format!("python:{tag}"), "from.version")
        }
        Base::Image { reference } => (reference.clone(), "from.reference"),
        Base::Dockerfile { .. } | Base::DockerfileContent { .. } => return Vec::new(),
    };
    match BaseImage::parse(&written) {
        Ok(base) => vec![Stage {
            name: None,
            source_index: 0,
            base,
            platform: None,
            span: Span::Template { field: field.into() },
            steps: Vec::new(),
        }],
        Err(e) => {
            diagnostics.push(
                Diagnostic::error("InvalidImageReference", format!("`{written}`: {e}"))
                    .at(Span::Template { field: field.into() })
                    .hint(
                        "write a reference such as `python:3.12-slim`, `ghcr.io/org/image:tag` or `oci:./layout:tag`",
                    ),
            );
            Vec::new()
        }
    }
}

/// A stage to check steps against when the base itself is unusable.
pub(super) fn placeholder_stage() -> Stage {
    Stage {
        name: None,
        source_index: 0,
        base: BaseImage::Scratch,
        platform: None,
        span: Span::Template { field: "from".into() },
        steps: Vec::new(),
    }
}

pub(super) fn check_secrets(template: &Template, diagnostics: &mut Vec<Diagnostic>) {
    let mut seen = BTreeSet::new();
    for secret in &template.secrets {
        let field = Span::Template { field: "secrets".into() };
        if !valid_secret_id(&secret.id) {
            diagnostics.push(
                Diagnostic::error("InvalidSecret", format!("secret id `{}` is invalid", secret.id))
                    .at(field.clone())
                    .hint("use letters, digits, `-`, `_` and `.`"),
            );
        }
        if !valid_env_name(&secret.env) {
            diagnostics.push(
                Diagnostic::error(
                    "InvalidSecret",
                    format!("`{}` is not a valid environment variable name", secret.env),
                )
                .at(field.clone()),
            );
        }
        if !seen.insert(&secret.id) {
            diagnostics.push(
                Diagnostic::error("DuplicateSecret", format!("secret `{}` is declared twice", secret.id)).at(field),
            );
        }
    }
}

/// The secrets a plan uses: those the template declares and those RUN mounts name, each once,
/// with the variable that supplies it when the template declares one.
pub(super) fn secret_refs(template: &Template, stages: &[Stage]) -> Vec<SecretRef> {
    let mut refs: BTreeMap<String, Option<String>> =
        template.secrets.iter().map(|s| (s.id.clone(), Some(s.env.clone()))).collect();
    for step in stages.iter().flat_map(|s| &s.steps) {
        if let Op::Run { mounts, .. } = &step.op {
            for mount in mounts {
                if let Mount::Secret { id, .. } = mount
                    && !refs.contains_key(id)
                {
                    refs.insert(id.clone(), None);
                }
            }
        }
    }
    refs.into_iter().map(|(id, env)| SecretRef { id, env }).collect()
}

/// Appends the template's declarative steps to `stage` (the base stage, or a Dockerfile's target).
pub(super) fn append_steps(template: &Template, stage: &mut Stage, diagnostics: &mut Vec<Diagnostic>) {
    let secret_mounts: Vec<Mount> = template
        .secrets
        .iter()
        .map(|s| Mount::Secret {
            id: s.id.clone(),
            target: Some(format!("/run/secrets/{}", s.id)),
            env: None,
            required: true,
            mode: 0o400,
            uid: 0,
            gid: 0,
        })
        .collect();
    let run = |command: String, user: Option<String>| Op::Run {
        command: Command::Shell(command),
        shell: DEFAULT_SHELL.iter().map(ToString::to_string).collect(),
        heredocs: Vec::new(),
        mounts: secret_mounts.clone(),
        network: "default".into(),
        security: "sandbox".into(),
        build_args: Default::default(),
        user,
    };
    let mut no_cache = false;
    let mut start_cmds = 0;
    for (index, step) in template.steps.iter().enumerate() {
        let op = match step {
            Step::SkipCache => {
                no_cache = true;
                continue;
            }
            Step::Copy { src, dest, options } => {
                if src.is_empty() {
                    diagnostics.push(Diagnostic::error("EmptyCopy", "copy has no source").at(at(index, "src")));
                }
                for source in src {
                    check_copy_source(source, index, diagnostics);
                }
                if dest.is_empty() {
                    diagnostics.push(Diagnostic::error("EmptyCopy", "copy has no destination").at(at(index, "dest")));
                }
                if let Some(mode) = &options.mode {
                    if parse_octal_mode(mode).is_none() {
                        diagnostics.push(
                            Diagnostic::error("InvalidMode", format!("`{mode}` is not an octal file mode"))
                                .at(at(index, "mode"))
                                .hint("write an octal mode such as `0644` or `755`"),
                        );
                    }
                }
                if let Some(owner) = &options.owner {
                    if !valid_owner(owner) {
                        diagnostics.push(
                            Diagnostic::error("InvalidOwner", format!("`{owner}` is not `user[:group]`"))
                                .at(at(index, "owner")),
                        );
                    }
                }
                Op::Copy {
                    add: false,
                    from: CopyFrom::Context,
                    sources: src.clone(),
                    dest: dest.clone(),
                    heredocs: Vec::new(),
                    chown: options.owner.clone(),
                    chmod: options.mode.clone(),
                    link: false,
                    exclude: options.exclude.clone(),
                    parents: false,
                    checksum: None,
                    keep_git_dir: false,
                }
            }
            Step::RunCmd { cmd } => {
                if cmd.trim().is_empty() {
                    diagnostics
                        .push(Diagnostic::error("EmptyRun", "run_cmd has an empty command").at(at(index, "cmd")));
                }
                run(cmd.clone(), None)
            }
            Step::PipInstall { packages } => {
                check_packages(packages, index, "pip_install", diagnostics);
                run(format!("pip install --no-cache-dir {}", quoted(packages)), None)
            }
            Step::AptInstall { packages } => {
                check_packages(packages, index, "apt_install", diagnostics);
                for package in packages.iter().filter(|p| !valid_apt_package(p)) {
                    diagnostics.push(
                        Diagnostic::error("InvalidPackageName", format!("`{package}` is not a Debian package name"))
                            .at(at(index, "packages")),
                    );
                }
                run(
                    format!(
                        "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {} && rm -rf /var/lib/apt/lists/*",
                        quoted(packages)
                    ),
                    Some("root".into()),
                )
            }
            Step::NpmInstall { packages, global } => {
                check_packages(packages, index, "npm_install", diagnostics);
                let flag = if *global { "-g " } else { "" };
                run(format!("npm install {flag}{}", quoted(packages)), None)
            }
            Step::SetEnvs { envs } => {
                if envs.is_empty() {
                    diagnostics.push(Diagnostic::warning("EmptyEnv", "set_envs sets nothing").at(at(index, "envs")));
                }
                for name in envs.keys().filter(|k| !valid_env_name(k)) {
                    diagnostics.push(
                        Diagnostic::error(
                            "InvalidEnvName",
                            format!("`{name}` is not a valid environment variable name"),
                        )
                        .at(at(index, "envs")),
                    );
                }
                Op::Env { vars: envs.iter().map(|(k, v)| (k.clone(), v.clone())).collect() }
            }
            Step::SetWorkdir { path } => {
                if path.is_empty() {
                    diagnostics
                        .push(Diagnostic::error("EmptyWorkdir", "set_workdir has an empty path").at(at(index, "path")));
                } else if !path.starts_with('/') {
                    diagnostics.push(
                        Diagnostic::warning(
                            "WorkdirRelativePath",
                            format!("relative workdir `{path}` depends on the previous one"),
                        )
                        .at(at(index, "path"))
                        .hint("use an absolute path"),
                    );
                }
                Op::Workdir { path: path.clone() }
            }
            Step::SetUser { user } => {
                if !valid_owner(user) {
                    diagnostics.push(
                        Diagnostic::error("InvalidUser", format!("`{user}` is not `user[:group]`"))
                            .at(at(index, "user")),
                    );
                }
                Op::User { user: user.clone() }
            }
            Step::SetStartCmd { cmd, ready } => {
                start_cmds += 1;
                if start_cmds == 2 {
                    diagnostics.push(
                        Diagnostic::warning(
                            "MultipleInstructionsDisallowed",
                            "set_start_cmd is given more than once; the last one wins",
                        )
                        .at(at(index, "cmd")),
                    );
                }
                if cmd.trim().is_empty() {
                    diagnostics
                        .push(Diagnostic::error("EmptyStartCmd", "the start command is empty").at(at(index, "cmd")));
                }
                check_ready(ready, index, diagnostics);
                Op::StartCmd { command: Command::Shell(cmd.clone()), ready: ready.clone() }
            }
        };
        stage.steps.push(PlanStep { span: Span::Builder { index, field: None }, no_cache, op });
    }
}

fn quoted(packages: &[String]) -> String {
    packages.iter().map(|p| shell_quote(p)).collect::<Vec<_>>().join(" ")
}

fn check_packages(packages: &[String], index: usize, step: &str, diagnostics: &mut Vec<Diagnostic>) {
    if packages.is_empty() || packages.iter().any(|p| p.trim().is_empty()) {
        diagnostics.push(
            Diagnostic::error("EmptyPackageList", format!("{step} needs at least one non-empty package"))
                .at(at(index, "packages")),
        );
    }
}

fn check_copy_source(source: &str, index: usize, diagnostics: &mut Vec<Diagnostic>) {
    let (code, message) = match check_source_path(source) {
        Ok(()) => return,
        Err(SourcePathProblem::Absolute) => ("AbsoluteSource", format!("source `{source}` is absolute")),
        Err(SourcePathProblem::EscapesContext) => {
            ("SourceEscapesContext", format!("source `{source}` leaves the build context"))
        }
        Err(SourcePathProblem::Empty) => ("EmptyCopy", "a copy source is empty".to_string()),
    };
    diagnostics.push(
        Diagnostic::error(code, message).at(at(index, "src")).hint("sources are paths relative to the build context"),
    );
}

fn check_ready(ready: &ReadyCheck, index: usize, diagnostics: &mut Vec<Diagnostic>) {
    let field = at(index, "ready");
    let problem = match ready {
        ReadyCheck::Port { port } if !(1..=65535).contains(port) => {
            Some(("InvalidPort", format!("port {port} is outside 1–65535")))
        }
        ReadyCheck::Url { url, status } => match check_url(url) {
            Err(why) => Some(("InvalidUrl", format!("ready URL `{url}` {why}"))),
            Ok(()) => status
                .filter(|s| !(100..=599).contains(s))
                .map(|s| ("InvalidUrl", format!("expected status {s} is not an HTTP status"))),
        },
        ReadyCheck::Process { name } if name.trim().is_empty() => {
            Some(("InvalidReadyCheck", "the process name is empty".to_string()))
        }
        ReadyCheck::File { path } if !path.starts_with('/') => {
            Some(("InvalidReadyCheck", format!("ready file `{path}` must be an absolute path")))
        }
        ReadyCheck::Timeout { duration } => check_duration(duration).err().map(|why| ("InvalidDuration", why)),
        _ => None,
    };
    if let Some((code, message)) = problem {
        diagnostics.push(Diagnostic::error(code, message).at(field));
    }
}

#[cfg(test)]
mod tests {
    use crate::builder::{CopyOptions, ReadyCheck, Template, wait_for_file, wait_for_port, wait_for_url};
    use crate::normalize::{PlanOptions, plan, validate};
    use crate::plan::{Command, Mount, Op};
    use crate::reference::BaseImage;

    fn codes(t: &Template) -> Vec<String> {
        validate(t, &PlanOptions::default()).into_iter().map(|d| d.code).collect()
    }

    #[test]
    fn python_base_normalizes_with_variant() {
        let p =
            plan(&Template::from_python_image("3.12").python_variant("slim"), &PlanOptions::default()).plan.unwrap();
        assert_eq!(p.stages[0].base, BaseImage::Registry { reference: "docker.io/library/python:3.12-slim".into() });
    }

    #[test]
    fn reports_every_problem_at_once() {
        let t = Template::from_image("busybox")
            .copy("../outside", "/x")
            .copy_with(["/etc/passwd"], "/y", CopyOptions::default().mode("99").owner("a b"))
            .apt_install(["curl;reboot"])
            .pip_install(Vec::<String>::new())
            .set_envs([("1BAD", "x")])
            .set_start_cmd("app", ReadyCheck::Url { url: "localhost:80".into(), status: None })
            .set_start_cmd("app", ReadyCheck::Timeout { duration: "5 minutes".into() })
            .add_build_secret_env("bad id", "TOKEN");
        assert_eq!(
            codes(&t),
            [
                "InvalidSecret",
                "SourceEscapesContext",
                "AbsoluteSource",
                "InvalidMode",
                "InvalidOwner",
                "InvalidPackageName",
                "EmptyPackageList",
                "InvalidEnvName",
                "InvalidUrl",
                "MultipleInstructionsDisallowed",
                "InvalidDuration",
            ]
        );
        assert!(plan(&t, &PlanOptions::default()).plan.is_none());
    }

    #[test]
    fn skip_cache_marks_the_rest() {
        let t = Template::from_image("busybox").run_cmd("a").skip_cache().run_cmd("b").run_cmd("c");
        let p = plan(&t, &PlanOptions::default()).plan.unwrap();
        let flags: Vec<bool> = p.stages[0].steps.iter().map(|s| s.no_cache).collect();
        assert_eq!(flags, [false, true, true]);
    }

    #[test]
    fn secrets_appear_as_ids_and_mounts_only() {
        let t = Template::from_image("busybox").add_build_secret_env("tok", "MY_TOKEN").run_cmd("cat /run/secrets/tok");
        let p = plan(&t, &PlanOptions::default()).plan.unwrap();
        let Op::Run { mounts, .. } = &p.stages[0].steps[0].op else { panic!("not a run") };
        assert!(
            matches!(&mounts[0], Mount::Secret { id, target: Some(t), .. } if id == "tok" && t == "/run/secrets/tok")
        );
        assert_eq!(p.secrets[0].env.as_deref(), Some("MY_TOKEN"));
    }

    #[test]
    fn package_installs_expand_to_documented_commands() {
        let t = Template::from_image("debian").apt_install(["curl"]).pip_install(["numpy>=2"]).npm_install(["x"], true);
        let p = plan(&t, &PlanOptions::default()).plan.unwrap();
        let cmds: Vec<(String, Option<String>)> = p.stages[0]
            .steps
            .iter()
            .map(|s| match &s.op {
                Op::Run { command: Command::Shell(c), user, .. } => (c.clone(), user.clone()),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            cmds[0].0,
            "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*"
        );
        assert_eq!(cmds[0].1.as_deref(), Some("root"));
        assert_eq!(cmds[1].0, "pip install --no-cache-dir 'numpy>=2'");
        assert_eq!(cmds[2].0, "npm install -g x");
    }

    #[test]
    fn ready_checks_are_validated() {
        let ok = Template::from_image("busybox").set_start_cmd("a", wait_for_url("http://127.0.0.1:8080/ready"));
        assert!(codes(&ok).is_empty());
        assert_eq!(
            codes(&Template::from_image("busybox").set_start_cmd("a", wait_for_file("rel"))),
            ["InvalidReadyCheck"]
        );
        assert_eq!(codes(&Template::from_image("busybox").set_start_cmd("a", wait_for_port(0))), ["InvalidPort"]);
    }

    #[test]
    fn digest_is_stable_and_sensitive() {
        let t = Template::from_image("busybox").run_cmd("echo a");
        let a = plan(&t, &PlanOptions::default()).plan.unwrap();
        let b = plan(&t.clone(), &PlanOptions::default()).plan.unwrap();
        assert_eq!(a.plan_digest(), b.plan_digest());
        assert_eq!(a.plan_digest(), a.compute_digest());
        let c = plan(&Template::from_image("busybox").run_cmd("echo b"), &PlanOptions::default()).plan.unwrap();
        assert_ne!(a.plan_digest(), c.plan_digest());
    }
}
