//! [`NativeExecutor`]: the engine's [`Executor`] for [`Backend::Native`], building a plan's
//! stages step by step into an OCI image layout.
//!
//! - **COPY** from the context selects sources as [`select`] documents (Go wildcards,
//!   directories by content, `--exclude`), with `--chown` (ids, or names resolved through the
//!   stage's `/etc/passwd`/`/etc/group`) and `--chmod`; `COPY --from` a stage or image unpacks
//!   that filesystem into a scratch directory and selects from it the same way.
//! - **RUN** goes through [`crate::run::Runner`]: image env + ENV, then build args not set by
//!   ENV; the stage's user or the step's; the working directory; `--network=none`; secret,
//!   cache (persistent directories under `STATE/cache-mounts/`), tmpfs and context bind mounts.
//!   A step that changes nothing adds no layer (an `empty_layer` history entry, as BuildKit).
//! - **Config ops** edit the image config: ENV, WORKDIR, USER, CMD, ENTRYPOINT (which clears
//!   CMD), LABEL, EXPOSE (`/tcp` added when no protocol), VOLUME, STOPSIGNAL, SHELL (for later
//!   shell-form commands). The OCI config has no healthcheck field: HEALTHCHECK is recorded as
//!   the label `dev.nullspace.healthcheck` holding the check as JSON. ONBUILD is recorded in
//!   history only.
//! - **Start command** (`set_start_cmd`): `Cmd` becomes the command (shell form through the
//!   stage's shell), `Entrypoint` is cleared, and the ready check becomes labels:
//!   `dev.nullspace.ready.type` = `port` | `url` | `process` | `file` | `timeout`, plus
//!   `dev.nullspace.ready.port` (decimal), `dev.nullspace.ready.url` and
//!   `dev.nullspace.ready.status` (when given), `dev.nullspace.ready.process`,
//!   `dev.nullspace.ready.file` or `dev.nullspace.ready.timeout` (Go duration) accordingly.
//!
//! Every step appends a history entry (`created_by` names the op, never a secret value;
//! config-only steps are `empty_layer`). Timestamps (`created`, history) are the layer options'
//! `SOURCE_DATE_EPOCH`, so equal inputs give equal digests.
//!
//! **Step cache.** After each step, its result (the stage's config, layer list and shell) is
//! recorded under the step's cache key in `STATE/steps/<key>.json`, the config and layers being
//! blobs of the [`BlobStore`] at `STATE/cas`. A step whose key has a record whose blobs are all
//! present is not run: an unchanged rebuild runs no command and writes no layer.
//!
//! **Bases.** `oci:PATH[:TAG]` bases are read with [`OciLayoutSource`]; registry bases and
//! `COPY --from` images with the executor's [`RegistrySource`] (built from
//! [`NativeOptions::registry`], or replaced with [`NativeExecutor::with_registry`]). Both are
//! fetched by the manifest digest the build was keyed with (`request.images`), into the
//! executor's [`BlobStore`], once: a registry base whose blobs are stored costs no request.
//!
//! **Output.** At least one of `request.output.oci_layout` and `request.output.registry`:
//! the target stage is written to the layout, tagged `request.output.tag` (`latest`), its blobs
//! linked or copied from the store; and/or pushed to the registry reference (blobs the registry
//! has are skipped, blobs of registry bases on the same registry are mounted, the manifest goes
//! last), with the build's credentials. Both get the same manifest bytes ([`ImageBlobs`]). The
//! [`Artifact`] carries the manifest digest and the registry reference when pushed, else
//! `oci:PATH:TAG`.

pub mod source;

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nullspace_engine::cache::ResolvedImages;
use nullspace_engine::cas::{BlobStore, Digest as CasDigest};
use nullspace_engine::context::select::{self, Selected};
use nullspace_engine::executor::{Artifact, Event, EventSink, ExecError, ExecRequest, Executor, LogLevel};
use nullspace_plan::builder::{Backend, Credentials, ReadyCheck};
use nullspace_plan::plan::{BuildPlan, Command, CopyFrom, Mount, Op, PlanStep};
use nullspace_plan::reference::BaseImage;
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, HistoryBuilder, ImageConfiguration, ImageConfigurationBuilder, Os, RootFsBuilder,
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::layer::{Chown, CopyOptions, Layer, LayerEntry, LayerEntryKind, LayerInfo, LayerOptions};
use crate::layout::{ImageBlobs, OciDir, epoch_to_rfc3339};
use crate::registry::RegistryConfig;
use crate::run::{LayerRef, Network, RunError, RunSpec, Runner, RunnerOptions, StepContext, StepMount};
pub use source::{ImageSource, OciLayoutSource, RegistrySource, SourceError, SourceImage};

