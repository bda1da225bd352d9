//! Dockerfile input to plan stages, following BuildKit's `dockerfile2llb`: global ARGs and the
//! predefined platform ARGs, FROM expansion, stage resolution (a FROM names only an *earlier*
//! stage; `COPY --from` and mount `from=` may name any stage, and cycles are errors), target
//! pruning, per-stage ARG/ENV scoping, word expansion of the instructions BuildKit expands, and
//! BuildKit's lint rules.
//!
//! Offline differences from a real build, by necessity: a base image's own ENV, WORKDIR and SHELL
//! are unknown here, so `UndefinedVar` ignores a few variables every image may define (`PATH`,
//! `HOME`, …), and relative WORKDIRs resolve against `/`.

use super::PlanOptions;
use super::checks::{SourcePathProblem, check_source_path};
use super::lint::{self, CheckConfig, Linter, Rule};
use crate::builder::Template;
use crate::diagnostic::{Diagnostic, Severity, Span};
use crate::dockerfile::instructions::{
    self, AddCommand, Command as Instr, CommandMeta, CopyCommand, Healthcheck as InstrHealthcheck,
    InstructionErrorKind, Mount as InstrMount, MountType, NetworkMode, RunCommand, Security, ShareMode, SourceContent,
    closest,
};
use crate::dockerfile::parser::{self, ParseErrorKind};
use crate::dockerfile::shell::{EnvGetter, Lex};
use crate::plan::{Command, CopyFrom, Healthcheck, Heredoc, Mount, Op, PlanStep, Stage};
use crate::reference::{BaseImage, ImageRef};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;
use std::sync::Arc;

const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];
/// Variables a base image commonly defines, which offline planning cannot see.
const IMAGE_ENV_GUESSES: &[&str] = &["PATH", "HOME", "HOSTNAME", "TERM", "LANG", "LC_ALL", "PWD", "SHELL", "USER"];
const RESERVED_STAGE_NAMES: &[&str] = &["scratch", "context"];
const SECRET_TOKENS: &[&str] =
    &["apikey", "auth", "credential", "credentials", "key", "password", "pword", "passwd", "secret", "token"];
const SECRET_ALLOW_TOKENS: &[&str] = &["public", "file", "version"];

/// An ordered variable list where setting a name replaces it in place (BuildKit's `EnvList`).
/// Names and values are shared, so that a stage inherits its parent's list without copying text.
///
/// A chain of stages inherits every variable, so the list grows long: names are found through
/// an index from a fingerprint of the name to its position. Two names with one fingerprint are
/// possible; the index holds the first, and a lookup that finds another name there falls back
/// to scanning the list.
#[derive(Debug, Clone, Default)]
struct EnvList {
    entries: Vec<(Rc<str>, Rc<str>)>,
    index: HashMap<u64, usize, BuildHasherDefault<Prehashed>>,
}

/// FNV-1a of a variable name: cheap for short names.
fn fingerprint(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The hasher of [`EnvList`]'s index, whose keys are already hashes.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl EnvList {
    fn position(&self, key: &str) -> Option<usize> {
        let i = *self.index.get(&fingerprint(key))?;
        if &*self.entries[i].0 == key {
            return Some(i);
        }
        self.entries.iter().position(|(k, _)| &**k == key)
    }

    fn set(&mut self, key: &str, value: &str) {
        match self.position(key) {
            Some(i) => self.entries[i].1 = value.into(),
            None => {
                self.index.entry(fingerprint(key)).or_insert(self.entries.len());
                self.entries.push((key.into(), value.into()));
            }
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.position(key).map(|i| &*self.entries[i].1)
    }

    fn keys(&self) -> Vec<&str> {
        self.entries.iter().map(|(k, _)| &**k).collect()
    }
}

impl EnvGetter for EnvList {
    fn get(&self, key: &str) -> Option<&str> {
        EnvList::get(self, key)
    }

    fn keys(&self) -> Vec<&str> {
        EnvList::keys(self)
    }
}

struct Ctx<'a> {
    /// Shared by every span, so that a span costs no allocation.
    file: Arc<str>,
    text: &'a str,
    /// The text's lines, split when a span first needs a column.
    lines: std::cell::OnceCell<Vec<&'a str>>,
    lex: Lex,
    linter: Linter,
    diagnostics: Vec<Diagnostic>,
}

impl Ctx<'_> {
    fn span(&self, line: usize, end_line: usize, needle: Option<&str>) -> Span {
        let column = needle.filter(|n| !n.is_empty()).map_or(1, |n| {
            let lines = self.lines.get_or_init(|| self.text.lines().collect());
            let text = line.checked_sub(1).and_then(|i| <[&str]>::get(lines, i));
            text.and_then(|text| Some(text[..text.find(n)?].chars().count() + 1)).unwrap_or(1)
        });
        Span::Dockerfile { file: Arc::clone(&self.file), line, column, end_line: end_line.max(line) }
    }

    fn meta_span(&self, meta: &CommandMeta, needle: Option<&str>) -> Span {
        self.span(meta.location.start_line, meta.location.end_line, needle)
    }

    fn error(&mut self, code: &str, message: impl Into<String>, span: Span) -> &mut Diagnostic {
        self.diagnostics.push(Diagnostic::error(code, message).at(span));
        self.diagnostics.last_mut().expect("just pushed")
    }

    fn lint(&mut self, rule: Rule, message: impl Into<String>, span: Span) {
        self.linter.report(rule, message, span);
    }
}

/// The platform as BuildKit's `platforms.Parse` splits it: os, architecture, variant.
fn parse_platform(text: &str) -> Result<(String, String, String), String> {
    let parts: Vec<&str> = text.split('/').collect();
    let ok =
        |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if parts.len() > 3 || !parts.iter().all(|p| ok(p)) {
        return Err(format!("\"{text}\": unknown operating system or architecture: invalid argument"));
    }
    let arch = |a: &str| match a.to_ascii_lowercase().as_str() {
        "x86_64" | "x86-64" => "amd64".to_string(),
        "aarch64" => "arm64".to_string(),
        other => other.to_string(),
    };
    Ok(match parts.as_slice() {
        [os] if ["linux", "windows", "darwin", "freebsd"].contains(os) => {
            (os.to_string(), "amd64".into(), String::new())
        }
        [a] => ("linux".into(), arch(a), String::new()),
        [os, a] => (os.to_ascii_lowercase(), arch(a), String::new()),
        [os, a, v] => (os.to_ascii_lowercase(), arch(a), v.to_string()),
        _ => unreachable!("length checked above"),
    })
}

fn format_platform((os, arch, variant): &(String, String, String)) -> String {
    if variant.is_empty() { format!("{os}/{arch}") } else { format!("{os}/{arch}/{variant}") }
}

fn is_secret_key(key: &str) -> bool {
    let listed = |list: &[&str]| key.split('_').any(|t| list.iter().any(|w| w.eq_ignore_ascii_case(t)));
    listed(SECRET_TOKENS) && !listed(SECRET_ALLOW_TOKENS)
}

/// Whether `word` is unchanged by Go's `strings.ToLower`, checked without allocating for ASCII.
fn is_lowercase(word: &str) -> bool {
    if word.is_ascii() { !word.bytes().any(|b| b.is_ascii_uppercase()) } else { word == word.to_lowercase() }
}

