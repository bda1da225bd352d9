//! The `nullspace` command line: validate, plan and inspect templates offline; build them and
//! manage builds and templates through the engine.

mod commands;
mod input;
mod output;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Build sandbox templates into OCI images.
#[derive(Parser)]
#[command(name = "nullspace", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a Dockerfile or template file and report every problem.
    Validate(commands::validate::Args),
    /// Print the normalized build plan as JSON.
    Plan(commands::plan::Args),
    /// Dockerfile tools.
    Dockerfile {
        #[command(subcommand)]
        command: commands::dockerfile::Command,
    },
    /// Build context tools: inspect, list and hash what a build would send.
    Context {
        #[command(subcommand)]
        command: commands::context::Command,
    },
    /// Cache keys: print them, and explain why they changed.
    Cache {
        #[command(subcommand)]
        command: commands::cache::Command,
    },
    /// Build a template file or Dockerfile into an image.
    Build(commands::build::Args),
    /// Build history and handles: list, show, logs, cancel, retry, promote.
    Builds {
        #[command(subcommand)]
        command: commands::builds::Command,
    },
    /// Template names, tags, aliases and visibility.
    Templates {
        #[command(subcommand)]
        command: commands::templates::Command,
    },
}

/// Runs an engine command on a tokio runtime.
fn block_on<F: std::future::Future<Output = anyhow::Result<ExitCode>>>(f: F) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(f)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => commands::validate::run(args),
        Command::Plan(args) => commands::plan::run(args),
        Command::Dockerfile { command } => commands::dockerfile::run(command),
        Command::Context { command } => commands::context::run(command),
        Command::Cache { command } => commands::cache::run(command),
        Command::Build(args) => block_on(commands::build::run(args)),
        Command::Builds { command } => block_on(commands::builds::run(command)),
        Command::Templates { command } => block_on(commands::templates::run(command)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