/// The shell used for shell-form commands when no SHELL was given.
const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// Settings of a [`NativeExecutor`].
#[derive(Debug, Clone, Default)]
pub struct NativeOptions {
    /// How RUN steps run.
    pub runner: RunnerOptions,
    /// How layers are written (compression, `SOURCE_DATE_EPOCH`).
    pub layer: LayerOptions,
    /// How registries are spoken to (platform, retries, insecure hosts, docker config).
    pub registry: RegistryConfig,
}

/// The native executor.
///
/// ```no_run
/// use nullspace_native::executor::{NativeExecutor, NativeOptions};
/// let executor = NativeExecutor::new("/var/lib/nullspace".as_ref(), NativeOptions::default())?;
/// # Ok::<(), nullspace_engine::executor::ExecError>(())
/// ```
#[derive(Clone)]
pub struct NativeExecutor {
    inner: Arc<Inner>,
}

struct Inner {
    state: PathBuf,
    store: BlobStore,
    runner: Runner,
    layer: LayerOptions,
    registry: Arc<RegistrySource>,
}

impl std::fmt::Debug for NativeExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeExecutor").field("state", &self.inner.state).finish_non_exhaustive()
    }
}

fn other(e: impl std::fmt::Display) -> ExecError {
    ExecError::Other(e.to_string())
}

impl NativeExecutor {
    /// An executor keeping its state (blobs, snapshots, step records, cache mounts) in
    /// `state_dir`.
    ///
    /// # Errors
    /// [`ExecError::Other`] if the directories cannot be created or the docker `config.json`
    /// is malformed.
    pub fn new(state_dir: &Path, opts: NativeOptions) -> Result<Self, ExecError> {
        let store = BlobStore::new(state_dir.join("cas")).map_err(other)?;
        let runner = Runner::new(state_dir, opts.runner).map_err(other)?;
        for d in ["steps", "cache-mounts"] {
            std::fs::create_dir_all(state_dir.join(d))
                .map_err(|e| other(format!("{}: {e}", state_dir.join(d).display())))?;
        }
        let registry = Arc::new(RegistrySource::new(opts.registry).map_err(other)?);
        Ok(Self {
            inner: Arc::new(Inner { state: state_dir.to_path_buf(), store, runner, layer: opts.layer, registry }),
        })
    }

    /// Pulls registry references (`BaseImage::Registry`, `COPY --from` images) and pushes
    /// registry outputs through `source`.
    pub fn with_registry(self, source: Arc<RegistrySource>) -> Self {
        let inner = Inner {
            state: self.inner.state.clone(),
            store: self.inner.store.clone(),
            runner: self.inner.runner.clone(),
            layer: self.inner.layer,
            registry: source,
        };
        Self { inner: Arc::new(inner) }
    }

    /// The blob store holding layers and configs.
    pub fn store(&self) -> &BlobStore {
        &self.inner.store
    }

    /// The runner of RUN steps.
    pub fn runner(&self) -> &Runner {
        &self.inner.runner
    }

    fn source_for(&self, reference: &str) -> Arc<dyn ImageSource> {
        if OciLayoutSource::handles(reference) {
            return Arc::new(OciLayoutSource);
        }
        self.inner.registry.clone()
    }
}

/// The reference a base is keyed by in [`ResolvedImages`] (as `cache::compute` spells it).
fn base_reference(base: &BaseImage) -> Option<String> {
    match base {
        BaseImage::Registry { reference } => Some(reference.clone()),
        BaseImage::OciLayout { path, tag } => {
            Some(format!("oci:{path}{}", tag.as_ref().map(|t| format!(":{t}")).unwrap_or_default()))
        }
        BaseImage::Stage { .. } | BaseImage::Scratch => None,
    }
}

/// Every image reference a plan reads.
fn plan_images(plan: &BuildPlan) -> Vec<String> {
    let mut refs = Vec::new();
    for stage in &plan.stages {
        refs.extend(base_reference(&stage.base));
        for step in &stage.steps {
            if let Op::Copy { from: CopyFrom::Image { reference }, .. } = &step.op {
                refs.push(reference.clone());
            }
        }
    }
    refs.sort();
    refs.dedup();
    refs
}

#[async_trait::async_trait]
impl Executor for NativeExecutor {
    fn backend(&self) -> Backend {
        Backend::Native
    }

    async fn resolve_images(
        &self,
        plan: &BuildPlan,
        credentials: Option<&Credentials>,
    ) -> Result<ResolvedImages, ExecError> {
        let mut out = ResolvedImages::new();
        for reference in plan_images(plan) {
            let digest = self.source_for(&reference).resolve(&reference, credentials).await.map_err(other)?;
            out.insert(reference, digest);
        }
        Ok(out)
    }