/// Whether `word` is unchanged by Go's `strings.ToUpper`, checked without allocating for ASCII.
fn is_uppercase(word: &str) -> bool {
    if word.is_ascii() { !word.bytes().any(|b| b.is_ascii_lowercase()) } else { word == word.to_uppercase() }
}

fn self_consistent(word: &str) -> bool {
    is_lowercase(word) || is_uppercase(word)
}

/// Where a `--from` or mount `from=` points.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FromTarget {
    Stage(usize),
    Image(String),
}

/// One stage being dispatched.
struct StageState {
    env: EnvList,
    /// ARGs declared in this stage (with or without a value), in order.
    args: Vec<(String, Option<String>)>,
    /// The build arguments a RUN sees (`args` with values), made once per change of `args`.
    build_args: Option<Arc<BTreeMap<String, String>>>,
    shell: Arc<[String]>,
    shell_set: bool,
    workdir: String,
    workdir_set: bool,
    /// Whether the stage's filesystem starts from an image whose ENV we cannot see.
    image_env_unknown: bool,
    cmd_at: Option<Span>,
    entrypoint_at: Option<Span>,
    healthcheck_at: Option<Span>,
    steps: Vec<PlanStep>,
}

pub(super) fn normalize(
    text: &str,
    file: &str,
    template: &Template,
    options: &PlanOptions,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<Stage> {
    let mut ctx = Ctx {
        file: file.into(),
        text,
        lines: std::cell::OnceCell::new(),
        lex: Lex::new('\\'),
        linter: Linter::default(),
        diagnostics: Vec::new(),
    };
    let stages = normalize_parsed(text, template, options, &mut ctx);
    let mut found = ctx.diagnostics;
    found.extend(ctx.linter.into_findings());
    let line_of = |d: &Diagnostic| match &d.span {
        Some(Span::Dockerfile { line, .. }) => *line,
        _ => usize::MAX,
    };
    found.sort_by_key(line_of);
    diagnostics.extend(found);
    stages
}

fn parse_error_code(kind: &ParseErrorKind) -> &'static str {
    match kind {
        ParseErrorKind::TooLarge { .. } => "DockerfileTooLarge",
        ParseErrorKind::InvalidUtf8 => "InvalidUtf8",
        ParseErrorKind::NoInstructions => "EmptyDockerfile",
        ParseErrorKind::NotStringArray => "MalformedJson",
        _ => "ParseError",
    }
}

fn normalize_parsed(text: &str, template: &Template, options: &PlanOptions, ctx: &mut Ctx<'_>) -> Vec<Stage> {
    let parsed = match parser::parse_flat(text.as_bytes()) {
        Ok(parsed) => parsed,
        Err(e) => {
            let span = ctx.span(e.line.max(1), e.end_line.max(e.line).max(1), None);
            ctx.error(parse_error_code(&e.kind), e.kind.to_string(), span);
            return Vec::new();
        }
    };
    ctx.lex = Lex::new(parsed.escape_token);
    for directive in parsed.directives.iter().filter(|d| d.name == "check") {
        match CheckConfig::parse(&directive.value) {
            Ok(config) => ctx.linter = Linter::new(config),
            Err(message) => {
                let span = ctx.span(directive.line, directive.line, Some("check"));
                ctx.error("InvalidCheckDirective", message, span);
            }
        }
    }
    for warning in &parsed.warnings {
        for &line in &warning.empty_lines {
            let span = ctx.span(line, line, None);
            ctx.lint(lint::NO_EMPTY_CONTINUATION, "Empty continuation line", span);
        }
    }
    // Read before the typed instructions take the instruction text from the tree; reported
    // after their errors, as before.
    let mut malformed = Vec::new();
    let mut facts = TreeFacts { one_casing: true, maintainer: false };
    // A keyword of neither casing (`Run`) is inconsistent whatever the others are.
    let first_casing = parsed.instructions.first().map(|f| casing(&f.node.value)).filter(|&c| c != (false, false));
    for flat in &parsed.instructions {
        let node = &flat.node;
        malformed.extend(malformed_json(node, &flat.original, ctx));
        facts.one_casing &= Some(casing(&node.value)) == first_casing;
        facts.maintainer |= node.value.eq_ignore_ascii_case("maintainer");
    }
    let mut typed = instructions::parse_owned(parsed.instructions, parsed.args);
    // Held apart from the stages so that each stage's instructions can be dropped once dispatched.
    let commands: Vec<Vec<Instr>> = typed.stages.iter_mut().map(|s| std::mem::take(&mut s.commands)).collect();
    for error in &typed.errors {
        let code = match error.kind {
            InstructionErrorKind::UnknownInstruction => "UnknownInstruction",
            InstructionErrorKind::Flag if error.message.starts_with("unknown flag") => "UnknownFlag",
            InstructionErrorKind::Flag => "InvalidFlag",
            InstructionErrorKind::Mount => "InvalidMount",
            InstructionErrorKind::Arguments
                if error.instruction.eq_ignore_ascii_case("run") && error.message.contains("at least one argument") =>
            {
                "EmptyRun"
            }
            InstructionErrorKind::Arguments => "InvalidArguments",
            InstructionErrorKind::InvalidValue => "InvalidValue",
            InstructionErrorKind::NoBuildStage => "NoBuildStage",
        };
        let needle = error.message.strip_prefix("unknown flag: ").map(|f| format!("--{f}"));
        let needle = needle.as_deref().or(Some(error.instruction.as_str()));
        let span = ctx.span(error.line, error.end_line, needle);
        let hint = match code {
            "UnknownInstruction" => Some(
                "instructions are ADD, ARG, CMD, COPY, ENTRYPOINT, ENV, EXPOSE, FROM, HEALTHCHECK, LABEL, MAINTAINER, ONBUILD, RUN, SHELL, STOPSIGNAL, USER, VOLUME and WORKDIR",
            ),
            "InvalidMount" => Some(
                "mount keys: type, target, source, from, readonly/rw, id, sharing, mode, uid, gid, required, env, size",
            ),
            _ => None,
        };
        let d = ctx.error(code, error.message.clone(), span);
        if let Some(hint) = hint {
            d.hint = Some(hint.to_string());
        }
    }
    ctx.diagnostics.extend(malformed);
    if typed.stages.is_empty() {
        if !typed.errors.iter().any(|e| e.kind == InstructionErrorKind::NoBuildStage) {
            let span = ctx.span(1, 1, None);
            ctx.error("NoFrom", "dockerfile contains no stages to build", span).hint =
                Some("start the Dockerfile with a FROM instruction".into());
        }
        return Vec::new();
    }
    Dispatcher::new(ctx, &typed, template, options).run(commands, facts)
}

/// What the stage lints need to know about the whole tree, gathered while it is read anyway, so
/// that they need not walk every instruction again when there is nothing to report.
#[derive(Clone, Copy)]
struct TreeFacts {
    /// Every keyword has the same casing class (see [`casing`]), lowercase or uppercase, so
    /// none is inconsistent.
    one_casing: bool,
    /// Some instruction is a MAINTAINER.
    maintainer: bool,
}

/// A keyword's casing class: lowercase, uppercase, or neither.
fn casing(keyword: &str) -> (bool, bool) {
    (is_lowercase(keyword), is_uppercase(keyword))
}

