//! Helpers every test binary that runs external tools shares: running a tool with a clear
//! failure, and the busybox fixture layout (fixtures/busybox/build.sh, cached in the target dir and
//! built under a file lock, so concurrent test binaries never build it twice at once).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

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

/// The busybox fixture layout (tag `busybox`).
pub fn busybox() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("busybox-oci");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/busybox/build.sh");
        // Tests of one binary run in parallel: one builds, the others wait on the lock.
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = LOCK.lock().unwrap();
        run_tool(Command::new("flock").arg(dir.with_extension("lock")).arg("bash").arg(script).arg(&dir));
        dir
    })
}
