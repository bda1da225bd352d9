//! The [`Engine`] facade: builds, build handles, the templates API and retention, over a
//! [`Store`] and the executors registered with [`EngineBuilder::executor`].
//!
//! A build is recorded (queued) before anything else happens, with its sanitised
//! [`BuildDefinition`]; then it is planned (diagnostics go to the reason and the log), its
//! secrets resolved (request values first, then the variables the template names), its context
//! walked and hashed (stat cache in `STATE/statcache/`), its images resolved by the executor, its
//! cache keys computed. Two builds in flight with the same final cache key run once: the second
//! waits and shares the first's result (a copy of its layout, so retention removes each build's
//! own; builds given an explicit output always run). A semaphore bounds how many execute at
//! once. Executor events are appended to the store log in batches; the status moves queued →
//! building → ready/failed/cancelled with a reason (message, failing step, its span); requested
//! tags are assigned once ready.
//!
//! Handles ([`BuildHandle`]) read everything from the store, so [`Engine::connect`] works from
//! another process sharing the store: log following and cancellation go through it (a running
//! build notices a cancel recorded elsewhere within a fraction of a second). One process per
//! state dir builds (it opens the store as primary); others use [`EngineBuilder::shared`].
//!
//! ```no_run
//! # async fn demo(executor: std::sync::Arc<dyn nullspace_engine::executor::Executor>) -> Result<(), nullspace_engine::EngineError> {
//! use nullspace_engine::{BuildOptions, Engine, default_build_logger};
//! use nullspace_plan::builder::Template;
//!
//! let engine = Engine::builder().state_dir("/tmp/nullspace").executor(executor).concurrency(2).build().await?;
//! let tenant = "local".parse()?;
//! let template = Template::from_image("oci:/images/busybox:busybox").run_cmd("echo hi");
//! let options = BuildOptions::default().tag("stable".parse()?).on_log(default_build_logger());
//! let build = engine.build(&tenant, &template, &"acme/hello".parse()?, options).await?;
//! println!("{} {:?}", build.build.status, build.build.artifact);
//! # Ok(()) }
//! ```

mod handle;
mod retention;
mod run;
mod types;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nullspace_plan::builder::{Backend as PlanBackend, Template as PlanTemplate};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::executor::Executor;
use crate::store::{
    Alias, BuildId, BuildQuery, DeletedTemplate, NewBuild, Page, Resolved, SqliteStore, Store, Tag, TagMove, Template,
    TemplateName, TemplateQuery, TemplateRef, TenantId, Visibility,
};

pub use handle::BuildHandle;
pub use retention::CollectStats;
pub use types::{
    BuildDefinition, BuildInfo, BuildOptions, EngineError, LogCallback, Promotability, RetryOptions, StatusReport,
    default_build_logger, format_entry,
};

use run::Job;
use types::store_backend;

/// The result an identical build shares: the leader's id, artifact and cache use.
type SharedOutcome = Option<(BuildId, crate::store::Artifact, crate::store::CacheSummary)>;

/// How long untagged artifacts are kept by default: seven days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Configures an [`Engine`].
#[derive(Default)]
pub struct EngineBuilder {
    state_dir: Option<PathBuf>,
    store: Option<Arc<dyn Store>>,
    executors: Vec<Arc<dyn Executor>>,
    concurrency: Option<usize>,
    retention: Option<Duration>,
    collect_every: Option<Duration>,
    shared: bool,
}

impl EngineBuilder {
    /// The state directory (store, stat cache, default image layouts). Required.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// The store (default: [`SqliteStore`] at `STATE/nullspace.db`, opened as primary: the
    /// process that runs builds, and recovers builds left in flight by a crashed one).
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Registers an executor for its backend (a later one for the same backend replaces it).
    pub fn executor(mut self, executor: Arc<dyn Executor>) -> Self {
        self.executors.retain(|e| e.backend() != executor.backend());
        self.executors.push(executor);
        self
    }

    /// Opens the default store beside the primary process instead ([`SqliteStore::open_shared`]):
    /// for reading, following logs, cancelling and template changes while another process
    /// builds. Such an engine refuses to start builds (a later primary would take its builds for
    /// interrupted ones).
    pub fn shared(mut self) -> Self {
        self.shared = true;
        self
    }

