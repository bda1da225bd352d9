//! Node tree to typed instructions, like BuildKit's `frontend/dockerfile/instructions`, except
//! that every error is collected instead of stopping at the first one.
//!
//! Values that BuildKit expands later (paths, `--chown`, `--from`, `--platform`, mount values)
//! are kept as written; [`crate::dockerfile::shell`] expands them when a plan is made. Values
//! BuildKit checks without expansion (`--network`, `--security`, `--device`, HEALTHCHECK
//! options, stage names) are typed here. A `--mount` value without anything to expand is
//! checked fully here, since expansion cannot change it.

mod flags;
mod mount;
mod values;

use std::borrow::Cow;
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

use super::parser::{FlatInstruction, Heredoc, Node, chomp_heredoc_content, go_quote, parse_heredoc, split_once_byte};
use flags::{FlagType, Flags, parse_flags};
pub use mount::{Device, Mount, MountType, ShareMode, parse_mount};

/// Lines an instruction spans in the Dockerfile, 1-based and inclusive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Location {
    /// First line.
    pub start_line: usize,
    /// Last line (heredoc bodies included).
    pub end_line: usize,
}

/// What every instruction carries besides its own fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CommandMeta {
    /// The keyword as written (`RUN`, `run`, `Run`), for casing lints.
    pub keyword: String,
    /// Where it is.
    pub location: Location,
    /// The instruction's source line, continuation lines joined, trimmed.
    pub source: String,
    /// Comment lines directly above it.
    pub comments: Vec<String>,
    /// Whether the arguments were in exec (JSON array) form.
    pub json: bool,
}

/// The 18 Dockerfile instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum InstructionKind {
    /// `ADD`
    Add,
    /// `ARG`
    Arg,
    /// `CMD`
    Cmd,
    /// `COPY`
    Copy,
    /// `ENTRYPOINT`
    Entrypoint,
    /// `ENV`
    Env,
    /// `EXPOSE`
    Expose,
    /// `FROM`
    From,
    /// `HEALTHCHECK`
    Healthcheck,
    /// `LABEL`
    Label,
    /// `MAINTAINER`
    Maintainer,
    /// `ONBUILD`
    Onbuild,
    /// `RUN`
    Run,
    /// `SHELL`
    Shell,
    /// `STOPSIGNAL`
    StopSignal,
    /// `USER`
    User,
    /// `VOLUME`
    Volume,
    /// `WORKDIR`
    Workdir,
}

impl InstructionKind {
    /// All instructions.
    pub const ALL: [InstructionKind; 18] = [
        Self::Add,
        Self::Arg,
        Self::Cmd,
        Self::Copy,
        Self::Entrypoint,
        Self::Env,
        Self::Expose,
        Self::From,
        Self::Healthcheck,
        Self::Label,
        Self::Maintainer,
        Self::Onbuild,
        Self::Run,
        Self::Shell,
        Self::StopSignal,
        Self::User,
        Self::Volume,
        Self::Workdir,
    ];

    /// The keyword in upper case.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Arg => "ARG",
            Self::Cmd => "CMD",
            Self::Copy => "COPY",
            Self::Entrypoint => "ENTRYPOINT",
            Self::Env => "ENV",
            Self::Expose => "EXPOSE",
            Self::From => "FROM",
            Self::Healthcheck => "HEALTHCHECK",
            Self::Label => "LABEL",
            Self::Maintainer => "MAINTAINER",
            Self::Onbuild => "ONBUILD",
            Self::Run => "RUN",
            Self::Shell => "SHELL",
            Self::StopSignal => "STOPSIGNAL",
            Self::User => "USER",
            Self::Volume => "VOLUME",
            Self::Workdir => "WORKDIR",
        }
    }

    /// The instruction a keyword names, case-insensitively.
    pub fn from_keyword(keyword: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str().eq_ignore_ascii_case(keyword))
    }
}

/// `name=value` of ENV and LABEL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyValuePair {
    /// The name, unexpanded.
    pub key: String,
    /// The value, unexpanded (quotes and escapes still in it).
    pub value: String,
    /// Written in the legacy `ENV name value` form (for the LegacyKeyValueFormat lint).
    pub no_delim: bool,
}

/// One `name[=default]` of an ARG.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ArgPair {
    /// The name, unexpanded.
    pub key: String,
    /// The default value, unexpanded; `None` without `=`.
    pub value: Option<String>,
    /// A comment line above of the form `NAME description`.
    pub doc_comment: Option<String>,
}

/// An inline file made from a heredoc source of COPY or ADD.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SourceContent {
    /// The heredoc name, used as the file name.
    pub path: String,
    /// The body, leading tabs removed for `<<-`.
    pub data: String,
    /// Whether variables in the body are expanded.
    pub expand: bool,
}

/// `ENV`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EnvCommand {
    /// Common fields.
    pub meta: CommandMeta,
    /// The variables, in order.
    pub env: Vec<KeyValuePair>,
}

/// `LABEL`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LabelCommand {
    /// Common fields.
    pub meta: CommandMeta,
    /// The labels, in order.
    pub labels: Vec<KeyValuePair>,
}

/// `MAINTAINER` (deprecated).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MaintainerCommand {
    /// Common fields.
    pub meta: CommandMeta,
    /// The maintainer text.
    pub maintainer: String,
}

