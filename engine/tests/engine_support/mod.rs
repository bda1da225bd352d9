//! Shared setup of the engine tests: the busybox fixture (fixtures/busybox/build.sh, cached in
//! the target dir), an engine on a temp state dir with the real native executor (private runc
//! root), and small scanners.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use nullspace_engine::Engine;
use nullspace_native::executor::{NativeExecutor, NativeOptions};
use nullspace_native::run::RunnerOptions;

/// Runs a tool, failing with a clear message if it is missing or fails.
pub fn run_tool(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    assert!(
        out.status.success(),
        "{shown} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The busybox fixture layout (tag `busybox`), built once per target dir.
pub fn busybox() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("busybox-oci");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/busybox/build.sh");
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

/// A temp dir holding the state dir, a private runc root and a context.
pub struct Setup {
    pub dir: tempfile::TempDir,
}

impl Setup {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("ctx/app")).unwrap();
        std::fs::write(dir.path().join("ctx/app/hello.txt"), "hello v1\n").unwrap();
        Self { dir }
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn ctx(&self) -> PathBuf {
        self.dir.path().join("ctx")
    }

    pub fn runc_root(&self) -> PathBuf {
        self.dir.path().join("runc")
    }

    pub fn executor(&self) -> NativeExecutor {
        let runner = RunnerOptions { runc_root: Some(self.runc_root()), ..RunnerOptions::default() };
        NativeExecutor::new(&self.state().join("native"), NativeOptions { runner, ..NativeOptions::default() }).unwrap()
    }

    pub async fn engine(&self, concurrency: usize, retention: Duration) -> Engine {
        Engine::builder()
            .state_dir(self.state())
            .executor(Arc::new(self.executor()))
            .concurrency(concurrency)
            .retention(retention)
            .build()
            .await
            .unwrap()
    }
}

/// Every regular file under `root`.
pub fn all_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd {
            let p = e.unwrap().path();
            let m = p.symlink_metadata().unwrap();
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() {
                out.push(p);
            }
        }
    }
    out
}

/// The bytes of a file, gunzipped when it is gzip.
pub fn read_plain(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes.as_slice()).read_to_end(&mut out).unwrap();
        out
    } else {
        bytes
    }
}

/// The layout directory of an `oci:PATH:TAG` location.
pub fn layout_dir(location: &str) -> PathBuf {
    let rest = location.strip_prefix("oci:").unwrap();
    PathBuf::from(rest.rsplit_once(':').unwrap().0)
}

/// runc containers under `root`.
pub fn runc_containers(root: &Path) -> Vec<String> {
    if !root.exists() {
        return Vec::new();
    }
    run_tool(Command::new("runc").arg("--root").arg(root).args(["list", "-q"])).lines().map(str::to_string).collect()
}