    /// How many builds execute at once (default 2, at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = Some(n.max(1));
        self
    }

    /// How long untagged ready artifacts are kept (default [`DEFAULT_RETENTION`]).
    pub fn retention(mut self, keep: Duration) -> Self {
        self.retention = Some(keep);
        self
    }

    /// Runs the retention collector in the background every `every`.
    pub fn collect_every(mut self, every: Duration) -> Self {
        self.collect_every = Some(every);
        self
    }

    /// Opens the store and makes the engine. Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// [`EngineError::Config`] without a state directory; store and filesystem errors.
    pub async fn build(self) -> Result<Engine, EngineError> {
        let state_dir = self.state_dir.ok_or_else(|| EngineError::Config("a state directory is required".into()))?;
        std::fs::create_dir_all(&state_dir).map_err(|source| EngineError::Io { path: state_dir.clone(), source })?;
        let store: Arc<dyn Store> = match self.store {
            Some(s) => s,
            None => {
                let path = state_dir.join("nullspace.db");
                if self.shared {
                    Arc::new(SqliteStore::open_shared(&path).await?)
                } else {
                    Arc::new(SqliteStore::open(&path).await?)
                }
            }
        };
        let engine = Engine {
            inner: Arc::new(Inner {
                store,
                executors: self.executors,
                state_dir,
                queue: Arc::new(Semaphore::new(self.concurrency.unwrap_or(2))),
                retention: self.retention.unwrap_or(DEFAULT_RETENTION),
                running: Mutex::new(HashMap::new()),
                inflight: Mutex::new(HashMap::new()),
                shutdown: CancellationToken::new(),
                shared: self.shared,
            }),
        };
        if let Some(every) = self.collect_every {
            engine.spawn_collector(every);
        }
        Ok(engine)
    }
}

struct Inner {
    store: Arc<dyn Store>,
    executors: Vec<Arc<dyn Executor>>,
    state_dir: PathBuf,
    queue: Arc<Semaphore>,
    retention: Duration,
    /// Cancellation tokens of this process's builds not yet terminal.
    running: Mutex<HashMap<BuildId, CancellationToken>>,
    /// Final cache key → the result of the build computing it.
    inflight: Mutex<HashMap<String, watch::Receiver<Option<SharedOutcome>>>>,
    /// Stops background tasks when the last engine clone goes.
    shutdown: CancellationToken,
    /// Opened beside a primary: no builds here.
    shared: bool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The build engine. Cheap to clone; all clones share the queue and the store.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use nullspace_engine::store::{BuildStatus, TemplateRef, Visibility};
/// use nullspace_engine::{BuildOptions, Engine};
/// use nullspace_plan::builder::Template;
///
/// let dir = tempfile::tempdir().unwrap();
/// // No executor registered: enough for the templates API and for builds that fail validation.
/// let engine = Engine::builder().state_dir(dir.path()).build().await?;
/// let tenant = "acme".parse()?;
/// engine.reserve_name(&tenant, &"acme/app".parse()?, Visibility::Private).await?;
///
/// let invalid = Template::from_image("Not A Reference").run_cmd("");
/// let build = engine.build(&tenant, &invalid, &"acme/app".parse()?, BuildOptions::default()).await?;
/// assert_eq!(build.status, BuildStatus::Failed);
/// assert!(build.reason.as_ref().unwrap().message.contains("EmptyRun"));
///
/// let history = engine.list_builds(&tenant, &"acme/app".parse::<TemplateRef>()?, &Default::default()).await?;
/// assert_eq!(history.items[0].id, build.id);
/// # Ok::<(), nullspace_engine::EngineError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("state_dir", &self.inner.state_dir).finish_non_exhaustive()
    }
}

impl Engine {
    /// A builder.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.inner.state_dir
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    fn executor_for(&self, backend: PlanBackend) -> Result<Arc<dyn Executor>, EngineError> {
        self.inner
            .executors
            .iter()
            .find(|e| e.backend() == backend)
            .cloned()
            .ok_or(EngineError::NoExecutor(store_backend(backend)))
    }

