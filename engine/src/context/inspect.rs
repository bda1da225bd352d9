//! What a build would send, before anything runs: [`inspect_build_context`].
//!
//! The context is walked with the ignore file that applies to the template's Dockerfile and
//! hashed (with an optional [stat cache](super::statcache)); each COPY/ADD of the plan is
//! resolved with [`select`](super::select) to find files nothing uses. No executor is started
//! and nothing is written but the stat cache.
//!
//! The payload is the sealed plan (which holds secret ids and the *names* of the variables that
//! supply them, never values; registry credentials are not serialised) and the context manifest.
//! As a second guard, the payload is checked for the value of every declared secret found in
//! the environment; one found is an error, never output.

use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nullspace_plan::builder::{Base, Template};
use nullspace_plan::diagnostic::Diagnostic;
use nullspace_plan::normalize::{PlanOptions, plan};
use nullspace_plan::plan::{BuildPlan, CopyFrom, Mount, Op};
use serde::{Deserialize, Serialize};

use super::contenthash::{ContextHashes, HashError, hash_context};
use super::ignore::{PatternError, PatternMatcher};
use super::select::ContextSelector;
use super::statcache::{PendingStatCache, StatCache, StatCacheError};
use super::walk::{UnsupportedKind, WalkError, Walker};
use super::{Entry, EntryKind};

/// Thresholds and settings of [`inspect_build_context`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InspectOptions {
    /// Warn when the included files add up to more bytes than this.
    pub large_context_bytes: u64,
    /// Warn when more entries than this are included.
    pub many_files: u64,
    /// How many of the largest included files to list.
    pub largest: usize,
    /// How many unused paths to name in the warning (all are counted).
    pub unused_examples: usize,
    /// Where to keep the stat cache (read, then rewritten), if anywhere.
    pub stat_cache: Option<PathBuf>,
}

impl Default for InspectOptions {
    fn default() -> Self {
        Self {
            large_context_bytes: 500 * 1024 * 1024,
            many_files: 20_000,
            largest: 10,
            unused_examples: 10,
            stat_cache: None,
        }
    }
}

/// Why a context could not be inspected.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The template does not plan.
    #[error("the template has errors: {}", messages.join("; "))]
    Plan {
        /// Each error diagnostic, as `CODE: message`.
        messages: Vec<String>,
    },
    /// Walking the context failed.
    #[error(transparent)]
    Walk(#[from] WalkError),
    /// Hashing the context failed.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// The ignore patterns could not be applied to the Dockerfile's path.
    #[error("ignore patterns: {0}")]
    Patterns(#[from] PatternError),
    /// The stat cache could not be saved.
    #[error(transparent)]
    StatCache(#[from] StatCacheError),
    /// A secret's value was found in what would be sent (it is not output).
    #[error("the payload would contain the value of secret {id:?}; refusing to output it")]
    SecretInPayload {
        /// The secret's id.
        id: String,
    },
}

/// Entry and byte counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Files, directories and symlinks (an excluded directory not entered counts once).
    pub entries: u64,
    /// Bytes of regular files.
    pub bytes: u64,
}

/// A path and its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizedPath {
    /// Relative to the context.
    pub path: String,
    /// Bytes.
    pub size: u64,
}

/// Something worth knowing before sending the context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Warning {
    /// The included files are larger than [`InspectOptions::large_context_bytes`].
    LargeContext {
        /// Included bytes.
        bytes: u64,
        /// The threshold.
        threshold: u64,
    },
    /// More entries than [`InspectOptions::many_files`] are included.
    ManyFiles {
        /// Included entries.
        entries: u64,
        /// The threshold.
        threshold: u64,
    },
    /// Included files that no COPY/ADD (nor RUN bind mount of the context) uses.
    UnusedFiles {
        /// How many.
        count: u64,
        /// Their bytes.
        bytes: u64,
        /// The largest of them.
        examples: Vec<SizedPath>,
    },
    /// A symlink whose target lies outside the context (absolute, or `..` past the root).
    SymlinkOutside {
        /// The link, relative to the context.
        path: String,
        /// Its target as stored.
        target: String,
    },
    /// The Dockerfile lies in the context and the ignore rules exclude it.
    DockerfileExcluded {
        /// Relative to the context.
        path: String,
    },
    /// The ignore file excludes itself.
    IgnoreFileExcluded {
        /// Relative to the context.
        path: String,
    },
    /// A socket, FIFO or device that a build cannot carry was left out.
    Unsupported {
        /// Relative to the context.
        path: String,
        /// `fifo`, `socket`, `block_device` or `char_device`.
        file_type: String,
    },
    /// A COPY/ADD whose sources cannot be selected (the build would fail there).
    SourceError {
        /// Stage index.
        stage: usize,
        /// Step index.
        step: usize,
        /// What is wrong.
        message: String,
    },
}

