//! `dockerignore/patterns.json` (moby/patternmatcher's match tables) and
//! `dockerignore/walk/*.json` (whole contexts, listed as BuildKit would send them).

use crate::CorpusReport;
use nullspace_engine::context::EntryKind;
use nullspace_engine::context::ignore::{MatchInfo, PatternMatcher, clean};
use nullspace_engine::context::walk::Walker;
use serde_json::Value;
use std::path::Path;

pub fn run(dir: &Path, reports: &mut Vec<CorpusReport>) {
    let patterns = dir.join("dockerignore/patterns.json");
    if patterns.is_file() {
        reports.push(run_patterns(&patterns));
    }
    let walks = dir.join("dockerignore/walk");
    if walks.is_dir() {
        reports.push(run_walks(&walks));
    }
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("parsing {}: {e}", path.display()))
}

fn run_patterns(path: &Path) -> CorpusReport {
    let mut report = CorpusReport::new("dockerignore/patterns");
    let doc = match read_json(path) {
        Ok(doc) => doc,
        Err(why) => {
            report.check("patterns.json", Err(why));
            return report;
        }
    };
    for (kind, key) in [("single", "pattern"), ("multi", "patterns")] {
        let rows = doc.get(kind).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        for (i, row) in rows.iter().enumerate() {
            if row.get("windows_only").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let patterns: Vec<String> = match row.get(key) {
                Some(Value::String(one)) => vec![one.clone()],
                Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
                _ => Vec::new(),
            };
            let text = row.get("text").and_then(Value::as_str).unwrap_or_default();
            let case = format!("{kind}[{i}] patterns={patterns:?} text={text:?}");
            report.check(&case, judge_pattern_row(row, &patterns, text));
        }
    }
    report
}

/// Go's tests judge rows with `MatchesOrParentMatches` and with `MatchesUsingParentResults`
/// run down the text's ancestors; both must give the expected answer.
fn judge_pattern_row(row: &Value, patterns: &[String], text: &str) -> Result<(), String> {
    let wants_error = row.get("error").and_then(Value::as_bool) == Some(true);
    let matcher = match PatternMatcher::new(patterns) {
        Ok(matcher) => matcher,
        Err(_) if wants_error => return Ok(()),
        Err(e) => return Err(format!("refused: {e}")),
    };
    let direct = matcher.matches_or_parent_matches(text);
    if wants_error {
        return match direct {
            Err(_) => Ok(()),
            Ok(got) => Err(format!("accepted (matched: {got}), but Docker refuses it")),
        };
    }
    let want = row.get("match").and_then(Value::as_bool).ok_or("row has no boolean `match`")?;
    let direct = direct.map_err(|e| format!("MatchesOrParentMatches failed: {e}"))?;
    if direct != want {
        return Err(format!("MatchesOrParentMatches gave {direct}, want {want}"));
    }
    let walked = walk_ancestors(&matcher, text).map_err(|e| format!("MatchesUsingParentResults failed: {e}"))?;
    if walked != want {
        return Err(format!("MatchesUsingParentResults gave {walked}, want {want}"));
    }
    Ok(())
}

/// As patternmatcher's test: match each ancestor of `text` (from Go's `filepath.Dir`), then
/// `text`, handing each result to the next.
fn walk_ancestors(matcher: &PatternMatcher, text: &str) -> Result<bool, String> {
    let mut info = MatchInfo::default();
    let parent = match text.rfind('/') {
        Some(cut) => clean(&text.as_bytes()[..=cut]),
        None => b".".to_vec(),
    };
    if parent != b"." {
        let parts: Vec<&[u8]> = parent.split(|&b| b == b'/').collect();
        for i in 1..=parts.len() {
            let prefix = parts[..i].join(&b'/');
            info = matcher.matches_using_parent_results(&prefix, &info).map_err(|e| e.to_string())?.1;
        }
    }
    matcher.matches_using_parent_results(text, &info).map(|(hit, _)| hit).map_err(|e| e.to_string())
}

fn run_walks(dir: &Path) -> CorpusReport {
    let mut report = CorpusReport::new("dockerignore/walk");
    let mut cases: Vec<_> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(Result::ok).map(|e| e.path()).collect(),
        Err(e) => {
            report.check(&dir.display().to_string(), Err(e.to_string()));
            return report;
        }
    };
    cases.retain(|p| p.extension().is_some_and(|e| e == "json"));
    cases.sort();
    for case in cases {
        let name = case.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        report.check(&name, run_walk_case(&case));
    }
    report
}

fn run_walk_case(path: &Path) -> Result<(), String> {
    let doc = read_json(path)?;
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let files = doc.get("files").and_then(Value::as_object).ok_or("case has no `files` object")?;
    for (name, spec) in files {
        materialise(tmp.path(), name, spec)?;
    }
    let dockerfile = doc.get("dockerfile").and_then(Value::as_str).unwrap_or("Dockerfile");
    let result = Walker::new(tmp.path()).dockerfile(dockerfile).walk().map_err(|e| format!("walk failed: {e}"))?;
    let got: Vec<String> = result
        .entries
        .iter()
        .map(|entry| {
            let kind = match entry.kind {
                EntryKind::File => "file",
                EntryKind::Dir => "dir",
                EntryKind::Symlink { .. } => "symlink",
            };
            format!("{kind} {}", entry.path.to_string_lossy())
        })
        .collect();
    let expected: Vec<String> = doc
        .get("expected")
        .and_then(Value::as_array)
        .ok_or("case has no `expected` array")?
        .iter()
        .map(|line| line.as_str().map(str::to_owned).ok_or("non-string line in `expected`"))
        .collect::<Result<_, _>>()?;
    if got == expected { Ok(()) } else { Err(format!("listing differs (-expected +got):\n{}", diff(&expected, &got))) }
}

/// Creates one corpus entry: a string is a file's content, `{"symlink": T}` a symlink,
/// `{"dir": true}` an (empty) directory. Parents are created as needed.
fn materialise(root: &Path, name: &str, spec: &Value) -> Result<(), String> {
    let target = root.join(name.trim_end_matches('/'));
    let io = |e: std::io::Error| format!("creating {name}: {e}");
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    match spec {
        Value::String(content) => std::fs::write(&target, content).map_err(io),
        Value::Object(map) => {
            if let Some(link) = map.get("symlink").and_then(Value::as_str) {
                std::os::unix::fs::symlink(link, &target).map_err(io)
            } else if map.get("dir").and_then(Value::as_bool) == Some(true) {
                std::fs::create_dir_all(&target).map_err(io)
            } else {
                Err(format!("{name}: unknown file spec {spec}"))
            }
        }
        _ => Err(format!("{name}: unknown file spec {spec}")),
    }
}

/// A line diff by longest common subsequence: ` ` kept, `-` only expected, `+` only got.
fn diff(expected: &[String], got: &[String]) -> String {
    let (n, m) = (expected.len(), got.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if expected[i] == got[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && expected[i] == got[j] {
            out.push_str(&format!("   {}\n", expected[i]));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push_str(&format!("  +{}\n", got[j]));
            j += 1;
        } else {
            out.push_str(&format!("  -{}\n", expected[i]));
            i += 1;
        }
    }
    out
}
