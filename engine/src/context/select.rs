//! Which context paths a COPY/ADD selects, as BuildKit selects them.
//!
//! - **Sources** are cleaned like `filepath.Join("/", src)` (`..` stops at the root). A source
//!   holding an unescaped `*`, `?` or `[` is matched against every entry's whole relative path
//!   with Go's `filepath.Match` ([`glob_match`]): `*` and `?` never match `/`, `[^…]` negates a
//!   class, `\` escapes. A wildcard that matches nothing selects nothing (BuildKit's
//!   `AllowEmptyWildcard` for Dockerfile COPY); a plain path that does not exist is an error.
//! - A selected **directory** is copied by its contents (and its own metadata); a file by itself.
//! - **`--exclude`** patterns follow moby/patternmatcher (the context's
//!   [`PatternMatcher`]: `**`, `!` exceptions, last match wins, a
//!   match on a directory covering what is inside it), applied as fsutil's copier applies them:
//!   to each path *relative to the selected source*, never to the source itself. A directory
//!   that is excluded but holds a re-included path is kept as that path's parent.
//! - **`--parents`**: a source `pivot/./rest` (or just `rest`, pivot = the context root) selects,
//!   under `pivot`, what the include pattern `rest` matches (patternmatcher rules, a matched
//!   directory bringing its contents), keeping each path relative to `pivot` with its parent
//!   directories; without wildcards `pivot/rest` must exist (BuildKit's `RequiredPaths`).
//!
//! Our own code: the `glob` crates differ from Go on separators and class negation.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::contenthash::ContextHashes;
use super::ignore::{PatternError, PatternMatcher};
use super::walk::{WalkError, Walker, path_order};
use super::{Entry, EntryKind};
use crate::cache::{SelectedSources, SourceSelector};
use crate::cas::Digest;

/// A malformed pattern (Go's `ErrBadPattern`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("syntax error in pattern {0:?}")]
pub struct BadPattern(pub String);

/// Why sources could not be selected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// A plain (wildcard-free) source does not exist.
    #[error("COPY source {given:?} not found in the context")]
    NotFound {
        /// The source as written.
        given: String,
    },
    /// A source is not a valid `filepath.Match` pattern.
    #[error("COPY source {given:?}: {error}")]
    BadSource {
        /// The source as written.
        given: String,
        /// The syntax error.
        error: BadPattern,
    },
    /// The `--exclude` patterns were refused.
    #[error("COPY --exclude {patterns:?}: {error}")]
    Exclude {
        /// The patterns as written.
        patterns: Vec<String>,
        /// Why.
        error: PatternError,
    },
    /// A `--parents` source's pattern was refused.
    #[error("COPY --parents source {given:?}: {error}")]
    Parents {
        /// The source as written.
        given: String,
        /// Why.
        error: PatternError,
    },
    /// A selected path has no digest (the hashes are not of these entries).
    #[error("{path}: selected but not hashed")]
    NoDigest {
        /// The context path.
        path: String,
    },
}

/// Go's `path/filepath.Match` on `/`-separated paths.
///
/// ```
/// use nullspace_engine::context::select::glob_match;
/// assert!(glob_match("src/*.py", "src/app.py")?);
/// assert!(!glob_match("src/*.py", "src/sub/app.py")?);
/// assert!(glob_match("file[0-9]?", "file1a")?);
/// assert!(glob_match("[^a]x", "bx")?);
/// assert!(glob_match("[", "[").is_err());
/// # Ok::<(), nullspace_engine::context::select::BadPattern>(())
/// ```
///
/// # Errors
/// [`BadPattern`] for an unterminated class or trailing escape (reported even when an earlier
/// part fails to match, as Go does for the part it reaches).
pub fn glob_match(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    let bad = || BadPattern(pattern.to_string());
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0usize, 0usize);
    // Where to resume after the last `*`: (pattern index after it, name index it matched up to).
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi + 1, ni));
                    pi += 1;
                    continue;
                }
                '?' if ni < n.len() && n[ni] != '/' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' => {
                    let (matched, next) = match_class(&p, pi, n.get(ni).copied()).ok_or_else(bad)?;
                    if matched {
                        pi = next;
                        ni += 1;
                        continue;
                    }
                }
                '\\' => {
                    let c = *p.get(pi + 1).ok_or_else(bad)?;
                    if n.get(ni) == Some(&c) {
                        pi += 2;
                        ni += 1;
                        continue;
                    }
                }
                c if c != '?' && n.get(ni) == Some(&c) => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        } else if ni == n.len() {
            return Ok(true);
        }
        // Mismatch: let the last `*` eat one more character, never a `/`.
        match star {
            Some((sp, sn)) if sn < n.len() && n[sn] != '/' => {
                star = Some((sp, sn + 1));
                pi = sp;
                ni = sn + 1;
            }
            _ => {
                validate(&p[pi.min(p.len())..]).ok_or_else(bad)?;
                return Ok(false);
            }
        }
    }
}

