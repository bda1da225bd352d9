//! The `nullspace` command line: validate, plan and inspect templates offline.

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => commands::validate::run(args),
        Command::Plan(args) => commands::plan::run(args),
        Command::Dockerfile { command } => commands::dockerfile::run(command),
        Command::Context { command } => commands::context::run(command),
        Command::Cache { command } => commands::cache::run(command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
