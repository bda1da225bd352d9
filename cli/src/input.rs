//! Turns a path given on the command line into a template: `.toml`/`.json` files are template
//! files, `-` is a Dockerfile on standard input, anything else is a Dockerfile.

use anyhow::{Context, Result};
use nullspace_plan::builder::Template;
use nullspace_plan::normalize::{MAX_DOCKERFILE_BYTES, PlanOptions};
use nullspace_plan::template_file;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A template and the options to plan it with.
pub struct Input {
    pub template: Template,
    pub options: PlanOptions,
}

/// Whether `path` names a template file rather than a Dockerfile.
pub fn is_template_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "toml" || e == "json")
}

pub fn load(path: &Path, build_args: &[String]) -> Result<Input> {
    let mut options = PlanOptions::default();
    for arg in build_args {
        let (key, value) = match arg.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (arg.clone(), std::env::var(arg).unwrap_or_default()),
        };
        options.build_args.insert(key, value);
    }
    let template = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .take(MAX_DOCKERFILE_BYTES as u64 + 1)
            .read_to_string(&mut text)
            .context("reading the Dockerfile from standard input")?;
        Template::from_dockerfile_content(text)
    } else if is_template_file(path) {
        options.base_dir = path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        template_file::load(path)?
    } else {
        Template::from_dockerfile(path)
    };
    Ok(Input { template, options })
}
