//! Which context (or stage) paths a COPY selects.
//!
//! Sources are paths relative to the context; a source holding `*`, `?` or `[` is a pattern
//! matched against every entry's whole relative path with Go's `filepath.Match` rules (as
//! BuildKit resolves COPY wildcards): `*` and `?` never match `/`, `[^…]` negates a class, `\`
//! escapes. A selected directory is copied by its contents; a file by itself. `--exclude`
//! patterns use the same matcher, as BuildKit applies them: against each path relative to the
//! selected directory and that path's parents (so excluding a directory excludes what is in
//! it), and against a selected file's context path and name; `**` is not special there (it
//! acts as `*`).
//!
//! Our own code: the `glob` crates differ from Go on separators and class negation.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use nullspace_engine::cache::{SelectedSources, SourceSelector};
use nullspace_engine::cas::Digest;
use nullspace_engine::context::contenthash::ContextHashes;
use nullspace_engine::context::{Entry, EntryKind, StatInfo};

/// A malformed pattern (Go's `ErrBadPattern`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("syntax error in pattern {0:?}")]
pub struct BadPattern(pub String);

/// Go's `path/filepath.Match` on `/`-separated paths.
///
/// ```
/// use nullspace_native::executor::select::glob_match;
/// assert!(glob_match("src/*.py", "src/app.py")?);
/// assert!(!glob_match("src/*.py", "src/sub/app.py")?);
/// assert!(glob_match("file[0-9]?", "file1a")?);
/// assert!(glob_match("[^a]x", "bx")?);
/// assert!(glob_match("[", "[").is_err());
/// # Ok::<(), nullspace_native::executor::select::BadPattern>(())
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

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Cleans a source path: no leading `/` or `./`, `..` refused; `""` is the root.
fn clean(source: &str) -> Result<String, String> {
    let mut parts: Vec<String> = Vec::new();
    for c in Path::new(source).components() {
        match c {
            Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
            Component::ParentDir if parts.pop().is_none() => {
                return Err(format!("source {source:?} leaves the context"));
            }
            _ => {}
        }
    }
    Ok(parts.join("/"))
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

fn is_excluded(path: &Path, exclude: &[String]) -> Result<bool, String> {
    for pattern in exclude {
        let pattern = clean(pattern)?;
        for a in path.ancestors().filter(|a| !a.as_os_str().is_empty()) {
            if glob_match(&pattern, &a.to_string_lossy()).map_err(|e| e.to_string())? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Selects `sources` minus `exclude` among `entries` (a walked tree, paths relative to it).
///
/// # Errors
/// A message naming the source that matches nothing, leaves the context or is malformed.
pub fn select(entries: &[Entry], sources: &[String], exclude: &[String]) -> Result<Vec<Selected>, String> {
    let by_path: BTreeMap<&Path, &Entry> = entries.iter().map(|e| (e.path.as_path(), e)).collect();
    let mut roots: Vec<(PathBuf, bool)> = Vec::new();
    for source in sources {
        let cleaned = clean(source)?;
        if has_wildcard(&cleaned) {
            let mut any = false;
            for e in entries {
                if glob_match(&cleaned, &e.path.to_string_lossy()).map_err(|e| e.to_string())? {
                    roots.push((e.path.clone(), e.kind == EntryKind::Dir));
                    any = true;
                }
            }
            if !any {
                return Err(format!("no source file matches {source:?}"));
            }
        } else if cleaned.is_empty() {
            roots.push((PathBuf::new(), true));
        } else {
            let e = by_path.get(Path::new(&cleaned)).ok_or_else(|| format!("source {source:?} not found"))?;
            roots.push((e.path.clone(), e.kind == EntryKind::Dir));
        }
    }
    let mut out = Vec::new();
    for (root, dir) in roots {
        let name = root.file_name().map(PathBuf::from).unwrap_or_default();
        if !root.as_os_str().is_empty() && (is_excluded(&root, exclude)? || is_excluded(&name, exclude)?) {
            continue;
        }
        let mut selected = Vec::new();
        if dir {
            for e in entries {
                let Ok(rel) = e.path.strip_prefix(&root) else { continue };
                if rel.as_os_str().is_empty() || is_excluded(rel, exclude)? {
                    continue;
                }
                selected.push(Entry { path: rel.to_path_buf(), ..e.clone() });
            }
        } else if let Some(e) = by_path.get(root.as_path()) {
            selected.push(Entry { path: name, ..(*e).clone() });
        }
        out.push(Selected { path: root, dir, entries: selected });
    }
    Ok(out)
}

/// Walks `root` (no symlink followed) into entries sorted by path, relative to `root`.
///
/// # Errors
/// The I/O error, naming the path.
pub fn walk(root: &Path) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        for item in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let item = item.map_err(|e| format!("{}: {e}", dir.display()))?;
            let path = rel.join(item.file_name());
            let full = item.path();
            let meta = full.symlink_metadata().map_err(|e| format!("{}: {e}", full.display()))?;
            let kind = if meta.is_dir() {
                stack.push(path.clone());
                EntryKind::Dir
            } else if meta.file_type().is_symlink() {
                EntryKind::Symlink {
                    target: std::fs::read_link(&full).map_err(|e| format!("{}: {e}", full.display()))?,
                }
            } else if meta.is_file() {
                EntryKind::File
            } else {
                continue;
            };
            out.push(Entry {
                path,
                size: if meta.is_dir() { 0 } else { meta.len() },
                kind,
                mode: meta.mode() & 0o7777,
                stat: StatInfo {
                    dev: meta.dev(),
                    ino: meta.ino(),
                    nlink: meta.nlink(),
                    mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
                    ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
                    uid: meta.uid(),
                    gid: meta.gid(),
                },
            });
        }
    }
    out.sort_by(|a, b| a.path.as_os_str().as_bytes().cmp(b.path.as_os_str().as_bytes()));
    Ok(out)
}

/// A [`SourceSelector`] over a walked and hashed context, selecting exactly what
/// [`select`] copies: the cache key of a COPY covers the same files the COPY writes.
///
/// `files` maps each selected non-directory path (relative to the context) to its BuildKit
/// content digest; `digest` hashes every selected path (directories included, whose digests
/// cover their mode) with its digest.
#[derive(Debug, Clone)]
pub struct ContextSelector<'a> {
    entries: &'a [Entry],
    hashes: &'a ContextHashes,
}