/// `ADD`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AddCommand {
    /// Common fields.
    pub meta: CommandMeta,
    /// Source paths or URLs, unexpanded.
    pub sources: Vec<String>,
    /// Heredoc sources.
    pub source_contents: Vec<SourceContent>,
    /// Destination, unexpanded.
    pub dest: String,
    /// `--chown`, unexpanded.
    pub chown: Option<String>,
    /// `--chmod`, unexpanded.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--exclude` patterns, unexpanded.
    pub excludes: Vec<String>,
    /// `--keep-git-dir` when given.
    pub keep_git_dir: Option<bool>,
    /// `--checksum`, unexpanded.
    pub checksum: Option<String>,
    /// `--unpack` when given.
    pub unpack: Option<bool>,
    /// The heredocs as parsed.
    pub heredocs: Vec<Heredoc>,
}

/// `COPY`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CopyCommand {
    /// Common fields.
    pub meta: CommandMeta,
    /// Source paths, unexpanded.
    pub sources: Vec<String>,
    /// Heredoc sources.
    pub source_contents: Vec<SourceContent>,
    /// Destination, unexpanded.
    pub dest: String,
    /// `--from` (stage, image or context name), unexpanded.
    pub from: Option<String>,
    /// `--chown`, unexpanded.
    pub chown: Option<String>,
    /// `--chmod`, unexpanded.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude` patterns, unexpanded.
    pub excludes: Vec<String>,
    /// The heredocs as parsed.
    pub heredocs: Vec<Heredoc>,
}

/// `ONBUILD`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OnbuildCommand {
    /// Common fields.
    pub meta: CommandMeta,
    /// The trigger instruction's text (heredocs appended), as stored in the image.
    pub expression: String,
}

/// `WORKDIR`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkdirCommand {
    /// Common fields.
    pub meta: CommandMeta,
    /// The path, unexpanded.
    pub path: String,
}

/// `--network` of RUN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// The builder's default.
    Default,
    /// No network.
    None,
    /// The host's network (needs an entitlement).
    Host,
}

/// `--security` of RUN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// The default sandbox.
    Sandbox,
    /// Privileged (needs an entitlement).
    Insecure,
}

/// One `RUN --mount` value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunMount {
    /// The value as written; expand its fields, then [`parse_mount`] it, to get the final mount.
    pub raw: String,
    /// The parsed mount when the value needs no expansion.
    pub parsed: Option<Mount>,
}

/// `RUN`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunCommand {
    /// Common fields.
    pub meta: CommandMeta,
    /// Exec form: the arguments; shell form: one string to run with the shell.
    pub cmd_line: Vec<String>,
    /// Shell form (`!meta.json`).
    pub prepend_shell: bool,
    /// Heredoc bodies (scripts or files for the command).
    pub heredocs: Vec<Heredoc>,
    /// `--mount` values in order.
    pub mounts: Vec<RunMount>,
    /// `--network`, default when absent.
    pub network: NetworkMode,
    /// `--security`, sandbox when absent.
    pub security: Security,
    /// `--device` values.
    pub devices: Vec<Device>,
    /// Names of the flags given.
    pub flags_used: Vec<String>,
}

/// `CMD`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CmdCommand {
    /// Common fields.
    pub meta: CommandMeta,
    /// Exec form: the arguments; shell form: one string.
    pub cmd_line: Vec<String>,
    /// Shell form.
    pub prepend_shell: bool,
}

/// `ENTRYPOINT`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EntrypointCommand {
    /// Common fields.
    pub meta: CommandMeta,
    /// Exec form: the arguments (empty for `ENTRYPOINT []`); shell form: one string.
    pub cmd_line: Vec<String>,
    /// Shell form.
    pub prepend_shell: bool,
}

/// A HEALTHCHECK's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disables the base image's check.
    None,
    /// `HEALTHCHECK [options] CMD ...`.
    Cmd {
        /// `["CMD", args...]` (exec form) or `["CMD-SHELL", "command"]`.
        test: Vec<String>,
        /// `--interval`; `None` when absent or zero (inherit).
        interval: Option<Duration>,
        /// `--timeout`.
        timeout: Option<Duration>,
        /// `--start-period`.
        start_period: Option<Duration>,
        /// `--start-interval`.
        start_interval: Option<Duration>,
        /// `--retries`; `None` when absent or zero.
        retries: Option<u32>,
    },
}

/// `HEALTHCHECK`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HealthcheckCommand {
    /// Common fields.
    pub meta: CommandMeta,
    /// The settings.
    pub health: Healthcheck,
}

/// `EXPOSE`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExposeCommand {
    /// Common fields.
    pub meta: CommandMeta,
    /// Port specs, unexpanded, sorted as BuildKit sorts them.
    pub ports: Vec<String>,
}

/// `USER`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UserCommand {
    /// Common fields.
    pub meta: CommandMeta,
    /// `user[:group]`, unexpanded.
    pub user: String,
}

/// `VOLUME`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VolumeCommand {
    /// Common fields.
    pub meta: CommandMeta,
    /// Paths, unexpanded, trimmed.
    pub volumes: Vec<String>,
}

/// `STOPSIGNAL`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StopSignalCommand {
    /// Common fields.
    pub meta: CommandMeta,
    /// The signal, unexpanded.
    pub signal: String,
}

/// `ARG`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ArgCommand {
    /// Common fields.
    pub meta: CommandMeta,
    /// The arguments declared.
    pub args: Vec<ArgPair>,
}

/// `SHELL`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ShellCommand {
    /// Common fields.
    pub meta: CommandMeta,
    /// The shell and its arguments.
    pub shell: Vec<String>,
}

