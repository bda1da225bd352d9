//! Dockerfile input to plan stages (being written).

use crate::builder::Template;
use crate::diagnostic::Diagnostic;
use crate::normalize::PlanOptions;
use crate::plan::Stage;

pub(super) fn normalize(
    _text: &str,
    _file: &str,
    _template: &Template,
    _options: &PlanOptions,
    _diagnostics: &mut Vec<Diagnostic>,
) -> Vec<Stage> {
    Vec::new()
}
