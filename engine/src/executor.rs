//! The executor plug-in: whoever builds the engine registers executors, and the engine hands each
//! plan to the one its backend names. The engine never names a concrete executor.

use crate::cache::{CacheKeys, ResolvedImages};
use crate::context::Entry;
use nullspace_plan::builder::{Backend, Credentials};
use nullspace_plan::plan::BuildPlan;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Build secret values, held in memory for one build only: never serialised, never printed.
#[derive(Clone, Default)]
pub struct Secrets {
    values: BTreeMap<String, Vec<u8>>,
}

impl Secrets {
    /// Adds or replaces the value of secret `id`.
    pub fn insert(&mut self, id: impl Into<String>, value: impl Into<Vec<u8>>) {
        self.values.insert(id.into(), value.into());
    }

    /// The value of secret `id`.
    pub fn get(&self, id: &str) -> Option<&[u8]> {
        self.values.get(id).map(Vec::as_slice)
    }

    /// The ids that have values.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets").field("ids", &self.values.keys().collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

/// The walked build context a plan copies from.
#[derive(Debug, Clone)]
pub struct ContextSnapshot {
    /// The context directory.
    pub root: PathBuf,
    /// What the walk included, sorted by path.
    pub entries: Vec<Entry>,
}

/// Where the image goes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputSpec {
    /// Write an OCI image layout here, tagged with `tag`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci_layout: Option<PathBuf>,
    /// Push to this registry reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// The tag inside the layout (`latest` by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// Everything an executor needs for one build.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    /// The build's id, for logs.
    pub build_id: String,
    /// The sealed plan.
    pub plan: BuildPlan,
    /// The context, when the plan copies from one.
    pub context: Option<ContextSnapshot>,
    /// Every step's cache key.
    pub keys: CacheKeys,
    /// Base and `--from` image digests, as resolved before keys were computed.
    pub images: ResolvedImages,
    /// Secret values for this build.
    pub secrets: Secrets,
    /// Registry credentials for private bases.
    pub credentials: Option<Credentials>,
    /// Where the result goes.
    pub output: OutputSpec,
}

/// How loud a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// Details.
    Debug,
    /// Normal output (command stdout, step progress).
    Info,
    /// Command stderr and recoverable problems.
    Warn,
    /// Failures.
    Error,
}

/// What an executor reports while it works.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A log line, from a step or the executor.
    Log {
        /// Level.
        level: LogLevel,
        /// `stage/step` when the line belongs to a step.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<String>,
        /// The line.
        message: String,
    },
    /// A step began.
    StepStarted {
        /// `stage/step`.
        step: String,
        /// A short description (`RUN pip install …`).
        name: String,
    },
    /// A step ended.
    StepFinished {
        /// `stage/step`.
        step: String,
        /// Taken from cache.
        cached: bool,
        /// Bytes the step's layer adds (0 when cached or when it makes none).
        bytes_new: u64,
        /// Bytes reused from cache.
        bytes_reused: u64,
    },
}

/// The sending half an executor reports through.
#[derive(Debug, Clone)]
pub struct EventSink(mpsc::UnboundedSender<Event>);

impl EventSink {
    /// A sink and the receiver that reads what it sends.
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self(tx), rx)
    }

    /// Sends an event; a receiver that went away is not the executor's problem.
    pub fn send(&self, event: Event) {
        let _ = self.0.send(event);
    }

    /// Sends a log line.
    pub fn log(&self, level: LogLevel, step: Option<String>, message: impl Into<String>) {
        self.send(Event::Log { level, step, message: message.into() });
    }
}

/// Where a built image is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// The image manifest's digest.
    pub manifest_digest: String,
    /// Where it was written or pushed (`oci:PATH:TAG` or a registry reference).
    pub location: String,
    /// Steps in total, and taken from cache.
    pub steps_total: u32,
    /// Steps taken from cache.
    pub steps_cached: u32,
    /// Layer bytes reused.
    pub bytes_reused: u64,
    /// Layer bytes made by this build.
    pub bytes_new: u64,
}

/// Why an execution ended without an artifact.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Cancelled through the token.
    #[error("cancelled")]
    Cancelled,
    /// A step failed; `step` is `stage/step`.
    #[error("step {step} failed: {message}")]
    StepFailed {
        /// `stage/step`.
        step: String,
        /// What happened (exit code, last log lines).
        message: String,
    },
    /// The plan asks for something this executor cannot do.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Anything else (registry, filesystem, runtime), with its cause.
    #[error("{0}")]
    Other(String),
}

/// A backend that turns plans into images.
#[async_trait::async_trait]
pub trait Executor: Send + Sync {
    /// Which backend this is.
    fn backend(&self) -> Backend;

    /// Resolves every image the plan refers to (stage bases, `COPY --from` images) to manifest
    /// digests, keyed by the reference as written in the plan.
    async fn resolve_images(
        &self,
        plan: &BuildPlan,
        credentials: Option<&Credentials>,
    ) -> Result<ResolvedImages, ExecError>;

    /// Builds the plan, reporting through `events`, stopping promptly when `cancel` fires.
    async fn execute(
        &self,
        request: ExecRequest,
        events: EventSink,
        cancel: CancellationToken,
    ) -> Result<Artifact, ExecError>;
}