/// One entry of the context manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Relative to the context (non-UTF-8 bytes shown as U+FFFD).
    pub path: String,
    /// `file`, `dir` or `symlink`.
    pub kind: String,
    /// A symlink's target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Permission bits.
    pub mode: u32,
    /// Bytes (files), target length (symlinks), 0 (directories).
    pub size: u64,
    /// BuildKit's digest of the path (a directory's: of its contents).
    pub digest: String,
}

/// The context as a build would send it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextManifest {
    /// BuildKit's checksum of the whole context.
    pub digest: String,
    /// Every included entry in BuildKit's order.
    pub entries: Vec<ManifestEntry>,
}

/// What a build request would carry: the plan and the context manifest, no secret values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestPayload {
    /// The sealed plan.
    pub plan: BuildPlan,
    /// The context.
    pub context: ContextManifest,
}

/// The report of [`inspect_build_context`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextInspection {
    /// The context directory (canonical).
    pub root: PathBuf,
    /// The ignore file applied, if any.
    pub ignore_file: Option<PathBuf>,
    /// What would be sent.
    pub included: Counts,
    /// What the ignore rules left out.
    pub excluded: Counts,
    /// The largest included files, largest first.
    pub largest: Vec<SizedPath>,
    /// Everything worth a look, in a stable order.
    pub warnings: Vec<Warning>,
    /// The request a build would send.
    pub payload: RequestPayload,
}

/// The context directory a template builds with: its `context` (relative to
/// `options.base_dir`), else the Dockerfile's directory, else `options.base_dir`.
pub fn context_dir(template: &Template, options: &PlanOptions) -> PathBuf {
    match (&template.context, &template.from) {
        (Some(dir), _) => options.base_dir.join(dir),
        (None, Base::Dockerfile { path }) => {
            options.base_dir.join(path).parent().map_or_else(|| options.base_dir.clone(), Path::to_path_buf)
        }
        (None, _) => options.base_dir.clone(),
    }
}

