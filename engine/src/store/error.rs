//! Typed errors of the store.

use std::path::PathBuf;

/// What kind of stored object an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// A template, reached by name, alias or build id.
    Template,
    /// A name or alias of a template.
    Name,
    /// A namespace (the part of a name before `/`).
    Namespace,
    /// A tag of a template.
    Tag,
    /// A build.
    Build,
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ObjectKind::Template => "template",
            ObjectKind::Name => "name",
            ObjectKind::Namespace => "namespace",
            ObjectKind::Tag => "tag",
            ObjectKind::Build => "build",
        })
    }
}

/// Everything that can go wrong in a [`Store`](super::Store) call.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist, or belongs privately to another tenant (the two are
    /// deliberately indistinguishable so that names do not leak across tenants).
    #[error("{kind} `{key}` not found")]
    NotFound {
        /// What was looked up.
        kind: ObjectKind,
        /// The key as the caller gave it.
        key: String,
    },
    /// The object is visible to the caller (public) but owned by another tenant, or the
    /// namespace it would be created in belongs to another tenant.
    #[error("permission denied on {kind} `{key}`: owned by another tenant")]
    PermissionDenied {
        /// What the caller tried to change.
        kind: ObjectKind,
        /// The key as the caller gave it.
        key: String,
    },
    /// A name, alias or template already exists.
    #[error("{kind} `{key}` already exists")]
    AlreadyExists {
        /// What would have been created.
        kind: ObjectKind,
        /// The conflicting key.
        key: String,
    },
    /// A name, tag, tenant or reference does not follow the grammar.
    #[error("invalid {field} `{input}`: {reason}")]
    Invalid {
        /// Which field or argument is at fault.
        field: &'static str,
        /// The offending input.
        input: String,
        /// Why it is rejected.
        reason: String,
    },
    /// A build status change that the state machine does not allow (e.g. leaving a terminal state).
    #[error("build {build}: cannot go from {from} to {to}")]
    InvalidTransition {
        /// The build.
        build: String,
        /// Its current status.
        from: super::BuildStatus,
        /// The refused target status.
        to: super::BuildStatus,
    },
    /// The build already reached a terminal status; only its logs and retention may change.
    #[error("build {build} already finished ({status}); its outcome cannot change")]
    Finished {
        /// The build.
        build: String,
        /// Its terminal status.
        status: super::BuildStatus,
    },
    /// A template cannot be deleted without `force` because something still uses it.
    #[error(
        "template `{template}` is in use ({} tag(s): {}; {builds_in_flight} build(s) in flight); pass force to delete anyway",
        tags.len(),
        tags.join(", ")
    )]
    InUse {
        /// The template's name.
        template: String,
        /// Its tags.
        tags: Vec<String>,
        /// How many of its builds are queued or building.
        builds_in_flight: u64,
    },
    /// A tag cannot point at this build.
    #[error("build {build} cannot be tagged: {reason}")]
    NotPromotable {
        /// The build.
        build: String,
        /// Why not (not ready, artifact expired, ...).
        reason: String,
    },
    /// Another process already opened this store as its primary (see `SqliteStore::open`).
    #[error("store {path} is already opened by another process (lock file held)")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The database was written by a newer version of this program.
    #[error("store {path} has schema version {found}, this program knows up to {supported}")]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// The version found in the file.
        found: i64,
        /// The newest version this program can migrate to.
        supported: i64,
    },
    /// A value read back from the database does not parse; the file was edited or is corrupt.
    #[error("corrupt value in {table}.{column}: `{value}`")]
    Corrupt {
        /// Table.
        table: &'static str,
        /// Column.
        column: &'static str,
        /// What was found.
        value: String,
    },
    /// SQLite reported an error.
    #[error("sqlite error while {context}: {source}")]
    Sqlite {
        /// What the store was doing.
        context: &'static str,
        /// The driver's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The blocking worker running a store call panicked or was cancelled.
    #[error("store worker failed: {0}")]
    Worker(String),
}

impl StoreError {
    pub(crate) fn not_found(kind: ObjectKind, key: impl std::fmt::Display) -> Self {
        StoreError::NotFound { kind, key: key.to_string() }
    }

    pub(crate) fn denied(kind: ObjectKind, key: impl std::fmt::Display) -> Self {
        StoreError::PermissionDenied { kind, key: key.to_string() }
    }

    pub(crate) fn exists(kind: ObjectKind, key: impl std::fmt::Display) -> Self {
        StoreError::AlreadyExists { kind, key: key.to_string() }
    }
}

/// Attaches a description of what the store was doing to a driver error.
pub(crate) trait SqlContext<T> {
    fn ctx(self, context: &'static str) -> Result<T, StoreError>;
}

impl<T> SqlContext<T> for Result<T, rusqlite::Error> {
    fn ctx(self, context: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Sqlite { context, source })
    }
}