    async fn execute(
        &self,
        request: ExecRequest,
        events: EventSink,
        cancel: CancellationToken,
    ) -> Result<Artifact, ExecError> {
        if request.output.oci_layout.is_none() && request.output.registry.is_none() {
            return Err(ExecError::Unsupported("an output: an OCI layout directory or a registry reference".into()));
        }
        let mut images = HashMap::new();
        let creds = request.credentials.as_ref();
        for reference in plan_images(&request.plan) {
            let source = self.source_for(&reference);
            let store = &self.inner.store;
            let image = match request.images.get(&reference) {
                Some(digest) => source.fetch_resolved(&reference, digest, creds, store).await,
                None => source.fetch(&reference, creds, store).await,
            }
            .map_err(other)?;
            images.insert(reference, image);
        }
        let this = self.clone();
        let request = Arc::new(request);
        let req = Arc::clone(&request);
        let sink = events.clone();
        let (target, artifact) = tokio::task::spawn_blocking(move || {
            Build { exec: &this, request: &req, events: &sink, cancel: &cancel, images }.run()
        })
        .await
        .map_err(|e| ExecError::Other(format!("build task failed: {e}")))??;
        let Some(target_ref) = &request.output.registry else { return Ok(artifact) };
        let mount_from = plan_images(&request.plan).into_iter().filter(|r| !OciLayoutSource::handles(r)).collect();
        let report = self
            .inner
            .registry
            .push(
                &self.inner.store,
                &target.config,
                &target.layers,
                target_ref,
                mount_from,
                request.credentials.as_ref(),
            )
            .await
            .map_err(|e| ExecError::Other(format!("pushing {target_ref}: {e}")))?;
        events.log(
            LogLevel::Info,
            None,
            format!(
                "pushed {target_ref}@{}: {} blobs uploaded, {} mounted, {} already there",
                report.manifest_digest,
                report.uploaded.len(),
                report.mounted.len(),
                report.skipped.len()
            ),
        );
        let manifest_digest = report.manifest_digest.to_string();
        if manifest_digest != artifact.manifest_digest {
            return Err(ExecError::Other(format!(
                "pushed manifest {manifest_digest} differs from the built one {}",
                artifact.manifest_digest
            )));
        }
        Ok(Artifact { location: target_ref.clone(), ..artifact })
    }
}

/// The state of a stage after some steps.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StageState {
    config: ImageConfiguration,
    layers: Vec<Descriptor>,
    shell: Vec<String>,
}

/// What the step cache records under a key.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StepRecord {
    /// The config blob after the step.
    config: String,
    /// The layers after the step.
    layers: Vec<Descriptor>,
    /// The shell after the step.
    shell: Vec<String>,
    /// The layer the step added, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    added: Option<Descriptor>,
}

struct Build<'a> {
    exec: &'a NativeExecutor,
    request: &'a ExecRequest,
    events: &'a EventSink,
    cancel: &'a CancellationToken,
    images: HashMap<String, SourceImage>,
}

/// Counters for the artifact.
#[derive(Default)]
struct Totals {
    steps: u32,
    cached: u32,
    bytes_new: u64,
    bytes_reused: u64,
}

fn parse_platform(platform: &str) -> (Os, Arch) {
    let (os, arch) = platform.split_once('/').unwrap_or(("linux", platform));
    let arch = arch.split('/').next().unwrap_or("amd64");
    (Os::from(os), Arch::from(arch))
}

fn command_argv(command: &Command, shell: &[String]) -> Vec<String> {
    match command {
        Command::Exec(args) => args.clone(),
        Command::Shell(cmd) => shell.iter().cloned().chain([cmd.clone()]).collect(),
    }
}

