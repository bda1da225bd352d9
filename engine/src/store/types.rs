//! The values the store takes and returns: identifiers, names and references, records, queries.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::StoreError;

/// Largest page a list call returns, whatever the caller asks for.
pub const MAX_PAGE: u32 = 1000;

fn invalid(field: &'static str, input: &str, reason: impl Into<String>) -> StoreError {
    StoreError::Invalid { field, input: input.to_owned(), reason: reason.into() }
}

/// Milliseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Timestamp(ms)
    }

    /// This instant plus `d` (saturating).
    pub fn plus(self, d: std::time::Duration) -> Self {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }
}

/// A process-wide monotonic ULID source, so that ids made in one process sort in creation order
/// even within one millisecond.
fn next_ulid() -> ulid::Ulid {
    static GEN: Mutex<ulid::Generator> = Mutex::new(ulid::Generator::new());
    let mut g = GEN.lock().unwrap_or_else(|p| p.into_inner());
    match g.generate() {
        Ok(u) => u,
        // 2^80 ids in one millisecond: fall back to a fresh random id.
        Err(_) => ulid::Ulid::generate(),
    }
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A new id, sortable by creation time (prefix + ULID).
            pub fn generate() -> Self {
                $name(format!("{}{}", $prefix, next_ulid()))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = StoreError;
            fn from_str(s: &str) -> Result<Self, StoreError> {
                let rest = s
                    .strip_prefix($prefix)
                    .ok_or_else(|| invalid($field, s, concat!("must start with `", $prefix, "`")))?;
                ulid::Ulid::from_string(rest)
                    .map_err(|e| invalid($field, s, format!("not a ULID: {e}")))?;
                Ok($name(s.to_owned()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = StoreError;
            fn try_from(s: String) -> Result<Self, StoreError> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(
    /// A build's id: `bld_` followed by a ULID.
    BuildId,
    "bld_",
    "build id"
);
prefixed_id!(
    /// A template's id: `tpl_` followed by a ULID. Stays the same across renames.
    TemplateId,
    "tpl_",
    "template id"
);

/// The tenant on whose behalf a call is made: 1 to 128 printable ASCII characters, no spaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    /// The tenant as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TenantId {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        if s.is_empty() || s.len() > 128 {
            return Err(invalid("tenant", s, "must be 1 to 128 characters"));
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid("tenant", s, "only printable ASCII without spaces"));
        }
        Ok(TenantId(s.to_owned()))
    }
}

impl TryFrom<String> for TenantId {
    type Error = StoreError;
    fn try_from(s: String) -> Result<Self, StoreError> {
        s.parse()
    }
}

impl From<TenantId> for String {
    fn from(t: TenantId) -> String {
        t.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks one part of a name: lowercase ASCII letters and digits, then also `.`, `_`, `-`.
fn check_name_part(field: &'static str, whole: &str, part: &str) -> Result<(), StoreError> {
    if part.is_empty() || part.len() > 63 {
        return Err(invalid(field, whole, "each part must be 1 to 63 characters"));
    }
    let mut bytes = part.bytes();
    if !bytes.next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
        return Err(invalid(field, whole, "each part must start with a lowercase letter or digit"));
    }
    if !bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)) {
        return Err(invalid(field, whole, "only lowercase letters, digits, `.`, `_` and `-` are allowed"));
    }
    Ok(())
}

/// A namespaced template name, `namespace/name`.
///
/// A namespace belongs to the first tenant that creates a name in it; names (and aliases, which
/// are names too) are unique across the whole store.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TemplateName {
    full: String,
    slash: usize,
}

impl TemplateName {
    /// The namespace part.
    pub fn namespace(&self) -> &str {
        &self.full[..self.slash]
    }

    /// The name part, after the `/`.
    pub fn name(&self) -> &str {
        &self.full[self.slash + 1..]
    }

    /// `namespace/name`.
    pub fn as_str(&self) -> &str {
        &self.full
    }
}

impl FromStr for TemplateName {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        let (ns, name) = s.split_once('/').ok_or_else(|| invalid("template name", s, "expected `namespace/name`"))?;
        check_name_part("template name", s, ns)?;
        check_name_part("template name", s, name)?;
        Ok(TemplateName { full: s.to_owned(), slash: ns.len() })
    }
}

impl TryFrom<String> for TemplateName {
    type Error = StoreError;
    fn try_from(s: String) -> Result<Self, StoreError> {
        s.parse()
    }
}

impl From<TemplateName> for String {
    fn from(n: TemplateName) -> String {
        n.full
    }
}

impl fmt::Display for TemplateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