/// Plans `template`, walks and hashes its context, and reports what a build would send; see the
/// [module docs](self). No executor is started.
///
/// ```
/// use nullspace_engine::context::inspect::{inspect_build_context, InspectOptions, Warning};
/// use nullspace_plan::{builder::Template, normalize::PlanOptions};
///
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("app.py"), "print('hi')")?;
/// std::fs::write(dir.path().join("notes.txt"), "unused")?;
/// let template = Template::from_image("busybox:1.36").context_dir(dir.path()).copy("app.py", "/app/");
/// let report = inspect_build_context(&template, &PlanOptions::default(), &InspectOptions::default())?;
/// assert_eq!(report.included.entries, 2);
/// assert!(matches!(&report.warnings[..], [Warning::UnusedFiles { count: 1, .. }]));
/// assert_eq!(report.payload.context.entries.len(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`InspectError`]: the template does not plan, or the context cannot be walked or hashed.
pub fn inspect_build_context(
    template: &Template,
    plan_options: &PlanOptions,
    options: &InspectOptions,
) -> Result<ContextInspection, InspectError> {
    let outcome = plan(template, plan_options);
    let Some(plan) = outcome.plan else {
        let messages = outcome
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d: &Diagnostic| format!("{}: {}", d.code, d.message))
            .collect();
        return Err(InspectError::Plan { messages });
    };
    let dir = context_dir(template, plan_options);
    let dockerfile = match &template.from {
        Base::Dockerfile { path } => Some(std::path::absolute(plan_options.base_dir.join(path)).unwrap_or_default()),
        _ => None,
    };
    let mut walker = Walker::new(&dir);
    if let Some(df) = &dockerfile {
        walker = walker.dockerfile(df);
    }
    let pending = options.stat_cache.as_deref().map(StatCache::load_in_background);
    let walked = walker.walk()?;
    let root = dir.canonicalize().map_err(|source| WalkError::Root { path: dir.clone(), source })?;

    let mut cache = pending.map(PendingStatCache::wait);
    let hashes = hash_context(&root, &walked.entries, cache.as_mut())?;
    if let (Some(cache), Some(path)) = (&cache, &options.stat_cache) {
        cache.save(path)?;
    }

    let mut warnings = Vec::new();
    let included = Counts { entries: walked.included.entries, bytes: walked.included.bytes };
    if included.bytes > options.large_context_bytes {
        warnings.push(Warning::LargeContext { bytes: included.bytes, threshold: options.large_context_bytes });
    }
    if included.entries > options.many_files {
        warnings.push(Warning::ManyFiles { entries: included.entries, threshold: options.many_files });
    }
    let matcher = PatternMatcher::new(&walked.patterns)?;
    let excluded_self = |path: &Path| -> Result<Option<String>, PatternError> {
        let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        match canonical.strip_prefix(&root) {
            Ok(rel)
                if !rel.as_os_str().is_empty() && matcher.matches_or_parent_matches(rel.as_os_str().as_bytes())? =>
            {
                Ok(Some(rel.to_string_lossy().into_owned()))
            }
            _ => Ok(None),
        }
    };
    if let Some(df) = &dockerfile
        && let Some(path) = excluded_self(df)?
    {
        warnings.push(Warning::DockerfileExcluded { path });
    }
    if let Some(file) = &walked.ignore_file
        && let Some(path) = excluded_self(file)?
    {
        warnings.push(Warning::IgnoreFileExcluded { path });
    }
    for e in &walked.entries {
        if let EntryKind::Symlink { target } = &e.kind
            && escapes(&e.path, target)
        {
            warnings.push(Warning::SymlinkOutside {
                path: e.path.to_string_lossy().into_owned(),
                target: target.to_string_lossy().into_owned(),
            });
        }
    }
    for u in &walked.unsupported {
        let file_type = match u.kind {
            UnsupportedKind::Fifo => "fifo",
            UnsupportedKind::Socket => "socket",
            UnsupportedKind::BlockDevice => "block_device",
            UnsupportedKind::CharDevice => "char_device",
        };
        warnings
            .push(Warning::Unsupported { path: u.path.to_string_lossy().into_owned(), file_type: file_type.into() });
    }
    let used = used_paths(&plan, &walked.entries, &hashes, &mut warnings);
    let own_files: BTreeSet<PathBuf> = [dockerfile.as_deref(), walked.ignore_file.as_deref()]
        .into_iter()
        .flatten()
        .filter_map(|p| p.canonicalize().ok()?.strip_prefix(&root).ok().map(Path::to_path_buf))
        .collect();
    let mut unused: Vec<SizedPath> = walked
        .entries
        .iter()
        .filter(|e| e.kind != EntryKind::Dir && !used.contains(&e.path) && !own_files.contains(&e.path))
        .map(|e| SizedPath { path: e.path.to_string_lossy().into_owned(), size: e.size })
        .collect();
    if !unused.is_empty() {
        let count = unused.len() as u64;
        let bytes = unused.iter().map(|s| s.size).sum();
        unused.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.path.cmp(&b.path)));
        unused.truncate(options.unused_examples);
        warnings.push(Warning::UnusedFiles { count, bytes, examples: unused });
    }

    let mut largest: Vec<SizedPath> = walked
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .map(|e| SizedPath { path: e.path.to_string_lossy().into_owned(), size: e.size })
        .collect();
    largest.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.path.cmp(&b.path)));
    largest.truncate(options.largest);

    let payload = RequestPayload { context: manifest(&walked.entries, &hashes), plan };
    check_no_secret_values(&payload)?;
    Ok(ContextInspection {
        root,
        ignore_file: walked.ignore_file,
        included,
        excluded: Counts { entries: walked.excluded.entries, bytes: walked.excluded.bytes },
        largest,
        warnings,
        payload,
    })
}

