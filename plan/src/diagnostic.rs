//! Problems found in a template: each with a stable code, a severity, a message, where it is,
//! and a hint; and a compiler-style renderer that shows the offending source line with a caret.

use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::sync::Arc;

/// How bad a problem is. Errors stop a build; warnings do not (unless the Dockerfile's `check`
/// directive says `error=true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The template cannot be built.
    Error,
    /// The template builds, but probably not as meant.
    Warning,
}

/// Where a problem or a plan step comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Span {
    /// A place in a Dockerfile: 1-based line and column; `end_line` for continued instructions.
    Dockerfile {
        /// The Dockerfile as the user named it (`Dockerfile` for inline content); shared by
        /// every span of a file.
        file: Arc<str>,
        /// First line of the instruction or token.
        line: usize,
        /// Column of the token at fault (1 when the whole line is meant).
        column: usize,
        /// Last line of the instruction.
        end_line: usize,
    },
    /// A step of a declarative builder, by its 0-based index.
    Builder {
        /// Index of the step in the builder.
        index: usize,
        /// The step's field at fault, when one is.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        field: Option<String>,
    },
    /// A field of the template itself (base image, target, backend, secrets).
    Template {
        /// The field's name as in the template file.
        field: String,
    },
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Span::Dockerfile { file, line, column, .. } => write!(f, "{file}:{line}:{column}"),
            Span::Builder { index, field: Some(field) } => write!(f, "step {index}, field `{field}`"),
            Span::Builder { index, field: None } => write!(f, "step {index}"),
            Span::Template { field } => write!(f, "template field `{field}`"),
        }
    }
}

/// One problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// A stable code: BuildKit's rule name for lint warnings (`StageNameCasing`), our own
    /// CamelCase name for errors (`UnknownInstruction`).
    pub code: String,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong.
    pub message: String,
    /// Where it is.
    pub span: Option<Span>,
    /// How to fix it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    /// An error with a code and message.
    pub fn error(code: &str, message: impl Into<String>) -> Self {
        Self { code: code.into(), severity: Severity::Error, message: message.into(), span: None, hint: None }
    }

    /// A warning with a code and message.
    pub fn warning(code: &str, message: impl Into<String>) -> Self {
        Self { severity: Severity::Warning, ..Self::error(code, message) }
    }

    /// Sets where the problem is.
    pub fn at(mut self, span: Span) -> Self {
        self.span = Some(span);
        self
    }

    /// Sets a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Renders diagnostics like a compiler: the message, the location, the offending source line with
/// a caret under the column, and the hint. `source` is the Dockerfile text when there is one.
///
/// ```
/// use nullspace_plan::diagnostic::{render, Diagnostic, Span};
/// let d = Diagnostic::error("UnknownInstruction", "unknown instruction: FORM")
///     .at(Span::Dockerfile { file: "Dockerfile".into(), line: 2, column: 1, end_line: 2 })
///     .hint("did you mean FROM?");
/// let text = render(&[d], Some("# hi\nFORM alpine\n"));
/// assert!(text.contains("error[UnknownInstruction]: unknown instruction: FORM"));
/// assert!(text.contains("--> Dockerfile:2:1"));
/// assert!(text.contains("2 | FORM alpine"));
/// assert!(text.contains("  | ^"));
/// ```
pub fn render(diagnostics: &[Diagnostic], source: Option<&str>) -> String {
    let lines: Vec<&str> = source.map(|s| s.lines().collect()).unwrap_or_default();
    let mut out = String::new();
    for d in diagnostics {
        let label = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = writeln!(out, "{label}[{}]: {}", d.code, d.message);
        match &d.span {
            Some(span @ Span::Dockerfile { line, column, .. }) => {
                let _ = writeln!(out, "  --> {span}");
                if let Some(text) = line.checked_sub(1).and_then(|i| lines.get(i)) {
                    let number = line.to_string();
                    let pad = " ".repeat(number.len());
                    let caret_pad: String = text
                        .chars()
                        .take(column.saturating_sub(1))
                        .map(|c| if c == '\t' { '\t' } else { ' ' })
                        .collect();
                    let _ = writeln!(out, "{pad} |");
                    let _ = writeln!(out, "{number} | {text}");
                    let _ = writeln!(out, "{pad} | {caret_pad}^");
                }
            }
            Some(span) => {
                let _ = writeln!(out, "  --> {span}");
            }
            None => {}
        }
        if let Some(hint) = &d.hint {
            let _ = writeln!(out, "  = hint: {hint}");
        }
        out.push('\n');
    }
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    let _ = writeln!(out, "{errors} error(s), {warnings} warning(s)");
    out
}
