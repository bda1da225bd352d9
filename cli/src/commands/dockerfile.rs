//! `nullspace dockerfile dump PATH`: BuildKit's dump form of the parse.

use anyhow::Result;
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
        Command::Dump { path } => anyhow::bail!("dump of {} is not available yet", path.display()),
    }
}
