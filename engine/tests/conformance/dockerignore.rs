//! Placeholder: being written.

use crate::CorpusReport;
use std::path::Path;

pub fn run(_dir: &Path, _reports: &mut Vec<CorpusReport>) {}
