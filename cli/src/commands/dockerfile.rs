//! `nullspace dockerfile dump PATH`: BuildKit's dump form of the parse.

use crate::output;
use anyhow::{Context, Result};
use nullspace_plan::dockerfile::parser;
use nullspace_plan::normalize::MAX_DOCKERFILE_BYTES;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Print the parse in BuildKit's dump form (one s-expression a line).
    Dump {
        /// The Dockerfile, or `-` for standard input.
        path: PathBuf,
    },
}

pub fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Dump { path } => {
            let mut bytes = Vec::new();
            let limit = MAX_DOCKERFILE_BYTES as u64 + 1;
            if path.as_os_str() == "-" {
                std::io::stdin().take(limit).read_to_end(&mut bytes).context("reading standard input")?;
            } else {
                std::fs::File::open(&path)
                    .and_then(|f| f.take(limit).read_to_end(&mut bytes))
                    .with_context(|| format!("reading {}", path.display()))?;
            }
            match parser::parse(&bytes) {
                Ok(parsed) => {
                    let mut dump = parsed.ast.dump();
                    if !dump.ends_with('\n') {
                        dump.push('\n');
                    }
                    output::emit(&dump)?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {}:{}: {}", path.display(), e.line, e.kind);
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
