//! Docker's `.dockerignore` rules, exactly as Docker applies them.
//!
//! This is not `.gitignore`: every pattern is anchored at the context root (`*.md` matches
//! `README.md` but not `docs/guide.md`), the last matching pattern wins, a pattern that matches a
//! directory excludes everything under it, and a `!` exception can re-include a file inside an
//! excluded directory.
//!
//! Our own port of moby/patternmatcher (`New`, `Matches`, `MatchesOrParentMatches`,
//! `MatchesUsingParentResults`) and of `ignorefile.ReadAll`; no crate reproduces their quirks:
//!
//! - a pattern is checked with Go's `filepath.Match` syntax when the matcher is built
//!   ([`PatternError::BadPattern`]), but translated into a Go regular expression only when first
//!   used, so a pattern Go's `regexp` refuses fails at match time ([`PatternError::BadRegex`]),
//!   and only if the matching ever reaches it, as in Docker;
//! - `[...]`, `^` and `\x` escapes keep their Go-regexp meaning (see `goregex`);
//! - paths and patterns are bytes; a byte that is not UTF-8 reads as U+FFFD, as in Go.
//!
//! ```
//! use nullspace_engine::context::ignore::{read_all, PatternMatcher};
//!
//! let patterns = read_all(b"# build output\ndocs\n!docs/README.md\n/*.log\n")?;
//! let matcher = PatternMatcher::new(&patterns)?;
//! assert!(matcher.matches_or_parent_matches("docs/guide.md")?);
//! assert!(!matcher.matches_or_parent_matches("docs/README.md")?);
//! assert!(matcher.matches_or_parent_matches("build.log")?);
//! assert!(!matcher.matches_or_parent_matches("sub/build.log")?); // anchored at the root
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod file;
mod glob;
mod goregex;
mod gostr;

use std::sync::OnceLock;

pub use file::{IgnoreFileError, find_ignore_file, read_all, read_ignore_file};
pub use gostr::clean;

use glob::Shape;

/// Why a pattern list was refused, or why matching a path against it failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The pattern list holds a bare `!`.
    #[error("illegal exclusion pattern: \"!\"")]
    IllegalExclusion,
    /// The pattern is not valid `filepath.Match` syntax (an unclosed `[`, a trailing `\`, ...).
    #[error("syntax error in pattern {pattern:?}")]
    BadPattern {
        /// The pattern, after cleaning and without its `!`.
        pattern: String,
    },
    /// The pattern's regular expression is one Go's `regexp` refuses; reported when a path is
    /// first matched against it, as Docker does.
    #[error("syntax error in pattern {pattern:?}: {reason}")]
    BadRegex {
        /// The pattern, after cleaning and without its `!`.
        pattern: String,
        /// What Go's `regexp` would object to.
        reason: String,
    },
    /// A [`MatchInfo`] from another matcher was passed in (it holds a different number of
    /// patterns).
    #[error("wrong number of values in parentMatched")]
    MatchInfoMismatch,
}

/// One compiled pattern of a [`PatternMatcher`].
#[derive(Debug)]
pub struct Pattern {
    cleaned: Vec<u8>,
    dirs: usize,
    exclusion: bool,
    shape: Shape,
    regex: OnceLock<Result<regex::Regex, String>>,
}

impl Pattern {
    /// The pattern as it is matched: cleaned (Go's `filepath.Clean`) and without its `!`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.cleaned
    }

    /// Whether this is a `!` exception, which re-includes what earlier patterns excluded.
    pub fn is_exclusion(&self) -> bool {
        self.exclusion
    }

    fn error_text(&self) -> String {
        String::from_utf8_lossy(&self.cleaned).into_owned()
    }

    /// Go's `Pattern.match`: does `path` (relative, `/`-separated) match this pattern alone?
    fn is_match(&self, path: &[u8]) -> Result<bool, PatternError> {
        let pattern = self.cleaned.as_slice();
        Ok(match &self.shape {
            Shape::Exact => path == pattern,
            Shape::Prefix => path.starts_with(&pattern[..pattern.len().saturating_sub(2)]),
            Shape::Suffix => {
                let suffix = pattern.get(2..).unwrap_or_default();
                path.ends_with(suffix) || (suffix.first() == Some(&b'/') && path == &suffix[1..])
            }
            Shape::Regex(_) => match self.compiled() {
                Some(Ok(re)) => re.is_match(&gostr::go_lossy(path)),
                Some(Err(reason)) => {
                    return Err(PatternError::BadRegex { pattern: self.error_text(), reason: reason.clone() });
                }
                None => false,
            },
        })
    }

    /// The regular expression of a [`Shape::Regex`] pattern, compiled on first use (or why it
    /// does not compile); `None` for the other shapes.
    fn compiled(&self) -> Option<&Result<regex::Regex, String>> {
        let Shape::Regex(go) = &self.shape else {
            return None;
        };
        Some(self.regex.get_or_init(|| {
            let rust = goregex::to_rust(go)?;
            regex::Regex::new(&rust).map_err(|e| e.to_string())
        }))
    }
}