/// A version tag (Docker's tag grammar): `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Tag(String);

impl Tag {
    /// The tag as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        let ok_first = s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
        let ok_rest = s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !ok_first || !ok_rest || s.len() > 128 {
            return Err(invalid("tag", s, "expected 1 to 128 of `A-Za-z0-9_.-`, not starting with `.` or `-`"));
        }
        Ok(Tag(s.to_owned()))
    }
}

impl TryFrom<String> for Tag {
    type Error = StoreError;
    fn try_from(s: String) -> Result<Self, StoreError> {
        s.parse()
    }
}

impl From<Tag> for String {
    fn from(t: Tag) -> String {
        t.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a caller points at a template or one of its builds.
///
/// Parsed from `namespace/name` (a name or an alias), `namespace/name:tag`, or a build id.
///
/// ```
/// use nullspace_engine::store::TemplateRef;
/// let r: TemplateRef = "acme/python:stable".parse().unwrap();
/// assert!(matches!(r, TemplateRef::Tagged(ref n, ref t) if n.as_str() == "acme/python" && t.as_str() == "stable"));
/// assert!("python".parse::<TemplateRef>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TemplateRef {
    /// A template by its name or one of its aliases.
    Name(TemplateName),
    /// The build a tag of a template points at.
    Tagged(TemplateName, Tag),
    /// A build by id (and so its template).
    Build(BuildId),
}

impl FromStr for TemplateRef {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        if s.starts_with(BuildId::PREFIX) {
            return Ok(TemplateRef::Build(s.parse()?));
        }
        match s.split_once(':') {
            Some((name, tag)) => Ok(TemplateRef::Tagged(name.parse()?, tag.parse()?)),
            None => Ok(TemplateRef::Name(s.parse()?)),
        }
    }
}

impl fmt::Display for TemplateRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateRef::Name(n) => write!(f, "{n}"),
            TemplateRef::Tagged(n, t) => write!(f, "{n}:{t}"),
            TemplateRef::Build(b) => write!(f, "{b}"),
        }
    }
}

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident, $column:literal { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// The lowercase word stored and printed for this value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = StoreError;
            fn from_str(s: &str) -> Result<Self, StoreError> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(invalid($column, s, concat!("expected one of:", $(" ", $text),+))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// Who may see a template.
    Visibility, "visibility" {
        /// Only the owning tenant sees it; others get not-found.
        Private = "private",
        /// Every tenant can read and use it; only the owner can change it.
        Public = "public",
    }
);

text_enum!(
    /// Where a build is in its life.
    BuildStatus, "status" {
        /// Accepted, waiting for an executor slot.
        Queued = "queued",
        /// An executor is running it.
        Building = "building",
        /// Finished with an artifact (terminal).
        Ready = "ready",
        /// Finished without an artifact (terminal).
        Failed = "failed",
        /// Stopped on request (terminal).
        Cancelled = "cancelled",
    }
);

impl BuildStatus {
    /// Ready, failed and cancelled are final.
    pub fn is_terminal(self) -> bool {
        matches!(self, BuildStatus::Ready | BuildStatus::Failed | BuildStatus::Cancelled)
    }

    /// Whether a build may go from `self` to `to`. Queued may go straight to ready, for a build
    /// that shares the result of an identical one.
    pub fn can_become(self, to: BuildStatus) -> bool {
        use BuildStatus::*;
        matches!((self, to), (Queued, Building | Ready | Failed | Cancelled) | (Building, Ready | Failed | Cancelled))
    }
}

text_enum!(
    /// Which executor ran (or will run) a build.
    Backend, "backend" {
        /// OCI layering + runc.
        Native = "native",
        /// BuildKit.
        Buildkit = "buildkit",
    }
);

text_enum!(
    /// Whether a build's artifact can still be used.
    ArtifactAvailability, "artifact_availability" {
        /// In the blob store.
        Available = "available",
        /// Past retention, chosen for collection; blobs may still exist.
        Expired = "expired",
        /// Removed from the blob store.
        Deleted = "deleted",
        /// The build produced no artifact.
        None = "none",
    }
);

/// How important a log entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// Detail.
    Debug,
    /// Normal progress.
    Info,
    /// Something to look at.
    Warn,
    /// A failure.
    Error,
}

impl LogLevel {
    pub(crate) fn to_db(self) -> i64 {
        match self {
            LogLevel::Debug => 0,
            LogLevel::Info => 1,
            LogLevel::Warn => 2,
            LogLevel::Error => 3,
        }
    }

