//! Any text as a template file (TOML and JSON), then planned when it parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nullspace_plan::normalize::{plan, PlanOptions};
use nullspace_plan::template_file;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for name in ["t.toml", "t.json"] {
        if let Ok(template) = template_file::parse(text, name.as_ref()) {
            let _ = plan(&template, &PlanOptions::default());
        }
    }
});
