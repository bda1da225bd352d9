//! `nullspace cache keys|explain`: every step's cache key, and why two sets of keys differ.
//!
//! ```text
//! nullspace cache keys DIR [-f Dockerfile] > old.json     # save today's keys
//! nullspace cache explain old.json DIR [-f Dockerfile]    # later: what changed since?
//! nullspace cache explain old.json new.json               # or compare two saved key files
//! ```
//!
//! Keys are computed offline: a base image is keyed by the digest given with
//! `--image REF=sha256:…`, by the digest pinned in its reference (`name@sha256:…`), or else by
//! the placeholder `unresolved:REF` (a build resolves tags in the registry, so such a key is
//! only good for comparing with keys computed the same way).

use crate::commands::context::{load, stat_cache_file, state_dir};
use crate::output;
use anyhow::{Context as _, Result, anyhow, bail};
use nullspace_engine::cache::{CacheKeys, Change, Explanation, KeyContext, ResolvedImages, compute, explain};
use nullspace_engine::context::contenthash::hash_context;
use nullspace_engine::context::inspect::context_dir;
use nullspace_engine::context::select::ContextSelector;
use nullspace_engine::context::statcache::StatCache;
use nullspace_engine::context::walk::Walker;
use nullspace_plan::builder::Base;
use nullspace_plan::diagnostic::render;
use nullspace_plan::normalize::plan;
use nullspace_plan::plan::{BuildPlan, CopyFrom, Mount, Op};
use nullspace_plan::reference::BaseImage;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Print every step's cache key and its inputs as JSON.
    Keys(KeysArgs),
    /// Name the first step whose key differs between saved keys and the context (or another
    /// saved key file), and which input changed.
    Explain(ExplainArgs),
}

#[derive(clap::Args)]
pub struct Sources {
    /// The Dockerfile or template file (default: DIR/Dockerfile).
    #[arg(long, short = 'f')]
    dockerfile: Option<PathBuf>,
    /// Build arguments (`KEY=VALUE`, or `KEY` to take it from the environment).
    #[arg(long = "build-arg")]
    build_args: Vec<String>,
    /// The manifest digest of an image (`REF=sha256:…`, REF as the plan normalizes it).
    #[arg(long = "image")]
    images: Vec<String>,
    /// Where the stat cache lives.
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct KeysArgs {
    /// The context directory.
    dir: PathBuf,
    #[command(flatten)]
    sources: Sources,
}

#[derive(clap::Args)]
pub struct ExplainArgs {
    /// Keys saved by `nullspace cache keys`.
    old: PathBuf,
    /// A context directory (keys computed now) or another saved key file.
    new: PathBuf,
    #[command(flatten)]
    sources: Sources,
    /// Print the explanation as JSON (`null` when every key is equal).
    #[arg(long)]
    json: bool,
}

pub fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Keys(args) => {
            output::emit_json(&current_keys(&args.dir, &args.sources)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain(args) => explain_cmd(args),
    }
}

fn read_keys(path: &Path) -> Result<CacheKeys> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a key file from `nullspace cache keys`", path.display()))
}

/// Every image reference the plan reads, as the plan writes it.
fn image_refs(plan: &BuildPlan) -> Vec<String> {
    let mut refs = Vec::new();
    for stage in &plan.stages {
        match &stage.base {
            BaseImage::Registry { reference } => refs.push(reference.clone()),
            BaseImage::OciLayout { path, tag } => {
                refs.push(format!("oci:{path}{}", tag.as_ref().map(|t| format!(":{t}")).unwrap_or_default()));
            }
            BaseImage::Stage { .. } | BaseImage::Scratch => {}
        }
        for step in &stage.steps {
            match &step.op {
                Op::Copy { from: CopyFrom::Image { reference }, .. } => refs.push(reference.clone()),
                Op::Run { mounts, .. } => {
                    for m in mounts {
                        if let Mount::Bind { from: Some(f), .. } | Mount::Cache { from: Some(f), .. } = m
                            && !plan.stages.iter().any(|s| s.name.as_deref() == Some(f.as_str()))
                        {
                            refs.push(f.clone());
                        }
                    }
                }
                _ => {}
            }
        }
    }
    refs
}