/// Instructions whose arguments start with `[` but did not parse as a JSON array run in shell
/// form, which is almost never what was meant.
fn malformed_json(node: &parser::Node, original: &str, ctx: &Ctx<'_>) -> Option<Diagnostic> {
    const JSON_FORMS: &[&str] = &["cmd", "entrypoint", "run", "shell", "volume", "copy", "add"];
    // Most instructions hold no `[` at all: that settles them without splitting words.
    if node.json || !original.contains('[') || !JSON_FORMS.iter().any(|form| form.eq_ignore_ascii_case(&node.value)) {
        return None;
    }
    let rest = original.trim_start();
    let rest = rest.get(node.value.len()..).unwrap_or_default();
    let mut words = rest.split_whitespace().skip_while(|w| w.starts_with("--"));
    if !words.next().is_some_and(|w| w.starts_with('[')) {
        return None;
    }
    let message = format!(
        "{} arguments look like a JSON array but are not valid JSON, so they would run in shell form",
        node.value.to_ascii_uppercase()
    );
    Some(
        Diagnostic::error("MalformedJson", message)
            .at(ctx.span(node.start_line, node.end_line, Some("[")))
            .hint("use double quotes and commas: [\"executable\", \"arg\"]"),
    )
}

struct Dispatcher<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    typed: &'c instructions::Parsed,
    template: &'c Template,
    options: &'c PlanOptions,
    global_args: EnvList,
    /// Every ARG declared before the first FROM (with or without value) and the predefined ones.
    declared_global: BTreeSet<String>,
    build_platform: String,
}

impl<'c, 'a> Dispatcher<'c, 'a> {
    fn new(
        ctx: &'c mut Ctx<'a>,
        typed: &'c instructions::Parsed,
        template: &'c Template,
        options: &'c PlanOptions,
    ) -> Self {
        Self {
            ctx,
            typed,
            template,
            options,
            global_args: EnvList::default(),
            declared_global: BTreeSet::new(),
            build_platform: "linux/amd64".to_string(),
        }
    }

    fn default_args(&self, target_stage: &str) -> EnvList {
        let target =
            parse_platform(&self.options.platform).unwrap_or_else(|_| ("linux".into(), "amd64".into(), String::new()));
        let build =
            parse_platform(&self.build_platform).unwrap_or_else(|_| ("linux".into(), "amd64".into(), String::new()));
        let mut env = EnvList::default();
        let defaults = [
            ("BUILDPLATFORM", format_platform(&build)),
            ("BUILDOS", build.0.clone()),
            ("BUILDOSVERSION", String::new()),
            ("BUILDARCH", build.1.clone()),
            ("BUILDVARIANT", build.2.clone()),
            ("TARGETPLATFORM", format_platform(&target)),
            ("TARGETOS", target.0.clone()),
            ("TARGETOSVERSION", String::new()),
            ("TARGETARCH", target.1.clone()),
            ("TARGETVARIANT", target.2.clone()),
            ("TARGETSTAGE", target_stage.to_string()),
        ];
        for (key, value) in defaults {
            let value = self.options.build_args.get(key).cloned().unwrap_or(value);
            env.set(key, &value);
        }
        env
    }

    /// BuildKit's `buildMetaArgs`: global ARGs in order, build args overriding defaults.
    fn meta_args(&mut self, mut args: EnvList, use_build_args: bool, report: bool) -> EnvList {
        for command in &self.typed.meta_args {
            for pair in &command.args {
                let value = match self.options.build_args.get(&pair.key).filter(|_| use_build_args) {
                    Some(v) => Some(v.clone()),
                    None => match &pair.value {
                        Some(default) => {
                            let expansion = self.ctx.lex.process_word_with_matches(default, &args);
                            match expansion.value {
                                Ok(v) => Some(v),
                                Err(e) => {
                                    if report {
                                        let span = self.ctx.meta_span(&command.meta, Some(&pair.key));
                                        self.ctx.error("ExpansionError", e.to_string(), span);
                                    }
                                    None
                                }
                            }
                        }
                        None => None,
                    },
                };
                if report {
                    self.declared_global.insert(pair.key.clone());
                }
                if let Some(value) = value {
                    args.set(&pair.key, &value);
                }
            }
        }
        args
    }

    /// Dispatches the stages; `commands` are each stage's instructions (taken out of the stages).
    fn run(mut self, commands: Vec<Vec<Instr>>, facts: TreeFacts) -> Vec<Stage> {
        let stages = &self.typed.stages;
        self.stage_lints(&commands, facts);

        let target_index = match &self.template.target {
            Some(target) => match stages.iter().position(|s| s.name.as_deref() == Some(target.to_lowercase().as_str()))
            {
                Some(i) => Some(i),
                None => {
                    let names: Vec<&str> = stages.iter().filter_map(|s| s.name.as_deref()).collect();
                    let mut message = format!("target stage \"{target}\" could not be found");
                    if let Some(m) = closest(target, &names, false) {
                        message.push_str(&format!(" (did you mean {m}?)"));
                    }
                    self.ctx.diagnostics.push(
                        Diagnostic::error("UnknownTarget", message).at(Span::Template { field: "target".into() }),
                    );
                    None
                }
            },
            None => Some(stages.len() - 1),
        };
        let target_name = target_index.and_then(|i| stages[i].name.clone()).unwrap_or_else(|| "default".into());
        let defaults = self.default_args(&target_name);
        let lint_args = self.meta_args(defaults.clone(), false, false);
        for stage in stages {
            let expansion = self.ctx.lex.process_word_with_matches(&stage.base_name, &lint_args);
            if let Ok(name) = expansion.value {
                if name != "scratch" && BaseImage::parse(&name).is_err() {
                    let span = self.ctx.meta_span(&stage.meta, None);
                    self.ctx.lint(
                        lint::INVALID_DEFAULT_ARG_IN_FROM,
                        format!(
                            "Default value for ARG {} results in empty or invalid base image name",
                            stage.base_name
                        ),
                        span,
                    );
                }
            }
        }
        self.global_args = self.meta_args(defaults.clone(), true, true);
        for (key, _) in &defaults.entries {
            self.declared_global.insert(key.to_string());
        }

        let bases = self.resolve_bases();
        let deps = self.stage_dependencies(&bases, &commands);
        if self.report_cycles(&deps) {
            return Vec::new();
        }
        let Some(target_index) = target_index else { return Vec::new() };
        let order = build_order(target_index, &deps);
        let reachable: BTreeSet<usize> = order.iter().copied().collect();
        let plan_index: BTreeMap<usize, usize> = order.iter().enumerate().map(|(p, &o)| (o, p)).collect();

        // Dispatch every stage for diagnostics (as `docker build --check` does), in an order where
        // base stages come first, so inherited state is known.
        let mut states: BTreeMap<usize, StageState> = BTreeMap::new();
        for (index, stage_commands) in commands.into_iter().enumerate() {
            let before = self.ctx.diagnostics.len();
            let state = self.dispatch_stage(index, stage_commands, &bases, &states, &plan_index);
            if !reachable.contains(&index) {
                for d in &mut self.ctx.diagnostics[before..] {
                    if d.severity == Severity::Error {
                        d.severity = Severity::Warning;
                        d.hint =
                            Some("this stage is not needed for the target, so this does not fail the build".into());
                    }
                }
            }
            states.insert(index, state);
        }
        order
            .iter()
            .map(|&index| {
                let stage = &stages[index];
                let base = match &bases[index] {
                    Some(FromTarget::Stage(i)) => BaseImage::Stage { index: plan_index[i] },
                    Some(FromTarget::Image(reference)) if reference == "scratch" => BaseImage::Scratch,
                    Some(FromTarget::Image(reference)) => BaseImage::parse(reference).unwrap_or(BaseImage::Scratch),
                    None => BaseImage::Scratch,
                };
                Stage {
                    name: stage.name.clone(),
                    source_index: index,
                    base,
                    platform: stage
                        .platform
                        .as_ref()
                        .and_then(|p| self.ctx.lex.process_word(p, &self.global_args).ok()),
                    span: self.ctx.meta_span(&stage.meta, None),
                    steps: states.remove(&index).map(|s| s.steps).unwrap_or_default(),
                }
            })
            .collect()
    }

