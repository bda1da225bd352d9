//! The template file: a declarative template written in TOML (or JSON), for CLI users.
//!
//! The schema is the serde form of [`Template`], documented in `docs/template-file.md`.
//! Relative paths in the file (`context`, a Dockerfile `path`) are relative to the file's
//! directory.

use crate::builder::Template;
use std::path::{Path, PathBuf};

/// Template files larger than this are refused.
pub const MAX_TEMPLATE_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Why a template file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TemplateFileError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is too large.
    #[error("{path} is {size} bytes, over the {MAX_TEMPLATE_FILE_BYTES}-byte limit")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// The file does not follow the schema.
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
}

/// Parses template file text; `path` is used in errors and picks JSON for `.json`, TOML otherwise.
///
/// ```
/// use nullspace_plan::template_file::parse;
/// let text = r#"
/// from = { kind = "python", version = "3.12", variant = "slim" }
///
/// [[steps]]
/// step = "pip_install"
/// packages = ["flask"]
///
/// [[steps]]
/// step = "set_start_cmd"
/// cmd = "flask run"
/// ready = { type = "port", port = 5000 }
/// "#;
/// let template = parse(text, "template.toml".as_ref()).unwrap();
/// assert_eq!(template.steps.len(), 2);
/// let err = parse("from = 3", "t.toml".as_ref()).unwrap_err();
/// assert!(err.to_string().starts_with("t.toml:1:"));
/// ```
pub fn parse(text: &str, path: &Path) -> Result<Template, TemplateFileError> {
    let is_json = path.extension().is_some_and(|e| e == "json");
    if is_json {
        serde_json::from_str(text).map_err(|e| TemplateFileError::Syntax {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })
    } else {
        toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |span| line_column(text, span.start));
            TemplateFileError::Syntax { path: path.to_path_buf(), line, column, message: e.message().to_string() }
        })
    }
}

/// Reads and parses a template file.
pub fn load(path: &Path) -> Result<Template, TemplateFileError> {
    let io = |source| TemplateFileError::Io { path: path.to_path_buf(), source };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > MAX_TEMPLATE_FILE_BYTES {
        return Err(TemplateFileError::TooLarge { path: path.to_path_buf(), size });
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    parse(&text, path)
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|b| **b != b'\n').count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_line() {
        let text =
            "from = { kind = \"image\", reference = \"busybox\" }\n\n[[steps]]\nstep = \"run_cmd\"\ncommand = \"x\"\n";
        let err = parse(text, Path::new("t.toml")).unwrap_err().to_string();
        assert!(err.starts_with("t.toml:3:"), "{err}");
        assert!(err.contains("command"), "{err}");
    }

    #[test]
    fn json_and_toml_agree() {
        let toml_text =
            "from = { kind = \"image\", reference = \"busybox\" }\n[[steps]]\nstep = \"run_cmd\"\ncmd = \"echo\"\n";
        let json_text = r#"{"from":{"kind":"image","reference":"busybox"},"steps":[{"step":"run_cmd","cmd":"echo"}]}"#;
        assert_eq!(parse(toml_text, Path::new("a.toml")).unwrap(), parse(json_text, Path::new("a.json")).unwrap());
    }
}