fn resolve_images(plan: &BuildPlan, given: &[String]) -> Result<ResolvedImages> {
    let mut images = ResolvedImages::new();
    for pair in given {
        let (reference, digest) =
            pair.split_once('=').ok_or_else(|| anyhow!("--image {pair:?}: expected REF=sha256:…"))?;
        if !digest.starts_with("sha256:") {
            bail!("--image {pair:?}: the digest must start with sha256:");
        }
        images.insert(reference.to_string(), digest.to_string());
    }
    for reference in image_refs(plan) {
        let pinned = reference.split_once('@').map(|(_, d)| d.to_string());
        images.entry(reference.clone()).or_insert_with(|| pinned.unwrap_or_else(|| format!("unresolved:{reference}")));
    }
    Ok(images)
}

fn current_keys(dir: &Path, sources: &Sources) -> Result<CacheKeys> {
    let input = load(dir, sources.dockerfile.as_deref(), &sources.build_args)?;
    let outcome = plan(&input.template, &input.options);
    let Some(p) = outcome.plan else {
        bail!("{}", render(&outcome.diagnostics, outcome.dockerfile_source.as_deref()));
    };
    let root_dir = context_dir(&input.template, &input.options);
    let mut walker = Walker::new(&root_dir);
    if let Base::Dockerfile { path } = &input.template.from {
        walker = walker.dockerfile(std::path::absolute(input.options.base_dir.join(path))?);
    }
    let walked = walker.walk()?;
    let root = root_dir.canonicalize().with_context(|| format!("context {}", root_dir.display()))?;
    let cache_file = stat_cache_file(&state_dir(sources.state_dir.as_deref())?, &root)?;
    let mut cache = StatCache::load(&cache_file);
    let hashes = hash_context(&root, &walked.entries, Some(&mut cache))?;
    cache.save(&cache_file)?;
    let images = resolve_images(&p, &sources.images)?;
    let selector = ContextSelector::new(&walked.entries, &hashes);
    // A fixed nonce: `cache keys` describes inputs; a real build's nonce is its own.
    Ok(compute(&p, &KeyContext { images: &images, sources: &selector, build_nonce: "cache-keys" })?)
}

fn explain_cmd(args: ExplainArgs) -> Result<ExitCode> {
    let old = read_keys(&args.old)?;
    let new = if args.new.is_dir() { current_keys(&args.new, &args.sources)? } else { read_keys(&args.new)? };
    let explanation = explain(&old, &new);
    if args.json {
        output::emit_json(&explanation)?;
    } else {
        output::emit(&describe(explanation.as_ref(), &new))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn short(digest: &Option<String>) -> String {
    match digest {
        None => "(none)".into(),
        Some(d) => {
            let hex = d.strip_prefix("sha256:").unwrap_or(d);
            if hex.len() > 12 && hex.len() != d.len() { format!("sha256:{}…", &hex[..12]) } else { d.clone() }
        }
    }
}

fn describe(explanation: Option<&Explanation>, new: &CacheKeys) -> String {
    let Some(e) = explanation else {
        return "every step's key is unchanged\n".into();
    };
    let op = new
        .steps
        .iter()
        .find(|s| s.stage == e.stage && s.step == e.step)
        .map(|s| s.inputs.op.clone())
        .unwrap_or_default();
    let mut out = format!("first differing step: stage {}, step {}: {op}\n", e.stage, e.step);
    for c in &e.changes {
        let line = match c {
            Change::BaseDigest { old, new } => format!("base image digest {} -> {}", short(old), short(new)),
            Change::Definition { old, new } => format!("the step changed:\n    was {old}\n    now {new}"),
            Change::File { path, old: None, new } => format!("file {path} added ({})", short(new)),
            Change::File { path, old, new: None } => format!("file {path} removed (was {})", short(old)),
            Change::File { path, old, new } => format!("file {path} changed ({} -> {})", short(old), short(new)),
            Change::Variable { name, old, new } => {
                format!("{name}: {} -> {}", old.as_deref().unwrap_or("(unset)"), new.as_deref().unwrap_or("(unset)"))
            }
            Change::Dependency { name, old, new } => format!("{name} changed ({} -> {})", short(old), short(new)),
            Change::Platform { old, new } => format!("platform {old} -> {new}"),
            Change::NoCache => "the step is never cached".into(),
            Change::StepAddedOrRemoved => "steps were added or removed from here on".into(),
        };
        out.push_str(&format!("  {line}\n"));
    }
    out
}
