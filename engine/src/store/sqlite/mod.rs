//! The embedded store: one SQLite file in WAL mode.
//!
//! Durability: `synchronous=FULL`. In WAL mode, `NORMAL` already survives the process being killed
//! (a commit has been written to the WAL through the OS before it returns), but it does not fsync
//! the WAL on commit, so an OS crash or power loss can take back the last transactions, that is
//! entries we already acknowledged. `FULL` fsyncs the WAL at every commit, so whatever a call
//! returned is on disk; batching log lines into one transaction keeps that to one fsync a batch.
//!
//! Concurrency: SQLite allows one writer and many readers. Writes go through one connection
//! behind a mutex (`BEGIN IMMEDIATE`, so a second process waits on the busy timeout rather than
//! failing mid-transaction); reads use a small pool of read-only connections, each call in one
//! read transaction, so a status and its log page come from the same snapshot. Every call runs
//! on tokio's blocking pool, never on the async workers.
//!
//! Ownership: [`SqliteStore::open`] takes an exclusive lock on `<db>.lock` (released by the OS
//! when the process dies) and, holding it, marks builds left in flight as interrupted. Other
//! processes (a CLI following logs) use [`SqliteStore::open_shared`], which neither locks nor
//! recovers, so it cannot fail a running engine's builds.

mod ops;
mod schema;

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::error::SqlContext;
use super::*;

/// Idle read connections kept for reuse.
const MAX_IDLE_READERS: usize = 4;
/// How long a write waits for another process's write transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The SQLite implementation of [`Store`]. Cheap to clone; clones share connections.
///
/// Its async methods run their SQLite work with `tokio::task::spawn_blocking`, so they must be
/// awaited inside a tokio runtime (calling one elsewhere panics, as tokio does).
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    recovered: Vec<BuildId>,
    /// Held for the store's life; the OS drops the lock with the process.
    _lock: Option<File>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field("primary", &self.inner._lock.is_some())
            .finish()
    }
}

fn connect(path: &Path, read_only: bool) -> Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).ctx("opening the database")?;
    conn.busy_timeout(BUSY_TIMEOUT).ctx("setting the busy timeout")?;
    if !read_only {
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).ctx("switching to WAL")?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt { table: "pragma", column: "journal_mode", value: mode });
        }
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -8192;")
        .ctx("configuring the connection")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn lock_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

fn take_lock(path: &Path) -> Result<File> {
    let lock = lock_path(path);
    let io = |source| StoreError::Io { path: lock.clone(), source };
    let file = File::options().create(true).truncate(false).write(true).open(&lock).map_err(io)?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(StoreError::Locked { path: lock }),
        Err(e) => Err(io(e.into())),
    }
}

fn worker_failed(e: tokio::task::JoinError) -> StoreError {
    StoreError::Worker(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` as its primary user: takes the lock file,
    /// migrates the schema, and marks builds left queued or building as failed ("interrupted")
    /// with a durable log entry ([`recovered`](Self::recovered) lists them).
    ///
    /// Fails with [`StoreError::Locked`] while another live process has it open as primary.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_owned();
        tokio::task::spawn_blocking(move || Self::open_blocking(path, true)).await.map_err(worker_failed)?
    }

    /// Opens the store beside a primary (another process's engine): migrates if needed but takes
    /// no lock and recovers nothing.
    pub async fn open_shared(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_owned();
        tokio::task::spawn_blocking(move || Self::open_blocking(path, false)).await.map_err(worker_failed)?
    }

    fn open_blocking(path: PathBuf, primary: bool) -> Result<Self> {
        let lock = primary.then(|| take_lock(&path)).transpose()?;
        let mut writer = connect(&path, false)?;
        schema::migrate(&mut writer, &path)?;
        let recovered = if primary {
            let tx = writer.transaction_with_behavior(TransactionBehavior::Immediate).ctx("starting recovery")?;
            let ids = ops::recover_interrupted(&tx)?;
            tx.commit().ctx("committing recovery")?;
            ids
        } else {
            Vec::new()
        };
        tracing::debug!(path = %path.display(), primary, recovered = recovered.len(), "store opened");
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
                recovered,
                _lock: lock,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Builds that [`open`](Self::open) found in flight and marked failed.
    pub fn recovered(&self) -> &[BuildId] {
        &self.inner.recovered
    }

    /// Runs several writes in one transaction (one fsync): all of them commit, or none if `f`
    /// returns an error.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use nullspace_engine::store::*;
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = SqliteStore::open(dir.path().join("s.db")).await?;
    /// let t: TenantId = "t1".parse()?;
    /// let ids = store
    ///     .batch(move |b| {
    ///         let new = NewBuild {
    ///             template: "t1/app".parse()?,
    ///             backend: Backend::Native,
    ///             definition: "{}".into(),
    ///             plan_digest: None,
    ///             requested_tags: vec![],
    ///             retry_of: None,
    ///         };
    ///         let a = b.create_build(&t, &new)?;
    ///         let c = b.create_build(&t, &new)?;
    ///         b.append_logs(&t, &a.id, &[NewLogEntry::new(LogLevel::Info, "hi")])?;
    ///         Ok(vec![a.id, c.id])
    ///     })
    ///     .await?;
    /// assert_eq!(ids.len(), 2);
    /// # Ok::<(), StoreError>(())
    /// # }).unwrap();
    /// ```
    pub async fn batch<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut WriteBatch<'_>) -> Result<R> + Send + 'static,
    {
        self.write(move |conn| f(&mut WriteBatch { conn })).await
    }

    async fn write<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            // A panic inside a transaction dropped it (rolled back), so the connection is sound.
            let mut conn = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
            let tx =
                conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("starting a write transaction")?;
            let out = f(&tx)?;
            tx.commit().ctx("committing")?;
            Ok(out)
        })
        .await
        .map_err(worker_failed)?
    }

    async fn read<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let idle = inner.readers.lock().unwrap_or_else(PoisonError::into_inner).pop();
            let mut conn = match idle {
                Some(c) => c,
                None => connect(&inner.path, true)?,
            };
            let out = (|| {
                let tx = conn.transaction().ctx("starting a read transaction")?;
                let out = f(&tx)?;
                tx.commit().ctx("ending a read transaction")?;
                Ok(out)
            })();
            let mut idle = inner.readers.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
            out
        })
        .await
        .map_err(worker_failed)?
    }
}

