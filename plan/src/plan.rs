//! The normalized build plan: one shape for declarative and Dockerfile input.
//!
//! A plan is stages of typed steps, each step with the place it came from. ARGs are resolved,
//! image references normalized, stages the target does not need are pruned, and secrets appear
//! only as ids. Serialisation is versioned and deterministic (no hash maps, fields in declaration
//! order), and [`BuildPlan::compute_digest`] hashes that canonical JSON. The digest is computed
//! when first asked for ([`BuildPlan::plan_digest`]) and then kept, since hashing the canonical
//! form of a large plan costs as much as making the plan.

use crate::builder::{Backend, ReadyCheck};
use crate::diagnostic::Span;
use crate::reference::BaseImage;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

/// The version of the plan's JSON schema; bumped on any incompatible change.
pub const PLAN_SCHEMA_VERSION: u32 = 1;

/// The platform built when none is asked for.
pub const DEFAULT_PLATFORM: &str = "linux/amd64";

/// What the user wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// A declarative template.
    Declarative,
    /// A Dockerfile (possibly with declarative steps appended).
    Dockerfile,
}

/// A normalized build plan.
///
/// Serialised, it carries `plan_digest` after `schema_version` (computed then if it was not
/// yet); its canonical form ([`BuildPlan::canonical_json`]) leaves the digest out.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BuildPlan {
    /// [`PLAN_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// sha256 of the canonical JSON, once computed (or as read from serialised input).
    #[serde(default, rename = "plan_digest")]
    digest: DigestCache,
    /// Declarative or Dockerfile.
    pub input: InputKind,
    /// The executor that builds this plan.
    pub backend: Backend,
    /// The target platform, e.g. `linux/amd64`.
    pub platform: String,
    /// The build context directory as the user gave it, when there is one.
    #[serde(default)]
    pub context: Option<String>,
    /// The stages needed for the target, in build order; the last one is the target.
    pub stages: Vec<Stage>,
    /// The build secrets the plan uses (ids and the variables that supply them, never values).
    #[serde(default)]
    pub secrets: Vec<SecretRef>,
}

/// The cached plan digest. It is derived data, so two plans compare equal whether or not either
/// has computed it yet.
#[derive(Debug, Clone, Default)]
struct DigestCache(OnceLock<String>);

impl PartialEq for DigestCache {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Eq for DigestCache {}

impl<'de> Deserialize<'de> for DigestCache {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let digest = String::deserialize(deserializer)?;
        let cache = DigestCache::default();
        if !digest.is_empty() {
            let _ = cache.0.set(digest);
        }
        Ok(cache)
    }
}

impl Serialize for BuildPlan {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.serialize_fields(serializer, true)
    }
}

/// The plan without its digest: what the digest is computed over.
struct Canonical<'a>(&'a BuildPlan);

impl Serialize for Canonical<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_fields(serializer, false)
    }
}

impl BuildPlan {
    /// A plan of these parts; its digest is computed when first asked for.
    pub fn new(
        input: InputKind,
        backend: Backend,
        platform: String,
        context: Option<String>,
        stages: Vec<Stage>,
        secrets: Vec<SecretRef>,
    ) -> Self {
        Self {
            schema_version: PLAN_SCHEMA_VERSION,
            digest: DigestCache::default(),
            input,
            backend,
            platform,
            context,
            stages,
            secrets,
        }
    }

    /// Fields in declaration order; `context` and `secrets` only when present, as the schema
    /// has always written them.
    fn serialize_fields<S: Serializer>(&self, serializer: S, with_digest: bool) -> Result<S::Ok, S::Error> {
        let mut len = 5 + usize::from(self.context.is_some()) + usize::from(!self.secrets.is_empty());
        len += usize::from(with_digest);
        let mut out = serializer.serialize_struct("BuildPlan", len)?;
        out.serialize_field("schema_version", &self.schema_version)?;
        if with_digest {
            out.serialize_field("plan_digest", self.plan_digest())?;
        }
        out.serialize_field("input", &self.input)?;
        out.serialize_field("backend", &self.backend)?;
        out.serialize_field("platform", &self.platform)?;
        if let Some(context) = &self.context {
            out.serialize_field("context", context)?;
        }
        out.serialize_field("stages", &self.stages)?;
        if !self.secrets.is_empty() {
            out.serialize_field("secrets", &self.secrets)?;
        }
        out.end()
    }

    /// The canonical JSON form: compact, fields in declaration order, maps sorted, without the
    /// digest itself.
    pub fn canonical_json(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_canonical(&mut out);
        out
    }

