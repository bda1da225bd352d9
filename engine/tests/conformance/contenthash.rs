//! `contenthash/*.json`: BuildKit's content checksums. Each file gives a `tree` (materialised in
//! an empty directory, modes and owners as given) and `expect` rows: checksum `path` (following
//! links if `follow_links`), optionally after removing `after_removing` from the tree, and get
//! `digest`, or an error whose message contains `error`.

use crate::CorpusReport;
use nullspace_engine::context::contenthash::{ChecksumOptions, Ownership, checksum_path};
use serde::Deserialize;
use std::fs;
use std::os::unix::fs::{PermissionsExt, lchown, symlink};
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// Where the data comes from; only documentation.
    #[serde(default, rename = "source")]
    _source: Option<String>,
    tree: Vec<Node>,
    #[serde(default)]
    uid: Option<u32>,
    #[serde(default)]
    gid: Option<u32>,
    expect: Vec<Expect>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Node {
    path: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    mode: Option<Mode>,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    uid: Option<u32>,
    #[serde(default)]
    gid: Option<u32>,
}

/// A mode as an octal string (`"0644"`) or a plain number.
#[derive(Deserialize)]
#[serde(untagged)]
enum Mode {
    Octal(String),
    Number(u32),
}

impl Mode {
    fn value(&self) -> Result<u32, String> {
        match self {
            Mode::Octal(s) => u32::from_str_radix(s, 8).map_err(|e| format!("mode {s:?}: {e}")),
            Mode::Number(n) => Ok(*n),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    path: String,
    #[serde(default)]
    follow_links: bool,
    #[serde(default)]
    after_removing: Option<String>,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

pub fn run(dir: &Path, reports: &mut Vec<CorpusReport>) {
    let corpus = dir.join("contenthash");
    let Ok(listing) = fs::read_dir(&corpus) else {
        return;
    };
    let mut files: Vec<PathBuf> = listing
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut report = CorpusReport::new("contenthash");
    for file in files {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let case: Case = match fs::read_to_string(&file)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
        {
            Ok(case) => case,
            Err(why) => {
                report.check(&name, Err(format!("cannot load: {why}")));
                continue;
            }
        };
        for (i, expect) in case.expect.iter().enumerate() {
            let label = format!("{name}#{i} {}", expect.path);
            report.check(&label, run_row(&case, expect));
        }
    }
    reports.push(report);
}

fn run_row(case: &Case, expect: &Expect) -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let root = tmp.path().join("ctx");
    build_tree(&root, case)?;
    if let Some(gone) = &expect.after_removing {
        let target = root.join(gone);
        let meta = fs::symlink_metadata(&target).map_err(|e| format!("after_removing {gone}: {e}"))?;
        let removed = if meta.is_dir() { fs::remove_dir_all(&target) } else { fs::remove_file(&target) };
        removed.map_err(|e| format!("after_removing {gone}: {e}"))?;
    }
    let options = ChecksumOptions { follow_links: expect.follow_links, ownership: Ownership::OnDisk };
    let got = checksum_path(&root, Path::new(&expect.path), &options);
    match (&expect.digest, &expect.error, got) {
        (Some(want), None, Ok(got)) if got.to_string() == *want => Ok(()),
        (Some(want), None, Ok(got)) => Err(format!("digest {got}, expected {want}")),
        (Some(want), None, Err(e)) => Err(format!("error {e}, expected digest {want}")),
        (None, Some(want), Err(e)) if e.to_string().to_lowercase().contains(&want.to_lowercase()) => Ok(()),
        (None, Some(want), Err(e)) => Err(format!("error {e:?}, expected an error containing {want:?}")),
        (None, Some(want), Ok(got)) => Err(format!("digest {got}, expected error {want:?}")),
        _ => Err("row must give exactly one of digest and error".into()),
    }
}

fn build_tree(root: &Path, case: &Case) -> Result<(), String> {
    fs::create_dir(root).map_err(|e| e.to_string())?;
    // BuildKit's snapshot roots are 0755.
    fs::set_permissions(root, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    chown(root, case.uid, case.gid)?;
    let mut modes = Vec::new();
    for node in &case.tree {
        let path = root.join(&node.path);
        let fail = |what: &str, e: std::io::Error| format!("tree {} ({what}): {e}", node.path);
        match node.kind.as_str() {
            "file" => {
                fs::write(&path, node.content.as_deref().unwrap_or("")).map_err(|e| fail("write", e))?;
                modes.push((path.clone(), node.mode.as_ref().map_or(Ok(0o644), Mode::value)?));
            }
            "dir" => {
                fs::create_dir(&path).map_err(|e| fail("mkdir", e))?;
                modes.push((path.clone(), node.mode.as_ref().map_or(Ok(0o755), Mode::value)?));
            }
            "symlink" => {
                let target =
                    node.target.as_deref().ok_or_else(|| format!("tree {}: symlink without target", node.path))?;
                symlink(target, &path).map_err(|e| fail("symlink", e))?;
            }
            "hardlink" => {
                let target =
                    node.target.as_deref().ok_or_else(|| format!("tree {}: hardlink without target", node.path))?;
                fs::hard_link(root.join(target), &path).map_err(|e| fail("link", e))?;
            }
            other => return Err(format!("tree {}: unknown type {other:?}", node.path)),
        }
        chown(&path, node.uid.or(case.uid), node.gid.or(case.gid))?;
    }
    // Modes last, deepest first, so that a read-only directory does not stop its own filling.
    modes.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (path, mode) in modes {
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .map_err(|e| format!("chmod {}: {e}", path.display()))?;
    }
    Ok(())
}

fn chown(path: &Path, uid: Option<u32>, gid: Option<u32>) -> Result<(), String> {
    if uid.is_none() && gid.is_none() {
        return Ok(());
    }
    lchown(path, uid, gid).map_err(|e| format!("chown {}: {e}", path.display()))
}
