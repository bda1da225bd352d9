//! One build from request to terminal status: plan, secrets, context, images, keys, dedup,
//! queue, execute, record.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nullspace_plan::builder::{Base, Credentials};
use nullspace_plan::diagnostic::{Severity, render};
use nullspace_plan::normalize::{PlanOptions, plan};
use nullspace_plan::plan::{BuildPlan, CopyFrom, Op};
use sha2::{Digest as _, Sha256};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::types::{BuildDefinition, EngineError, LogCallback, default_output};
use super::{Engine, SharedOutcome};
use crate::cache::{KeyContext, SelectedSources, SourceSelector, compute};
use crate::context::contenthash::hash_context;
use crate::context::select::ContextSelector;
use crate::context::statcache::StatCache;
use crate::context::walk::Walker;
use crate::executor::{Artifact as ExecArtifact, ContextSnapshot, Event, EventSink, ExecError, ExecRequest, Secrets};
use crate::store::{
    Artifact, BuildId, BuildReason, BuildStatus, BuildUpdate, CacheSummary, LogEntry, LogLevel, NewLogEntry,
    StoreError, TenantId, Timestamp, strip_ansi,
};

/// Everything a queued build needs that is not in the store.
pub(crate) struct Job {
    pub tenant: TenantId,
    pub id: BuildId,
    pub definition: BuildDefinition,
    pub secrets: Secrets,
    pub credentials: Option<Credentials>,
    pub on_log: Option<LogCallback>,
    pub cancel: CancellationToken,
    /// The executor slot, held until the outcome is recorded so the next build starts after.
    pub slot: std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>,
}

/// How a build ended, before it is recorded.
enum End {
    Ready { artifact: Artifact, summary: CacheSummary, note: String },
    Failed(BuildReason),
    Cancelled,
}

/// Writes log entries to the store and to the request's callback.
#[derive(Clone)]
struct Logs {
    engine: Engine,
    tenant: TenantId,
    id: BuildId,
    on_log: Option<LogCallback>,
}

impl Logs {
    fn notify(&self, entries: &[NewLogEntry], offsets: std::ops::Range<u64>) {
        if let Some(cb) = &self.on_log {
            for (entry, offset) in entries.iter().zip(offsets) {
                cb(&LogEntry {
                    offset,
                    timestamp: entry.timestamp,
                    level: entry.level,
                    step: entry.step.clone(),
                    message: strip_ansi(&entry.message).into_owned(),
                });
            }
        }
    }

    async fn append(&self, entries: Vec<NewLogEntry>) {
        if entries.is_empty() {
            return;
        }
        match self.engine.inner.store.append_logs(&self.tenant, &self.id, entries.clone()).await {
            Ok(offsets) => self.notify(&entries, offsets),
            Err(e) => tracing::warn!(build = %self.id, error = %e, "cannot append build log entries"),
        }
    }

    /// Applies `update` (with its log entries) and tells the callback.
    async fn update(&self, update: BuildUpdate) -> Result<(), StoreError> {
        let entries = update.logs.clone();
        let updated = self.engine.inner.store.update_build(&self.tenant, &self.id, update).await?;
        self.notify(&entries, updated.log_offsets);
        Ok(())
    }

    /// Marks the build ready and sets its tags in one transaction.
    async fn finish_ready(&self, update: BuildUpdate, tags: &[crate::store::Tag]) -> Result<(), StoreError> {
        let entries = update.logs.clone();
        let (updated, _) = self.engine.inner.store.finish_ready(&self.tenant, &self.id, update, tags).await?;
        self.notify(&entries, updated.log_offsets);
        Ok(())
    }
}

fn entry(level: LogLevel, message: impl Into<String>) -> NewLogEntry {
    NewLogEntry::new(level, message)
}

