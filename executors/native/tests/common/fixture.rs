//! Helpers of the executor tests: the busybox base reference, and what a finished test checks
//! was left behind (mounts, runc containers).

use std::path::Path;
use std::process::Command;

use crate::tools::{fixture_layout, run_tool};

/// `oci:FIXTURE:busybox`.
pub fn busybox_ref() -> String {
    format!("oci:{}:busybox", fixture_layout("busybox").display())
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