    pub(crate) fn from_db(v: i64) -> Option<Self> {
        Some(match v {
            0 => LogLevel::Debug,
            1 => LogLevel::Info,
            2 => LogLevel::Warn,
            3 => LogLevel::Error,
            _ => return None,
        })
    }
}

/// Why a build ended as it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildReason {
    /// A human sentence.
    pub message: String,
    /// The failing step, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The failing step's source span, as the plan reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span: Option<serde_json::Value>,
}

impl BuildReason {
    /// A reason with only a message.
    pub fn message(message: impl Into<String>) -> Self {
        BuildReason { message: message.into(), step: None, span: None }
    }
}

/// What a ready build produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// The image manifest digest (`sha256:...`).
    pub manifest_digest: String,
    /// Where the artifact lives (an OCI layout path or a registry reference).
    pub location: String,
}

/// How much of a build came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CacheSummary {
    /// Steps in the plan.
    pub steps_total: u32,
    /// Steps satisfied from the cache.
    pub steps_cached: u32,
    /// Bytes of layers reused.
    pub bytes_reused: u64,
    /// Bytes of layers newly produced.
    pub bytes_new: u64,
}

/// One durable record of a build attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Build {
    /// Its id.
    pub id: BuildId,
    /// The owning tenant.
    pub tenant: TenantId,
    /// The template's stable id.
    pub template_id: TemplateId,
    /// The template's current name.
    pub template: TemplateName,
    /// Where it is.
    pub status: BuildStatus,
    /// Why it failed or was cancelled (or a note on success).
    pub reason: Option<BuildReason>,
    /// Which executor.
    pub backend: Backend,
    /// The sanitised definition (JSON text; never a secret value), used by retry.
    pub definition: String,
    /// Digest of the normalised plan.
    pub plan_digest: Option<String>,
    /// Cache key of the final step.
    pub cache_key: Option<String>,
    /// Tags asked for when the build was requested.
    pub requested_tags: Vec<Tag>,
    /// Tags of its template that point at it now.
    pub tags: Vec<Tag>,
    /// What it produced.
    pub artifact: Option<Artifact>,
    /// Whether that can still be used.
    pub artifact_availability: ArtifactAvailability,
    /// When an untagged artifact may be collected.
    pub retention_expires_at: Option<Timestamp>,
    /// Cache use.
    pub cache_summary: Option<CacheSummary>,
    /// When it was requested.
    pub created_at: Timestamp,
    /// When it started building.
    pub started_at: Option<Timestamp>,
    /// When it reached a terminal status.
    pub finished_at: Option<Timestamp>,
    /// The build this one retries.
    pub retry_of: Option<BuildId>,
}

/// A build to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewBuild {
    /// The template it builds; created (private) when no template has this name yet.
    pub template: TemplateName,
    /// Which executor.
    pub backend: Backend,
    /// The sanitised definition as JSON text. The caller removes secret values; the store checks
    /// only that it is JSON.
    pub definition: String,
    /// Digest of the normalised plan, if known already.
    pub plan_digest: Option<String>,
    /// Tags to apply when it is ready.
    pub requested_tags: Vec<Tag>,
    /// The build it retries.
    pub retry_of: Option<BuildId>,
}

/// Changes to a build, applied with its log entries in one transaction.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BuildUpdate {
    /// A new status (checked against [`BuildStatus::can_become`]); sets `started_at` on building
    /// and `finished_at` on a terminal status.
    pub status: Option<BuildStatus>,
    /// A reason.
    pub reason: Option<BuildReason>,
    /// The plan digest.
    pub plan_digest: Option<String>,
    /// The final step's cache key.
    pub cache_key: Option<String>,
    /// The artifact; makes it available. Required (here or before) to become ready.
    pub artifact: Option<Artifact>,
    /// Cache use.
    pub cache_summary: Option<CacheSummary>,
    /// When the untagged artifact may be collected.
    pub retention_expires_at: Option<Timestamp>,
    /// Log entries to append in the same transaction.
    pub logs: Vec<NewLogEntry>,
}

/// A build after an update, with the offsets given to the update's log entries.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildUpdated {
    /// The build as stored now.
    pub build: Build,
    /// Offsets of the appended entries (empty when none).
    pub log_offsets: Range<u64>,
}

/// A log entry to append.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewLogEntry {
    /// When it happened.
    pub timestamp: Timestamp,
    /// Level.
    pub level: LogLevel,
    /// The step it belongs to.
    pub step: Option<String>,
    /// The text; ANSI escape sequences are removed before it is stored.
    pub message: String,
}

