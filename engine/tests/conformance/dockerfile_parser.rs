//! BuildKit's parser corpora: `dockerfile-parser/testfiles/NAME/{Dockerfile,result}` (the dump
//! must equal `result`) and `dockerfile-parser/testfiles-negative/NAME/Dockerfile` (parsing, or
//! parsing then typing the instructions, must fail with an error that names a line).

use crate::CorpusReport;
use nullspace_plan::dockerfile::{instructions, parser};
use std::path::{Path, PathBuf};

pub fn run(dir: &Path, reports: &mut Vec<CorpusReport>) {
    let base = dir.join("dockerfile-parser");
    let positive = base.join("testfiles");
    if positive.is_dir() {
        let mut report = CorpusReport::new("dockerfile-parser");
        for case in cases(&positive) {
            let name = case_name(&case);
            report.check(&name, positive_case(&case));
        }
        reports.push(report);
    }
    let negative = base.join("testfiles-negative");
    if negative.is_dir() {
        let mut report = CorpusReport::new("dockerfile-parser-negative");
        for case in cases(&negative) {
            let name = case_name(&case);
            report.check(&name, negative_case(&case));
        }
        reports.push(report);
    }
}

fn cases(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

fn case_name(case: &Path) -> String {
    case.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn positive_case(case: &Path) -> Result<(), String> {
    let input = std::fs::read(case.join("Dockerfile")).map_err(|e| format!("reading Dockerfile: {e}"))?;
    let expected = std::fs::read_to_string(case.join("result")).map_err(|e| format!("reading result: {e}"))?;
    let result = parser::parse(&input).map_err(|e| format!("parse failed: {e}"))?;
    let got = result.ast.dump() + "\n";
    if got == expected { Ok(()) } else { Err(format!("dump differs\n--- expected\n{expected}--- got\n{got}")) }
}

fn negative_case(case: &Path) -> Result<(), String> {
    let input = std::fs::read(case.join("Dockerfile")).map_err(|e| format!("reading Dockerfile: {e}"))?;
    match parser::parse(&input) {
        Err(e) if e.line >= 1 => Ok(()),
        Err(e) => Err(format!("error names no line: {e}")),
        Ok(result) => match instructions::parse(&result.ast).errors.first() {
            Some(e) if e.line >= 1 => Ok(()),
            Some(e) => Err(format!("error names no line: {e}")),
            None => Err("parsed without error".into()),
        },
    }
}