/// An instruction inside a stage (every instruction but FROM).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Command {
    /// `ADD`
    Add(AddCommand),
    /// `ARG`
    Arg(ArgCommand),
    /// `CMD`
    Cmd(CmdCommand),
    /// `COPY`
    Copy(CopyCommand),
    /// `ENTRYPOINT`
    Entrypoint(EntrypointCommand),
    /// `ENV`
    Env(EnvCommand),
    /// `EXPOSE`
    Expose(ExposeCommand),
    /// `HEALTHCHECK`
    Healthcheck(HealthcheckCommand),
    /// `LABEL`
    Label(LabelCommand),
    /// `MAINTAINER`
    Maintainer(MaintainerCommand),
    /// `ONBUILD`
    Onbuild(OnbuildCommand),
    /// `RUN`
    Run(RunCommand),
    /// `SHELL`
    Shell(ShellCommand),
    /// `STOPSIGNAL`
    StopSignal(StopSignalCommand),
    /// `USER`
    User(UserCommand),
    /// `VOLUME`
    Volume(VolumeCommand),
    /// `WORKDIR`
    Workdir(WorkdirCommand),
}

impl Command {
    /// The common fields.
    pub fn meta(&self) -> &CommandMeta {
        match self {
            Self::Add(c) => &c.meta,
            Self::Arg(c) => &c.meta,
            Self::Cmd(c) => &c.meta,
            Self::Copy(c) => &c.meta,
            Self::Entrypoint(c) => &c.meta,
            Self::Env(c) => &c.meta,
            Self::Expose(c) => &c.meta,
            Self::Healthcheck(c) => &c.meta,
            Self::Label(c) => &c.meta,
            Self::Maintainer(c) => &c.meta,
            Self::Onbuild(c) => &c.meta,
            Self::Run(c) => &c.meta,
            Self::Shell(c) => &c.meta,
            Self::StopSignal(c) => &c.meta,
            Self::User(c) => &c.meta,
            Self::Volume(c) => &c.meta,
            Self::Workdir(c) => &c.meta,
        }
    }

    fn meta_mut(&mut self) -> &mut CommandMeta {
        match self {
            Self::Add(c) => &mut c.meta,
            Self::Arg(c) => &mut c.meta,
            Self::Cmd(c) => &mut c.meta,
            Self::Copy(c) => &mut c.meta,
            Self::Entrypoint(c) => &mut c.meta,
            Self::Env(c) => &mut c.meta,
            Self::Expose(c) => &mut c.meta,
            Self::Healthcheck(c) => &mut c.meta,
            Self::Label(c) => &mut c.meta,
            Self::Maintainer(c) => &mut c.meta,
            Self::Onbuild(c) => &mut c.meta,
            Self::Run(c) => &mut c.meta,
            Self::Shell(c) => &mut c.meta,
            Self::StopSignal(c) => &mut c.meta,
            Self::User(c) => &mut c.meta,
            Self::Volume(c) => &mut c.meta,
            Self::Workdir(c) => &mut c.meta,
        }
    }

    /// Which instruction this is.
    pub fn kind(&self) -> InstructionKind {
        match self {
            Self::Add(_) => InstructionKind::Add,
            Self::Arg(_) => InstructionKind::Arg,
            Self::Cmd(_) => InstructionKind::Cmd,
            Self::Copy(_) => InstructionKind::Copy,
            Self::Entrypoint(_) => InstructionKind::Entrypoint,
            Self::Env(_) => InstructionKind::Env,
            Self::Expose(_) => InstructionKind::Expose,
            Self::Healthcheck(_) => InstructionKind::Healthcheck,
            Self::Label(_) => InstructionKind::Label,
            Self::Maintainer(_) => InstructionKind::Maintainer,
            Self::Onbuild(_) => InstructionKind::Onbuild,
            Self::Run(_) => InstructionKind::Run,
            Self::Shell(_) => InstructionKind::Shell,
            Self::StopSignal(_) => InstructionKind::StopSignal,
            Self::User(_) => InstructionKind::User,
            Self::Volume(_) => InstructionKind::Volume,
            Self::Workdir(_) => InstructionKind::Workdir,
        }
    }
}

/// A build stage: a FROM and the instructions up to the next FROM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Stage {
    /// `AS name`, lowercased; `None` for an unnamed stage.
    pub name: Option<String>,
    /// The name as written (for the StageNameCasing lint).
    pub original_name: Option<String>,
    /// The `AS` keyword as written (for the FromAsCasing lint).
    pub as_keyword: Option<String>,
    /// The image or stage to start from, unexpanded.
    pub base_name: String,
    /// `--platform`, unexpanded.
    pub platform: Option<String>,
    /// The FROM's common fields (keyword as written, location, source, comments).
    pub meta: CommandMeta,
    /// A comment line above the FROM of the form `name description`.
    pub doc_comment: Option<String>,
    /// The stage's instructions.
    pub commands: Vec<Command>,
}

/// What kind of problem an [`InstructionError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum InstructionErrorKind {
    /// Not one of the 18 instructions.
    UnknownInstruction,
    /// A flag is unknown, repeated, or lacks or has a wrong value.
    Flag,
    /// A `RUN --mount` or `--device` value is wrong.
    Mount,
    /// Too few or too many arguments, or arguments of the wrong shape.
    Arguments,
    /// An argument or option has a value that is not allowed.
    InvalidValue,
    /// An instruction other than ARG before the first FROM.
    NoBuildStage,
}

/// One problem with one instruction.
#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize)]
#[error("dockerfile parse error on line {line}: {message}")]
pub struct InstructionError {
    /// First line of the instruction.
    pub line: usize,
    /// Last line of the instruction.
    pub end_line: usize,
    /// The keyword as written.
    pub instruction: String,
    /// BuildKit's message for the problem.
    pub message: String,
    /// Its category.
    pub kind: InstructionErrorKind,
}

/// The typed instructions of a Dockerfile.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Parsed {
    /// ARGs before the first FROM.
    pub meta_args: Vec<ArgCommand>,
    /// The stages in order.
    pub stages: Vec<Stage>,
    /// Every problem found, in file order.
    pub errors: Vec<InstructionError>,
}

