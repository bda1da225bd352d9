//! Paths the benchmarks share: the repository's fixtures and the conformance corpora.
//!
//! ```
//! assert!(nullspace_benches::fixture("dockerfiles/large-1000.Dockerfile").is_file());
//! ```

use std::path::{Path, PathBuf};

/// A file under the repository's `fixtures/`.
pub fn fixture(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures").join(relative)
}

/// The conformance corpora: `NULLSPACE_CONFORMANCE_DIR`, or `../shared/conformance` beside the
/// repository.
pub fn conformance_dir() -> PathBuf {
    std::env::var_os("NULLSPACE_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance"))
}
