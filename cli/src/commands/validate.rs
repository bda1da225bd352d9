//! `nullspace validate PATH|-`: every problem, like a compiler; exit code 1 on errors.

use crate::{input, output};
use anyhow::Result;
use nullspace_plan::diagnostic::render;
use nullspace_plan::normalize::plan;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// A Dockerfile, a template file (`.toml`/`.json`), or `-` for a Dockerfile on stdin.
    path: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
    /// Build arguments (`KEY=VALUE`, or `KEY` to take it from the environment).
    #[arg(long = "build-arg")]
    build_args: Vec<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Human,
    Json,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let input = input::load(&args.path, &args.build_args)?;
    let outcome = plan(&input.template, &input.options);
    match args.format {
        Format::Human => output::emit(&render(&outcome.diagnostics, outcome.dockerfile_source.as_deref()))?,
        Format::Json => output::emit_json(&serde_json::json!({
            "valid": !outcome.has_errors(),
            "plan_digest": outcome.plan.as_ref().map(|p| p.plan_digest()),
            "diagnostics": outcome.diagnostics,
        }))?,
    }
    Ok(if outcome.has_errors() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
