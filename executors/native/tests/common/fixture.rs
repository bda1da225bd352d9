//! The busybox fixture layout (built once per run by fixtures/busybox/build.sh, cached in the
//! target dir) and small helpers shared by the RUN and executor tests.

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

/// `oci:FIXTURE:busybox`.
pub fn busybox_ref() -> String {
    format!("oci:{}:busybox", busybox().display())
}

/// Mount points under `needle` still listed in this process's mount table.
pub fn mounts_under(needle: &Path) -> Vec<String> {
    let needle = needle.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_string)
        .collect()
}

/// runc containers in the state directory `root` (tests use their own, so containers of
/// concurrent tests and other programs neither show up nor slow `runc list` down).
pub fn runc_containers(root: &Path) -> Vec<String> {
    run_tool(Command::new("runc").arg("--root").arg(root).args(["list", "-q"])).lines().map(str::to_string).collect()
}
