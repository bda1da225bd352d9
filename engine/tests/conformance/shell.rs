//! BuildKit's word-expansion corpora, read exactly as BuildKit's own tests read them:
//! `shell/envVarTest` as `TestShellParser4EnvVars` and `shell/wordsTest` as
//! `TestShellParser4Words` (moby/buildkit `frontend/dockerfile/shell/lex_test.go`).

use crate::CorpusReport;
use nullspace_plan::dockerfile::shell::Lex;
use std::path::Path;

pub fn run(dir: &Path, reports: &mut Vec<CorpusReport>) {
    let shell = dir.join("shell");
    if let Some(text) = read(&shell.join("envVarTest")) {
        reports.push(env_var_test(&text));
    }
    if let Some(text) = read(&shell.join("wordsTest")) {
        reports.push(words_test(&text));
    }
}

fn read(path: &Path) -> Option<String> {
    std::fs::read(path).ok().map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

/// Lines as Go's `bufio.ScanLines` yields them: split at `\n`, one trailing `\r` dropped, no
/// empty line after a final newline.
fn scan_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let lines = if text.is_empty() { None } else { Some(body.split('\n')) };
    lines
        .into_iter()
        .flatten()
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .enumerate()
        .map(|(i, line)| (i + 1, line))
}

/// `PLATFORM | input | expected`; `A` and `U` rows run (this is Unix), `W` rows are skipped.
/// Comments are lines starting with `#` before trimming; blank lines are skipped after it.
fn env_var_test(text: &str) -> CorpusReport {
    let mut report = CorpusReport::new("shell/envVarTest");
    let env = ["PWD=/home", "SHELL=bash", "KOREAN=한국어", "NULL="];
    let lex = Lex::new('\\');
    for (number, line) in scan_lines(text) {
        if line.starts_with('#') {
            continue;
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let case = format!("line {number}: {line}");
        let fields: Vec<&str> = line.split('|').collect();
        let [platform, source, expected] = fields.as_slice() else {
            report.check(&case, Err(format!("expected 3 fields separated by '|', found {}", fields.len())));
            continue;
        };
        let (platform, source, expected) = (platform.trim(), source.trim(), expected.trim());
        match platform {
            "W" => continue,
            "A" | "U" => {}
            other => {
                report.check(&case, Err(format!("invalid platform tag {other:?}: must be W, A or U")));
                continue;
            }
        }
        let outcome = match (lex.process_word(source, &env), expected) {
            (Err(_), "error") => Ok(()),
            (Ok(got), "error") => Err(format!("expected an error, got {got:?}")),
            (Ok(got), _) if got == expected => Ok(()),
            (Ok(got), _) => Err(format!("expected {expected:?}, got {got:?}")),
            (Err(err), _) => Err(format!("expected {expected:?}, got error: {err}")),
        };
        report.check(&case, outcome);
    }
    report
}

/// `input | w1,w2,...`; `ENV k=v` lines add to the environment of the rows after them.
///
/// BuildKit's test loops over two lexer modes but reads the file only once, so its second mode
/// (raw quotes, skip unset env) sees no rows; only the default mode is judged, as there.
fn words_test(text: &str) -> CorpusReport {
    let mut report = CorpusReport::new("shell/wordsTest");
    let lex = Lex::new('\\');
    let mut env: Vec<String> = Vec::new();
    for (number, line) in scan_lines(text) {
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            env.push(rest.trim_start_matches(' ').to_owned());
            continue;
        }
        let case = format!("line {number}: {line}");
        let fields: Vec<&str> = line.split('|').collect();
        let [input, expected] = fields.as_slice() else {
            report.check(&case, Err(format!("expected exactly one '|', found {}", fields.len().saturating_sub(1))));
            continue;
        };
        let input = input.trim();
        let expected: Vec<&str> = expected.trim_start_matches(' ').split(',').collect();
        let got = lex.process_words(input, &env).unwrap_or_else(|_| vec!["error".to_owned()]);
        let outcome = if got == expected { Ok(()) } else { Err(format!("expected {expected:?}, got {got:?}")) };
        report.check(&case, outcome);
    }
    report
}
