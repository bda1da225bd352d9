//! Helpers every test binary that runs external tools shares: running a tool with a clear
//! failure, and the fixture layouts (fixtures/NAME/build.sh, cached in the target dir and built
//! under a file lock, so concurrent test binaries never build one twice at once).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, PoisonError};

/// Runs a tool, failing the test with a clear message if it is missing or fails.
pub fn run_tool(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown} (is it installed? see scripts/ensure-tools.sh): {e}"));
    assert!(
        out.status.success(),
        "{shown} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The layout a fixture script builds (`fixtures/NAME/build.sh`, e.g. `busybox` or `python`,
/// tagged NAME), built at most once per test binary into the target dir.
pub fn fixture_layout(name: &str) -> &'static Path {
    // Tests of one binary run in parallel: one builds, the others wait on the lock; other
    // binaries wait on the file lock. Each directory is leaked once, to be handed out forever.
    static BUILT: Mutex<BTreeMap<String, &'static Path>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
    built.entry(name.to_owned()).or_insert_with(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-oci"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../fixtures/{name}/build.sh"));
        run_tool(Command::new("flock").arg(dir.with_extension("lock")).arg("bash").arg(script).arg(&dir));
        Box::leak(dir.into_boxed_path())
    })
}
