//! The facade's request and report types: build options, the persisted definition, build views.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use nullspace_plan::builder::{Backend as PlanBackend, Template as PlanTemplate};
use serde::{Deserialize, Serialize};

use crate::executor::{OutputSpec, Secrets};
use crate::store::{
    ArtifactAvailability, Backend, Build, BuildStatus, LogEntry, LogLevel, LogPage, StoreError, Tag, TemplateName,
};

/// Called with every log entry as it is stored (offset order).
pub type LogCallback = Arc<dyn Fn(&LogEntry) + Send + Sync>;

/// A [`LogCallback`] printing each entry on standard error as `[level] step: message`.
///
/// ```
/// let logger = nullspace_engine::default_build_logger();
/// logger(&nullspace_engine::store::LogEntry {
///     offset: 0,
///     timestamp: nullspace_engine::store::Timestamp(0),
///     level: nullspace_engine::store::LogLevel::Info,
///     step: Some("0/1".into()),
///     message: "hello".into(),
/// });
/// ```
pub fn default_build_logger() -> LogCallback {
    Arc::new(|entry: &LogEntry| eprintln!("{}", format_entry(entry)))
}

/// One log entry as a line: `[level] step: message` (no step: `[level] message`).
pub fn format_entry(entry: &LogEntry) -> String {
    let level = match entry.level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    };
    match &entry.step {
        Some(step) => format!("[{level}] {step}: {}", entry.message),
        None => format!("[{level}] {}", entry.message),
    }
}

/// What a build request asks for beyond the template itself.
#[derive(Clone, Default)]
pub struct BuildOptions {
    /// Tags to point at the build once it is ready.
    pub tags: Vec<Tag>,
    /// The executor to use (default: the template's, else by input kind). Validated against the
    /// input: `native` is refused for Dockerfiles.
    pub backend: Option<PlanBackend>,
    /// Build secret values for this request only; a secret the template names and that is not
    /// here is read from the environment variable the template names.
    pub build_secrets: Secrets,
    /// Take no step from the cache.
    pub no_cache: bool,
    /// Called with every stored log entry of this build.
    pub on_log: Option<LogCallback>,
    /// The directory relative paths of the template are resolved against (default: the current
    /// directory).
    pub base_dir: Option<PathBuf>,
    /// Build arguments.
    pub build_args: BTreeMap<String, String>,
    /// Where the image goes (default: an OCI layout under `STATE/images/<name>/<build id>`).
    pub output: Option<OutputSpec>,
}

impl std::fmt::Debug for BuildOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildOptions")
            .field("tags", &self.tags)
            .field("backend", &self.backend)
            .field("build_secrets", &self.build_secrets)
            .field("no_cache", &self.no_cache)
            .field("base_dir", &self.base_dir)
            .field("output", &self.output)
            .finish_non_exhaustive()
    }
}

impl BuildOptions {
    /// Adds a tag.
    pub fn tag(mut self, tag: Tag) -> Self {
        self.tags.push(tag);
        self
    }

    /// Chooses the backend.
    pub fn backend(mut self, backend: PlanBackend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Gives the value of build secret `id`.
    pub fn secret(mut self, id: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.build_secrets.insert(id, value);
        self
    }

    /// Takes no step from the cache.
    pub fn no_cache(mut self) -> Self {
        self.no_cache = true;
        self
    }

    /// Calls `callback` with every log entry.
    pub fn on_log(mut self, callback: LogCallback) -> Self {
        self.on_log = Some(callback);
        self
    }

    /// Resolves the template's relative paths against `dir`.
    pub fn base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.base_dir = Some(dir.into());
        self
    }

    /// Writes the image to `output`.
    pub fn output(mut self, output: OutputSpec) -> Self {
        self.output = Some(output);
        self
    }
}

/// What a retry asks for: the persisted definition is reused, secrets and tags are given anew.
#[derive(Clone, Default)]
pub struct RetryOptions {
    /// Tags for the new attempt (default: those the original asked for).
    pub tags: Option<Vec<Tag>>,
    /// Secret values (never persisted, so given again).
    pub build_secrets: Secrets,
    /// Registry credentials for a private base (never persisted, so given again).
    pub credentials: Option<nullspace_plan::builder::Credentials>,
    /// Called with every stored log entry of the new attempt.
    pub on_log: Option<LogCallback>,
}

