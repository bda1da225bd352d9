//! The durable store: templates (names, aliases, tags, visibility), builds and their logs.
//!
//! Callers hold an `Arc<dyn Store>`; [`SqliteStore`] is the embedded implementation (one SQLite
//! file in WAL mode). Another backend (PostgreSQL) implements the same trait.
//!
//! Rules every implementation keeps:
//! - Every call names the calling tenant. Another tenant's private template (and its builds,
//!   tags, aliases and logs) is reported as not found, exactly as if it did not exist; a public
//!   one can be read, and changing it fails with [`StoreError::PermissionDenied`].
//! - A namespace belongs to the tenant that first creates a name in it; creating a name in
//!   another tenant's namespace is denied whether or not the name exists, so names do not leak.
//! - A call returns only after its transaction is durably committed: log offsets returned by
//!   [`Store::append_logs`] are acknowledged entries that survive a crash or power loss.
//! - Build statuses move forward only ([`BuildStatus::can_become`]); terminal builds keep their
//!   outcome.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use nullspace_engine::store::*;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("store.db")).await?);
//! let acme: TenantId = "acme".parse()?;
//!
//! let build = store
//!     .create_build(&acme, NewBuild {
//!         template: "acme/python".parse()?,
//!         backend: Backend::Native,
//!         definition: r#"{"from":"python:3.12"}"#.into(),
//!         plan_digest: None,
//!         requested_tags: vec!["stable".parse()?],
//!         retry_of: None,
//!     })
//!     .await?;
//! let offsets = store
//!     .append_logs(&acme, &build.id, vec![NewLogEntry::new(LogLevel::Info, "\x1b[32mstep 1\x1b[0m")])
//!     .await?;
//! assert_eq!(offsets, 0..1);
//! let status = store.get_status(&acme, &build.id, 0, 100).await?;
//! assert_eq!(status.build.status, BuildStatus::Queued);
//! assert_eq!(status.logs.entries[0].message, "step 1");
//! # Ok::<(), StoreError>(())
//! # }).unwrap();
//! ```

mod ansi;
mod error;
mod sqlite;
mod types;

use std::ops::Range;

pub use ansi::strip_ansi;
pub use error::{ObjectKind, StoreError};
pub use sqlite::{SqliteStore, WriteBatch};
pub use types::*;

/// Result of a store call.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Durable metadata and logs of templates and builds. Object-safe: use it as `Arc<dyn Store>`.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates an empty template under `name`, claiming its namespace for `tenant` if unclaimed.
    async fn reserve_name(&self, tenant: &TenantId, name: &TemplateName, visibility: Visibility) -> Result<Template>;

    /// Resolves a name, alias, `name:tag` or build id to its template (with aliases and tags) and,
    /// for the last two, the build.
    async fn get_template(&self, tenant: &TenantId, reference: &TemplateRef) -> Result<Resolved>;

    /// Templates the tenant can see, ordered by name.
    async fn list_templates(&self, tenant: &TenantId, query: &TemplateQuery) -> Result<Page<Template>>;

    /// Gives a template a new name; the old one stays as an alias, builds and tags follow.
    /// Renaming to one of the template's own aliases swaps the two.
    async fn rename_template(
        &self,
        tenant: &TenantId,
        reference: &TemplateRef,
        new_name: &TemplateName,
    ) -> Result<Template>;

    /// A template's aliases, ordered by name.
    async fn list_aliases(&self, tenant: &TenantId, reference: &TemplateRef) -> Result<Vec<Alias>>;

    /// Removes an alias (not the current name).
    async fn remove_alias(&self, tenant: &TenantId, alias: &TemplateName) -> Result<()>;

    /// Makes a template private or public.
    async fn set_visibility(
        &self,
        tenant: &TenantId,
        reference: &TemplateRef,
        visibility: Visibility,
    ) -> Result<Template>;

    /// Points `tags` of the build's template at the build `target` (a `name:tag` or build id)
    /// in one transaction, moving tags that pointed elsewhere. The build must be ready with its
    /// artifact available.
    async fn assign_tags(&self, tenant: &TenantId, target: &TemplateRef, tags: &[Tag]) -> Result<Vec<TagMove>>;

    /// Removes a tag of the referenced template; returns the build it pointed at.
    async fn remove_tag(&self, tenant: &TenantId, reference: &TemplateRef, tag: &Tag) -> Result<BuildId>;

    /// Deletes a template with its names, tags, builds and logs. Refused with
    /// [`StoreError::InUse`] while it has tags or builds in flight, unless `force`.
    async fn delete_template(&self, tenant: &TenantId, reference: &TemplateRef, force: bool)
    -> Result<DeletedTemplate>;

    /// Records a queued build, creating its template (private) when the name is free.
    async fn create_build(&self, tenant: &TenantId, build: NewBuild) -> Result<Build>;

    /// One build.
    async fn get_build(&self, tenant: &TenantId, id: &BuildId) -> Result<Build>;

    /// Changes a build and appends log entries, in one transaction.
    async fn update_build(&self, tenant: &TenantId, id: &BuildId, update: BuildUpdate) -> Result<BuildUpdated>;

    /// Applies `update` (which makes the build ready) and points `tags` at the build, in one
    /// transaction, so nobody sees the build ready without the tags it asked for. A tagging error
    /// rolls back the whole change.
    async fn finish_ready(
        &self,
        tenant: &TenantId,
        id: &BuildId,
        update: BuildUpdate,
        tags: &[Tag],
    ) -> Result<(BuildUpdated, Vec<TagMove>)>;

    /// Builds of the referenced template, newest first, including failed and untagged ones.
    async fn list_builds(&self, tenant: &TenantId, reference: &TemplateRef, query: &BuildQuery) -> Result<Page<Build>>;

    /// A build and up to `limit` log entries from `offset`, read in one snapshot.
    async fn get_status(&self, tenant: &TenantId, id: &BuildId, offset: u64, limit: u32) -> Result<BuildStatusView>;

    /// Appends entries (ANSI stripped) in one transaction and returns their offsets once committed.
    async fn append_logs(&self, tenant: &TenantId, id: &BuildId, entries: Vec<NewLogEntry>) -> Result<Range<u64>>;

    /// Up to `limit` entries from `offset` (0 means 1,000; at most 10,000).
    async fn read_logs(&self, tenant: &TenantId, id: &BuildId, offset: u64, limit: u32) -> Result<LogPage>;

    /// Marks every queued or building build as failed ("interrupted") with a durable log entry.
    /// Run once when the engine starts, before any build is scheduled.
    async fn recover_interrupted(&self) -> Result<Vec<BuildId>>;

    /// Ready, untagged builds whose retention ended by `now` and whose artifact is available or
    /// expired (not yet deleted), oldest expiry first. For the collector; not tenant-scoped.
    async fn list_expired_artifacts(&self, now: Timestamp, limit: u32) -> Result<Vec<ExpiredArtifact>>;

    /// Sets the artifacts of these builds to expired or deleted (forward only; skipping builds
    /// that were tagged meanwhile or are not ready); returns the builds changed.
    async fn mark_artifacts(&self, ids: &[BuildId], availability: ArtifactAvailability) -> Result<Vec<BuildId>>;
}