/// What matching a directory found, pattern by pattern, handed to the matching of its children
/// by [`PatternMatcher::matches_using_parent_results`]. `MatchInfo::default()` means "unknown":
/// the parents are then matched from scratch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MatchInfo {
    parent_matched: Vec<bool>,
}

/// An ordered list of `.dockerignore` patterns (moby/patternmatcher's `PatternMatcher`).
#[derive(Debug)]
pub struct PatternMatcher {
    patterns: Vec<Pattern>,
    exclusions: bool,
    batch: OnceLock<RegexBatch>,
}

/// The regular-expression patterns that compile, matched together in one pass over a path: a
/// context with dozens of `*.ext` patterns would otherwise scan each path once per pattern.
/// A pattern whose expression does not compile stays out, so that its error is still raised only
/// when matching reaches it.
#[derive(Debug)]
struct RegexBatch {
    set: regex::RegexSet,
    slots: Vec<Option<usize>>,
    /// Whether every regular-expression pattern is in the set (none failed to compile), so that
    /// the set and the other patterns together tell whether any pattern matches a path.
    complete: bool,
    /// The patterns matched without a regular expression.
    simple: Vec<usize>,
}

impl RegexBatch {
    fn new(patterns: &[Pattern]) -> Self {
        let mut sources = Vec::new();
        let slots: Vec<Option<usize>> = patterns
            .iter()
            .map(|pattern| {
                let source = pattern.compiled()?.as_ref().ok()?.as_str();
                sources.push(source);
                Some(sources.len() - 1)
            })
            .collect();
        let simple = (0..patterns.len()).filter(|&i| !matches!(patterns[i].shape, Shape::Regex(_))).collect();
        let complete =
            patterns.iter().zip(&slots).all(|(p, slot)| slot.is_some() || !matches!(p.shape, Shape::Regex(_)));
        // Every member compiled on its own, so the set compiles unless it outgrows the default
        // size limit; then each pattern is matched alone, with the same answers.
        match regex::RegexSet::new(&sources) {
            Ok(set) => Self { set, slots, complete, simple },
            Err(_) => {
                Self { set: regex::RegexSet::empty(), slots: vec![None; patterns.len()], complete: false, simple }
            }
        }
    }
}

struct PathMatches<'a> {
    path: &'a [u8],
    batch: &'a RegexBatch,
    /// The set's answer once asked: `None` inside when no member matches, which is most paths
    /// and much cheaper to find out than which members do.
    hits: Option<Option<regex::SetMatches>>,
}

impl PathMatches<'_> {
    fn is_match(&mut self, index: usize, pattern: &Pattern) -> Result<bool, PatternError> {
        let Some(slot) = self.batch.slots[index] else {
            return pattern.is_match(self.path);
        };
        Ok(self.set_hits().is_some_and(|hits| hits.matched(slot)))
    }

    fn set_hits(&mut self) -> Option<&regex::SetMatches> {
        let set = &self.batch.set;
        let path = self.path;
        self.hits
            .get_or_insert_with(|| {
                let text = gostr::go_lossy(path);
                set.is_match(&text).then(|| set.matches(&text))
            })
            .as_ref()
    }

    /// Whether no pattern at all matches the path itself (`false` when that cannot be known
    /// without going through the patterns one by one).
    fn matches_no_pattern(&mut self, patterns: &[Pattern]) -> bool {
        self.batch.complete
            && !self.batch.simple.iter().any(|&i| patterns[i].is_match(self.path).unwrap_or(true))
            && self.set_hits().is_none()
    }
}

