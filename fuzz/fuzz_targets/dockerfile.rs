//! Any bytes through the whole Dockerfile pipeline: parser, instructions, word expansion,
//! normalization, lints. It must return a plan or diagnostics, never panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nullspace_plan::builder::Template;
use nullspace_plan::dockerfile::parser;
use nullspace_plan::normalize::{plan, PlanOptions};

fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = parser::parse(data) {
        let _ = parsed.ast.dump();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = plan(&Template::from_dockerfile_content(text), &PlanOptions::default());
    }
});
