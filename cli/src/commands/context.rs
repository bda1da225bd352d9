//! `nullspace context inspect|ls|hash DIR`: what a build would send from a context directory.
//!
//! The stat cache (see the engine's `context::statcache`) lives under the state directory:
//! `--state-dir`, else `$NULLSPACE_STATE_DIR`, else `$XDG_STATE_HOME/nullspace`, else
//! `~/.local/state/nullspace`, in `context-cache/<sha256 of the context's canonical path>`.

use crate::{input, output};
use anyhow::{Context as _, Result, bail};
use nullspace_engine::cas::Digest;
use nullspace_engine::context::EntryKind;
use nullspace_engine::context::contenthash::hash_context;
use nullspace_engine::context::inspect::{ContextInspection, InspectOptions, Warning, inspect_build_context};
use nullspace_engine::context::statcache::{PendingStatCache, StatCache};
use nullspace_engine::context::walk::Walker;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Counts, largest files, warnings and the request payload a build would send.
    Inspect(InspectArgs),
    /// List what would be sent, one `KIND PATH` line per entry (`dir`, `file`, `symlink`).
    Ls(LsArgs),
    /// Print the whole context's digest (BuildKit's checksum of `/`), using the stat cache.
    Hash(HashArgs),
}

#[derive(clap::Args)]
pub struct InspectArgs {
    /// The context directory.
    dir: PathBuf,
    /// The Dockerfile or template file (default: DIR/Dockerfile).
    #[arg(long, short = 'f')]
    dockerfile: Option<PathBuf>,
    /// Print the full report (with the payload) as JSON.
    #[arg(long)]
    json: bool,
    /// Build arguments (`KEY=VALUE`, or `KEY` to take it from the environment).
    #[arg(long = "build-arg")]
    build_args: Vec<String>,
    /// Where the stat cache lives.
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct LsArgs {
    /// The context directory.
    dir: PathBuf,
    /// The Dockerfile (its `<Dockerfile>.dockerignore` wins over `.dockerignore`).
    #[arg(long, short = 'f')]
    dockerfile: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct HashArgs {
    /// The context directory.
    dir: PathBuf,
    /// The Dockerfile (its `<Dockerfile>.dockerignore` wins over `.dockerignore`).
    #[arg(long, short = 'f')]
    dockerfile: Option<PathBuf>,
    /// Where the stat cache lives.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Hash every file, neither reading nor writing the stat cache.
    #[arg(long)]
    no_stat_cache: bool,
    /// Print digest, counts and cache use as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Inspect(args) => inspect(args),
        Command::Ls(args) => ls(args),
        Command::Hash(args) => hash(args),
    }
}

/// The state directory, as the module docs describe.
pub fn state_dir(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = given {
        return Ok(dir.to_path_buf());
    }
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var("NULLSPACE_STATE_DIR") {
        return Ok(dir);
    }
    if let Some(dir) = var("XDG_STATE_HOME") {
        return Ok(dir.join("nullspace"));
    }
    match var("HOME") {
        Some(home) => Ok(home.join(".local/state/nullspace")),
        None => bail!("no state directory: pass --state-dir or set NULLSPACE_STATE_DIR"),
    }
}

/// The stat cache file for the context at `dir`.
pub fn stat_cache_file(state: &Path, dir: &Path) -> Result<PathBuf> {
    let canonical = dir.canonicalize().with_context(|| format!("context {}", dir.display()))?;
    let cache_dir = state.join("context-cache");
    std::fs::create_dir_all(&cache_dir).with_context(|| format!("creating {}", cache_dir.display()))?;
    Ok(cache_dir.join(Digest::of(canonical.as_os_str().as_bytes()).hex()))
}

/// The Dockerfile or template file for `dir`: the one given, else `DIR/Dockerfile`.
pub fn definition(dir: &Path, given: Option<&Path>) -> Result<PathBuf> {
    match given {
        Some(path) => Ok(path.to_path_buf()),
        None => {
            let path = dir.join("Dockerfile");
            if !path.is_file() {
                bail!("{} has no Dockerfile: pass --dockerfile", dir.display());
            }
            Ok(path)
        }
    }
}

/// Loads the definition with `dir` as its build context.
pub fn load(dir: &Path, given: Option<&Path>, build_args: &[String]) -> Result<input::Input> {
    let path = definition(dir, given)?;
    let mut input = input::load(&path, build_args)?;
    let cwd = std::env::current_dir().context("current directory")?;
    // The template file's directory is the base for its relative paths, not for DIR.
    input.template = input.template.context_dir(cwd.join(dir));
    Ok(input)
}

fn inspect(args: InspectArgs) -> Result<ExitCode> {
    let input = load(&args.dir, args.dockerfile.as_deref(), &args.build_args)?;
    let state = state_dir(args.state_dir.as_deref())?;
    let options = InspectOptions { stat_cache: Some(stat_cache_file(&state, &args.dir)?), ..Default::default() };
    let report = inspect_build_context(&input.template, &input.options, &options)?;
    if args.json {
        output::emit_json(&report)?;
    } else {
        output::emit(&render(&report))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

fn render(r: &ContextInspection) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!("context   {}", r.root.display()));
    line(format!(
        "ignore    {}",
        r.ignore_file.as_ref().map_or_else(|| "(none)".to_string(), |p| p.display().to_string())
    ));
    line(format!("included  {} entries, {}", r.included.entries, size(r.included.bytes)));
    line(format!("excluded  {} entries, {}", r.excluded.entries, size(r.excluded.bytes)));
    line(format!("digest    {}", r.payload.context.digest));
    if !r.largest.is_empty() {
        line("largest:".into());
        for s in &r.largest {
            line(format!("  {:>10}  {}", size(s.size), s.path));
        }
    }
    if r.warnings.is_empty() {
        line("no warnings".into());
    } else {
        line("warnings:".into());
    }
    for w in &r.warnings {
        line(format!("  - {}", warning_text(w)));
    }
    out
}

fn warning_text(w: &Warning) -> String {
    match w {
        Warning::LargeContext { bytes, threshold } => {
            format!("the context is {}, over {}: add patterns to .dockerignore", size(*bytes), size(*threshold))
        }
        Warning::ManyFiles { entries, threshold } => format!("{entries} entries are sent (over {threshold})"),
        Warning::UnusedFiles { count, bytes, examples } => {
            let names: Vec<&str> = examples.iter().map(|e| e.path.as_str()).collect();
            format!("{count} files ({}) are sent but no COPY/ADD uses them, e.g. {}", size(*bytes), names.join(", "))
        }
        Warning::SymlinkOutside { path, target } => format!("symlink {path} points outside the context ({target})"),
        Warning::DockerfileExcluded { path } => format!("the ignore rules exclude the Dockerfile {path}"),
        Warning::IgnoreFileExcluded { path } => format!("the ignore file {path} excludes itself"),
        Warning::Unsupported { path, file_type } => format!("{path} is a {file_type} and is left out"),
        Warning::SourceError { stage, step, message } => format!("stage {stage}, step {step}: {message}"),
    }
}

fn walker(dir: &Path, dockerfile: Option<&Path>) -> Walker {
    let walker = Walker::new(dir);
    match dockerfile {
        Some(df) => walker.dockerfile(std::path::absolute(df).unwrap_or_else(|_| df.to_path_buf())),
        None => walker,
    }
}

fn ls(args: LsArgs) -> Result<ExitCode> {
    let walked = walker(&args.dir, args.dockerfile.as_deref()).walk()?;
    let mut text = Vec::new();
    for e in &walked.entries {
        let kind: &[u8] = match e.kind {
            EntryKind::File => b"file ",
            EntryKind::Dir => b"dir ",
            EntryKind::Symlink { .. } => b"symlink ",
        };
        text.extend_from_slice(kind);
        text.extend_from_slice(e.path.as_os_str().as_bytes());
        text.push(b'\n');
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(&text).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other?,
    }
    for u in &walked.unsupported {
        eprintln!("left out (unsupported {:?}): {}", u.kind, u.path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn hash(args: HashArgs) -> Result<ExitCode> {
    let cache_file = if args.no_stat_cache {
        None
    } else {
        Some(stat_cache_file(&state_dir(args.state_dir.as_deref())?, &args.dir)?)
    };
    let pending = cache_file.as_deref().map(StatCache::load_in_background);
    let walked = walker(&args.dir, args.dockerfile.as_deref()).count_excluded_bytes(false).walk()?;
    let root = args.dir.canonicalize().with_context(|| format!("context {}", args.dir.display()))?;
    let mut cache = pending.map(PendingStatCache::wait);
    let hashes = hash_context(&root, &walked.entries, cache.as_mut())?;
    if let (Some(cache), Some(file)) = (&cache, &cache_file) {
        cache.save(file)?;
    }
    if args.json {
        let stats = hashes.stats();
        output::emit_json(&serde_json::json!({
            "digest": hashes.digest().to_string(),
            "entries": walked.included.entries,
            "bytes": walked.included.bytes,
            "files_hashed": stats.files_hashed,
            "bytes_hashed": stats.bytes_hashed,
            "cache_hits": stats.cache_hits,
        }))?;
    } else {
        output::emit(&format!("{}\n", hashes.digest()))?;
    }
    // The process ends here: freeing a large context's entries one by one would only delay it
    // (git's `UNLEAK` does the same).
    std::mem::forget((walked, hashes, cache));
    Ok(ExitCode::SUCCESS)
}