fn exec_level(level: crate::executor::LogLevel) -> LogLevel {
    match level {
        crate::executor::LogLevel::Debug => LogLevel::Debug,
        crate::executor::LogLevel::Info => LogLevel::Info,
        crate::executor::LogLevel::Warn => LogLevel::Warn,
        crate::executor::LogLevel::Error => LogLevel::Error,
    }
}

/// The log entry an executor event becomes. Step start and end lines have fixed shapes
/// (`step started: NAME`, `step done: cached|built, N bytes new, M bytes reused`) that progress
/// displays read.
pub(crate) fn event_entry(event: Event) -> NewLogEntry {
    match event {
        Event::Log { level, step, message } => {
            let e = entry(exec_level(level), message);
            match step {
                Some(s) => e.with_step(s),
                None => e,
            }
        }
        Event::StepStarted { step, name } => entry(LogLevel::Info, format!("step started: {name}")).with_step(step),
        Event::StepFinished { step, cached, bytes_new, bytes_reused } => entry(
            LogLevel::Info,
            format!(
                "step done: {}, {bytes_new} bytes new, {bytes_reused} bytes reused",
                if cached { "cached" } else { "built" }
            ),
        )
        .with_step(step),
    }
}

/// The selector for plans that copy nothing from the context (so none was scanned).
struct NoContext;

impl SourceSelector for NoContext {
    fn select(&self, sources: &[String], _: &[String], _: bool) -> Result<SelectedSources, String> {
        Err(format!("cannot select {sources:?}: the build context was not scanned"))
    }
}

fn plan_reads_context(plan: &BuildPlan) -> bool {
    plan.stages.iter().flat_map(|s| &s.steps).any(|s| matches!(&s.op, Op::Copy { from: CopyFrom::Context, .. }))
}

/// The directory the build context is read from.
pub(crate) fn context_root(definition: &BuildDefinition) -> PathBuf {
    definition.template.context.clone().unwrap_or_else(|| definition.base_dir.clone())
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> EngineError + '_ {
    move |source| EngineError::Io { path: path.to_owned(), source }
}

/// The values of the secrets `wanted` (id, and the variable the template names, if any): from
/// `given`, else from that variable. Lists those with neither.
pub(crate) fn resolve_secrets<'a>(
    wanted: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    given: &Secrets,
) -> Result<Secrets, EngineError> {
    let mut out = Secrets::default();
    let (mut ids, mut envs) = (Vec::new(), Vec::new());
    for (id, env) in wanted {
        if let Some(v) = given.get(id) {
            out.insert(id, v.to_vec());
        } else if let Some(v) = env.and_then(std::env::var_os) {
            out.insert(id, std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()).to_vec());
        } else {
            ids.push(id.to_owned());
            envs.extend(env.map(|e| format!("${e}")));
        }
    }
    if ids.is_empty() { Ok(out) } else { Err(EngineError::MissingSecrets { ids, envs }) }
}

/// The secrets a plan needs, as [`resolve_secrets`] takes them.
pub(crate) fn plan_secrets(plan: &BuildPlan) -> impl Iterator<Item = (&str, Option<&str>)> {
    plan.secrets.iter().map(|s| (s.id.as_str(), s.env.as_deref()))
}

/// Plans a definition as its build will.
pub(crate) fn plan_definition(def: &BuildDefinition) -> nullspace_plan::normalize::Outcome {
    let mut template = def.template.clone();
    template.backend = Some(def.backend);
    let options =
        PlanOptions { build_args: def.build_args.clone(), base_dir: def.base_dir.clone(), ..Default::default() };
    plan(&template, &options)
}

/// Makes the template's relative paths absolute against `base`.
pub(crate) fn absolutise(template: &mut nullspace_plan::builder::Template, base: &Path) {
    if let Some(c) = &template.context {
        // `context = "."` is the base itself: keep paths in logs and records clean.
        let joined = if c.as_os_str() == "." { base.to_path_buf() } else { base.join(c) };
        template.context = Some(joined);
    }
    match &mut template.from {
        Base::Dockerfile { path } => *path = base.join(&*path),
        Base::Image { reference } => {
            if let Some(rest) = reference.strip_prefix("oci:")
                && !rest.starts_with('/')
            {
                *reference = format!("oci:{}", base.join(rest).display());
            }
        }
        Base::Python { .. } | Base::DockerfileContent { .. } => {}
    }
}