impl PatternMatcher {
    /// Compiles `patterns` in order, as Go's `patternmatcher.New`: each is trimmed of white
    /// space (empty ones are dropped), cleaned with `filepath.Clean`, and a leading `!` makes it
    /// an exception. Fails on a bare `!` or a pattern that is not `filepath.Match` syntax.
    pub fn new<I, S>(patterns: I) -> Result<Self, PatternError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let mut compiled = Vec::new();
        let mut exclusions = false;
        for raw in patterns {
            let trimmed = gostr::trim_space(raw.as_ref());
            if trimmed.is_empty() {
                continue;
            }
            let mut cleaned = gostr::clean(trimmed);
            let exclusion = cleaned.first() == Some(&b'!');
            if exclusion {
                if cleaned.len() == 1 {
                    return Err(PatternError::IllegalExclusion);
                }
                cleaned.remove(0);
                exclusions = true;
            }
            if !glob::is_valid(&cleaned) {
                return Err(PatternError::BadPattern { pattern: String::from_utf8_lossy(&cleaned).into_owned() });
            }
            let dirs = cleaned.iter().filter(|&&b| b == b'/').count() + 1;
            let shape = glob::compile(&cleaned);
            compiled.push(Pattern { cleaned, dirs, exclusion, shape, regex: OnceLock::new() });
        }
        Ok(Self { patterns: compiled, exclusions, batch: OnceLock::new() })
    }

    /// The compiled patterns, in order.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Whether any pattern is a `!` exception.
    pub fn has_exclusions(&self) -> bool {
        self.exclusions
    }

    fn path_matches<'a>(&'a self, path: &'a [u8]) -> PathMatches<'a> {
        PathMatches { path, batch: self.batch.get_or_init(|| RegexBatch::new(&self.patterns)), hits: None }
    }

    /// Whether there are no patterns at all (nothing is ever matched).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Go's deprecated `Matches`: like [`Self::matches_or_parent_matches`] but it checks only the
    /// one ancestor that has as many components as the pattern. Kept for fidelity; prefer the
    /// others.
    pub fn matches(&self, file: impl AsRef<[u8]>) -> Result<bool, PatternError> {
        let file = file.as_ref();
        let parent = gostr::dir(file);
        let parent_dirs: Vec<&[u8]> = parent.split(|&b| b == b'/').collect();
        let mut matched = false;
        for pattern in &self.patterns {
            if pattern.exclusion != matched {
                continue;
            }
            let mut hit = pattern.is_match(file)?;
            if !hit && parent != b"." && pattern.dirs <= parent_dirs.len() {
                hit = pattern.is_match(&parent_dirs[..pattern.dirs].join(&b'/')).unwrap_or(false);
            }
            if hit {
                matched = !pattern.exclusion;
            }
        }
        Ok(matched)
    }

    /// Go's `MatchesOrParentMatches`: whether `file` (relative, `/`-separated) is excluded, a
    /// pattern that matches any of its ancestor directories counting as a match. Patterns are
    /// applied in order and the last one that matches decides.
    pub fn matches_or_parent_matches(&self, file: impl AsRef<[u8]>) -> Result<bool, PatternError> {
        let file = file.as_ref();
        let parent = gostr::dir(file);
        let mut matched = false;
        let mut lazy = self.path_matches(file);
        for (i, pattern) in self.patterns.iter().enumerate() {
            if pattern.exclusion != matched {
                continue;
            }
            let mut hit = lazy.is_match(i, pattern)?;
            if !hit && parent != b"." {
                hit = ancestor_matches(pattern, &parent);
            }
            if hit {
                matched = !pattern.exclusion;
            }
        }
        Ok(matched)
    }

    /// Go's `MatchesUsingParentResults`: the same answer as [`Self::matches_or_parent_matches`]
    /// when `parent` is what this call returned for `file`'s parent directory, at the cost of
    /// one match per pattern. Returns whether `file` is excluded, and the [`MatchInfo`] to pass
    /// when matching `file`'s children.
    pub fn matches_using_parent_results(
        &self,
        file: impl AsRef<[u8]>,
        parent: &MatchInfo,
    ) -> Result<(bool, MatchInfo), PatternError> {
        let mut info = vec![false; self.patterns.len()];
        let matched = self.match_with_parent_results(file.as_ref(), parent, Some(&mut info))?;
        Ok((matched, MatchInfo { parent_matched: info }))
    }

    /// [`Self::matches_using_parent_results`] for a path whose children are never matched (a
    /// file): the same answer without building its [`MatchInfo`].
    pub fn excludes_using_parent_results(
        &self,
        file: impl AsRef<[u8]>,
        parent: &MatchInfo,
    ) -> Result<bool, PatternError> {
        self.match_with_parent_results(file.as_ref(), parent, None)
    }

    fn match_with_parent_results(
        &self,
        file: &[u8],
        parent: &MatchInfo,
        mut info: Option<&mut [bool]>,
    ) -> Result<bool, PatternError> {
        let known = &parent.parent_matched;
        if !known.is_empty() && known.len() != self.patterns.len() {
            return Err(PatternError::MatchInfoMismatch);
        }
        let mut lazy = self.path_matches(file);
        // Most paths match no pattern and have no matching parent: then nothing is excluded and
        // every per-pattern result is false, whatever the order of the patterns.
        let no_ancestors_to_check = !known.is_empty() || gostr::dir(file) == b".";
        if no_ancestors_to_check && !known.contains(&true) && lazy.matches_no_pattern(&self.patterns) {
            if let Some(info) = info {
                info.fill(false);
            }
            return Ok(false);
        }
        let mut matched = false;
        for (i, pattern) in self.patterns.iter().enumerate() {
            let mut hit = known.get(i).copied().unwrap_or(false);
            if !hit {
                if pattern.exclusion != matched {
                    continue;
                }
                hit = lazy.is_match(i, pattern)?;
                if !hit && known.is_empty() {
                    let parent = gostr::dir(file);
                    if parent != b"." {
                        hit = ancestor_matches(pattern, &parent);
                    }
                }
            }
            if let Some(info) = info.as_deref_mut() {
                info[i] = hit;
            }
            if hit {
                matched = !pattern.exclusion;
            }
        }
        Ok(matched)
    }
}

/// Whether `pattern` matches one of the leading sub-paths of `parent` (`a`, `a/b`, ...).
fn ancestor_matches(pattern: &Pattern, parent: &[u8]) -> bool {
    let cuts = parent.iter().enumerate().filter(|&(_, &b)| b == b'/').map(|(i, _)| i);
    // Errors here were already raised by matching the file itself, as in Go.
    cuts.chain(std::iter::once(parent.len())).any(|end| pattern.is_match(&parent[..end]).unwrap_or(false))
}

#[cfg(test)]
mod tests;