    fn write_canonical<W: std::io::Write>(&self, out: W) {
        // Serialising these types cannot fail: every key is a string and there is no float; a
        // writer that fails (none of ours do) leaves the output short, which changes the digest.
        let _ = serde_json::to_writer(out, &Canonical(self));
    }

    /// `sha256:` of [`BuildPlan::canonical_json`], hashed as it is written (always computed
    /// afresh; [`BuildPlan::plan_digest`] keeps it).
    pub fn compute_digest(&self) -> String {
        struct HashWriter(Sha256);
        impl std::io::Write for HashWriter {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.update(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut hasher = HashWriter(Sha256::new());
        self.write_canonical(std::io::BufWriter::with_capacity(16 * 1024, &mut hasher));
        format!("sha256:{:x}", hasher.0.finalize())
    }

    /// The plan digest: [`BuildPlan::compute_digest`] the first time it is asked for, the same
    /// string after that. A plan whose fields are changed after that keeps the old digest until
    /// [`BuildPlan::seal`] is called.
    ///
    /// ```
    /// use nullspace_plan::{builder::Template, normalize::{plan, PlanOptions}};
    /// let outcome = plan(&Template::from_image("busybox").run_cmd("echo hi"), &PlanOptions::default());
    /// let plan = outcome.plan.expect("valid");
    /// assert!(plan.plan_digest().starts_with("sha256:"));
    /// assert_eq!(plan.plan_digest(), plan.compute_digest());
    /// ```
    pub fn plan_digest(&self) -> &str {
        self.digest.0.get_or_init(|| self.compute_digest())
    }

    /// Computes the digest of the current content now (after changing the plan's fields, or
    /// to pay for hashing up front) and keeps it.
    pub fn seal(mut self) -> Self {
        self.digest = DigestCache::default();
        self.plan_digest();
        self
    }

    /// The stage that is built (the last one).
    pub fn target_stage(&self) -> Option<&Stage> {
        self.stages.last()
    }
}

/// A secret a plan uses.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SecretRef {
    /// The id RUN steps mount it by.
    pub id: String,
    /// The environment variable that supplies the value when the build starts, if declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

/// One stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    /// The stage's name (`FROM … AS name`), lower-cased as BuildKit compares them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The stage's index in the Dockerfile (kept after pruning so `--from=0` stays meaningful).
    pub source_index: usize,
    /// Where its filesystem starts.
    pub base: BaseImage,
    /// `FROM --platform`, resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Where the stage starts.
    pub span: Span,
    /// Its steps, in order.
    pub steps: Vec<PlanStep>,
}

/// One step and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanStep {
    /// The Dockerfile line or builder index it came from.
    pub span: Span,
    /// Never taken from cache (`skip_cache()` at or before it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_cache: bool,
    /// What it does.
    pub op: Op,
}

/// A command in shell form (run by the stage's shell) or exec form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Run with the shell in effect (`/bin/sh -c` unless SHELL changed it).
    Shell(String),
    /// Run exactly these arguments.
    Exec(Vec<String>),
}

/// Where COPY/ADD sources come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CopyFrom {
    /// The build context.
    Context,
    /// An earlier stage, by its index in the plan.
    Stage {
        /// The index into [`BuildPlan::stages`].
        index: usize,
    },
    /// An image, normalized.
    Image {
        /// The normalized reference.
        reference: String,
    },
}

/// A heredoc attached to RUN, COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heredoc {
    /// The delimiter word (also the file name for COPY/ADD).
    pub name: String,
    /// The body, after `<<-` tab stripping.
    pub content: String,
    /// Whether variables in the body are expanded (unquoted delimiter).
    pub expand: bool,
}

/// A `RUN --mount`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Mount {
    /// A read-only (by default) bind of the context, a stage or an image.
    Bind {
        /// Mount point.
        target: String,
        /// Path within the source.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
        /// Stage or image, or the context when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        /// Writable (changes are discarded).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        readwrite: bool,
    },
    /// A persistent cache directory.
    Cache {
        /// Mount point.
        target: String,
        /// Cache id (the target by default).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// `shared`, `private` or `locked`.
        sharing: Cow<'static, str>,
        /// Read-only.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        readonly: bool,
        /// Seed from a stage or image.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        /// Path within `from`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
        /// Octal mode of the cache directory.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<u32>,
        /// Owner uid.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uid: Option<u32>,
        /// Owner gid.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gid: Option<u32>,
    },
    /// A tmpfs.
    Tmpfs {
        /// Mount point.
        target: String,
        /// Size limit in bytes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
    },
    /// A build secret, as a file and/or an environment variable.
    Secret {
        /// The secret's id.
        id: String,
        /// File path (`/run/secrets/{id}` by default; absent when only `env` is asked for).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
        /// Environment variable to expose it as.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        env: Option<String>,
        /// Fail when the secret is not supplied.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        required: bool,
        /// File mode.
        mode: u32,
        /// File owner uid.
        uid: u32,
        /// File owner gid.
        gid: u32,
    },
    /// An SSH agent socket.
    Ssh {
        /// The SSH id (`default`).
        id: String,
        /// Socket path.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
        /// Fail when no agent is forwarded.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        required: bool,
        /// Socket mode.
        mode: u32,
        /// Socket owner uid.
        uid: u32,
        /// Socket owner gid.
        gid: u32,
    },
}