impl NewLogEntry {
    /// An entry stamped now, for no particular step.
    pub fn new(level: LogLevel, message: impl Into<String>) -> Self {
        NewLogEntry { timestamp: Timestamp::now(), level, step: None, message: message.into() }
    }

    /// The same entry attributed to `step`.
    pub fn with_step(mut self, step: impl Into<String>) -> Self {
        self.step = Some(step.into());
        self
    }
}

/// A stored log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Position in the build's log, from 0, without gaps.
    pub offset: u64,
    /// When it happened.
    pub timestamp: Timestamp,
    /// Level.
    pub level: LogLevel,
    /// The step it belongs to.
    pub step: Option<String>,
    /// The text, ANSI-free.
    pub message: String,
}

/// A slice of a build's log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogPage {
    /// Entries in offset order.
    pub entries: Vec<LogEntry>,
    /// The offset to read from next (the build's log length when the page reached the end).
    pub next_offset: u64,
}

/// A build's record and the log entries from an offset, read in one snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildStatusView {
    /// The build.
    pub build: Build,
    /// Its log from the asked offset.
    pub logs: LogPage,
}

/// A tag and the build it points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagInfo {
    /// The tag.
    pub tag: Tag,
    /// Its build.
    pub build_id: BuildId,
    /// When it last moved.
    pub updated_at: Timestamp,
}

/// The result of moving one tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagMove {
    /// The tag.
    pub tag: Tag,
    /// Where it pointed before, if anywhere.
    pub previous: Option<BuildId>,
    /// Where it points now.
    pub build_id: BuildId,
}

/// An old name that still leads to a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alias {
    /// The alias.
    pub name: TemplateName,
    /// Since when.
    pub created_at: Timestamp,
}

/// A template record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    /// Stable id.
    pub id: TemplateId,
    /// Owner.
    pub tenant: TenantId,
    /// Current name.
    pub name: TemplateName,
    /// Who may see it.
    pub visibility: Visibility,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change to name, visibility or tags.
    pub updated_at: Timestamp,
    /// Aliases (filled by `get_template`, and by lists when asked).
    pub aliases: Option<Vec<Alias>>,
    /// Tags (filled by `get_template`, and by lists when asked).
    pub tags: Option<Vec<TagInfo>>,
}

/// What a reference resolved to.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The template, with aliases and tags.
    pub template: Template,
    /// The build, for a `name:tag` or build-id reference.
    pub build: Option<Build>,
}

/// Whose templates a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Owner {
    /// The caller's own and others' public ones.
    #[default]
    Any,
    /// Only the caller's.
    Mine,
    /// Only others' public ones.
    Others,
}

/// Optional fields of listed templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TemplateFields {
    /// Fill `aliases`.
    pub aliases: bool,
    /// Fill `tags`.
    pub tags: bool,
}

/// Filters and paging for `list_templates`, ordered by name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TemplateQuery {
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Only this visibility.
    pub visibility: Option<Visibility>,
    /// Whose.
    pub owner: Owner,
    /// Optional fields.
    pub fields: TemplateFields,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size (0 means 50; at most [`MAX_PAGE`]).
    pub limit: u32,
}

/// Filters and paging for `list_builds`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BuildQuery {
    /// Only these statuses (empty: all).
    pub status: Vec<BuildStatus>,
    /// Only this backend.
    pub backend: Option<Backend>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size (0 means 50; at most [`MAX_PAGE`]).
    pub limit: u32,
}

pub(crate) fn page_size(limit: u32) -> u32 {
    match limit {
        0 => 50,
        n => n.min(MAX_PAGE),
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass this as the next query's cursor; `None` at the end.
    pub next_cursor: Option<String>,
}

/// What a (forced) template deletion removed.
#[derive(Debug, Clone, PartialEq)]
pub struct DeletedTemplate {
    /// The template's id.
    pub id: TemplateId,
    /// Its name.
    pub name: TemplateName,
    /// Tags removed.
    pub tags: Vec<Tag>,
    /// Builds removed with their logs (in-flight ones included when forced).
    pub builds_deleted: u64,
    /// Artifacts of removed builds that were still available: the caller removes their blobs.
    pub artifacts: Vec<(BuildId, Artifact)>,
}

/// A ready, untagged build whose retention has passed.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpiredArtifact {
    /// The build.
    pub build_id: BuildId,
    /// Its owner.
    pub tenant: TenantId,
    /// What to collect.
    pub artifact: Artifact,
    /// Its availability now (available or expired).
    pub availability: ArtifactAvailability,
    /// When retention ended.
    pub retention_expires_at: Timestamp,
}