    fn casing_lints(&mut self, commands: &[Vec<Instr>]) {
        let stages = &self.typed.stages;
        let (mut lower, mut upper) = (0usize, 0usize);
        let keywords: Vec<&CommandMeta> = stages
            .iter()
            .zip(commands)
            .flat_map(|(s, commands)| std::iter::once(&s.meta).chain(commands.iter().map(Instr::meta)))
            .collect();
        for meta in &keywords {
            if self_consistent(&meta.keyword) {
                if is_lowercase(&meta.keyword) { lower += 1 } else { upper += 1 }
            }
        }
        let majority_lower = lower > upper;
        for meta in &keywords {
            let wrong = if majority_lower { !is_lowercase(&meta.keyword) } else { !is_uppercase(&meta.keyword) };
            if wrong {
                let casing = if majority_lower { "lowercase" } else { "uppercase" };
                let span = self.ctx.meta_span(meta, Some(&meta.keyword));
                self.ctx.lint(
                    lint::CONSISTENT_INSTRUCTION_CASING,
                    format!("Command '{}' should match the case of the command majority ({casing})", meta.keyword),
                    span,
                );
            }
        }
    }

    fn stage_lints(&mut self, commands: &[Vec<Instr>], facts: TreeFacts) {
        let stages = &self.typed.stages;
        let mut seen = BTreeSet::new();
        if !facts.one_casing {
            self.casing_lints(commands);
        }
        for (stage, commands) in stages.iter().zip(commands) {
            if let (Some(original), Some(as_keyword)) = (&stage.original_name, &stage.as_keyword) {
                // Spans are made only for a finding: a column needs the line's text.
                if original != &original.to_lowercase() {
                    let span = self.ctx.meta_span(&stage.meta, Some(original));
                    self.ctx.lint(
                        lint::STAGE_NAME_CASING,
                        format!("Stage name '{original}' should be lowercase"),
                        span,
                    );
                }
                let from = &stage.meta.keyword;
                let mismatch = if from == &from.to_lowercase() {
                    as_keyword != &as_keyword.to_lowercase()
                } else if from == &from.to_uppercase() {
                    as_keyword != &as_keyword.to_uppercase()
                } else {
                    false
                };
                if mismatch {
                    let span = self.ctx.meta_span(&stage.meta, Some(original));
                    self.ctx.lint(
                        lint::FROM_AS_CASING,
                        format!("'{as_keyword}' and '{from}' keywords' casing do not match"),
                        span,
                    );
                }
            }
            if let Some(name) = &stage.name {
                let needle = stage.original_name.as_deref();
                if RESERVED_STAGE_NAMES.contains(&name.as_str()) {
                    let span = self.ctx.meta_span(&stage.meta, needle);
                    self.ctx.lint(
                        lint::RESERVED_STAGE_NAME,
                        format!("Stage name should not use the same name as reserved stage \"{name}\""),
                        span,
                    );
                }
                if !seen.insert(name.clone()) {
                    let span = self.ctx.meta_span(&stage.meta, needle);
                    self.ctx
                        .error(
                            "DuplicateStageName",
                            format!("Duplicate stage name \"{name}\", stage names should be unique"),
                            span,
                        )
                        .hint =
                        Some("`--from` and FROM would silently pick the last stage of that name; rename one".into());
                }
            }
            // MAINTAINER is rare: the instructions are only walked when the tree has one.
            if facts.maintainer {
                for command in commands {
                    if let Instr::Maintainer(m) = command {
                        let span = self.ctx.meta_span(&m.meta, None);
                        self.ctx.lint(
                            lint::MAINTAINER_DEPRECATED,
                            "Maintainer instruction is deprecated in favor of using label",
                            span,
                        );
                    }
                }
            }
        }
    }

    /// Expands each stage's base name and decides whether it is an earlier stage or an image.
    fn resolve_bases(&mut self) -> Vec<Option<FromTarget>> {
        let stages = &self.typed.stages;
        let mut bases = Vec::with_capacity(stages.len());
        for (index, stage) in stages.iter().enumerate() {
            let expansion = self.ctx.lex.process_word_with_matches(&stage.base_name, &self.global_args);
            self.report_undefined_from_args(&expansion.unmatched, &stage.meta);
            if let Some(platform) = &stage.platform {
                self.check_platform(platform, stage.name.as_deref(), &stage.meta);
            }
            let name = match expansion.value {
                Ok(name) if name.is_empty() => {
                    let span = self.ctx.meta_span(&stage.meta, None);
                    self.ctx.error(
                        "EmptyBaseName",
                        format!("base name ({}) should not be blank", stage.base_name),
                        span,
                    );
                    bases.push(None);
                    continue;
                }
                Ok(name) => name,
                Err(e) => {
                    let span = self.ctx.meta_span(&stage.meta, None);
                    self.ctx.error("ExpansionError", e.to_string(), span);
                    bases.push(None);
                    continue;
                }
            };
            let earlier = stages[..index].iter().rposition(|s| s.name.as_deref() == Some(name.to_lowercase().as_str()));
            let base = match earlier {
                Some(i) => FromTarget::Stage(i),
                None if name == "scratch" => FromTarget::Image(name),
                None => match BaseImage::parse(&name) {
                    Ok(BaseImage::Registry { reference }) => FromTarget::Image(reference),
                    Ok(_) => FromTarget::Image(name),
                    Err(e) => {
                        let span = self.ctx.meta_span(&stage.meta, Some(&stage.base_name));
                        self.ctx.error("InvalidImageReference", format!("base image `{name}`: {e}"), span).hint =
                            Some("write a reference such as `python:3.12-slim` or name an earlier stage".into());
                        bases.push(None);
                        continue;
                    }
                },
            };
            bases.push(Some(base));
        }
        bases
    }

    fn report_undefined_from_args(&mut self, unmatched: &BTreeSet<String>, meta: &CommandMeta) {
        let declared: Vec<&str> = self.declared_global.iter().map(String::as_str).collect();
        for arg in unmatched.iter().filter(|a| !self.declared_global.contains(*a)) {
            let mut message = format!("FROM argument '{arg}' is not declared");
            if let Some(s) = closest(arg, &declared, true) {
                message.push_str(&format!(" (did you mean {s}?)"));
            }
            let span = self.ctx.meta_span(meta, Some(arg));
            self.ctx.lint(lint::UNDEFINED_ARG_IN_FROM, message, span);
        }
    }