    /// Builds `template` as `name` and waits for the end (ready, failed or cancelled: a failed
    /// build is `Ok` with its reason, not an error).
    ///
    /// # Errors
    /// Store errors (names, tenancy) before the build is recorded.
    pub async fn build(
        &self,
        tenant: &TenantId,
        template: &PlanTemplate,
        name: &TemplateName,
        options: BuildOptions,
    ) -> Result<BuildInfo, EngineError> {
        let handle = self.build_in_background(tenant, template, name, options).await?;
        handle.wait_until_terminal(None, None).await
    }

    /// Records the build (queued) and returns its handle at once; the build goes on in the
    /// background of this engine.
    ///
    /// # Errors
    /// Store errors (names, tenancy).
    pub async fn build_in_background(
        &self,
        tenant: &TenantId,
        template: &PlanTemplate,
        name: &TemplateName,
        options: BuildOptions,
    ) -> Result<BuildHandle, EngineError> {
        let base_dir = match options.base_dir {
            Some(d) => d,
            None => std::env::current_dir().map_err(|source| EngineError::Io { path: ".".into(), source })?,
        };
        let base_dir = if base_dir.is_absolute() {
            base_dir
        } else {
            std::env::current_dir().map_err(|source| EngineError::Io { path: ".".into(), source })?.join(base_dir)
        };
        let mut sanitised = template.clone();
        run::absolutise(&mut sanitised, &base_dir);
        let backend = options.backend.or(template.backend).unwrap_or(if template.is_dockerfile() {
            PlanBackend::Buildkit
        } else {
            PlanBackend::Native
        });
        let definition = BuildDefinition {
            template: sanitised,
            backend,
            base_dir,
            build_args: options.build_args,
            no_cache: options.no_cache,
            output: options.output,
        };
        let job = JobRequest {
            tenant: tenant.clone(),
            name: name.clone(),
            definition,
            tags: options.tags,
            secrets: options.build_secrets,
            credentials: template.credentials().cloned(),
            on_log: options.on_log,
            retry_of: None,
        };
        self.submit(job).await
    }

    async fn submit(&self, req: JobRequest) -> Result<BuildHandle, EngineError> {
        if self.inner.shared {
            return Err(EngineError::Config(
                "this engine shares the store with the process that builds; start builds there".into(),
            ));
        }
        let definition = serde_json::to_string(&req.definition)
            .map_err(|e| EngineError::Config(format!("cannot serialise the build definition: {e}")))?;
        let build = self
            .inner
            .store
            .create_build(
                &req.tenant,
                NewBuild {
                    template: req.name,
                    backend: store_backend(req.definition.backend),
                    definition,
                    plan_digest: None,
                    requested_tags: req.tags,
                    retry_of: req.retry_of,
                },
            )
            .await?;
        let cancel = self.inner.shutdown.child_token();
        self.inner.running.lock().unwrap_or_else(|p| p.into_inner()).insert(build.id.clone(), cancel.clone());
        let job = Job {
            tenant: req.tenant.clone(),
            id: build.id.clone(),
            definition: req.definition,
            secrets: req.secrets,
            credentials: req.credentials,
            on_log: req.on_log,
            cancel,
            slot: Mutex::new(None),
        };
        tokio::spawn(self.clone().run_job(job));
        Ok(BuildHandle::new(self.clone(), req.tenant, build.id))
    }

    /// A handle on an existing build (made by this process or another one on the same store).
    ///
    /// # Errors
    /// [`crate::store::StoreError::NotFound`] for an unknown build or another tenant's private one.
    pub async fn connect(&self, tenant: &TenantId, build: &BuildId) -> Result<BuildHandle, EngineError> {
        self.inner.store.get_build(tenant, build).await?;
        Ok(BuildHandle::new(self.clone(), tenant.clone(), build.clone()))
    }

    // Templates API: each call delegates to the store with the caller's tenant.

    /// Reserves a template name.
    ///
    /// # Errors
    /// Store errors (taken name, another tenant's namespace).
    pub async fn reserve_name(
        &self,
        tenant: &TenantId,
        name: &TemplateName,
        visibility: Visibility,
    ) -> Result<Template, EngineError> {
        Ok(self.inner.store.reserve_name(tenant, name, visibility).await?)
    }