/// The context manifest of walked and hashed entries.
pub fn manifest(entries: &[Entry], hashes: &ContextHashes) -> ContextManifest {
    let entries = entries
        .iter()
        .map(|e| {
            let (kind, target) = match &e.kind {
                EntryKind::File => ("file", None),
                EntryKind::Dir => ("dir", None),
                EntryKind::Symlink { target } => ("symlink", Some(target.to_string_lossy().into_owned())),
            };
            ManifestEntry {
                path: e.path.to_string_lossy().into_owned(),
                kind: kind.into(),
                target,
                mode: e.mode,
                size: e.size,
                digest: hashes.get(&e.path).map(|d| d.digest.to_string()).unwrap_or_default(),
            }
        })
        .collect();
    ContextManifest { digest: hashes.digest().to_string(), entries }
}

/// Whether the symlink at `path` (relative to the context) points outside it: an absolute
/// target, or one whose `..` climb above the root.
fn escapes(path: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return true;
    }
    let mut depth = path.components().count().saturating_sub(1) as i64;
    for c in target.components() {
        match c {
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            Component::Normal(_) => depth += 1,
            _ => {}
        }
    }
    false
}

/// Every context path some step reads: what each COPY/ADD from the context selects, and what is
/// under each RUN bind mount of the context. A step whose sources cannot be selected gets a
/// [`Warning::SourceError`].
fn used_paths(
    plan: &BuildPlan,
    entries: &[Entry],
    hashes: &ContextHashes,
    warnings: &mut Vec<Warning>,
) -> BTreeSet<PathBuf> {
    let selector = ContextSelector::new(entries, hashes);
    let mut used = BTreeSet::new();
    let mark_under = |prefix: &Path, used: &mut BTreeSet<PathBuf>| {
        for e in entries.iter().filter(|e| prefix.as_os_str().is_empty() || e.path.starts_with(prefix)) {
            used.insert(e.path.clone());
        }
    };
    for (stage_index, stage) in plan.stages.iter().enumerate() {
        for (step_index, step) in stage.steps.iter().enumerate() {
            match &step.op {
                Op::Copy { from: CopyFrom::Context, sources, exclude, parents, .. } => {
                    // ADD's remote sources come from elsewhere.
                    let local: Vec<String> = sources.iter().filter(|s| !is_remote(s)).cloned().collect();
                    if local.is_empty() {
                        continue;
                    }
                    match selector.selection(&local, exclude, *parents) {
                        Ok(selected) => {
                            used.extend(selected.files.keys().map(|p| PathBuf::from(p.trim_end_matches('/'))));
                        }
                        Err(e) => warnings.push(Warning::SourceError {
                            stage: stage_index,
                            step: step_index,
                            message: e.to_string(),
                        }),
                    }
                }
                Op::Run { mounts, .. } => {
                    for mount in mounts {
                        if let Mount::Bind { from: None, source, .. } = mount {
                            let cleaned: PathBuf = Path::new(source.as_deref().unwrap_or(""))
                                .components()
                                .filter(|c| matches!(c, Component::Normal(_)))
                                .collect();
                            mark_under(&cleaned, &mut used);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    used
}

fn is_remote(source: &str) -> bool {
    ["http://", "https://", "git@", "git://"].iter().any(|p| source.starts_with(p))
}

/// Refuses a payload holding the value of a declared secret (values shorter than 8 bytes are
/// not checked: they would match by chance).
fn check_no_secret_values(payload: &RequestPayload) -> Result<(), InspectError> {
    let text = serde_json::to_string(payload).unwrap_or_default();
    for secret in &payload.plan.secrets {
        let Some(var) = &secret.env else { continue };
        if let Ok(value) = std::env::var(var)
            && value.len() >= 8
            && text.contains(&value)
        {
            return Err(InspectError::SecretInPayload { id: secret.id.clone() });
        }
    }
    Ok(())
}