/// Writes that [`SqliteStore::batch`] runs in one transaction. Same meaning and checks as the
/// [`Store`] methods of the same names.
pub struct WriteBatch<'a> {
    conn: &'a Connection,
}

impl WriteBatch<'_> {
    /// See [`Store::reserve_name`].
    pub fn reserve_name(&mut self, tenant: &TenantId, name: &TemplateName, visibility: Visibility) -> Result<Template> {
        ops::reserve_name(self.conn, tenant, name, visibility)
    }

    /// See [`Store::create_build`].
    pub fn create_build(&mut self, tenant: &TenantId, build: &NewBuild) -> Result<Build> {
        ops::create_build(self.conn, tenant, build)
    }

    /// See [`Store::update_build`].
    pub fn update_build(&mut self, tenant: &TenantId, id: &BuildId, update: &BuildUpdate) -> Result<BuildUpdated> {
        ops::update_build(self.conn, tenant, id, update)
    }

    /// See [`Store::append_logs`].
    pub fn append_logs(&mut self, tenant: &TenantId, id: &BuildId, entries: &[NewLogEntry]) -> Result<Range<u64>> {
        ops::append_logs(self.conn, tenant, id, entries)
    }

    /// See [`Store::assign_tags`].
    pub fn assign_tags(&mut self, tenant: &TenantId, target: &TemplateRef, tags: &[Tag]) -> Result<Vec<TagMove>> {
        ops::assign_tags(self.conn, tenant, target, tags)
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn reserve_name(&self, tenant: &TenantId, name: &TemplateName, visibility: Visibility) -> Result<Template> {
        let (tenant, name) = (tenant.clone(), name.clone());
        self.write(move |c| ops::reserve_name(c, &tenant, &name, visibility)).await
    }

    async fn get_template(&self, tenant: &TenantId, reference: &TemplateRef) -> Result<Resolved> {
        let (tenant, reference) = (tenant.clone(), reference.clone());
        self.read(move |c| ops::get_template(c, &tenant, &reference)).await
    }

    async fn list_templates(&self, tenant: &TenantId, query: &TemplateQuery) -> Result<Page<Template>> {
        let (tenant, query) = (tenant.clone(), query.clone());
        self.read(move |c| ops::list_templates(c, &tenant, &query)).await
    }

    async fn rename_template(
        &self,
        tenant: &TenantId,
        reference: &TemplateRef,
        new_name: &TemplateName,
    ) -> Result<Template> {
        let (tenant, reference, new_name) = (tenant.clone(), reference.clone(), new_name.clone());
        self.write(move |c| ops::rename_template(c, &tenant, &reference, &new_name)).await
    }

    async fn list_aliases(&self, tenant: &TenantId, reference: &TemplateRef) -> Result<Vec<Alias>> {
        let (tenant, reference) = (tenant.clone(), reference.clone());
        self.read(move |c| ops::list_aliases(c, &tenant, &reference)).await
    }

    async fn remove_alias(&self, tenant: &TenantId, alias: &TemplateName) -> Result<()> {
        let (tenant, alias) = (tenant.clone(), alias.clone());
        self.write(move |c| ops::remove_alias(c, &tenant, &alias)).await
    }

    async fn set_visibility(
        &self,
        tenant: &TenantId,
        reference: &TemplateRef,
        visibility: Visibility,
    ) -> Result<Template> {
        let (tenant, reference) = (tenant.clone(), reference.clone());
        self.write(move |c| ops::set_visibility(c, &tenant, &reference, visibility)).await
    }

    async fn assign_tags(&self, tenant: &TenantId, target: &TemplateRef, tags: &[Tag]) -> Result<Vec<TagMove>> {
        let (tenant, target, tags) = (tenant.clone(), target.clone(), tags.to_vec());
        self.write(move |c| ops::assign_tags(c, &tenant, &target, &tags)).await
    }

    async fn remove_tag(&self, tenant: &TenantId, reference: &TemplateRef, tag: &Tag) -> Result<BuildId> {
        let (tenant, reference, tag) = (tenant.clone(), reference.clone(), tag.clone());
        self.write(move |c| ops::remove_tag(c, &tenant, &reference, &tag)).await
    }

    async fn delete_template(
        &self,
        tenant: &TenantId,
        reference: &TemplateRef,
        force: bool,
    ) -> Result<DeletedTemplate> {
        let (tenant, reference) = (tenant.clone(), reference.clone());
        self.write(move |c| ops::delete_template(c, &tenant, &reference, force)).await
    }

    async fn create_build(&self, tenant: &TenantId, build: NewBuild) -> Result<Build> {
        let tenant = tenant.clone();
        self.write(move |c| ops::create_build(c, &tenant, &build)).await
    }

    async fn get_build(&self, tenant: &TenantId, id: &BuildId) -> Result<Build> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.read(move |c| ops::get_build(c, &tenant, &id)).await
    }

    async fn update_build(&self, tenant: &TenantId, id: &BuildId, update: BuildUpdate) -> Result<BuildUpdated> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.write(move |c| ops::update_build(c, &tenant, &id, &update)).await
    }

    async fn finish_ready(
        &self,
        tenant: &TenantId,
        id: &BuildId,
        update: BuildUpdate,
        tags: &[Tag],
    ) -> Result<(BuildUpdated, Vec<TagMove>)> {
        let (tenant, id, tags) = (tenant.clone(), id.clone(), tags.to_vec());
        self.write(move |c| {
            let updated = ops::update_build(c, &tenant, &id, &update)?;
            let moves = if tags.is_empty() {
                Vec::new()
            } else {
                ops::assign_tags(c, &tenant, &TemplateRef::Build(id), &tags)?
            };
            Ok((updated, moves))
        })
        .await
    }

    async fn list_builds(&self, tenant: &TenantId, reference: &TemplateRef, query: &BuildQuery) -> Result<Page<Build>> {
        let (tenant, reference, query) = (tenant.clone(), reference.clone(), query.clone());
        self.read(move |c| ops::list_builds(c, &tenant, &reference, &query)).await
    }

    async fn get_status(&self, tenant: &TenantId, id: &BuildId, offset: u64, limit: u32) -> Result<BuildStatusView> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.read(move |c| ops::get_status(c, &tenant, &id, offset, limit)).await
    }

    async fn append_logs(&self, tenant: &TenantId, id: &BuildId, entries: Vec<NewLogEntry>) -> Result<Range<u64>> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.write(move |c| ops::append_logs(c, &tenant, &id, &entries)).await
    }

    async fn read_logs(&self, tenant: &TenantId, id: &BuildId, offset: u64, limit: u32) -> Result<LogPage> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.read(move |c| ops::read_logs(c, &tenant, &id, offset, limit)).await
    }

    async fn recover_interrupted(&self) -> Result<Vec<BuildId>> {
        self.write(ops::recover_interrupted).await
    }

    async fn list_expired_artifacts(&self, now: Timestamp, limit: u32) -> Result<Vec<ExpiredArtifact>> {
        self.read(move |c| ops::list_expired_artifacts(c, now, limit)).await
    }

    async fn mark_artifacts(&self, ids: &[BuildId], availability: ArtifactAvailability) -> Result<Vec<BuildId>> {
        let ids = ids.to_vec();
        self.write(move |c| ops::mark_artifacts(c, &ids, availability)).await
    }
}