/// Appends BuildKit's `(did you mean X?)` when an option is within edit distance 2.
pub(crate) fn suggest(message: String, value: &str, options: &[&str], case_sensitive: bool) -> String {
    match closest(value, options, case_sensitive) {
        Some(m) => format!("{message} (did you mean {m}?)"),
        None => message,
    }
}

/// BuildKit's `suggest.Search`: the option within edit distance 2 of `value` (the nearest), none
/// when `value` is itself an option.
pub(crate) fn closest(value: &str, options: &[&str], case_sensitive: bool) -> Option<String> {
    let val = if case_sensitive { value.to_owned() } else { value.to_lowercase() };
    let mut best: Option<String> = None;
    let mut min = 3;
    for opt in options {
        let o = if case_sensitive { (*opt).to_owned() } else { opt.to_lowercase() };
        if o == val {
            return None;
        }
        let d = levenshtein(&val, &o);
        if d < min {
            min = d;
            best = Some(if case_sensitive {
                o
            } else if value == value.to_lowercase() {
                o.to_lowercase()
            } else if value == value.to_uppercase() {
                o.to_uppercase()
            } else {
                o
            });
        }
    }
    best
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Everything `parse_instruction` needs from a node.
struct Request<'a, 'r> {
    node: &'r Node,
    /// The arguments, borrowed from the tree or owned (taken from it), so that a field that
    /// keeps one moves it instead of copying.
    args: &'r mut [Cow<'a, str>],
    /// The `--flag` words, borrowed or owned like `args`.
    flags: &'r mut [Cow<'a, str>],
    meta: CommandMeta,
    /// The node's heredocs (taken from it when the tree is consumed).
    heredocs: Vec<Heredoc>,
}

impl Request<'_, '_> {
    /// Argument `i` as an owned string, leaving an empty one behind.
    fn take(&mut self, i: usize) -> String {
        take_arg(&mut self.args[i])
    }
}

/// An instruction's argument and flag words, borrowed from the tree or owned.
struct Words<'a, 'r> {
    args: &'r mut [Cow<'a, str>],
    flags: &'r mut [Cow<'a, str>],
}

fn take_arg(arg: &mut Cow<'_, str>) -> String {
    std::mem::take(arg).into_owned()
}

type Fail = (InstructionErrorKind, String);

fn arguments(message: String) -> Fail {
    (InstructionErrorKind::Arguments, message)
}

fn at_least_one(cmd: &str) -> Fail {
    arguments(format!("{cmd} requires at least one argument"))
}

fn exactly_one(cmd: &str) -> Fail {
    arguments(format!("{cmd} requires exactly one argument"))
}

fn flag_err(message: String) -> Fail {
    (InstructionErrorKind::Flag, message)
}