/// A short description of a step, for events and history (never a secret value: plans hold
/// secret ids only).
fn describe(op: &Op) -> String {
    let cmd = |c: &Command| match c {
        Command::Shell(s) => s.clone(),
        Command::Exec(a) => serde_json::to_string(a).unwrap_or_default(),
    };
    match op {
        Op::Run { command, shell, mounts, network, .. } => {
            let mut flags = String::new();
            for m in mounts {
                if let Mount::Secret { id, .. } = m {
                    flags.push_str(&format!("--mount=type=secret,id={id} "));
                }
            }
            if network != "default" {
                flags.push_str(&format!("--network={network} "));
            }
            match command {
                Command::Shell(s) => format!("RUN {flags}{} {s}", shell.join(" ")),
                Command::Exec(_) => format!("RUN {flags}{}", cmd(command)),
            }
        }
        Op::Copy { from, sources, dest, chown, chmod, .. } => {
            let mut flags = String::new();
            match from {
                CopyFrom::Context => {}
                CopyFrom::Stage { index } => flags.push_str(&format!("--from={index} ")),
                CopyFrom::Image { reference } => flags.push_str(&format!("--from={reference} ")),
            }
            if let Some(c) = chown {
                flags.push_str(&format!("--chown={c} "));
            }
            if let Some(c) = chmod {
                flags.push_str(&format!("--chmod={c} "));
            }
            format!("COPY {flags}{} {dest}", sources.join(" "))
        }
        Op::Env { vars } => {
            format!("ENV {}", vars.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "))
        }
        Op::Workdir { path } => format!("WORKDIR {path}"),
        Op::User { user } => format!("USER {user}"),
        Op::Cmd { command } => format!("CMD {}", cmd(command)),
        Op::Entrypoint { command } => format!("ENTRYPOINT {}", cmd(command)),
        Op::Shell { argv } => format!("SHELL {}", serde_json::to_string(argv).unwrap_or_default()),
        Op::Expose { ports } => format!("EXPOSE {}", ports.join(" ")),
        Op::Label { labels } => {
            format!("LABEL {}", labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "))
        }
        Op::Volume { paths } => format!("VOLUME {}", paths.join(" ")),
        Op::StopSignal { signal } => format!("STOPSIGNAL {signal}"),
        Op::Healthcheck { check } => format!("HEALTHCHECK {}", check.test.join(" ")),
        Op::OnBuild { expression } => format!("ONBUILD {expression}"),
        Op::StartCmd { command, .. } => format!("START {}", cmd(command)),
    }
}

fn set_env(env: &mut Vec<String>, key: &str, value: &str) {
    let entry = format!("{key}={value}");
    match env.iter_mut().find(|e| e.split_once('=').is_some_and(|(k, _)| k == key)) {
        Some(e) => *e = entry,
        None => env.push(entry),
    }
}

fn parse_mode(mode: &str) -> Result<u32, ExecError> {
    u32::from_str_radix(mode, 8).map_err(|_| ExecError::Other(format!("--chmod {mode:?} is not an octal mode")))
}

/// The labels a ready check becomes (see the module doc).
fn ready_labels(ready: &ReadyCheck) -> Vec<(String, String)> {
    let l = |k: &str, v: String| (format!("dev.nullspace.ready.{k}"), v);
    match ready {
        ReadyCheck::Port { port } => vec![l("type", "port".into()), l("port", port.to_string())],
        ReadyCheck::Url { url, status } => {
            let mut v = vec![l("type", "url".into()), l("url", url.clone())];
            if let Some(s) = status {
                v.push(l("status", s.to_string()));
            }
            v
        }
        ReadyCheck::Process { name } => vec![l("type", "process".into()), l("process", name.clone())],
        ReadyCheck::File { path } => vec![l("type", "file".into()), l("file", path.clone())],
        ReadyCheck::Timeout { duration } => vec![l("type", "timeout".into()), l("timeout", duration.clone())],
    }
}

fn layer_refs(state: &StageState) -> Vec<LayerRef> {
    state
        .layers
        .iter()
        .zip(state.config.rootfs().diff_ids())
        .map(|(d, id)| LayerRef { digest: d.digest().to_string(), diff_id: id.clone() })
        .collect()
}

impl Build<'_> {
    fn store(&self) -> &BlobStore {
        &self.exec.inner.store
    }

    /// Builds every stage; returns the target stage and the artifact (its location the OCI
    /// layout, if one is asked for).
    fn run(self) -> Result<(StageState, Artifact), ExecError> {
        let plan = &self.request.plan;
        let mut stages: Vec<StageState> = Vec::new();
        let mut totals = Totals::default();
        for (si, stage) in plan.stages.iter().enumerate() {
            let mut state = self.base_state(&stage.base, &stages, &plan.platform)?;
            for (pi, step) in stage.steps.iter().enumerate() {
                if self.cancel.is_cancelled() {
                    return Err(ExecError::Cancelled);
                }
                state = self.step(si, pi, step, state, &stages, &mut totals)?;
            }
            stages.push(state);
        }
        let target = stages.pop().ok_or_else(|| ExecError::Other("the plan has no stage".into()))?;
        let artifact = self.output(&target, totals)?;
        Ok((target, artifact))
    }

    fn base_state(&self, base: &BaseImage, stages: &[StageState], platform: &str) -> Result<StageState, ExecError> {
        let shell: Vec<String> = DEFAULT_SHELL.iter().map(ToString::to_string).collect();
        match base {
            BaseImage::Stage { index } => stages
                .get(*index)
                .cloned()
                .ok_or_else(|| ExecError::Other(format!("stage {index} is not built before it is used"))),
            BaseImage::Scratch => {
                let (os, arch) = parse_platform(platform);
                let config = ImageConfigurationBuilder::default()
                    .os(os)
                    .architecture(arch)
                    .rootfs(
                        RootFsBuilder::default().typ("layers").diff_ids(Vec::<String>::new()).build().map_err(other)?,
                    )
                    .config(ConfigBuilder::default().build().map_err(other)?)
                    .build()
                    .map_err(other)?;
                Ok(StageState { config, layers: Vec::new(), shell })
            }
            _ => {
                let reference = base_reference(base).unwrap_or_default();
                let image = self
                    .images
                    .get(&reference)
                    .ok_or_else(|| ExecError::Other(format!("{reference} was not fetched")))?;
                Ok(StageState { config: image.config.clone(), layers: image.layers.clone(), shell })
            }
        }
    }

    fn step_key(&self, stage: usize, step: usize) -> Option<&str> {
        self.request.keys.steps.iter().find(|k| k.stage == stage && k.step == step).map(|k| k.key.as_str())
    }

    fn record_path(&self, key: &str) -> PathBuf {
        self.exec.inner.state.join("steps").join(format!("{}.json", key.trim_start_matches("sha256:")))
    }

    /// The cached state for `key`, if recorded and all its blobs are present.
    fn cached(&self, key: &str) -> Option<(StageState, Option<Descriptor>)> {
        let bytes = std::fs::read(self.record_path(key)).ok()?;
        let record: StepRecord = serde_json::from_slice(&bytes).ok()?;
        let present = |d: &str| d.parse::<CasDigest>().ok().and_then(|d| self.store().contains(&d).ok()) == Some(true);
        if !record.layers.iter().all(|l| present(l.digest().as_ref())) {
            return None;
        }
        let config_digest: CasDigest = record.config.parse().ok()?;
        let config_bytes = self.store().read_verified(&config_digest).ok()?;
        let config = ImageConfiguration::from_reader(config_bytes.as_slice()).ok()?;
        Some((StageState { config, layers: record.layers, shell: record.shell }, record.added))
    }

    fn remember(&self, key: &str, state: &StageState, added: Option<Descriptor>) -> Result<(), ExecError> {
        let config = serde_json::to_vec(&state.config).map_err(other)?;
        let config_digest = self.store().put(&config).map_err(other)?;
        let record = StepRecord {
            config: config_digest.to_string(),
            layers: state.layers.clone(),
            shell: state.shell.clone(),
            added,
        };
        let path = self.record_path(key);
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(other)?;
        tmp.write_all(&serde_json::to_vec(&record).map_err(other)?).map_err(other)?;
        tmp.persist(&path).map_err(other)?;
        Ok(())
    }

    fn step(
        &self,
        si: usize,
        pi: usize,
        step: &PlanStep,
        state: StageState,
        stages: &[StageState],
        totals: &mut Totals,
    ) -> Result<StageState, ExecError> {
        let id = format!("{si}/{pi}");
        let name = describe(&step.op);
        self.events.send(Event::StepStarted { step: id.clone(), name: name.clone() });
        totals.steps += 1;
        let key = self.step_key(si, pi);
        if let Some((cached, added)) = key.and_then(|k| self.cached(k)) {
            let bytes = added.as_ref().map_or(0, Descriptor::size);
            totals.cached += 1;
            totals.bytes_reused += bytes;
            self.events.send(Event::StepFinished { step: id, cached: true, bytes_new: 0, bytes_reused: bytes });
            return Ok(cached);
        }
        let mut state = state;
        let added = self.apply(&id, step, &mut state, stages).map_err(|e| match e {
            ExecError::StepFailed { message, .. } => {
                ExecError::StepFailed { step: id.clone(), message: format!("{name} ({}): {message}", step.span) }
            }
            ExecError::Other(message) => {
                ExecError::StepFailed { step: id.clone(), message: format!("{name} ({}): {message}", step.span) }
            }
            e => e,
        })?;
        let created = epoch_to_rfc3339(self.exec.inner.layer.source_date_epoch);
        let mut history = HistoryBuilder::default().created(created.clone()).created_by(name).comment("nullspace");
        match &added {
            Some(info) => {
                state.config.rootfs_mut().diff_ids_mut().push(info.diff_id.to_string());
                state.layers.push(info.descriptor());
            }
            None => history = history.empty_layer(true),
        }
        state.config.history_mut().get_or_insert_with(Vec::new).push(history.build().map_err(other)?);
        state.config.set_created(Some(created));
        let bytes = added.as_ref().map_or(0, |i| i.size);
        totals.bytes_new += bytes;
        if let Some(key) = key {
            self.remember(key, &state, added.as_ref().map(LayerInfo::descriptor))?;
        }
        self.events.send(Event::StepFinished { step: id, cached: false, bytes_new: bytes, bytes_reused: 0 });
        Ok(state)
    }

    /// Writes a layer into the store; `None` for an empty one.
    fn write_layer(&self, layer: &Layer) -> Result<Option<LayerInfo>, ExecError> {
        if layer.is_empty() {
            return Ok(None);
        }
        let mut writer = self.store().writer().map_err(other)?;
        let info = layer.write(&mut writer, &self.exec.inner.layer).map_err(other)?;
        let digest = writer.commit().map_err(other)?;
        if digest.to_string() != info.digest.to_string() {
            return Err(ExecError::Other(format!("layer digest {} stored as {digest}", info.digest)));
        }
        Ok(Some(info))
    }

    /// Performs one step on `state`; returns the layer it added.
    fn apply(
        &self,
        id: &str,
        step: &PlanStep,
        state: &mut StageState,
        stages: &[StageState],
    ) -> Result<Option<LayerInfo>, ExecError> {
        let exec = state.config.config().clone().unwrap_or_default();
        let mut exec = exec;
        let result = match &step.op {
            Op::Run { .. } => return self.run_step(id, step, state),
            Op::Copy { .. } => return self.copy_step(step, state, stages),
            Op::Env { vars } => {
                let mut env = exec.env().clone().unwrap_or_default();
                for (k, v) in vars {
                    set_env(&mut env, k, v);
                }
                exec.set_env(Some(env));
                None
            }
            Op::Workdir { path } => {
                exec.set_working_dir(Some(path.clone()));
                None
            }
            Op::User { user } => {
                exec.set_user(Some(user.clone()));
                None
            }
            Op::Cmd { command } => {
                exec.set_cmd(Some(command_argv(command, &state.shell)));
                None
            }
            Op::Entrypoint { command } => {
                exec.set_entrypoint(Some(command_argv(command, &state.shell)));
                exec.set_cmd(None);
                None
            }
            Op::Shell { argv } => {
                state.shell = argv.clone();
                None
            }
            Op::Expose { ports } => {
                let mut all = exec.exposed_ports().clone().unwrap_or_default();
                for p in ports {
                    let p = if p.contains('/') { p.clone() } else { format!("{p}/tcp") };
                    if !all.contains(&p) {
                        all.push(p);
                    }
                }
                exec.set_exposed_ports(Some(all));
                None
            }
            Op::Label { labels } => {
                let mut all = exec.labels().clone().unwrap_or_default();
                all.extend(labels.iter().cloned());
                exec.set_labels(Some(all));
                None
            }
            Op::Volume { paths } => {
                let mut all = exec.volumes().clone().unwrap_or_default();
                for p in paths {
                    if !all.contains(p) {
                        all.push(p.clone());
                    }
                }
                exec.set_volumes(Some(all));
                None
            }
            Op::StopSignal { signal } => {
                exec.set_stop_signal(Some(signal.clone()));
                None
            }
            Op::Healthcheck { check } => {
                let mut all = exec.labels().clone().unwrap_or_default();
                all.insert("dev.nullspace.healthcheck".into(), serde_json::to_string(check).map_err(other)?);
                exec.set_labels(Some(all));
                None
            }
            Op::OnBuild { .. } => {
                self.events.log(LogLevel::Warn, Some(id.to_string()), "ONBUILD is recorded in history only");
                None
            }
            Op::StartCmd { command, ready } => {
                exec.set_cmd(Some(command_argv(command, &state.shell)));
                exec.set_entrypoint(None);
                let mut all = exec.labels().clone().unwrap_or_default();
                all.retain(|k, _| !k.starts_with("dev.nullspace.ready."));
                all.extend(ready_labels(ready));
                exec.set_labels(Some(all));
                None
            }
        };
        state.config.set_config(Some(exec));
        Ok(result)
    }

    fn run_step(&self, id: &str, step: &PlanStep, state: &StageState) -> Result<Option<LayerInfo>, ExecError> {
        let Op::Run { command, shell, heredocs, mounts, network, build_args, user, .. } = &step.op else {
            return Ok(None);
        };
        if !heredocs.is_empty() {
            return Err(ExecError::Unsupported("RUN heredocs".into()));
        }
        let exec = state.config.config().clone().unwrap_or_default();
        let mut env = exec.env().clone().unwrap_or_default();
        for (k, v) in build_args.iter() {
            if !env.iter().any(|e| e.split_once('=').is_some_and(|(n, _)| n == k)) {
                env.push(format!("{k}={v}"));
            }
        }
        let network = match network.as_ref() {
            "none" => Network::None,
            "default" | "host" | "" => Network::Host,
            other => return Err(ExecError::Unsupported(format!("--network={other}"))),
        };
        let spec = RunSpec {
            args: command_argv(command, shell),
            env,
            user: user.clone().or_else(|| exec.user().clone()).unwrap_or_default(),
            cwd: exec.working_dir().clone().unwrap_or_default(),
            network,
            mounts: mounts.iter().map(|m| self.step_mount(m)).collect::<Result<_, _>>()?,
        };
        let ctx = StepContext {
            store: self.store(),
            secrets: &self.request.secrets,
            events: self.events,
            step: Some(id),
            cancel: self.cancel,
        };
        let output = self.exec.inner.runner.run(&layer_refs(state), &spec, &ctx).map_err(|e| match e {
            RunError::Cancelled => ExecError::Cancelled,
            e @ RunError::Failed { .. } => ExecError::StepFailed { step: id.to_string(), message: e.to_string() },
            e => ExecError::Other(e.to_string()),
        })?;
        self.write_layer(&output.layer)
    }

    fn step_mount(&self, mount: &Mount) -> Result<StepMount, ExecError> {
        Ok(match mount {
            Mount::Secret { id, target, env, required, mode, uid, gid } => StepMount::Secret {
                id: id.clone(),
                target: target.clone(),
                env: env.clone(),
                required: *required,
                mode: *mode,
                uid: *uid,
                gid: *gid,
            },
            Mount::Tmpfs { target, size } => StepMount::Tmpfs { target: target.clone(), size: *size },
            Mount::Cache { target, id, readonly, from: None, mode, uid, gid, .. } => {
                let name = id.clone().unwrap_or_else(|| target.clone());
                let hex = CasDigest::of(name.as_bytes()).hex();
                let dir = self.exec.inner.state.join("cache-mounts").join(hex);
                if !dir.exists() {
                    std::fs::create_dir_all(&dir).map_err(other)?;
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode.unwrap_or(0o755)))
                        .map_err(other)?;
                    std::os::unix::fs::chown(&dir, Some(uid.unwrap_or(0)), Some(gid.unwrap_or(0))).map_err(other)?;
                }
                StepMount::Cache { target: target.clone(), dir, readonly: *readonly }
            }
            Mount::Bind { target, source, from: None, readwrite: false } => {
                let ctx = self.request.context.as_ref().ok_or_else(|| {
                    ExecError::Other("bind mount of the context, but the build has no context".into())
                })?;
                let rel = source.as_deref().unwrap_or("");
                if Path::new(rel).components().any(|c| matches!(c, std::path::Component::ParentDir)) {
                    return Err(ExecError::Other(format!("bind source {rel:?} leaves the context")));
                }
                StepMount::Bind {
                    target: target.clone(),
                    source: ctx.root.join(rel.trim_start_matches('/')),
                    readonly: true,
                }
            }
            other => return Err(ExecError::Unsupported(format!("RUN mount {other:?}"))),
        })
    }

    /// Resolves `--chown` to ids, looking names up in the stage's filesystem.
    fn chown(&self, spec: &str, state: &StageState) -> Result<Chown, ExecError> {
        let numeric = spec.split(':').all(|p| p.parse::<u32>().is_ok());
        let dir = if numeric {
            None
        } else {
            let dir = tempfile::tempdir_in(&self.exec.inner.state).map_err(other)?;
            crate::run::SnapshotStore::materialize(self.store(), &layer_refs(state), dir.path()).map_err(other)?;
            Some(dir)
        };
        let root = dir.as_ref().map_or(Path::new("/nonexistent"), |d| d.path());
        let user = crate::run::resolve_user(root, spec).map_err(other)?;
        Ok(Chown { uid: user.uid, gid: user.gid })
    }

    fn copy_step(
        &self,
        step: &PlanStep,
        state: &StageState,
        stages: &[StageState],
    ) -> Result<Option<LayerInfo>, ExecError> {
        let Op::Copy { add, from, sources, dest, heredocs, chown, chmod, exclude, parents, .. } = &step.op else {
            return Ok(None);
        };
        if *add || !heredocs.is_empty() || *parents {
            return Err(ExecError::Unsupported("ADD, COPY heredocs and COPY --parents".into()));
        }
        // The source tree: the context, or another filesystem unpacked into a scratch dir.
        let scratch;
        let (root, entries): (PathBuf, Vec<nullspace_engine::context::Entry>) = match from {
            CopyFrom::Context => {
                let ctx = self
                    .request
                    .context
                    .as_ref()
                    .ok_or_else(|| ExecError::Other("COPY needs a build context".into()))?;
                (ctx.root.clone(), ctx.entries.clone())
            }
            CopyFrom::Stage { .. } | CopyFrom::Image { .. } => {
                let layers = match from {
                    CopyFrom::Stage { index } => stages
                        .get(*index)
                        .map(layer_refs)
                        .ok_or_else(|| ExecError::Other(format!("stage {index} is not built")))?,
                    CopyFrom::Image { reference } => {
                        let image = self
                            .images
                            .get(reference)
                            .ok_or_else(|| ExecError::Other(format!("{reference} not fetched")))?;
                        image
                            .layers
                            .iter()
                            .zip(image.config.rootfs().diff_ids())
                            .map(|(d, id)| LayerRef { digest: d.digest().to_string(), diff_id: id.clone() })
                            .collect()
                    }
                    CopyFrom::Context => Vec::new(),
                };
                scratch = tempfile::tempdir_in(&self.exec.inner.state).map_err(other)?;
                crate::run::SnapshotStore::materialize(self.store(), &layers, scratch.path()).map_err(other)?;
                (scratch.path().to_path_buf(), select::walk(scratch.path()).map_err(other)?)
            }
        };
        let selected = select::select(&entries, sources, exclude).map_err(other)?;
        let owner = chown.as_deref().map(|c| self.chown(c, state)).transpose()?;
        let mode = chmod.as_deref().map(parse_mode).transpose()?;
        let workdir =
            state.config.config().as_ref().and_then(|c| c.working_dir().clone()).unwrap_or_else(|| "/".into());
        let dest_path = if dest.starts_with('/') { PathBuf::from(dest) } else { Path::new(&workdir).join(dest) };
        let dest_is_dir = dest.ends_with('/') || selected.len() > 1 || selected.iter().any(|s| s.dir);
        let mut layer = Layer::new();
        for Selected { path, dir, entries } in &selected {
            if *dir {
                let opts = CopyOptions { dest: dest_path.clone(), chown: owner, chmod: mode };
                layer.add_copy(&root.join(path), entries, &opts).map_err(other)?;
            } else if dest_is_dir {
                let parent = path.parent().map(|p| root.join(p)).unwrap_or_else(|| root.clone());
                let opts = CopyOptions { dest: dest_path.clone(), chown: owner, chmod: mode };
                layer.add_copy(&parent, entries, &opts).map_err(other)?;
            } else {
                // One file to a file path: the parents as COPY makes them, the file renamed.
                let parent = dest_path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
                let opts = CopyOptions { dest: parent, chown: owner, chmod: mode };
                layer.add_copy(&root, &[], &opts).map_err(other)?;
                for e in entries {
                    let kind = match &e.kind {
                        nullspace_engine::context::EntryKind::Symlink { target } => {
                            LayerEntryKind::Symlink { target: target.clone() }
                        }
                        _ => LayerEntryKind::File { source: root.join(path), size: e.size, inode: None },
                    };
                    let (uid, gid) = owner.map_or((0, 0), |c| (c.uid, c.gid));
                    let file_mode =
                        if matches!(kind, LayerEntryKind::Symlink { .. }) { 0o777 } else { mode.unwrap_or(e.mode) };
                    layer
                        .insert(LayerEntry { path: dest_path.clone(), kind, mode: file_mode, uid, gid })
                        .map_err(other)?;
                }
            }
        }
        self.write_layer(&layer)
    }

    /// Writes the OCI layout output if asked for; the artifact names the image either way.
    fn output(&self, target: &StageState, totals: Totals) -> Result<Artifact, ExecError> {
        let out = &self.request.output;
        let artifact = |manifest_digest: String, location: String| Artifact {
            manifest_digest,
            location,
            steps_total: totals.steps,
            steps_cached: totals.cached,
            bytes_reused: totals.bytes_reused,
            bytes_new: totals.bytes_new,
        };
        let Some(path) = &out.oci_layout else {
            let blobs = ImageBlobs::new(&target.config, &target.layers).map_err(other)?;
            let digest = blobs.manifest_descriptor.digest().to_string();
            return Ok(artifact(digest, out.registry.clone().unwrap_or_default()));
        };
        let tag = out.tag.clone().unwrap_or_else(|| "latest".into());
        let oci = OciDir::create(path).map_err(other)?;
        for layer in &target.layers {
            let dest = oci.blob_path(layer.digest()).map_err(other)?;
            if dest.exists() {
                continue;
            }
            let digest: CasDigest = layer.digest().to_string().parse().map_err(other)?;
            let src = self.store().blob_path(&digest);
            if std::fs::hard_link(&src, &dest).is_err() {
                let tmp = dest.with_extension("tmp");
                std::fs::copy(&src, &tmp).map_err(|e| other(format!("{}: {e}", src.display())))?;
                std::fs::rename(&tmp, &dest).map_err(|e| other(format!("{}: {e}", dest.display())))?;
            }
        }
        let manifest = oci.write_image(&target.config, &target.layers, Some(&tag)).map_err(other)?;
        Ok(artifact(manifest.digest().to_string(), format!("oci:{}:{tag}", path.display())))
    }
}