/// Checks the rest of a pattern for syntax errors, as Go does after a failed match.
fn validate(p: &[char]) -> Option<()> {
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' => {
                p.get(i + 1)?;
                i += 2;
            }
            '[' => {
                let (_, next) = match_class(p, i, None)?;
                i = next;
            }
            _ => i += 1,
        }
    }
    Some(())
}

/// Matches the class starting at `p[start] == '['` against `c`; `None` if malformed (as Go:
/// an unescaped `-` or `]` cannot start or end a range, and the class must be closed).
/// Returns whether it matched and the index after the class.
fn match_class(p: &[char], start: usize, c: Option<char>) -> Option<(bool, usize)> {
    // One class character, `\` escapes; an unescaped `-` or `]` is a syntax error.
    fn class_char(p: &[char], i: &mut usize) -> Option<char> {
        let ch = *p.get(*i)?;
        if ch == '-' || ch == ']' {
            return None;
        }
        if ch == '\\' {
            *i += 1;
        }
        let ch = *p.get(*i)?;
        *i += 1;
        Some(ch)
    }
    let mut i = start + 1;
    let negated = p.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut ranges = 0;
    loop {
        if p.get(i) == Some(&']') && ranges > 0 {
            i += 1;
            break;
        }
        let lo = class_char(p, &mut i)?;
        let mut hi = lo;
        if p.get(i) == Some(&'-') {
            i += 1;
            hi = class_char(p, &mut i)?;
        }
        if c.is_some_and(|c| lo <= c && c <= hi) {
            matched = true;
        }
        ranges += 1;
    }
    Some((c.is_some() && matched != negated, i))
}

/// fsutil's `containsWildcards`: an unescaped `*`, `?` or `[`.
fn has_wildcard(s: &str) -> bool {
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// `filepath.Join("/", source)` without the leading `/`: `.` and empty parts dropped, `..`
/// stopping at the root; `""` is the root.
fn clean(source: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in source.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

/// One selected source: its path in the context (`""` for the root) and the entries under it,
/// relative to it (a file's only entry is its own name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// The selected path, relative to the context.
    pub path: PathBuf,
    /// Whether it is a directory (copied by content).
    pub dir: bool,
    /// Entries to copy, relative to `path` for a directory, or the file's own entry (path =
    /// its file name) for a file.
    pub entries: Vec<Entry>,
}

/// Entries in fsutil's path order (the walker's), borrowed when they already are.
fn in_path_order(entries: &[Entry]) -> std::borrow::Cow<'_, [Entry]> {
    if entries.is_sorted_by(|a, b| path_order(&a.path, &b.path).is_le()) {
        std::borrow::Cow::Borrowed(entries)
    } else {
        let mut sorted = entries.to_vec();
        sorted.sort_by(|a, b| path_order(&a.path, &b.path));
        std::borrow::Cow::Owned(sorted)
    }
}

fn exclude_matcher(exclude: &[String]) -> Result<Option<PatternMatcher>, SelectError> {
    if exclude.is_empty() {
        return Ok(None);
    }
    PatternMatcher::new(exclude).map(Some).map_err(|error| SelectError::Exclude { patterns: exclude.to_vec(), error })
}

/// The entries strictly under `root` (all of them for the root `""`), as a sub-slice of
/// path-ordered `entries`: a directory's descendants directly follow it in that order.
fn under<'e>(entries: &'e [Entry], root: &Path) -> &'e [Entry] {
    if root.as_os_str().is_empty() {
        return entries;
    }
    let start = entries.partition_point(|e| path_order(&e.path, root).is_le());
    let prefix = [root.as_os_str().as_bytes(), b"/"].concat();
    let len = entries[start..].iter().take_while(|e| e.path.as_os_str().as_bytes().starts_with(&prefix)).count();
    &entries[start..start + len]
}

