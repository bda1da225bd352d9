//! `nullspace plan PATH`: the normalized plan as JSON (diagnostics on stderr; exit 1 on errors).

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
    /// Build arguments (`KEY=VALUE`, or `KEY` to take it from the environment).
    #[arg(long = "build-arg")]
    build_args: Vec<String>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let input = input::load(&args.path, &args.build_args)?;
    let outcome = plan(&input.template, &input.options);
    if !outcome.diagnostics.is_empty() {
        eprint!("{}", render(&outcome.diagnostics, outcome.dockerfile_source.as_deref()));
    }
    match outcome.plan {
        Some(plan) => {
            output::emit_json(&plan)?;
            Ok(ExitCode::SUCCESS)
        }
        None => Ok(ExitCode::FAILURE),
    }
}