fn step_span(plan: &BuildPlan, step: &str) -> Option<serde_json::Value> {
    let (si, pi) = step.split_once('/')?;
    let s = plan.stages.get(si.parse::<usize>().ok()?)?.steps.get(pi.parse::<usize>().ok()?)?;
    serde_json::to_value(&s.span).ok()
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    let mut stack = vec![(from.to_path_buf(), to.to_path_buf())];
    while let Some((src, dst)) = stack.pop() {
        std::fs::create_dir_all(&dst)?;
        for e in std::fs::read_dir(&src)? {
            let e = e?;
            let target = dst.join(e.file_name());
            if e.file_type()?.is_dir() {
                stack.push((e.path(), target));
            } else {
                std::fs::copy(e.path(), target)?;
            }
        }
    }
    Ok(())
}

fn summary_of(a: &ExecArtifact) -> CacheSummary {
    CacheSummary {
        steps_total: a.steps_total,
        steps_cached: a.steps_cached,
        bytes_reused: a.bytes_reused,
        bytes_new: a.bytes_new,
    }
}

impl Engine {
    /// Runs a job to its end; failures to record are logged (the store's recovery marks a build
    /// left in flight as interrupted on the next start).
    pub(crate) async fn run_job(self, job: Job) {
        let logs =
            Logs { engine: self.clone(), tenant: job.tenant.clone(), id: job.id.clone(), on_log: job.on_log.clone() };
        let end = self.drive(&job, &logs).await;
        self.inner.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&job.id);
        if let Err(e) = self.record(&job, &logs, end).await {
            tracing::warn!(build = %job.id, error = %e, "cannot record the end of a build");
        }
        drop(job.slot.lock().unwrap_or_else(|p| p.into_inner()).take());
    }

    async fn record(&self, job: &Job, logs: &Logs, end: End) -> Result<(), EngineError> {
        let store = &self.inner.store;
        let result = match end {
            End::Ready { artifact, summary, note } => {
                let update = BuildUpdate {
                    status: Some(BuildStatus::Ready),
                    reason: Some(BuildReason::message(note.clone())),
                    artifact: Some(artifact),
                    cache_summary: Some(summary),
                    retention_expires_at: Some(Timestamp::now().plus(self.inner.retention)),
                    logs: vec![entry(LogLevel::Info, format!("ready: {note}"))],
                    ..Default::default()
                };
                let tags = store.get_build(&job.tenant, &job.id).await?.requested_tags;
                let mut with_tags = update.clone();
                if !tags.is_empty() {
                    let names: Vec<_> = tags.iter().map(ToString::to_string).collect();
                    with_tags.logs.push(entry(LogLevel::Info, format!("tagged {}", names.join(", "))));
                }
                match logs.finish_ready(with_tags, &tags).await {
                    // A tag that cannot be set does not lose the build: record it ready, untagged.
                    Err(e) if !tags.is_empty() => {
                        let mut update = update;
                        update.logs.push(entry(LogLevel::Error, format!("tagging failed: {e}")));
                        logs.update(update).await
                    }
                    other => other,
                }
            }
            End::Failed(reason) => {
                let mut lines = vec![entry(LogLevel::Error, format!("failed: {}", reason.message))];
                if let Some(step) = &reason.step {
                    lines[0].step = Some(step.clone());
                }
                logs.update(BuildUpdate {
                    status: Some(BuildStatus::Failed),
                    reason: Some(reason),
                    logs: lines,
                    ..Default::default()
                })
                .await
            }
            End::Cancelled => {
                logs.update(BuildUpdate {
                    status: Some(BuildStatus::Cancelled),
                    reason: Some(BuildReason::message("cancelled")),
                    logs: vec![entry(LogLevel::Warn, "cancelled")],
                    ..Default::default()
                })
                .await
            }
        };
        match result {
            // Cancelled meanwhile (by a handle, maybe in another process): that outcome stands.
            Err(StoreError::Finished { .. } | StoreError::InvalidTransition { .. }) => Ok(()),
            other => Ok(other?),
        }
    }

    async fn drive(&self, job: &Job, logs: &Logs) -> End {
        match self.prepare_and_execute(job, logs).await {
            Ok(end) => end,
            Err(e) => End::Failed(BuildReason::message(e.to_string())),
        }
    }

    async fn prepare_and_execute(&self, job: &Job, logs: &Logs) -> Result<End, EngineError> {
        let def = &job.definition;
        let mut template = def.template.clone();
        template.backend = Some(def.backend);
        let options =
            PlanOptions { build_args: def.build_args.clone(), base_dir: def.base_dir.clone(), ..Default::default() };
        let outcome = plan(&template, &options);
        let mut diag_logs = Vec::new();
        for d in &outcome.diagnostics {
            let level = if d.severity == Severity::Error { LogLevel::Error } else { LogLevel::Warn };
            let at = d.span.as_ref().map(|s| format!(" ({s})")).unwrap_or_default();
            diag_logs.push(entry(level, format!("{}: {}{at}", d.code, d.message)));
        }
        logs.append(diag_logs).await;
        let Some(mut plan) = outcome.plan else {
            let first = outcome.diagnostics.iter().find(|d| d.is_error());
            return Ok(End::Failed(BuildReason {
                message: format!(
                    "validation failed:\n{}",
                    render(&outcome.diagnostics, outcome.dockerfile_source.as_deref())
                ),
                step: None,
                span: first.and_then(|d| d.span.as_ref()).and_then(|s| serde_json::to_value(s).ok()),
            }));
        };
        let secrets = match resolve_secrets(plan_secrets(&plan), &job.secrets) {
            Ok(s) => s,
            Err(e) => return Ok(End::Failed(BuildReason::message(e.to_string()))),
        };
        if def.no_cache {
            for step in plan.stages.iter_mut().flat_map(|s| s.steps.iter_mut()) {
                step.no_cache = true;
            }
            plan = plan.seal();
        }
        logs.update(BuildUpdate { plan_digest: Some(plan.plan_digest().to_owned()), ..Default::default() }).await?;

        let context = if plan_reads_context(&plan) { Some(self.scan_context(def, logs).await?) } else { None };
        let executor = self.executor_for(def.backend)?;
        let images = match executor.resolve_images(&plan, job.credentials.as_ref()).await {
            Ok(i) => i,
            Err(e) => return Ok(End::Failed(BuildReason::message(format!("resolving images: {e}")))),
        };
        let nonce = job.id.to_string();
        let keys = {
            let scanned = context.as_ref();
            let selector: Box<dyn SourceSelector + '_> = match scanned {
                Some((entries, hashes)) => Box::new(ContextSelector::new(entries, hashes)),
                None => Box::new(NoContext),
            };
            compute(&plan, &KeyContext { images: &images, sources: selector.as_ref(), build_nonce: &nonce })
        };
        let keys = match keys {
            Ok(k) => k,
            Err(e) => return Ok(End::Failed(BuildReason::message(format!("cache keys: {e}")))),
        };
        let final_key = keys.final_key().map(str::to_owned);
        logs.update(BuildUpdate { cache_key: final_key.clone(), ..Default::default() }).await?;

        let output = match &def.output {
            Some(o) => o.clone(),
            None => default_output(&self.inner.state_dir, &self.template_name(job).await?, job.id.as_str()),
        };
        // Only builds into the engine's own layouts share results (a build asked to write
        // somewhere writes there). From here to the end of `execute` nothing returns early, so a
        // leader always publishes its outcome and leaves the in-flight map.
        let leader = match final_key.as_deref().filter(|_| !def.no_cache && def.output.is_none()) {
            Some(key) => match self.join_inflight(key) {
                Ok(tx) => Some((key.to_owned(), tx)),
                Err(mut rx) => {
                    if let Some(end) = self.follow(job, logs, &mut rx).await? {
                        return Ok(end);
                    }
                    None
                }
            },
            None => None,
        };
        let request = ExecRequest {
            build_id: job.id.to_string(),
            plan: plan.clone(),
            context: context.map(|(entries, _)| ContextSnapshot { root: context_root(def), entries }),
            keys,
            images,
            secrets,
            credentials: job.credentials.clone(),
            output,
        };
        let end = self.execute(job, logs, executor, request, &plan).await;
        if let Some((key, tx)) = leader {
            let shared = match &end {
                Ok(End::Ready { artifact, summary, .. }) => Some((job.id.clone(), artifact.clone(), *summary)),
                _ => None,
            };
            let _ = tx.send(Some(shared));
            self.inner.inflight.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
        }
        end
    }

    async fn template_name(&self, job: &Job) -> Result<crate::store::TemplateName, EngineError> {
        Ok(self.inner.store.get_build(&job.tenant, &job.id).await?.template)
    }

    /// Becomes the leader for `key` (the sender) or returns the leader's receiver.
    fn join_inflight(
        &self,
        key: &str,
    ) -> Result<watch::Sender<Option<SharedOutcome>>, watch::Receiver<Option<SharedOutcome>>> {
        let mut map = self.inner.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = map.get(key) {
            return Err(rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        map.insert(key.to_owned(), rx);
        Ok(tx)
    }

    /// Waits for the identical build in flight; its ready result becomes this build's (the
    /// layout copied, so each build owns what retention may remove). `None`: build it here.
    async fn follow(
        &self,
        job: &Job,
        logs: &Logs,
        rx: &mut watch::Receiver<Option<SharedOutcome>>,
    ) -> Result<Option<End>, EngineError> {
        logs.append(vec![entry(
            LogLevel::Info,
            "an identical build (same final cache key) is in flight: waiting for it",
        )])
        .await;
        let outcome = tokio::select! {
            r = rx.wait_for(Option::is_some) => r.ok().and_then(|v| v.clone()).flatten(),
            () = job.cancel.cancelled() => return Ok(Some(End::Cancelled)),
        };
        let Some((leader, artifact, summary)) = outcome else {
            logs.append(vec![entry(LogLevel::Info, "the identical build did not succeed: building")]).await;
            return Ok(None);
        };
        let mut artifact = artifact;
        if let Some(src) =
            artifact.location.strip_prefix("oci:").and_then(|l| l.rsplit_once(':')).map(|(p, _)| PathBuf::from(p))
        {
            let name = self.template_name(job).await?;
            let out = default_output(&self.inner.state_dir, &name, job.id.as_str());
            let dst = out.oci_layout.unwrap_or_default();
            let (s, d) = (src.clone(), dst.clone());
            tokio::task::spawn_blocking(move || copy_dir(&s, &d))
                .await
                .map_err(|e| EngineError::Config(e.to_string()))?
                .map_err(io_err(&dst))?;
            artifact.location = format!("oci:{}:{}", dst.display(), out.tag.unwrap_or_else(|| "latest".into()));
        }
        Ok(Some(End::Ready { artifact, summary, note: format!("shared the result of identical build {leader}") }))
    }

    async fn scan_context(
        &self,
        def: &BuildDefinition,
        logs: &Logs,
    ) -> Result<(Vec<crate::context::Entry>, crate::context::contenthash::ContextHashes), EngineError> {
        let root = context_root(def);
        let dockerfile = match &def.template.from {
            Base::Dockerfile { path } => Some(path.clone()),
            _ => None,
        };
        let cache_file = self
            .inner
            .state_dir
            .join("statcache")
            .join(format!("{:x}", Sha256::digest(root.as_os_str().as_encoded_bytes())));
        let r = root.clone();
        let scanned = tokio::task::spawn_blocking(move || -> Result<_, String> {
            // The build logs excluded entries, never their bytes.
            let mut walker = Walker::new(&r).count_excluded_bytes(false);
            if let Some(d) = dockerfile {
                walker = walker.dockerfile(d);
            }
            let pending = StatCache::load_in_background(&cache_file);
            let walked = walker.walk().map_err(|e| e.to_string())?;
            let mut cache = pending.wait();
            let hashes = hash_context(&r, &walked.entries, Some(&mut cache)).map_err(|e| e.to_string())?;
            if let Some(dir) = cache_file.parent()
                && std::fs::create_dir_all(dir).is_ok()
                && let Err(e) = cache.save(&cache_file)
            {
                tracing::warn!(error = %e, "cannot save the stat cache");
            }
            Ok((walked, hashes))
        })
        .await
        .map_err(|e| EngineError::Config(e.to_string()))?
        .map_err(|message| EngineError::Io { path: root.clone(), source: std::io::Error::other(message) })?;
        let (walked, hashes) = scanned;
        logs.append(vec![entry(
            LogLevel::Info,
            format!(
                "context {}: {} entries, {} bytes ({} excluded)",
                root.display(),
                walked.included.entries,
                walked.included.bytes,
                walked.excluded.entries
            ),
        )])
        .await;
        Ok((walked.entries, hashes))
    }

    async fn execute(
        &self,
        job: &Job,
        logs: &Logs,
        executor: Arc<dyn crate::executor::Executor>,
        request: ExecRequest,
        plan: &BuildPlan,
    ) -> Result<End, EngineError> {
        let permit = tokio::select! {
            p = self.inner.queue.clone().acquire_owned() => p.map_err(|e| EngineError::Config(e.to_string()))?,
            () = job.cancel.cancelled() => return Ok(End::Cancelled),
        };
        *job.slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(permit);
        if job.cancel.is_cancelled() {
            return Ok(End::Cancelled);
        }
        logs.update(BuildUpdate {
            status: Some(BuildStatus::Building),
            logs: vec![entry(LogLevel::Info, format!("building with the {} executor", executor.backend()))],
            ..Default::default()
        })
        .await?;
        let (sink, mut rx) = EventSink::channel();
        let pump_logs = logs.clone();
        let pump = tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![event_entry(first)];
                while batch.len() < 1000 {
                    match rx.try_recv() {
                        Ok(e) => batch.push(event_entry(e)),
                        Err(_) => break,
                    }
                }
                pump_logs.append(batch).await;
            }
        });
        // A cancel recorded by another process reaches this one through the store.
        let watcher = {
            let (store, tenant, id, token) =
                (self.inner.store.clone(), job.tenant.clone(), job.id.clone(), job.cancel.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    if let Ok(b) = store.get_build(&tenant, &id).await
                        && b.status == BuildStatus::Cancelled
                    {
                        token.cancel();
                        return;
                    }
                }
            })
        };
        let result = executor.execute(request, sink, job.cancel.clone()).await;
        watcher.abort();
        if let Err(e) = pump.await {
            tracing::warn!(error = %e, "log pump failed");
        }
        Ok(match result {
            Ok(a) => End::Ready {
                summary: summary_of(&a),
                note: format!("{} of {} steps cached", a.steps_cached, a.steps_total),
                artifact: Artifact { manifest_digest: a.manifest_digest, location: a.location },
            },
            Err(ExecError::Cancelled) => End::Cancelled,
            Err(ExecError::StepFailed { step, message }) => End::Failed(BuildReason {
                span: step_span(plan, &step),
                message: format!("step {step} failed: {message}"),
                step: Some(step),
            }),
            Err(e) => End::Failed(BuildReason::message(e.to_string())),
        })
    }
}
