//! Runs every conformance corpus under `NULLSPACE_CONFORMANCE_DIR` (default
//! `../shared/conformance` from the repository root) as that directory's README describes, and
//! prints `N passed, M failed` for each corpus. Exits non-zero when any case fails or when the
//! directory holds no corpus at all.

mod contenthash;
mod dockerfile_parser;
mod dockerignore;
mod shell;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The outcome of one corpus: how many cases passed, and a line for each one that failed.
pub struct CorpusReport {
    pub name: String,
    pub passed: usize,
    pub failures: Vec<String>,
}

impl CorpusReport {
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), passed: 0, failures: Vec::new() }
    }

    /// Records one case: `Ok(())` passes, `Err(why)` fails with `case: why`.
    pub fn check(&mut self, case: &str, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => self.passed += 1,
            Err(why) => self.failures.push(format!("{case}: {why}")),
        }
    }
}

fn corpus_dir() -> PathBuf {
    match std::env::var_os("NULLSPACE_CONFORMANCE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance"),
    }
}

fn main() -> ExitCode {
    let dir = corpus_dir();
    if !dir.is_dir() {
        eprintln!("conformance: corpus directory {} does not exist", dir.display());
        return ExitCode::FAILURE;
    }
    let mut reports = Vec::new();
    dockerfile_parser::run(&dir, &mut reports);
    shell::run(&dir, &mut reports);
    dockerignore::run(&dir, &mut reports);
    contenthash::run(&dir, &mut reports);

    let mut failed_any = reports.is_empty();
    for report in &reports {
        for failure in &report.failures {
            println!("FAIL [{}] {failure}", report.name);
        }
        println!("{}: {} passed, {} failed", report.name, report.passed, report.failures.len());
        failed_any |= !report.failures.is_empty();
    }
    let passed: usize = reports.iter().map(|r| r.passed).sum();
    let failed: usize = reports.iter().map(|r| r.failures.len()).sum();
    println!("conformance: {passed} passed, {failed} failed");
    if failed_any { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
