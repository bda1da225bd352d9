//! From a [`Template`] to a [`BuildPlan`]: `plan` and `validate`, which report every problem at
//! once as [`Diagnostic`]s.

mod checks;
mod declarative;
mod dockerfile;
pub mod lint;

pub use checks::{SourcePathProblem, check_source_path, shell_quote};

use crate::builder::{Backend, Base, Template};
use crate::diagnostic::{Diagnostic, Span};
use crate::plan::{BuildPlan, DEFAULT_PLATFORM, InputKind};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Dockerfiles larger than this are refused before parsing.
pub const MAX_DOCKERFILE_BYTES: usize = 4 * 1024 * 1024;

/// Settings that are not part of the template itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// The platform to build for (`linux/amd64` by default).
    pub platform: String,
    /// The directory relative paths in the template are resolved against (the template file's
    /// directory, or the current one).
    pub base_dir: PathBuf,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self { build_args: BTreeMap::new(), platform: DEFAULT_PLATFORM.to_string(), base_dir: PathBuf::from(".") }
    }
}

/// The result of planning: the plan when there is no error, and every problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The plan, present when no diagnostic is an error (its digest is computed when first asked
    /// for).
    pub plan: Option<BuildPlan>,
    /// Every error and warning, in source order.
    pub diagnostics: Vec<Diagnostic>,
    /// The Dockerfile's text, when there was one (for rendering diagnostics).
    pub dockerfile_source: Option<String>,
}

impl Outcome {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Validates a template without building anything: every problem at once.
///
/// ```
/// use nullspace_plan::{builder::{wait_for_port, Template}, normalize::{validate, PlanOptions}};
/// let t = Template::from_image("Busybox").run_cmd("").set_start_cmd("x", wait_for_port(0));
/// let codes: Vec<_> = validate(&t, &PlanOptions::default()).into_iter().map(|d| d.code).collect();
/// assert_eq!(codes, ["InvalidImageReference", "EmptyRun", "InvalidPort"]);
/// ```
pub fn validate(template: &Template, options: &PlanOptions) -> Vec<Diagnostic> {
    plan(template, options).diagnostics
}

/// Normalizes a template into a [`BuildPlan`].
pub fn plan(template: &Template, options: &PlanOptions) -> Outcome {
    let mut diagnostics = Vec::new();
    let kind = if template.is_dockerfile() { InputKind::Dockerfile } else { InputKind::Declarative };
    let backend = match (kind, template.backend) {
        (InputKind::Dockerfile, Some(Backend::Native)) => {
            diagnostics.push(
                Diagnostic::error("NativeBackendDockerfile", "the native backend cannot build Dockerfile input")
                    .at(Span::Template { field: "backend".into() })
                    .hint("Dockerfiles are built by BuildKit: drop `backend = \"native\"` or use `buildkit`"),
            );
            Backend::Native
        }
        (InputKind::Dockerfile, _) => Backend::Buildkit,
        (InputKind::Declarative, backend) => backend.unwrap_or(Backend::Native),
    };
    declarative::check_secrets(template, &mut diagnostics);

    let (mut stages, dockerfile_source) = match &template.from {
        Base::Dockerfile { path } => {
            let full = options.base_dir.join(path);
            match read_dockerfile(&full) {
                Ok(text) => {
                    let name = path.to_string_lossy().into_owned();
                    (dockerfile::normalize(&text, &name, template, options, &mut diagnostics), Some(text))
                }
                Err(message) => {
                    diagnostics.push(
                        Diagnostic::error("DockerfileUnreadable", message)
                            .at(Span::Template { field: "from.path".into() }),
                    );
                    (Vec::new(), None)
                }
            }
        }
        Base::DockerfileContent { content } => {
            let stages = if content.len() > MAX_DOCKERFILE_BYTES {
                diagnostics.push(too_large(content.len()));
                Vec::new()
            } else {
                dockerfile::normalize(content, "Dockerfile", template, options, &mut diagnostics)
            };
            (stages, Some(content.clone()))
        }
        Base::Python { .. } | Base::Image { .. } => (declarative::base_stage(template, &mut diagnostics), None),
    };
    if template.target.is_some() && kind == InputKind::Declarative {
        diagnostics.push(
            Diagnostic::warning("TargetIgnored", "`target` only applies to Dockerfile input and is ignored here")
                .at(Span::Template { field: "target".into() }),
        );
    }
    match stages.last_mut() {
        Some(stage) => declarative::append_steps(template, stage, &mut diagnostics),
        // The base is unusable, but the steps are still checked so every problem is reported.
        None => declarative::append_steps(template, &mut declarative::placeholder_stage(), &mut diagnostics),
    }
    let has_errors = diagnostics.iter().any(Diagnostic::is_error);
    let secrets = if has_errors { Vec::new() } else { declarative::secret_refs(template, &stages) };
    let plan = (!has_errors && !stages.is_empty()).then(|| {
        BuildPlan::new(
            kind,
            backend,
            options.platform.clone(),
            template.context.as_ref().map(|c| c.to_string_lossy().into_owned()),
            stages,
            secrets,
        )
    });
    Outcome { plan, diagnostics, dockerfile_source }
}

fn too_large(len: usize) -> Diagnostic {
    Diagnostic::error(
        "DockerfileTooLarge",
        format!("the Dockerfile is {len} bytes, over the {MAX_DOCKERFILE_BYTES}-byte limit"),
    )
    .at(Span::Template { field: "from".into() })
}

fn read_dockerfile(path: &std::path::Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.len() > MAX_DOCKERFILE_BYTES as u64 {
        return Err(format!("{} is {} bytes, over the {MAX_DOCKERFILE_BYTES}-byte limit", path.display(), meta.len()));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    String::from_utf8(bytes)
        .map_err(|e| format!("{} is not UTF-8 (byte {})", path.display(), e.utf8_error().valid_up_to()))
}