    /// Resolves `name`, `name:tag`, an alias or a build id.
    ///
    /// # Errors
    /// [`crate::store::StoreError::NotFound`] (also for another tenant's private template).
    pub async fn get(&self, tenant: &TenantId, reference: &TemplateRef) -> Result<Resolved, EngineError> {
        Ok(self.inner.store.get_template(tenant, reference).await?)
    }

    /// Templates the tenant can see.
    ///
    /// # Errors
    /// Store errors.
    pub async fn list(&self, tenant: &TenantId, query: &TemplateQuery) -> Result<Page<Template>, EngineError> {
        Ok(self.inner.store.list_templates(tenant, query).await?)
    }

    /// Renames a template (the old name stays as an alias).
    ///
    /// # Errors
    /// Store errors.
    pub async fn rename(
        &self,
        tenant: &TenantId,
        reference: &TemplateRef,
        new_name: &TemplateName,
    ) -> Result<Template, EngineError> {
        Ok(self.inner.store.rename_template(tenant, reference, new_name).await?)
    }

    /// Points `tags` at the build `target` refers to (atomic moves).
    ///
    /// # Errors
    /// Store errors ([`crate::store::StoreError::NotPromotable`] when the build is not ready and available).
    pub async fn assign_tags(
        &self,
        tenant: &TenantId,
        target: &TemplateRef,
        tags: &[Tag],
    ) -> Result<Vec<TagMove>, EngineError> {
        Ok(self.inner.store.assign_tags(tenant, target, tags).await?)
    }

    /// Removes a tag; returns the build it pointed at.
    ///
    /// # Errors
    /// Store errors.
    pub async fn remove_tag(
        &self,
        tenant: &TenantId,
        reference: &TemplateRef,
        tag: &Tag,
    ) -> Result<BuildId, EngineError> {
        Ok(self.inner.store.remove_tag(tenant, reference, tag).await?)
    }

    /// A template's aliases.
    ///
    /// # Errors
    /// Store errors.
    pub async fn list_aliases(&self, tenant: &TenantId, reference: &TemplateRef) -> Result<Vec<Alias>, EngineError> {
        Ok(self.inner.store.list_aliases(tenant, reference).await?)
    }

    /// Removes an alias.
    ///
    /// # Errors
    /// Store errors.
    pub async fn remove_alias(&self, tenant: &TenantId, alias: &TemplateName) -> Result<(), EngineError> {
        Ok(self.inner.store.remove_alias(tenant, alias).await?)
    }

    /// Makes a template private or public.
    ///
    /// # Errors
    /// Store errors.
    pub async fn set_visibility(
        &self,
        tenant: &TenantId,
        reference: &TemplateRef,
        visibility: Visibility,
    ) -> Result<Template, EngineError> {
        Ok(self.inner.store.set_visibility(tenant, reference, visibility).await?)
    }

    /// Deletes a template (refused while tagged or building, unless `force`), removing the image
    /// layouts of its available artifacts that live under the state directory.
    ///
    /// # Errors
    /// Store errors ([`crate::store::StoreError::InUse`]).
    pub async fn delete(
        &self,
        tenant: &TenantId,
        reference: &TemplateRef,
        force: bool,
    ) -> Result<DeletedTemplate, EngineError> {
        let deleted = self.inner.store.delete_template(tenant, reference, force).await?;
        for (_, artifact) in &deleted.artifacts {
            self.remove_artifact_files(artifact).await;
        }
        Ok(deleted)
    }

    /// Builds of a template, newest first (failed and untagged included), with promotability.
    ///
    /// # Errors
    /// Store errors.
    pub async fn list_builds(
        &self,
        tenant: &TenantId,
        reference: &TemplateRef,
        query: &BuildQuery,
    ) -> Result<Page<BuildInfo>, EngineError> {
        let page = self.inner.store.list_builds(tenant, reference, query).await?;
        Ok(Page { items: page.items.into_iter().map(BuildInfo::from).collect(), next_cursor: page.next_cursor })
    }
}

/// A build to record and run.
struct JobRequest {
    tenant: TenantId,
    name: TemplateName,
    definition: BuildDefinition,
    tags: Vec<Tag>,
    secrets: crate::executor::Secrets,
    credentials: Option<nullspace_plan::builder::Credentials>,
    on_log: Option<LogCallback>,
    retry_of: Option<BuildId>,
}