/// The entries under `root` that pass `include` (when given) and not `exclude`, relative to
/// `root`, each preceded by its not yet listed parent directories (as BuildKit creates them).
fn collect(
    entries: &[Entry],
    root: &Path,
    include: Option<&PatternMatcher>,
    exclude: Option<&PatternMatcher>,
) -> Result<Vec<Entry>, PatternError> {
    let mut out = Vec::new();
    // Directories above the current entry: (relative path, whether already listed).
    let mut open: Vec<(PathBuf, Entry, bool)> = Vec::new();
    for e in under(entries, root) {
        let Ok(rel) = e.path.strip_prefix(root) else { continue };
        while let Some((dir, _, _)) = open.last() {
            if rel.starts_with(dir) {
                break;
            }
            open.pop();
        }
        let bytes = rel.as_os_str().as_bytes();
        let mut included = match include {
            Some(m) => m.matches_or_parent_matches(bytes)?,
            None => true,
        };
        if included && let Some(m) = exclude {
            included = !m.matches_or_parent_matches(bytes)?;
        }
        let entry = Entry { path: rel.to_path_buf(), ..e.clone() };
        if included {
            for (_, parent, listed) in open.iter_mut().filter(|(_, _, listed)| !*listed) {
                out.push(parent.clone());
                *listed = true;
            }
            out.push(entry.clone());
        }
        if e.kind == EntryKind::Dir {
            open.push((rel.to_path_buf(), entry, included));
        }
    }
    Ok(out)
}

/// Selects `sources` minus `exclude` among `entries` (a walked tree, paths relative to it), as
/// a Dockerfile `COPY` without `--parents` does; see the [module docs](self).
///
/// # Errors
/// [`SelectError`] naming the plain source that does not exist or the malformed pattern.
pub fn select(entries: &[Entry], sources: &[String], exclude: &[String]) -> Result<Vec<Selected>, SelectError> {
    let entries = in_path_order(entries);
    let exclude_m = exclude_matcher(exclude)?;
    let by_path: BTreeMap<&Path, &Entry> = entries.iter().map(|e| (e.path.as_path(), e)).collect();
    let mut roots: Vec<(PathBuf, bool)> = Vec::new();
    for source in sources {
        let cleaned = clean(source);
        if has_wildcard(&cleaned) {
            for e in entries.iter() {
                let hit = glob_match(&cleaned, &e.path.to_string_lossy())
                    .map_err(|error| SelectError::BadSource { given: source.clone(), error })?;
                if hit {
                    roots.push((e.path.clone(), e.kind == EntryKind::Dir));
                }
            }
        } else if cleaned.is_empty() {
            roots.push((PathBuf::new(), true));
        } else {
            let e = by_path.get(Path::new(&cleaned)).ok_or_else(|| SelectError::NotFound { given: source.clone() })?;
            roots.push((e.path.clone(), e.kind == EntryKind::Dir));
        }
    }
    let mut out = Vec::new();
    for (root, dir) in roots {
        let selected = if dir {
            collect(&entries, &root, None, exclude_m.as_ref())
                .map_err(|error| SelectError::Exclude { patterns: exclude.to_vec(), error })?
        } else {
            let name = root.file_name().map(PathBuf::from).unwrap_or_default();
            by_path.get(root.as_path()).map(|e| Entry { path: name, ..(*e).clone() }).into_iter().collect()
        };
        out.push(Selected { path: root, dir, entries: selected });
    }
    Ok(out)
}

/// Selects as `COPY --parents` does: one [`Selected`] per source, rooted at its pivot (the part
/// before `/./`, or the context root), holding what the rest of the source matches with the
/// paths kept relative to the pivot; see the [module docs](self).
///
/// ```
/// use nullspace_engine::context::select::{select_parents, walk};
/// let dir = tempfile::tempdir()?;
/// std::fs::create_dir_all(dir.path().join("app/src"))?;
/// std::fs::write(dir.path().join("app/src/main.py"), "m")?;
/// std::fs::write(dir.path().join("app/README"), "r")?;
/// let entries = walk(dir.path())?;
/// let sel = select_parents(&entries, &["app/./src/*.py".into()], &[])?;
/// assert_eq!(sel[0].path, std::path::Path::new("app"));
/// let paths: Vec<_> = sel[0].entries.iter().map(|e| e.path.to_string_lossy().into_owned()).collect();
/// assert_eq!(paths, ["src", "src/main.py"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`SelectError`] naming a required path that does not exist or a malformed pattern.
pub fn select_parents(entries: &[Entry], sources: &[String], exclude: &[String]) -> Result<Vec<Selected>, SelectError> {
    let entries = in_path_order(entries);
    let exclude_m = exclude_matcher(exclude)?;
    let mut out = Vec::new();
    for source in sources {
        let (pivot, pattern) = match source.split_once("/./") {
            Some((pivot, pattern)) => (clean(pivot), clean(pattern)),
            None => (String::new(), clean(source)),
        };
        let exists = |p: &str| p.is_empty() || entries.iter().any(|e| e.path.as_os_str().as_bytes() == p.as_bytes());
        if has_wildcard(&pivot) || !exists(&pivot) {
            // BuildKit resolves the pivot as a plain path.
            return Err(SelectError::NotFound { given: source.clone() });
        }
        let required = if pivot.is_empty() { pattern.clone() } else { format!("{pivot}/{pattern}") };
        if !has_wildcard(&pattern) && !exists(&required) {
            return Err(SelectError::NotFound { given: source.clone() });
        }
        let include = PatternMatcher::new([pattern.as_str()])
            .map_err(|error| SelectError::Parents { given: source.clone(), error })?;
        let root = PathBuf::from(&pivot);
        let selected = collect(&entries, &root, Some(&include), exclude_m.as_ref())
            .map_err(|error| SelectError::Parents { given: source.clone(), error })?;
        out.push(Selected { path: root, dir: true, entries: selected });
    }
    Ok(out)
}