fn no_flags(flags: &mut [Cow<'_, str>]) -> Result<(), Fail> {
    parse_flags(flags, &[]).map(|_| ()).map_err(flag_err)
}

/// A doc comment `name description` among the comments above.
fn doc_comment(comments: &[String], name: &str) -> Option<String> {
    if name.is_empty() {
        return None;
    }
    comments.iter().find_map(|c| c.strip_prefix(name)?.strip_prefix(' ').map(str::to_owned))
}

enum Parsed1 {
    Stage(Stage),
    Command(Command),
}

/// Converts the parse tree into stages and typed instructions, collecting every error.
///
/// ```
/// use nullspace_plan::dockerfile::{instructions, parser};
///
/// let ast = parser::parse(b"ARG BASE=alpine\nFROM $BASE AS build\nRUN --mount=type=cache,target=/c make\nCOPY --chmod=644 a /b\nFOO bar\n").unwrap().ast;
/// let parsed = instructions::parse(&ast);
/// assert_eq!(parsed.meta_args[0].args[0].key, "BASE");
/// assert_eq!(parsed.stages[0].name.as_deref(), Some("build"));
/// let instructions::Command::Run(run) = &parsed.stages[0].commands[0] else { panic!() };
/// assert_eq!(run.mounts[0].parsed.as_ref().unwrap().target.as_deref(), Some("/c"));
/// assert_eq!(parsed.errors.len(), 1);
/// assert_eq!(parsed.errors[0].line, 5);
/// assert_eq!(parsed.errors[0].message, "unknown instruction: FOO (did you mean FROM?)");
/// ```
pub fn parse(ast: &Node) -> Parsed {
    let mut out = Parsed::default();
    // These buffers serve every instruction's borrowed arguments and flags.
    let mut strs = Vec::new();
    let mut args = Vec::new();
    let mut flags = Vec::new();
    for (i, node) in ast.children.iter().enumerate() {
        node.arg_strs_into(&mut strs);
        args.clear();
        args.extend(strs.iter().map(|&s| Cow::Borrowed(s)));
        flags.clear();
        flags.extend(node.flags.iter().map(|f| Cow::Borrowed(f.as_str())));
        let stage_len = || ast.children[i + 1..].iter().take_while(|n| !n.value.eq_ignore_ascii_case("from")).count();
        let words = Words { args: &mut args, flags: &mut flags };
        add(&mut out, node, words, meta_of(node), node.heredocs.clone(), stage_len);
    }
    out
}

/// [`parse`] from the parser's flat instructions, taking from them: the keyword, comments,
/// heredocs and argument values move into the typed instructions instead of being copied. Each
/// instruction is dropped once converted, so that the typed instructions reuse its memory and
/// the parse and all typed instructions are never held at once.
///
/// Made for planning, which never reads [`CommandMeta::source`]: it is left empty (but for
/// ONBUILD, whose trigger is read from it), so that a one-line instruction, a slice of the text,
/// is not copied.
pub(crate) fn parse_owned(instructions: Vec<FlatInstruction<'_>>, mut all_args: Vec<Cow<'_, str>>) -> Parsed {
    let mut out = Parsed::default();
    let mut items = instructions.into_iter();
    while let Some(FlatInstruction { mut node, original, args }) = items.next() {
        if node.value.eq_ignore_ascii_case("onbuild") {
            node.original = original.into_owned();
        }
        let heredocs = std::mem::take(&mut node.heredocs);
        let meta = take_meta(&mut node);
        let rest = items.as_slice();
        let stage_len = || rest.iter().take_while(|f| !f.node.value.eq_ignore_ascii_case("from")).count();
        let mut flags: Vec<Cow<'_, str>> = std::mem::take(&mut node.flags).into_iter().map(Cow::Owned).collect();
        if node.next.is_empty() {
            let words = Words { args: &mut all_args[args], flags: &mut flags };
            add(&mut out, &node, words, meta, heredocs, stage_len);
        } else {
            // Only an ONBUILD keeps its argument in the node: its trigger, flattened (copied).
            let mut trigger: Vec<Cow<'_, str>> = node.args().into_iter().map(Cow::Owned).collect();
            add(&mut out, &node, Words { args: &mut trigger, flags: &mut flags }, meta, heredocs, stage_len);
        }
    }
    out
}

/// Converts one instruction node with its arguments `args` into `out`; `stage_len` counts the
/// instructions up to the next FROM (asked only when this one opens a stage).
fn add(
    out: &mut Parsed,
    node: &Node,
    words: Words<'_, '_>,
    meta: CommandMeta,
    heredocs: Vec<Heredoc>,
    stage_len: impl FnOnce() -> usize,
) {
    // The keyword is kept apart while the instruction is typed (the node's may have been taken
    // into `meta`), and put back as the result is stored, so that the large value moves once.
    let mut meta = meta;
    let keyword = std::mem::take(&mut meta.keyword);
    let Words { args, flags } = words;
    match parse_typed(node, &keyword, Words { args: &mut *args, flags }, meta, heredocs) {
        Ok(Parsed1::Stage(mut stage)) => {
            stage.meta.keyword = keyword;
            // Reserving the stage's instructions up front spares regrowing a vector of
            // large commands.
            stage.commands.reserve(stage_len());
            out.stages.push(stage);
        }
        Ok(Parsed1::Command(Command::Arg(mut arg))) if out.stages.is_empty() => {
            arg.meta.keyword = keyword;
            out.meta_args.push(arg);
        }
        Ok(Parsed1::Command(mut cmd)) => match out.stages.last_mut() {
            Some(stage) => {
                cmd.meta_mut().keyword = keyword;
                stage.commands.push(cmd);
            }
            None => out.errors.push(error_at(
                node,
                keyword,
                InstructionErrorKind::NoBuildStage,
                "no build stage in current context".into(),
            )),
        },
        Err((kind, message)) => {
            out.errors.push(error_at(node, keyword, kind, message));
            // A broken FROM still opens a stage, so that the instructions after it are
            // checked against a stage instead of each reporting a missing one.
            if node.value.eq_ignore_ascii_case("from") {
                out.stages.push(fallback_stage(node, args.first().map(|a| a.to_string()).unwrap_or_default()));
            }
        }
    }
}

fn error_at(node: &Node, instruction: String, kind: InstructionErrorKind, message: String) -> InstructionError {
    InstructionError { line: node.start_line, end_line: node.end_line, instruction, message, kind }
}

/// The common fields, moving the keyword, instruction text and comments out of `node`. ONBUILD (whose
/// trigger is read from its text) and FROM (whose meta a broken stage is made from again) are
/// copied instead.
fn take_meta(node: &mut Node) -> CommandMeta {
    if node.value.eq_ignore_ascii_case("onbuild") || node.value.eq_ignore_ascii_case("from") {
        return meta_of(node);
    }
    let mut source = std::mem::take(&mut node.original);
    let trimmed = source.trim_matches(char::is_whitespace);
    if trimmed.len() != source.len() {
        let start = trimmed.as_ptr() as usize - source.as_ptr() as usize;
        let end = start + trimmed.len();
        source.truncate(end);
        source.drain(..start);
    }
    CommandMeta {
        keyword: std::mem::take(&mut node.value),
        location: Location { start_line: node.start_line, end_line: node.end_line },
        source,
        comments: std::mem::take(&mut node.prev_comment),
        json: node.json,
    }
}

fn meta_of(node: &Node) -> CommandMeta {
    CommandMeta {
        keyword: node.value.clone(),
        location: Location { start_line: node.start_line, end_line: node.end_line },
        source: node.original.trim_matches(char::is_whitespace).to_owned(),
        comments: node.prev_comment.clone(),
        json: node.json,
    }
}

fn fallback_stage(node: &Node, base_name: String) -> Stage {
    Stage {
        name: None,
        original_name: None,
        as_keyword: None,
        base_name,
        platform: None,
        meta: meta_of(node),
        doc_comment: None,
        commands: Vec::new(),
    }
}

/// The typed instruction for `keyword` (`meta.keyword` is left empty meanwhile), or why not.
fn parse_typed(
    node: &Node,
    keyword: &str,
    words: Words<'_, '_>,
    meta: CommandMeta,
    heredocs: Vec<Heredoc>,
) -> Result<Parsed1, Fail> {
    let mut req = Request { node, args: words.args, flags: words.flags, meta, heredocs };
    let Some(kind) = InstructionKind::from_keyword(keyword) else {
        let options: Vec<&str> = InstructionKind::ALL.iter().map(|k| k.as_str()).collect();
        return Err((
            InstructionErrorKind::UnknownInstruction,
            suggest(format!("unknown instruction: {keyword}"), keyword, &options, false),
        ));
    };
    let cmd = match kind {
        InstructionKind::From => return parse_from(req).map(Parsed1::Stage),
        InstructionKind::Env => Command::Env(EnvCommand { env: parse_kvps(&mut req, "ENV")?, meta: req.meta }),
        InstructionKind::Label => {
            Command::Label(LabelCommand { labels: parse_kvps(&mut req, "LABEL")?, meta: req.meta })
        }
        InstructionKind::Maintainer => {
            if req.args.len() != 1 {
                return Err(exactly_one("MAINTAINER"));
            }
            no_flags(req.flags)?;
            Command::Maintainer(MaintainerCommand { maintainer: req.take(0), meta: req.meta })
        }
        InstructionKind::Add => Command::Add(parse_add(req)?),
        InstructionKind::Copy => Command::Copy(parse_copy(req)?),
        InstructionKind::Onbuild => Command::Onbuild(parse_onbuild(req)?),
        InstructionKind::Workdir => {
            if req.args.len() != 1 {
                return Err(exactly_one("WORKDIR"));
            }
            no_flags(req.flags)?;
            Command::Workdir(WorkdirCommand { path: req.take(0), meta: req.meta })
        }
        InstructionKind::Run => Command::Run(parse_run(req)?),
        InstructionKind::Cmd => {
            no_flags(req.flags)?;
            let cmd_line = shell_args(req.args, req.meta.json);
            Command::Cmd(CmdCommand { cmd_line, prepend_shell: !req.meta.json, meta: req.meta })
        }
        InstructionKind::Entrypoint => {
            no_flags(req.flags)?;
            let cmd_line = shell_args(req.args, req.meta.json);
            Command::Entrypoint(EntrypointCommand { cmd_line, prepend_shell: !req.meta.json, meta: req.meta })
        }
        InstructionKind::Healthcheck => Command::Healthcheck(parse_healthcheck(req)?),
        InstructionKind::Expose => {
            if req.args.is_empty() {
                return Err(at_least_one("EXPOSE"));
            }
            no_flags(req.flags)?;
            let mut ports: Vec<String> = req.args.iter_mut().map(take_arg).collect();
            ports.sort();
            Command::Expose(ExposeCommand { ports, meta: req.meta })
        }
        InstructionKind::User => {
            if req.args.len() != 1 {
                return Err(exactly_one("USER"));
            }
            no_flags(req.flags)?;
            Command::User(UserCommand { user: req.take(0), meta: req.meta })
        }
        InstructionKind::Volume => {
            if req.args.is_empty() {
                return Err(at_least_one("VOLUME"));
            }
            no_flags(req.flags)?;
            let mut volumes = Vec::with_capacity(req.args.len());
            for v in req.args.iter_mut() {
                let trimmed = v.trim_matches(char::is_whitespace);
                if trimmed.is_empty() {
                    return Err(arguments("VOLUME specified can not be an empty string".into()));
                }
                let volume = if trimmed.len() == v.len() { take_arg(v) } else { trimmed.to_owned() };
                volumes.push(volume);
            }
            Command::Volume(VolumeCommand { volumes, meta: req.meta })
        }
        // BuildKit never checks STOPSIGNAL's flags.
        InstructionKind::StopSignal => {
            if req.args.len() != 1 {
                return Err(exactly_one("STOPSIGNAL"));
            }
            Command::StopSignal(StopSignalCommand { signal: req.take(0), meta: req.meta })
        }
        InstructionKind::Arg => Command::Arg(parse_arg(req)?),
        InstructionKind::Shell => {
            no_flags(req.flags)?;
            let shell = shell_args(req.args, req.meta.json);
            if shell.is_empty() {
                return Err(at_least_one("SHELL"));
            }
            if !req.meta.json {
                return Err(arguments("SHELL requires the arguments to be in JSON form".into()));
            }
            Command::Shell(ShellCommand { shell, meta: req.meta })
        }
    };
    Ok(Parsed1::Command(cmd))
}

/// `handleJSONArgs`: exec-form arguments as they are, shell form joined into one string.
fn shell_args(args: &mut [Cow<'_, str>], json: bool) -> Vec<String> {
    match args {
        [] => Vec::new(),
        args if json => args.iter_mut().map(take_arg).collect(),
        [one] => vec![take_arg(one)],
        args => vec![args.join(" ")],
    }
}

fn parse_kvps(req: &mut Request<'_, '_>, cmd: &str) -> Result<Vec<KeyValuePair>, Fail> {
    no_flags(req.flags)?;
    if req.args.is_empty() {
        return Err(at_least_one(cmd));
    }
    if req.args.len() % 3 != 0 {
        return Err(arguments(format!("Bad input to {cmd}, too many arguments")));
    }
    let mut out = Vec::with_capacity(req.args.len() / 3);
    for chunk in req.args.chunks_mut(3) {
        if chunk[0].is_empty() {
            return Err(arguments(format!("{cmd} names can not be blank")));
        }
        let (key, value) = (take_arg(&mut chunk[0]), take_arg(&mut chunk[1]));
        out.push(KeyValuePair { key, value, no_delim: chunk[2].is_empty() });
    }
    Ok(out)
}

fn parse_from(req: Request<'_, '_>) -> Result<Stage, Fail> {
    let args = &*req.args;
    let (name, original_name, as_keyword) = match args.len() {
        3 if args[1].eq_ignore_ascii_case("as") => {
            let lower = args[2].to_lowercase();
            let valid = lower.starts_with(|c: char| c.is_ascii_lowercase())
                && lower.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
            if !valid {
                return Err((
                    InstructionErrorKind::InvalidValue,
                    format!(
                        "invalid name for build stage: {}, name can't start with a number or contain symbols",
                        go_quote(&args[2])
                    ),
                ));
            }
            (Some(lower), Some(args[2].to_string()), Some(args[1].to_string()))
        }
        1 => (None, None, None),
        _ => {
            return Err(arguments("FROM requires either one or three arguments".into()));
        }
    };
    let mut flags = parse_flags(req.flags, &[("platform", FlagType::String)]).map_err(flag_err)?;
    let doc_comment = name.as_deref().and_then(|n| doc_comment(&req.meta.comments, n));
    Ok(Stage {
        name,
        original_name,
        as_keyword,
        base_name: args[0].to_string(),
        platform: flags.non_empty("platform"),
        meta: req.meta,
        doc_comment,
        commands: Vec::new(),
    })
}

/// Sources, heredoc sources and destination of COPY and ADD (`parseSourcesAndDest`).
fn sources_and_dest(
    args: &mut [Cow<'_, str>],
    heredocs: &[Heredoc],
    cmd: &str,
) -> Result<(Vec<String>, Vec<SourceContent>, String), Fail> {
    let (dest, srcs) = args.split_last_mut().ok_or_else(|| at_least_one(cmd))?;
    if matches!(parse_heredoc(dest), Ok(Some(_))) {
        return Err(arguments(format!("{cmd} cannot accept a heredoc as a destination")));
    }
    let mut paths = Vec::with_capacity(srcs.len());
    let mut contents = Vec::new();
    for src in srcs {
        match parse_heredoc(src) {
            Ok(Some(doc)) => {
                let body =
                    heredocs.iter().rev().find(|h| h.name == doc.name).map(|h| h.content.clone()).unwrap_or_default();
                let data = if doc.chomp { chomp_heredoc_content(&body) } else { body };
                contents.push(SourceContent { path: doc.name, data, expand: doc.expand });
            }
            _ => paths.push(take_arg(src)),
        }
    }
    Ok((paths, contents, take_arg(dest)))
}

fn parse_add(req: Request<'_, '_>) -> Result<AddCommand, Fail> {
    if req.args.len() < 2 {
        return Err(arguments(
            "ADD requires at least two arguments, but only one was provided. Destination could not be determined"
                .into(),
        ));
    }
    let mut flags = parse_flags(
        req.flags,
        &[
            ("chown", FlagType::String),
            ("chmod", FlagType::String),
            ("link", FlagType::Bool),
            ("keep-git-dir", FlagType::Bool),
            ("checksum", FlagType::String),
            ("unpack", FlagType::Bool),
            ("exclude", FlagType::Strings),
        ],
    )
    .map_err(flag_err)?;
    let (sources, source_contents, dest) = sources_and_dest(req.args, &req.heredocs, "ADD")?;
    Ok(AddCommand {
        sources,
        source_contents,
        dest,
        chown: flags.non_empty("chown"),
        chmod: flags.non_empty("chmod"),
        link: flags.bool("link"),
        excludes: flags.take_strings("exclude").collect(),
        keep_git_dir: flags.opt_bool("keep-git-dir"),
        checksum: flags.non_empty("checksum"),
        unpack: flags.opt_bool("unpack"),
        heredocs: req.heredocs,
        meta: req.meta,
    })
}

fn parse_copy(req: Request<'_, '_>) -> Result<CopyCommand, Fail> {
    if req.args.len() < 2 {
        return Err(arguments(
            "COPY requires at least two arguments, but only one was provided. Destination could not be determined"
                .into(),
        ));
    }
    let mut flags = parse_flags(
        req.flags,
        &[
            ("chown", FlagType::String),
            ("from", FlagType::String),
            ("chmod", FlagType::String),
            ("link", FlagType::Bool),
            ("exclude", FlagType::Strings),
            ("parents", FlagType::Bool),
        ],
    )
    .map_err(flag_err)?;
    let (sources, source_contents, dest) = sources_and_dest(req.args, &req.heredocs, "COPY")?;
    Ok(CopyCommand {
        sources,
        source_contents,
        dest,
        from: flags.non_empty("from"),
        chown: flags.non_empty("chown"),
        chmod: flags.non_empty("chmod"),
        link: flags.bool("link"),
        parents: flags.bool("parents"),
        excludes: flags.take_strings("exclude").collect(),
        heredocs: req.heredocs,
        meta: req.meta,
    })
}

fn parse_onbuild(req: Request<'_, '_>) -> Result<OnbuildCommand, Fail> {
    let Some(first) = req.args.first() else {
        return Err(at_least_one("ONBUILD"));
    };
    no_flags(req.flags)?;
    let trigger = first.trim_matches(char::is_whitespace).to_uppercase();
    match trigger.as_str() {
        "ONBUILD" => {
            return Err(arguments("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into()));
        }
        "MAINTAINER" | "FROM" => {
            return Err(arguments(format!("{trigger} isn't allowed as an ONBUILD trigger")));
        }
        _ => {}
    }
    // Go regexp `(?i)^\s*ONBUILD\s*` with ASCII `\s`.
    let is_space = |c: char| matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ');
    let original = &req.node.original;
    let trimmed = original.trim_start_matches(is_space);
    let mut expression = match trimmed.get(..7) {
        Some(word) if word.eq_ignore_ascii_case("onbuild") => trimmed[7..].trim_start_matches(is_space).to_owned(),
        _ => original.clone(),
    };
    for doc in &req.heredocs {
        expression.push('\n');
        expression.push_str(&doc.content);
        expression.push_str(&doc.name);
    }
    Ok(OnbuildCommand { expression, meta: req.meta })
}

/// True when BuildKit's word expansion leaves the value unchanged.
fn needs_no_expansion(value: &str) -> bool {
    !value.bytes().any(|b| matches!(b, b'$' | b'\'' | b'"' | b'\\' | b'`'))
}

fn parse_run(req: Request<'_, '_>) -> Result<RunCommand, Fail> {
    let mut flags = parse_flags(
        req.flags,
        &[
            ("device", FlagType::Strings),
            ("mount", FlagType::Strings),
            ("network", FlagType::String),
            ("security", FlagType::String),
        ],
    )
    .map_err(flag_err)?;
    let mut devices = Vec::new();
    for raw in flags.strings("device") {
        devices.push(mount::parse_device(raw).map_err(|m| (InstructionErrorKind::Mount, m))?);
    }
    let flags_used = flags.used();
    let mut mounts = Vec::new();
    for raw in flags.take_strings("mount") {
        let parsed =
            mount::precheck_and_parse(&raw, needs_no_expansion(&raw)).map_err(|m| (InstructionErrorKind::Mount, m))?;
        mounts.push(RunMount { raw, parsed });
    }
    let network = match flags.string("network") {
        None | Some("default") => NetworkMode::Default,
        Some("none") => NetworkMode::None,
        Some("host") => NetworkMode::Host,
        Some(other) => {
            return Err(flag_err(format!("invalid network mode {}", go_quote(other))));
        }
    };
    let security = match flags.string("security") {
        None | Some("sandbox") => Security::Sandbox,
        Some("insecure") => Security::Insecure,
        Some(other) => {
            return Err(flag_err(format!("security {} is not valid", go_quote(other))));
        }
    };
    let cmd_line = shell_args(req.args, req.meta.json);
    Ok(RunCommand {
        cmd_line,
        prepend_shell: !req.meta.json,
        heredocs: req.heredocs,
        mounts,
        network,
        security,
        devices,
        flags_used,
        meta: req.meta,
    })
}

fn parse_interval(flags: &mut Flags<'_, '_>, name: &str) -> Result<Option<Duration>, Fail> {
    let Some(value) = flags.non_empty(name) else {
        return Ok(None);
    };
    let nanos = crate::duration::parse_go_duration(&value).map_err(|m| (InstructionErrorKind::InvalidValue, m))?;
    if nanos == 0 {
        return Ok(None);
    }
    if nanos < 1_000_000 {
        return Err((
            InstructionErrorKind::InvalidValue,
            format!("Interval {} cannot be less than 1ms", go_quote(name)),
        ));
    }
    Ok(Some(Duration::from_nanos(nanos.unsigned_abs())))
}

fn parse_healthcheck(req: Request<'_, '_>) -> Result<HealthcheckCommand, Fail> {
    let Some(first) = req.args.first() else {
        return Err(at_least_one("HEALTHCHECK"));
    };
    let typ = first.to_uppercase();
    let rest = &req.args[1..];
    if typ == "NONE" {
        if !rest.is_empty() {
            return Err(arguments("HEALTHCHECK NONE takes no arguments".into()));
        }
        return Ok(HealthcheckCommand { health: Healthcheck::None, meta: req.meta });
    }
    let mut flags = parse_flags(
        req.flags,
        &[
            ("interval", FlagType::String),
            ("timeout", FlagType::String),
            ("start-period", FlagType::String),
            ("start-interval", FlagType::String),
            ("retries", FlagType::String),
        ],
    )
    .map_err(flag_err)?;
    if typ != "CMD" {
        return Err(arguments(format!("Unknown type {} in HEALTHCHECK (try CMD)", go_quote(&typ))));
    }
    let cmd: Vec<String> = if rest.is_empty() {
        Vec::new()
    } else if req.meta.json {
        rest.iter().map(|a| a.to_string()).collect()
    } else {
        vec![rest.join(" ")]
    };
    if cmd.is_empty() {
        return Err(arguments("Missing command after HEALTHCHECK CMD".into()));
    }
    let mut test = vec![if req.meta.json { "CMD".to_owned() } else { "CMD-SHELL".to_owned() }];
    test.extend(cmd);
    let interval = parse_interval(&mut flags, "interval")?;
    let timeout = parse_interval(&mut flags, "timeout")?;
    let start_period = parse_interval(&mut flags, "start-period")?;
    let start_interval = parse_interval(&mut flags, "start-interval")?;
    let retries = match flags.non_empty("retries") {
        None => None,
        Some(v) => {
            let n: i32 = v.parse().map_err(|_| {
                (
                    InstructionErrorKind::InvalidValue,
                    format!("strconv.ParseInt: parsing {}: invalid syntax", go_quote(&v)),
                )
            })?;
            if n < 0 {
                return Err((InstructionErrorKind::InvalidValue, format!("--retries cannot be negative ({n})")));
            }
            u32::try_from(n).ok().filter(|&n| n > 0)
        }
    };
    Ok(HealthcheckCommand {
        health: Healthcheck::Cmd { test, interval, timeout, start_period, start_interval, retries },
        meta: req.meta,
    })
}

fn parse_arg(req: Request<'_, '_>) -> Result<ArgCommand, Fail> {
    if req.args.is_empty() {
        return Err(at_least_one("ARG"));
    }
    let mut args = Vec::with_capacity(req.args.len());
    for arg in req.args.iter_mut() {
        let (key, value) = match split_once_byte(arg, b'=') {
            Some((k, v)) => {
                if k.is_empty() {
                    return Err(arguments("ARG names can not be blank".into()));
                }
                (k.to_owned(), Some(v.to_owned()))
            }
            None => (take_arg(arg), None),
        };
        let doc_comment = doc_comment(&req.meta.comments, &key);
        args.push(ArgPair { key, value, doc_comment });
    }
    Ok(ArgCommand { args, meta: req.meta })
}

#[cfg(test)]
mod tests;