    fn check_platform(&mut self, platform: &str, stage_name: Option<&str>, meta: &CommandMeta) {
        let expansion = self.ctx.lex.process_word_with_matches(platform, &self.global_args);
        self.report_undefined_from_args(&expansion.unmatched, meta);
        // The span (whose column needs the line's text) is made only for a finding.
        let span = |ctx: &Ctx<'_>| ctx.meta_span(meta, Some("--platform"));
        let result = match expansion.value {
            Ok(r) => r,
            Err(e) => {
                self.ctx.error("ExpansionError", e.to_string(), span(self.ctx));
                return;
            }
        };
        if expansion.matched.len() == 1
            && expansion.unmatched.is_empty()
            && expansion.matched.contains("TARGETPLATFORM")
            && self.global_args.get("TARGETPLATFORM") == Some(result.as_str())
        {
            self.ctx.lint(
                lint::REDUNDANT_TARGET_PLATFORM,
                format!(
                    "Setting platform to predefined {platform} in FROM is redundant as this is the default behavior"
                ),
                span(self.ctx),
            );
        }
        if result.is_empty() {
            self.ctx.error(
                "InvalidPlatform",
                format!("empty platform value from expression {platform}"),
                span(self.ctx),
            );
            return;
        }
        match parse_platform(&result) {
            Ok((os, arch, _)) => {
                let constant = expansion.matched.is_empty() && expansion.unmatched.is_empty();
                let named_for_it = stage_name.is_some_and(|n| n.contains(&os) || n.contains(&arch));
                if constant && !named_for_it {
                    self.ctx.lint(
                        lint::FROM_PLATFORM_FLAG_CONST_DISALLOWED,
                        format!("FROM --platform flag should not use constant value \"{result}\""),
                        span(self.ctx),
                    );
                }
            }
            Err(message) => {
                self.ctx.error(
                    "InvalidPlatform",
                    format!("failed to parse platform {platform}: {message}"),
                    span(self.ctx),
                );
            }
        }
    }

    /// Resolves `--from`/`from=` the way BuildKit does: an index, any stage's name, else an
    /// image. A bare word that names no stage is reported: it is almost always a typo.
    fn resolve_from(&mut self, from: &str, meta: &CommandMeta) -> Option<FromTarget> {
        let stages = &self.typed.stages;
        if from.contains('$') {
            let span = self.ctx.meta_span(meta, Some(from));
            self.ctx.error(
                "InvalidFlag",
                "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround",
                span,
            );
            return None;
        }
        if let Ok(index) = from.parse::<i64>() {
            return match usize::try_from(index).ok().filter(|i| *i < stages.len()) {
                Some(i) => Some(FromTarget::Stage(i)),
                None => {
                    let span = self.ctx.meta_span(meta, Some(from));
                    self.ctx.error("UnknownStage", format!("invalid stage index {index}"), span);
                    None
                }
            };
        }
        let lower = from.to_lowercase();
        if let Some(i) = stages.iter().rposition(|s| s.name.as_deref() == Some(lower.as_str())) {
            return Some(FromTarget::Stage(i));
        }
        let span = self.ctx.meta_span(meta, Some(from));
        let looks_like_image = from.contains([':', '/', '@', '.']);
        if !looks_like_image {
            let names: Vec<&str> = stages.iter().filter_map(|s| s.name.as_deref()).collect();
            let mut message = format!("`{from}` names no stage");
            if let Some(m) = closest(from, &names, false) {
                message.push_str(&format!(" (did you mean {m}?)"));
            }
            self.ctx.error("UnknownStage", message, span).hint =
                Some(format!("to copy from an image, give its full reference, e.g. `{from}:latest`"));
            return None;
        }
        match from.parse::<ImageRef>().map(|r| r.to_string()) {
            Ok(reference) => Some(FromTarget::Image(reference)),
            Err(e) => {
                self.ctx.error("InvalidImageReference", format!("`{from}`: {e}"), span);
                None
            }
        }
    }