/// Lists the whole tree at `root` (no ignore file, no symlink followed) in path order, relative
/// to `root`: what [`select`] selects from when the source is not a build context (a stage's
/// or image's filesystem).
///
/// # Errors
/// The [`WalkError`] naming the path that could not be read.
pub fn walk(root: &Path) -> Result<Vec<Entry>, WalkError> {
    Ok(Walker::new(root).patterns(Vec::<Vec<u8>>::new()).walk()?.entries)
}

/// A [`SourceSelector`] over a walked and hashed context, selecting exactly what [`select`] (or
/// [`select_parents`]) copies: the cache key of a COPY covers the same entries the COPY writes.
///
/// [`SelectedSources::files`] maps each selected path (relative to the context; a directory's
/// with a trailing `/`) to its digest: a file's or symlink's record digest, a directory's header
/// digest (its mode, not its contents, so an excluded file inside it changes nothing).
/// [`SelectedSources::digest`] hashes those lines in order.
#[derive(Debug, Clone)]
pub struct ContextSelector<'a> {
    entries: &'a [Entry],
    hashes: &'a ContextHashes,
}

impl<'a> ContextSelector<'a> {
    /// A selector over `entries` and their `hashes` (from
    /// [`hash_context`](super::contenthash::hash_context)).
    pub fn new(entries: &'a [Entry], hashes: &'a ContextHashes) -> Self {
        Self { entries, hashes }
    }

    /// The selection as typed errors (the [`SourceSelector`] impl turns them into messages).
    ///
    /// # Errors
    /// See [`SelectError`].
    pub fn selection(
        &self,
        sources: &[String],
        exclude: &[String],
        parents: bool,
    ) -> Result<SelectedSources, SelectError> {
        let selected = if parents {
            select_parents(self.entries, sources, exclude)?
        } else {
            select(self.entries, sources, exclude)?
        };
        let mut files: BTreeMap<String, String> = BTreeMap::new();
        let mut add = |path: PathBuf, dir: bool| -> Result<(), SelectError> {
            let name = path.to_string_lossy().into_owned();
            let found = self.hashes.get(&path).ok_or_else(|| SelectError::NoDigest { path: name.clone() })?;
            let (key, digest) = match (dir, found.dir_header) {
                (true, Some(header)) => (format!("{name}/"), header),
                _ => (name, found.digest),
            };
            files.insert(key, digest.to_string());
            Ok(())
        };
        for s in selected {
            if s.dir {
                if !s.path.as_os_str().is_empty() {
                    add(s.path.clone(), true)?;
                }
                for e in &s.entries {
                    add(s.path.join(&e.path), e.kind == EntryKind::Dir)?;
                }
            } else {
                add(s.path.clone(), false)?;
            }
        }
        let mut joined = Vec::new();
        for (path, digest) in &files {
            joined.extend_from_slice(path.as_bytes());
            joined.push(0);
            joined.extend_from_slice(digest.as_bytes());
            joined.push(b'\n');
        }
        Ok(SelectedSources { digest: Digest::of(&joined).to_string(), files })
    }
}

impl SourceSelector for ContextSelector<'_> {
    fn select(&self, sources: &[String], exclude: &[String], parents: bool) -> Result<SelectedSources, String> {
        self.selection(sources, exclude, parents).map_err(|e| e.to_string())
    }
}