/// The sanitised build definition persisted with every build and used by retry. It holds the
/// template (secret ids and variable names, never values; credentials are not serialised) with
/// its relative paths made absolute, so a retry from another directory builds the same thing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildDefinition {
    /// The template, paths made absolute.
    pub template: PlanTemplate,
    /// The backend chosen.
    pub backend: PlanBackend,
    /// The directory relative paths were resolved against (the default context).
    pub base_dir: PathBuf,
    /// Build arguments.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub build_args: BTreeMap<String, String>,
    /// No step from the cache.
    #[serde(default)]
    pub no_cache: bool,
    /// Where the image was asked to go (none: the engine's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputSpec>,
}

/// Whether a build's artifact may receive tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "promotable", rename_all = "snake_case")]
pub enum Promotability {
    /// Ready with its artifact available.
    Yes,
    /// Why not.
    No {
        /// The reason.
        reason: String,
    },
}

impl Promotability {
    /// Promotability of `build`.
    pub fn of(build: &Build) -> Self {
        let no = |reason: String| Promotability::No { reason };
        match (build.status, build.artifact_availability) {
            (BuildStatus::Ready, ArtifactAvailability::Available) => Promotability::Yes,
            (BuildStatus::Ready, a) => no(format!("its artifact is {a}")),
            (s, _) => no(format!("it is {s}, not ready")),
        }
    }

    /// `true` for [`Promotability::Yes`].
    pub fn is_yes(&self) -> bool {
        matches!(self, Promotability::Yes)
    }
}

/// A build record as handles and history rows show it: the stored record (with
/// `cache_summary`, `artifact_availability`, `retention_expires_at`) plus its promotability.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuildInfo {
    /// The stored record.
    #[serde(flatten)]
    pub build: Build,
    /// Whether it can be promoted.
    pub promotability: Promotability,
}

impl From<Build> for BuildInfo {
    fn from(build: Build) -> Self {
        let promotability = Promotability::of(&build);
        BuildInfo { build, promotability }
    }
}

impl std::ops::Deref for BuildInfo {
    type Target = Build;
    fn deref(&self) -> &Build {
        &self.build
    }
}

/// A build and its log entries from an offset.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusReport {
    /// The build.
    pub info: BuildInfo,
    /// Its log from the asked offset.
    pub logs: LogPage,
}

/// Why the engine could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The engine was built without something it needs.
    #[error("engine configuration: {0}")]
    Config(String),
    /// No executor is registered for the backend a build needs.
    #[error("no executor registered for the {0} backend")]
    NoExecutor(Backend),
    /// A retry (or build) lacks values of secrets its template needs.
    #[error(
        "build secrets without a value: {}; secret values are never persisted: pass them again (build_secrets){}",
        ids.join(", "),
        if envs.is_empty() { String::new() } else { format!(" or set {}", envs.join(", ")) }
    )]
    MissingSecrets {
        /// The secret ids.
        ids: Vec<String>,
        /// The environment variables that would supply them.
        envs: Vec<String>,
    },
    /// The persisted definition of a build cannot be read back.
    #[error("build {build}: persisted definition unreadable: {message}")]
    Definition {
        /// The build.
        build: String,
        /// What is wrong.
        message: String,
    },
    /// A wait ran out of time.
    #[error("build {build} not terminal after {seconds:.1}s")]
    Timeout {
        /// The build.
        build: String,
        /// The time waited.
        seconds: f64,
    },
    /// A filesystem operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path at fault.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The backend enum of the store from the plan's.
pub(crate) fn store_backend(b: PlanBackend) -> Backend {
    match b {
        PlanBackend::Native => Backend::Native,
        PlanBackend::Buildkit => Backend::Buildkit,
    }
}

/// The default output layout of a build.
pub(crate) fn default_output(state_dir: &std::path::Path, name: &TemplateName, build: &str) -> OutputSpec {
    OutputSpec {
        oci_layout: Some(state_dir.join("images").join(name.namespace()).join(name.name()).join(build)),
        registry: None,
        tag: Some("latest".into()),
    }
}