    fn stage_dependencies<'x>(
        &mut self,
        bases: &[Option<FromTarget>],
        commands: &'x [Vec<Instr>],
    ) -> Vec<Vec<(usize, &'x CommandMeta)>>
    where
        'c: 'x,
    {
        let stages = &self.typed.stages;
        let mut deps = Vec::with_capacity(stages.len());
        for (index, stage) in stages.iter().enumerate() {
            let mut stage_deps = Vec::new();
            if let Some(FromTarget::Stage(i)) = bases[index] {
                stage_deps.push((i, &stage.meta));
            }
            for command in &commands[index] {
                let froms: Vec<&str> = match command {
                    Instr::Copy(c) => c.from.iter().map(String::as_str).collect(),
                    Instr::Run(r) => r.mounts.iter().filter_map(|m| m.parsed.as_ref()?.from.as_deref()).collect(),
                    _ => Vec::new(),
                };
                for from in froms {
                    let lower = parser::lowercase(from);
                    let target = match from.parse::<usize>() {
                        Ok(i) if i < stages.len() && matches!(command, Instr::Copy(_)) => Some(i),
                        _ => stages.iter().rposition(|s| s.name.as_deref() == Some(&*lower)),
                    };
                    if let Some(i) = target {
                        stage_deps.push((i, command.meta()));
                    }
                }
            }
            deps.push(stage_deps);
        }
        deps
    }

    /// BuildKit's `validateCircularDependency`: reports the first cycle found.
    fn report_cycles(&mut self, deps: &[Vec<(usize, &CommandMeta)>]) -> bool {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Active,
            Done,
        }
        let mut marks = vec![Mark::New; deps.len()];
        for start in 0..deps.len() {
            if marks[start] != Mark::New {
                continue;
            }
            // Iterative DFS: (stage, next dependency to visit).
            let mut stack = vec![(start, 0usize)];
            marks[start] = Mark::Active;
            while let Some(&mut (stage, ref mut next)) = stack.last_mut() {
                if let Some((dep, meta)) = deps[stage].get(*next) {
                    *next += 1;
                    match marks[*dep] {
                        Mark::Active => {
                            let name = self.typed.stages[*dep].name.clone().unwrap_or_else(|| format!("stage-{dep}"));
                            let span = self.ctx.meta_span(meta, None);
                            self.ctx
                                .error("StageCycle", format!("circular dependency detected on stage: {name}"), span)
                                .hint =
                                Some("a stage cannot depend, through FROM, --from or a mount, on itself".into());
                            return true;
                        }
                        Mark::New => {
                            marks[*dep] = Mark::Active;
                            stack.push((*dep, 0));
                        }
                        Mark::Done => {}
                    }
                } else {
                    marks[stage] = Mark::Done;
                    stack.pop();
                }
            }
        }
        false
    }

    fn dispatch_stage(
        &mut self,
        index: usize,
        commands: Vec<Instr>,
        bases: &[Option<FromTarget>],
        done: &BTreeMap<usize, StageState>,
        plan_index: &BTreeMap<usize, usize>,
    ) -> StageState {
        let mut state = match &bases[index] {
            Some(FromTarget::Stage(i)) => match done.get(i) {
                Some(parent) => StageState {
                    env: parent.env.clone(),
                    args: Vec::new(),
                    build_args: None,
                    shell: Arc::clone(&parent.shell),
                    shell_set: parent.shell_set,
                    workdir: parent.workdir.clone(),
                    workdir_set: false,
                    image_env_unknown: parent.image_env_unknown,
                    cmd_at: None,
                    entrypoint_at: None,
                    healthcheck_at: None,
                    steps: Vec::new(),
                },
                None => StageState::fresh(true),
            },
            Some(FromTarget::Image(r)) if r == "scratch" => StageState::fresh(false),
            _ => StageState::fresh(true),
        };
        state.steps.reserve_exact(commands.len());
        // Each instruction is dropped once its step is made, so the steps reuse its memory.
        for command in commands {
            let location = command.meta().location;
            if let Some(op) = self.dispatch(command, &mut state, plan_index) {
                let span = self.ctx.span(location.start_line, location.end_line, None);
                state.steps.push(PlanStep { span, no_cache: false, op });
            }
        }
        state
    }

    /// Expands one word as BuildKit's dispatcher does, reporting UndefinedVar and errors.
    fn expand(&mut self, word: &str, state: &StageState, meta: &CommandMeta) -> String {
        let expansion = self.ctx.lex.process_word_with_unmatched(word, &state.env);
        self.report_undefined(&expansion.unmatched, state, meta);
        match expansion.value {
            Ok(v) => v,
            Err(e) => {
                let span = self.ctx.meta_span(meta, Some(word));
                self.ctx.error("ExpansionError", e.to_string(), span);
                word.to_string()
            }
        }
    }

    /// [`Dispatcher::expand`] taking the word: one with nothing to expand is returned as it is.
    fn expand_owned(&mut self, word: String, state: &StageState, meta: &CommandMeta) -> String {
        if self.ctx.lex.is_literal(&word) && !word.starts_with('\u{feff}') {
            return word;
        }
        self.expand(&word, state, meta)
    }

    fn report_undefined(&mut self, unmatched: &BTreeSet<String>, state: &StageState, meta: &CommandMeta) {
        for name in unmatched {
            let declared = state.args.iter().any(|(k, _)| k == name);
            let guessed = state.image_env_unknown && IMAGE_ENV_GUESSES.contains(&name.as_str());
            if declared || guessed {
                continue;
            }
            let mut message = format!("Usage of undefined variable '${name}'");
            if let Some(m) = closest(name, &state.env.keys(), true) {
                message.push_str(&format!(" (did you mean ${m}?)"));
            }
            let span = self.ctx.meta_span(meta, Some(name));
            self.ctx.lint(lint::UNDEFINED_VAR, message, span);
        }
    }

    /// The step for one instruction; the instruction's strings move into it where they need
    /// no expansion.
    fn dispatch(&mut self, command: Instr, state: &mut StageState, plan_index: &BTreeMap<usize, usize>) -> Option<Op> {
        match command {
            Instr::Env(c) => {
                let meta = &c.meta;
                let mut vars = Vec::with_capacity(c.env.len());
                for pair in c.env {
                    if pair.no_delim {
                        let span = self.ctx.meta_span(meta, None);
                        self.ctx.lint(
                            lint::LEGACY_KEY_VALUE_FORMAT,
                            "\"ENV key=value\" should be used instead of legacy \"ENV key value\" format",
                            span,
                        );
                    }
                    let key = self.expand_owned(pair.key, state, meta);
                    let value = self.expand_owned(pair.value, state, meta);
                    self.check_secret_key("ENV", &key, meta);
                    state.env.set(&key, &value);
                    vars.push((key, value));
                }
                Some(Op::Env { vars })
            }
            Instr::Arg(c) => {
                let meta = &c.meta;
                for pair in &c.args {
                    self.check_secret_key("ARG", &pair.key, meta);
                    let value = match self.options.build_args.get(&pair.key) {
                        Some(v) => Some(v.clone()),
                        None => match &pair.value {
                            Some(default) => Some(self.expand(default, state, meta)),
                            None => self.global_args.get(&pair.key).map(str::to_string),
                        },
                    };
                    if let Some(v) = &value {
                        state.env.set(&pair.key, v);
                    }
                    state.args.push((pair.key.clone(), value));
                    state.build_args = None;
                }
                None
            }
            Instr::Run(c) => Some(self.dispatch_run(c, state)),
            Instr::Copy(c) => self.dispatch_copy(c, state, plan_index),
            Instr::Add(c) => Some(self.dispatch_add(c, state)),
            Instr::Workdir(c) => {
                let meta = &c.meta;
                let path = self.expand(&c.path, state, meta);
                if !state.workdir_set && !path.starts_with('/') {
                    let span = self.ctx.meta_span(meta, Some(&c.path));
                    self.ctx.lint(
                        lint::WORKDIR_RELATIVE_PATH,
                        format!("Relative workdir \"{path}\" can have unexpected results if the base image changes"),
                        span,
                    );
                }
                state.workdir_set = true;
                state.workdir = join_workdir(&state.workdir, &path);
                Some(Op::Workdir { path: state.workdir.clone() })
            }
            Instr::User(c) => Some(Op::User { user: self.expand_owned(c.user, state, &c.meta) }),
            Instr::Cmd(c) => {
                self.used_once("CMD", &c.meta, |s| &mut s.cmd_at, state);
                Some(Op::Cmd { command: self.shell_dependent(c.cmd_line, c.prepend_shell, "CMD", state, &c.meta) })
            }
            Instr::Entrypoint(c) => {
                self.used_once("ENTRYPOINT", &c.meta, |s| &mut s.entrypoint_at, state);
                Some(Op::Entrypoint {
                    command: self.shell_dependent(c.cmd_line, c.prepend_shell, "ENTRYPOINT", state, &c.meta),
                })
            }
            Instr::Shell(c) => {
                state.shell = c.shell.as_slice().into();
                state.shell_set = true;
                Some(Op::Shell { argv: c.shell })
            }
            Instr::Expose(c) => Some(Op::Expose { ports: self.expose_ports(&c.ports, state, &c.meta) }),
            Instr::Label(c) => {
                let meta = &c.meta;
                let mut labels = Vec::with_capacity(c.labels.len());
                for pair in c.labels {
                    if pair.no_delim {
                        let span = self.ctx.meta_span(meta, None);
                        self.ctx.lint(
                            lint::LEGACY_KEY_VALUE_FORMAT,
                            "\"LABEL key=value\" should be used instead of legacy \"LABEL key value\" format",
                            span,
                        );
                    }
                    labels.push((self.expand_owned(pair.key, state, meta), self.expand_owned(pair.value, state, meta)));
                }
                Some(Op::Label { labels })
            }
            Instr::Volume(c) => Some(Op::Volume {
                paths: c.volumes.into_iter().map(|v| self.expand_owned(v, state, &c.meta)).collect(),
            }),
            Instr::StopSignal(c) => Some(Op::StopSignal { signal: self.expand_owned(c.signal, state, &c.meta) }),
            Instr::Healthcheck(c) => {
                self.used_once("HEALTHCHECK", &c.meta, |s| &mut s.healthcheck_at, state);
                let ns =
                    |d: Option<std::time::Duration>| d.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
                let check = match c.health {
                    InstrHealthcheck::None => Healthcheck {
                        test: vec!["NONE".into()],
                        interval_ns: 0,
                        timeout_ns: 0,
                        start_period_ns: 0,
                        start_interval_ns: 0,
                        retries: 0,
                    },
                    InstrHealthcheck::Cmd { test, interval, timeout, start_period, start_interval, retries } => {
                        Healthcheck {
                            test,
                            interval_ns: ns(interval),
                            timeout_ns: ns(timeout),
                            start_period_ns: ns(start_period),
                            start_interval_ns: ns(start_interval),
                            retries: retries.unwrap_or(0),
                        }
                    }
                };
                Some(Op::Healthcheck { check })
            }
            Instr::Onbuild(c) => Some(Op::OnBuild { expression: c.expression }),
            Instr::Maintainer(c) => Some(Op::Label { labels: vec![("maintainer".into(), c.maintainer)] }),
        }
    }

    fn check_secret_key(&mut self, instruction: &str, key: &str, meta: &CommandMeta) {
        if is_secret_key(key) {
            let span = self.ctx.meta_span(meta, Some(key));
            self.ctx.lint(
                lint::SECRETS_USED_IN_ARG_OR_ENV,
                format!("Do not use ARG or ENV instructions for sensitive data ({instruction} \"{key}\")"),
                span,
            );
        }
    }

    fn used_once(
        &mut self,
        name: &str,
        meta: &CommandMeta,
        slot: fn(&mut StageState) -> &mut Option<Span>,
        state: &mut StageState,
    ) {
        let span = self.ctx.meta_span(meta, None);
        if let Some(previous) = slot(state).replace(span) {
            self.ctx.lint(
                lint::MULTIPLE_INSTRUCTIONS_DISALLOWED,
                format!("Multiple {name} instructions should not be used in the same stage because only the last one will be used"),
                previous,
            );
        }
    }

    fn shell_dependent(
        &mut self,
        cmd_line: Vec<String>,
        prepend_shell: bool,
        name: &str,
        state: &StageState,
        meta: &CommandMeta,
    ) -> Command {
        if prepend_shell {
            if !state.shell_set {
                let span = self.ctx.meta_span(meta, None);
                self.ctx.lint(
                    lint::JSON_ARGS_RECOMMENDED,
                    format!(
                        "JSON arguments recommended for {name} to prevent unintended behavior related to OS signals"
                    ),
                    span,
                );
            }
            Command::Shell(join_words(cmd_line))
        } else {
            Command::Exec(cmd_line)
        }
    }

    fn expose_ports(&mut self, ports: &[String], state: &StageState, meta: &CommandMeta) -> Vec<String> {
        let words = match self.ctx.lex.process_words_each(ports, &state.env) {
            Ok(words) => words,
            Err(e) => {
                let span = self.ctx.meta_span(meta, None);
                self.ctx.error("ExpansionError", e.to_string(), span);
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for raw in words {
            let (address, container) = match raw.rsplit_once(':') {
                Some((address, container)) => (Some(address), container),
                None => (None, raw.as_str()),
            };
            let (port, proto) = container.split_once('/').unwrap_or((container, "tcp"));
            let span = self.ctx.meta_span(meta, Some(&raw));
            if proto != proto.to_lowercase() {
                self.ctx.lint(
                    lint::EXPOSE_PROTO_CASING,
                    format!("Defined protocol '{raw}' in EXPOSE instruction should be lowercase"),
                    span.clone(),
                );
            }
            if address.is_some() {
                self.ctx.lint(
                    lint::EXPOSE_INVALID_FORMAT,
                    format!("EXPOSE instruction should not define an IP address or host-port mapping, found '{raw}'"),
                    span.clone(),
                );
            }
            let proto = proto.to_lowercase();
            let range = match port.split_once('-') {
                Some((a, b)) => a.parse::<u16>().ok().zip(b.parse::<u16>().ok()),
                None => port.parse::<u16>().ok().map(|p| (p, p)),
            };
            match range {
                Some((start, end)) if start <= end && ["tcp", "udp", "sctp"].contains(&proto.as_str()) => {
                    out.extend((start..=end).map(|p| format!("{p}/{proto}")));
                }
                _ => {
                    self.ctx.error("InvalidPort", format!("invalid port: \"{raw}\""), span).hint =
                        Some("write PORT[/tcp|udp|sctp] or START-END[/proto]".into());
                }
            }
        }
        out
    }

    fn dispatch_run(&mut self, c: RunCommand, state: &mut StageState) -> Op {
        let meta = &c.meta;
        let mut mounts = Vec::with_capacity(c.mounts.len());
        for mount in c.mounts {
            if let Some(m) = mount.parsed {
                mounts.push(plan_mount(m, mounts.len()));
                continue;
            }
            let env = &state.env;
            let lex = self.ctx.lex;
            let mut unmatched = BTreeSet::new();
            let parsed = instructions::parse_mount(&mount.raw, &mut |word: &str| {
                let e = lex.process_word_with_unmatched(word, env);
                unmatched.extend(e.unmatched);
                e.value.map_err(|err| err.to_string())
            });
            self.report_undefined(&unmatched, state, meta);
            match parsed {
                Ok(m) => mounts.push(plan_mount(m, mounts.len())),
                Err(message) => {
                    let span = self.ctx.meta_span(meta, Some("--mount"));
                    self.ctx.error("InvalidMount", message, span);
                }
            }
        }
        if c.cmd_line.iter().all(|part| part.trim().is_empty()) && c.heredocs.is_empty() {
            let span = self.ctx.meta_span(meta, None);
            self.ctx.error("EmptyRun", "RUN has no command", span).hint =
                Some("give a shell command or a JSON array".into());
        }
        let command = if c.prepend_shell { Command::Shell(join_words(c.cmd_line)) } else { Command::Exec(c.cmd_line) };
        Op::Run {
            command,
            shell: Arc::clone(&state.shell),
            heredocs: c
                .heredocs
                .into_iter()
                .map(|h| Heredoc { name: h.name, content: h.content, expand: h.expand })
                .collect(),
            mounts,
            network: match c.network {
                NetworkMode::Default => "default",
                NetworkMode::None => "none",
                NetworkMode::Host => "host",
            }
            .into(),
            security: match c.security {
                Security::Sandbox => "sandbox",
                Security::Insecure => "insecure",
            }
            .into(),
            build_args: Arc::clone(state.build_args.get_or_insert_with(|| {
                Arc::new(state.args.iter().filter_map(|(k, v)| Some((k.clone(), v.clone()?))).collect())
            })),
            user: None,
        }
    }

    fn check_context_sources(&mut self, sources: &[String], meta: &CommandMeta, add: bool) {
        for source in sources {
            let remote =
                add && (source.starts_with("http://") || source.starts_with("https://") || source.starts_with("git@"));
            if remote {
                continue;
            }
            let (code, message) = match check_source_path(source) {
                Ok(()) => continue,
                Err(SourcePathProblem::Absolute) => ("AbsoluteSource", format!("source `{source}` is absolute")),
                Err(SourcePathProblem::EscapesContext) => {
                    ("SourceEscapesContext", format!("source `{source}` leaves the build context"))
                }
                Err(SourcePathProblem::Empty) => ("EmptyCopy", "a source is empty".to_string()),
            };
            let span = self.ctx.meta_span(meta, Some(source));
            self.ctx.error(code, message, span).hint = Some("sources are paths relative to the build context".into());
        }
    }

    fn heredoc_sources(&mut self, contents: &[SourceContent], state: &StageState, meta: &CommandMeta) -> Vec<Heredoc> {
        contents
            .iter()
            .map(|content| {
                let data = if content.expand {
                    let expansion = Lex::for_heredoc_content().process_word_with_unmatched(&content.data, &state.env);
                    self.report_undefined(&expansion.unmatched, state, meta);
                    expansion.value.unwrap_or_else(|_| content.data.clone())
                } else {
                    content.data.clone()
                };
                Heredoc { name: content.path.clone(), content: data, expand: content.expand }
            })
            .collect()
    }

    fn dispatch_copy(
        &mut self,
        c: CopyCommand,
        state: &mut StageState,
        plan_index: &BTreeMap<usize, usize>,
    ) -> Option<Op> {
        let meta = &c.meta;
        let sources: Vec<String> = c.sources.into_iter().map(|s| self.expand_owned(s, state, meta)).collect();
        let dest = self.expand_owned(c.dest, state, meta);
        let chown = c.chown.map(|v| self.expand_owned(v, state, meta));
        let chmod = c.chmod.map(|v| self.expand_owned(v, state, meta));
        let from = match &c.from {
            None => {
                self.check_context_sources(&sources, meta, false);
                CopyFrom::Context
            }
            Some(from) => match self.resolve_from(from, meta)? {
                FromTarget::Stage(i) => CopyFrom::Stage { index: plan_index.get(&i).copied().unwrap_or(i) },
                FromTarget::Image(reference) => CopyFrom::Image { reference },
            },
        };
        Some(Op::Copy {
            add: false,
            from,
            sources,
            dest: join_dest(&state.workdir, dest),
            heredocs: self.heredoc_sources(&c.source_contents, state, meta),
            chown,
            chmod,
            link: c.link,
            exclude: c.excludes,
            parents: c.parents,
            checksum: None,
            keep_git_dir: false,
        })
    }

    fn dispatch_add(&mut self, c: AddCommand, state: &mut StageState) -> Op {
        let meta = &c.meta;
        let sources: Vec<String> = c.sources.into_iter().map(|s| self.expand_owned(s, state, meta)).collect();
        self.check_context_sources(&sources, meta, true);
        let dest = self.expand_owned(c.dest, state, meta);
        Op::Copy {
            add: true,
            from: CopyFrom::Context,
            sources,
            dest: join_dest(&state.workdir, dest),
            heredocs: self.heredoc_sources(&c.source_contents, state, meta),
            chown: c.chown.map(|v| self.expand_owned(v, state, meta)),
            chmod: c.chmod.map(|v| self.expand_owned(v, state, meta)),
            link: c.link,
            exclude: c.excludes,
            parents: false,
            checksum: c.checksum.map(|v| self.expand_owned(v, state, meta)),
            keep_git_dir: c.keep_git_dir.unwrap_or(false),
        }
    }
}

impl StageState {
    fn fresh(image_env_unknown: bool) -> Self {
        StageState {
            env: EnvList::default(),
            args: Vec::new(),
            build_args: None,
            shell: DEFAULT_SHELL.iter().map(ToString::to_string).collect(),
            shell_set: false,
            workdir: "/".into(),
            workdir_set: false,
            image_env_unknown,
            cmd_at: None,
            entrypoint_at: None,
            healthcheck_at: None,
            steps: Vec::new(),
        }
    }
}

fn plan_mount(m: InstrMount, position: usize) -> Mount {
    match m.kind {
        MountType::Bind => Mount::Bind {
            target: m.target.unwrap_or_default(),
            source: m.source,
            from: m.from,
            readwrite: !m.read_only,
        },
        MountType::Cache => Mount::Cache {
            target: m.target.unwrap_or_default(),
            id: m.id,
            sharing: match m.sharing.unwrap_or(ShareMode::Shared) {
                ShareMode::Shared => "shared",
                ShareMode::Private => "private",
                ShareMode::Locked => "locked",
            }
            .into(),
            readonly: m.read_only,
            from: m.from,
            source: m.source,
            mode: m.mode,
            uid: m.uid,
            gid: m.gid,
        },
        MountType::Tmpfs => Mount::Tmpfs {
            target: m.target.unwrap_or_default(),
            size: m.size_limit.and_then(|s| u64::try_from(s).ok()),
        },
        MountType::Secret => {
            let id = m.id.unwrap_or_else(|| {
                m.target.as_deref().and_then(|t| t.rsplit('/').next()).unwrap_or_default().to_string()
            });
            let env = m.env.filter(|e| !e.is_empty());
            let target = match (m.target, &env) {
                (Some(t), _) => Some(t),
                (None, Some(_)) => None,
                (None, None) => Some(format!("/run/secrets/{id}")),
            };
            Mount::Secret {
                id,
                target,
                env,
                required: m.required,
                mode: m.mode.unwrap_or(0o400),
                uid: m.uid.unwrap_or(0),
                gid: m.gid.unwrap_or(0),
            }
        }
        MountType::Ssh => Mount::Ssh {
            id: m.id.unwrap_or_else(|| "default".into()),
            target: Some(m.target.unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{position}"))),
            required: m.required,
            mode: m.mode.unwrap_or(0o600),
            uid: m.uid.unwrap_or(0),
            gid: m.gid.unwrap_or(0),
        },
    }
}

/// The words of a shell-form command joined by spaces, the usual single word moved as it is.
fn join_words(mut words: Vec<String>) -> String {
    if words.len() == 1 { words.pop().unwrap_or_default() } else { words.join(" ") }
}

/// `path.Join(current, requested)` cleaned, as BuildKit's `NormalizeWorkdir`.
fn join_workdir(current: &str, requested: &str) -> String {
    if requested.starts_with('/') { clean_path(requested, "") } else { clean_path(current, requested) }
}

/// A relative COPY destination is relative to the WORKDIR; a trailing `/` (directory) is kept.
/// An absolute one is kept as it is.
fn join_dest(workdir: &str, dest: String) -> String {
    if dest.starts_with('/') {
        return dest;
    }
    let mut joined = clean_path(workdir, &dest);
    if (dest.ends_with('/') || dest == "." || dest.ends_with("/.")) && !joined.ends_with('/') {
        joined.push('/');
    }
    joined
}

/// `path.Clean` of `base` joined with `rest` by a `/` (`rest` may be empty), without first
/// building the joined string.
fn clean_path(base: &str, rest: &str) -> String {
    let mut out = String::with_capacity(base.len() + rest.len() + 2);
    for part in base.split('/').chain(rest.split('/')) {
        match part {
            "" | "." => {}
            ".." => {
                let parent = out.rfind('/').unwrap_or(0);
                out.truncate(parent);
            }
            other => {
                out.push('/');
                out.push_str(other);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Stages the target needs, dependencies first (post-order DFS, iterative).
fn build_order(target: usize, deps: &[Vec<(usize, &CommandMeta)>]) -> Vec<usize> {
    let mut order = Vec::new();
    let mut visited = vec![false; deps.len()];
    let mut stack = vec![(target, 0usize)];
    visited[target] = true;
    while let Some(&mut (stage, ref mut next)) = stack.last_mut() {
        if let Some((dep, _)) = deps[stage].get(*next) {
            *next += 1;
            if !visited[*dep] {
                visited[*dep] = true;
                stack.push((*dep, 0));
            }
        } else {
            order.push(stage);
            stack.pop();
        }
    }
    order
}