impl<'a> ContextSelector<'a> {
    /// A selector over `entries` and their `hashes` (from `hash_context`).
    pub fn new(entries: &'a [Entry], hashes: &'a ContextHashes) -> Self {
        Self { entries, hashes }
    }
}

impl SourceSelector for ContextSelector<'_> {
    fn select(&self, sources: &[String], exclude: &[String], parents: bool) -> Result<SelectedSources, String> {
        if parents {
            return Err("COPY --parents is not supported by the native executor".into());
        }
        let mut all: BTreeMap<String, (String, bool)> = BTreeMap::new();
        for s in select(self.entries, sources, exclude)? {
            let mut add = |path: PathBuf, dir: bool| -> Result<(), String> {
                let digest = self
                    .hashes
                    .get(&path)
                    .map(|d| d.digest.to_string())
                    .ok_or_else(|| format!("{} has no digest", path.display()))?;
                all.insert(path.to_string_lossy().into_owned(), (digest, dir));
                Ok(())
            };
            if s.dir {
                for e in &s.entries {
                    add(s.path.join(&e.path), e.kind == EntryKind::Dir)?;
                }
            } else {
                add(s.path.clone(), false)?;
            }
        }
        let mut joined = Vec::new();
        for (path, (digest, _)) in &all {
            joined.extend_from_slice(path.as_bytes());
            joined.push(0);
            joined.extend_from_slice(digest.as_bytes());
            joined.push(b'\n');
        }
        let files = all.into_iter().filter(|(_, (_, dir))| !dir).map(|(p, (d, _))| (p, d)).collect();
        Ok(SelectedSources { digest: Digest::of(&joined).to_string(), files })
    }
}