/// The HEALTHCHECK of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", …]` or `["CMD-SHELL", cmd]`.
    pub test: Vec<String>,
    /// Interval in nanoseconds (0 for the default).
    pub interval_ns: u64,
    /// Timeout in nanoseconds.
    pub timeout_ns: u64,
    /// Start period in nanoseconds.
    pub start_period_ns: u64,
    /// Start interval in nanoseconds.
    pub start_interval_ns: u64,
    /// Retries (0 for the default).
    pub retries: u32,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Run a command in the stage's filesystem.
    Run {
        /// The command.
        command: Command,
        /// The shell that runs shell-form commands (shared by the steps of a stage).
        shell: Arc<[String]>,
        /// Heredocs whose bodies feed the command.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        heredocs: Vec<Heredoc>,
        /// `--mount`s.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        mounts: Vec<Mount>,
        /// `--network`: `default`, `none` or `host`.
        network: Cow<'static, str>,
        /// `--security`: `sandbox` or `insecure`.
        security: Cow<'static, str>,
        /// Build arguments in scope, visible to the command (ENV comes from `Env` steps); shared
        /// by the steps that see the same arguments.
        #[serde(default, skip_serializing_if = "no_build_args")]
        build_args: Arc<BTreeMap<String, String>>,
        /// Run as this user instead of the stage's (for package installs that need root).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
    },
    /// COPY or ADD.
    Copy {
        /// ADD (URLs, archives, git) rather than COPY.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        add: bool,
        /// Where the sources come from.
        from: CopyFrom,
        /// Source paths or globs (expanded words).
        sources: Vec<String>,
        /// Destination (expanded).
        dest: String,
        /// Heredoc sources.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        heredocs: Vec<Heredoc>,
        /// `--chown`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chown: Option<String>,
        /// `--chmod`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chmod: Option<String>,
        /// `--link`.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        link: bool,
        /// `--exclude` patterns.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        exclude: Vec<String>,
        /// `--parents`.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        parents: bool,
        /// ADD `--checksum`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        checksum: Option<String>,
        /// ADD `--keep-git-dir`.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        keep_git_dir: bool,
    },
    /// Set environment variables (in the image and for later steps).
    Env {
        /// Names and values, in order.
        vars: Vec<(String, String)>,
    },
    /// Set the working directory (absolute, resolved).
    Workdir {
        /// The path.
        path: String,
    },
    /// Set the user.
    User {
        /// `user[:group]`.
        user: String,
    },
    /// Set the image's CMD.
    Cmd {
        /// The command.
        command: Command,
    },
    /// Set the image's ENTRYPOINT.
    Entrypoint {
        /// The command.
        command: Command,
    },
    /// Set the shell for later shell-form commands.
    Shell {
        /// The shell and its arguments.
        argv: Vec<String>,
    },
    /// Declare exposed ports (`80/tcp`).
    Expose {
        /// Ports.
        ports: Vec<String>,
    },
    /// Add labels.
    Label {
        /// Names and values, in order.
        labels: Vec<(String, String)>,
    },
    /// Declare volumes.
    Volume {
        /// Paths.
        paths: Vec<String>,
    },
    /// Set the stop signal.
    StopSignal {
        /// The signal.
        signal: String,
    },
    /// Set the health check.
    Healthcheck {
        /// The check.
        check: Healthcheck,
    },
    /// Record a trigger for images built from this one.
    OnBuild {
        /// The instruction, as written.
        expression: String,
    },
    /// The sandbox's start command and ready check (declarative `set_start_cmd`).
    StartCmd {
        /// The command.
        command: Command,
        /// How to tell the sandbox is ready.
        ready: ReadyCheck,
    },
}

fn no_build_args(args: &Arc<BTreeMap<String, String>>) -> bool {
    args.is_empty()
}

impl Op {
    /// Whether the step changes the filesystem (and so makes a layer).
    pub fn changes_filesystem(&self) -> bool {
        matches!(self, Op::Run { .. } | Op::Copy { .. })
    }
}
