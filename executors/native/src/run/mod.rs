//! RUN steps through `runc`.
//!
//! [`Runner::run`] executes one command on top of a stage's layers and returns what it changed
//! as a [`Layer`]:
//!
//! 1. **Root filesystem.** Each layer is unpacked once into a read-only [`SnapshotStore`]
//!    snapshot keyed by its chain id and shared by later steps and builds. With overlayfs
//!    ([`RootfsMode::Overlay`], or [`RootfsMode::Auto`] when the kernel allows it) the
//!    snapshots are the lower dirs and the upper/work dirs live in a per-step temporary
//!    directory; the upper dir is then the change set. Otherwise ([`RootfsMode::Copy`]) the
//!    layers are applied to a fresh directory, which is scanned before and after the command
//!    and the scans compared (see [`diff`]). Both give the same layer for the same command.
//! 2. **Mount points.** Every mount target (`/proc`, `/dev`, `/sys`, secrets, caches, the CA
//!    bundle, `/etc/resolv.conf`) is created before the command starts, and targets and their
//!    ancestors are left out of the change set: an empty file or directory made only to mount
//!    something never reaches a layer.
//! 3. **Runtime spec.** `config.json` is built with `oci-spec` (see [`spec`]): the command in
//!    exec form (shell form is the caller's `SHELL` + command), env, user resolved through the
//!    root's `/etc/passwd` and `/etc/group`, the working directory (created when missing; that
//!    creation is part of the layer), Docker's default capabilities, the host network namespace
//!    ([`Network::Host`]) or a new empty one ([`Network::None`]).
//! 4. **Secrets.** The bundle directory is a private tmpfs: `config.json` (which may carry
//!    `env=` secrets) and the secret files live only in memory, are bind-mounted read-only at
//!    `/run/secrets/<id>` (or the mount's target), and vanish with the unmount. Log lines have
//!    secret values replaced by `****`.
//! 5. **Host files.** [`HostFiles`] (documented there) mounts the host's CA bundle and
//!    `/etc/resolv.conf` read-only, and points `SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE` and
//!    `PIP_CERT` at the bundle, for networks behind a TLS-intercepting proxy.
//! 6. **Running.** `runc [--root R] run --bundle DIR ID`; stdout and stderr are streamed line by
//!    line as [`Event::Log`] (`Info` and `Warn`). A non-zero exit is
//!    [`RunError::Failed`] with the code and the last lines. When the cancellation token fires,
//!    the container is killed (`runc kill ID KILL`), deleted (`runc delete --force ID`) and
//!    every mount undone before [`RunError::Cancelled`] is returned; the same cleanup runs on
//!    any error.
//!
//! Everything here is synchronous (the executor runs builds on a blocking thread); the
//! cancellation token is polled every 50 ms while a command runs.

pub mod diff;
mod snapshot;
pub mod spec;
mod sys;

use std::collections::{HashSet, VecDeque};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nullspace_engine::cas::BlobStore;
use nullspace_engine::executor::{Event, EventSink, LogLevel, Secrets};
use tokio_util::sync::CancellationToken;

pub use snapshot::{LayerRef, SnapshotStore, chain_ids};
pub use spec::{ResolvedUser, resolve_user};

use crate::layer::{Change, Layer, LayerError};
use crate::unpack::UnpackError;
use diff::Scan;

/// How many log lines a failure carries.
const LAST_LINES: usize = 20;

/// Why a RUN step did not produce a layer.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A filesystem operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A layer could not be unpacked into a snapshot or root filesystem.
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    /// The changes could not be collected into a layer.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// A layer reference has a malformed digest.
    #[error("malformed layer digest {digest:?}")]
    BadDigest {
        /// The digest.
        digest: String,
    },
    /// The step's user cannot be resolved in the root filesystem.
    #[error("user {user:?}: {reason}")]
    User {
        /// The user as written.
        user: String,
        /// What went wrong.
        reason: String,
    },
    /// The runtime spec could not be built.
    #[error("runtime spec: {0}")]
    Spec(String),
    /// Overlayfs was required but could not be mounted.
    #[error("overlay mount at {path}: {source}")]
    Overlay {
        /// The mount point.
        path: PathBuf,
        /// The error of mount(2).
        source: std::io::Error,
    },
    /// `runc` could not be started.
    #[error("starting {runc}: {source}")]
    Runc {
        /// The runc binary.
        runc: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A secret the step mounts has no value.
    #[error("secret {id:?} is required but was not supplied")]
    MissingSecret {
        /// The secret's id.
        id: String,
    },
    /// The command exited unsuccessfully.
    #[error("command exited with code {code}{}", last_lines_suffix(.last_lines))]
    Failed {
        /// Exit code (128 + signal number when killed by a signal).
        code: i32,
        /// The last lines it printed.
        last_lines: Vec<String>,
    },
    /// The cancellation token fired; the container and mounts were removed.
    #[error("cancelled")]
    Cancelled,
}

fn last_lines_suffix(lines: &[String]) -> String {
    if lines.is_empty() { String::new() } else { format!("; last output:\n{}", lines.join("\n")) }
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> RunError + 'a {
    move |source| RunError::Io { what, path: path.to_path_buf(), source }
}

/// How the step's root filesystem is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RootfsMode {
    /// Overlayfs when the kernel allows it, the copy otherwise.
    #[default]
    Auto,
    /// Overlayfs, failing when it cannot be mounted.
    Overlay,
    /// A fresh copy of the layers, diffed before and after.
    Copy,
}

/// Host files mounted read-only into every RUN step, never into a layer.
///
/// The default, for networks whose TLS is intercepted by a proxy whose CA only the host
/// trusts, and for DNS as BuildKit provides it:
/// - `ca_bundle`: the host's `/etc/ssl/certs/ca-certificates.crt` (when it exists), mounted at
///   `ca_target` (the same path), with `SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE` and `PIP_CERT`
///   (`ca_env`) pointing at it unless the step's env sets them;
/// - `resolv_conf`: the host's `/etc/resolv.conf` (when it exists) at `/etc/resolv.conf`.
///
/// Set a field to `None` (or use [`HostFiles::none`]) to leave it out. Note that a mounted file
/// cannot be replaced by the command (`update-ca-certificates` in a RUN step fails on it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFiles {
    /// The host CA bundle to mount.
    pub ca_bundle: Option<PathBuf>,
    /// Where it is mounted in the container.
    pub ca_target: String,
    /// Variables set to `ca_target`.
    pub ca_env: Vec<String>,
    /// The host `resolv.conf` to mount at `/etc/resolv.conf`.
    pub resolv_conf: Option<PathBuf>,
}

/// The host's CA bundle path, also its mount target.
pub const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

impl Default for HostFiles {
    fn default() -> Self {
        let existing = |p: &str| Some(PathBuf::from(p)).filter(|p| p.is_file());
        Self {
            ca_bundle: existing(HOST_CA_BUNDLE),
            ca_target: HOST_CA_BUNDLE.to_string(),
            ca_env: ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT"].map(String::from).to_vec(),
            resolv_conf: existing("/etc/resolv.conf"),
        }
    }
}

impl HostFiles {
    /// Nothing from the host.
    pub fn none() -> Self {
        Self { ca_bundle: None, ca_target: HOST_CA_BUNDLE.to_string(), ca_env: Vec::new(), resolv_conf: None }
    }
}

/// Settings of a [`Runner`].
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// The runc binary (`runc`, looked up in `PATH`, by default).
    pub runc: PathBuf,
    /// runc's state directory (`--root`); runc's default (`/run/runc`) when `None`.
    pub runc_root: Option<PathBuf>,
    /// How root filesystems are made.
    pub rootfs: RootfsMode,
    /// Host files mounted during RUN.
    pub host_files: HostFiles,
    /// How long a killed container may take to exit before runc itself is killed.
    pub kill_grace: Duration,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            runc: PathBuf::from("runc"),
            runc_root: None,
            rootfs: RootfsMode::Auto,
            host_files: HostFiles::default(),
            kill_grace: Duration::from_secs(10),
        }
    }
}

/// The step's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// The host's network namespace (the default, as BuildKit's `default`/`host`).
    #[default]
    Host,
    /// A new network namespace with only a loopback device.
    None,
}

/// A mount of a RUN step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepMount {
    /// A secret from the build's [`Secrets`], as a file and/or an environment variable.
    Secret {
        /// The secret's id.
        id: String,
        /// File path; `/run/secrets/<id>` when `None` and `env` is `None` too.
        target: Option<String>,
        /// Environment variable to set to the value.
        env: Option<String>,
        /// Fail if the secret has no value (otherwise the mount is skipped).
        required: bool,
        /// File mode.
        mode: u32,
        /// File owner.
        uid: u32,
        /// File group.
        gid: u32,
    },
    /// A host directory (a persistent cache) bound at `target`.
    Cache {
        /// Mount point.
        target: String,
        /// The host directory.
        dir: PathBuf,
        /// Read-only.
        readonly: bool,
    },
    /// A tmpfs.
    Tmpfs {
        /// Mount point.
        target: String,
        /// Size limit in bytes.
        size: Option<u64>,
    },
    /// A host path bound at `target`.
    Bind {
        /// Mount point.
        target: String,
        /// The host path.
        source: PathBuf,
        /// Read-only.
        readonly: bool,
    },
}

/// One command to run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunSpec {
    /// The full argv (shell form already wrapped in the shell).
    pub args: Vec<String>,
    /// `NAME=value` pairs (image env, ENV, build args).
    pub env: Vec<String>,
    /// `user[:group]`; empty for root.
    pub user: String,
    /// Absolute working directory; `/` when empty.
    pub cwd: String,
    /// The network.
    pub network: Network,
    /// Mounts.
    pub mounts: Vec<StepMount>,
}

/// What a successful step left: its changes, as a layer ready to write.
///
/// The layer reads file contents from a temporary directory that lives as long as this value:
/// write it before dropping this.
#[derive(Debug)]
pub struct RunOutput {
    /// The changes as layer entries.
    pub layer: Layer,
    /// The changes, relative to the root.
    pub changes: Vec<Change>,
    /// The mode that was used ([`RootfsMode::Overlay`] or [`RootfsMode::Copy`]).
    pub mode: RootfsMode,
    _work: tempfile::TempDir,
}

/// What a step runs with besides its spec.
#[derive(Debug, Clone, Copy)]
pub struct StepContext<'a> {
    /// Where the layer blobs are.
    pub store: &'a BlobStore,
    /// The build's secret values.
    pub secrets: &'a Secrets,
    /// Where log lines go.
    pub events: &'a EventSink,
    /// The `stage/step` log lines are tagged with.
    pub step: Option<&'a str>,
    /// Stops the step.
    pub cancel: &'a CancellationToken,
}

/// Runs RUN steps; holds the snapshot store and the options.
#[derive(Debug, Clone)]
pub struct Runner {
    opts: RunnerOptions,
    snapshots: SnapshotStore,
    work: PathBuf,
}

/// Undoes, in reverse order, what a step set up: container, then mounts.
struct Cleanup<'a> {
    opts: &'a RunnerOptions,
    container: Option<String>,
    child: Option<Child>,
    mounts: Vec<PathBuf>,
}

impl Cleanup<'_> {
    fn runc(&self) -> Command {
        let mut cmd = Command::new(&self.opts.runc);
        if let Some(root) = &self.opts.runc_root {
            cmd.arg("--root").arg(root);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        cmd
    }

    /// Kills and deletes the container, waiting for runc to exit.
    fn stop_container(&mut self) {
        let Some(id) = self.container.take() else { return };
        if let Some(mut child) = self.child.take() {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = self.runc().args(["kill", &id, "KILL"]).status();
                let deadline = Instant::now() + self.opts.kill_grace;
                while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        match self.runc().args(["delete", "--force", &id]).status() {
            Ok(_) => {}
            Err(e) => tracing::warn!(container = %id, error = %e, "runc delete failed"),
        }
    }

    fn unmount_all(&mut self) {
        while let Some(m) = self.mounts.pop() {
            if let Err(e) = sys::unmount(&m) {
                tracing::warn!(path = %m.display(), error = %e, "unmount failed");
            }
        }
    }
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        self.stop_container();
        self.unmount_all();
    }
}

fn redact(line: &str, secrets: &[Vec<u8>]) -> String {
    let mut out = line.to_string();
    for s in secrets {
        if let Ok(s) = std::str::from_utf8(s) {
            if !s.is_empty() && out.contains(s) {
                out = out.replace(s, "****");
            }
        }
    }
    out
}

fn env_has(env: &[String], name: &str) -> bool {
    env.iter().any(|e| e.split_once('=').is_some_and(|(k, _)| k == name))
}

/// A mount point to create before running: its path and whether it is a directory.
struct MountPoint {
    target: String,
    dir: bool,
}

impl Runner {
    /// A runner keeping snapshots under `state_dir/snapshots` and step scratch space under
    /// `state_dir/run`.
    ///
    /// ```
    /// use nullspace_native::run::{Runner, RunnerOptions};
    /// let state = tempfile::tempdir()?;
    /// let runner = Runner::new(state.path(), RunnerOptions::default())?;
    /// assert!(runner.snapshots().path().starts_with(state.path()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`RunError::Io`] if the directories cannot be created.
    pub fn new(state_dir: &Path, opts: RunnerOptions) -> Result<Self, RunError> {
        let snapshots = SnapshotStore::new(state_dir.join("snapshots"))?;
        let work = state_dir.join("run");
        std::fs::create_dir_all(&work).map_err(io_err("create", &work))?;
        Ok(Self { opts, snapshots, work })
    }

    /// The snapshot store.
    pub fn snapshots(&self) -> &SnapshotStore {
        &self.snapshots
    }

    /// The options.
    pub fn options(&self) -> &RunnerOptions {
        &self.opts
    }

    /// Runs `spec` on a root filesystem made of `layers` (blobs in `ctx.store`, bottom first)
    /// and returns the changes. Log lines go to `ctx.events`, tagged `ctx.step`.
    ///
    /// # Errors
    /// [`RunError::Failed`] for a non-zero exit, [`RunError::Cancelled`] when the token fires,
    /// others for setup failures. No container or mount is left behind in any case.
    pub fn run(&self, layers: &[LayerRef], spec: &RunSpec, ctx: &StepContext<'_>) -> Result<RunOutput, RunError> {
        let StepContext { store, secrets, events, step, cancel } = *ctx;
        if cancel.is_cancelled() {
            return Err(RunError::Cancelled);
        }
        let work =
            tempfile::Builder::new().prefix("step-").tempdir_in(&self.work).map_err(io_err("create", &self.work))?;
        let mut cleanup = Cleanup { opts: &self.opts, container: None, child: None, mounts: Vec::new() };

        // The private tmpfs: bundle (config.json) and secret files, never on disk.
        let private = work.path().join("private");
        std::fs::create_dir(&private).map_err(io_err("create", &private))?;
        sys::mount_tmpfs(&private, "16m").map_err(io_err("mount tmpfs", &private))?;
        cleanup.mounts.push(private.clone());

        let (rootfs, upper, mode) = self.prepare_rootfs(store, layers, work.path(), &mut cleanup)?;

        let mut env = spec.env.clone();
        let mut mounts = Vec::new();
        let mut points: Vec<MountPoint> =
            ["/proc", "/dev", "/sys"].iter().map(|t| MountPoint { target: t.to_string(), dir: true }).collect();
        let mut secret_values: Vec<Vec<u8>> = Vec::new();
        let hf = &self.opts.host_files;
        if let Some(ca) = &hf.ca_bundle {
            mounts.push(spec::bind(ca, &hf.ca_target, true)?);
            points.push(MountPoint { target: hf.ca_target.clone(), dir: false });
            for name in &hf.ca_env {
                if !env_has(&env, name) {
                    env.push(format!("{name}={}", hf.ca_target));
                }
            }
        }
        if let Some(resolv) = &hf.resolv_conf {
            mounts.push(spec::bind(resolv, "/etc/resolv.conf", true)?);
            points.push(MountPoint { target: "/etc/resolv.conf".into(), dir: false });
        }
        let secret_dir = private.join("secrets");
        std::fs::create_dir(&secret_dir).map_err(io_err("create", &secret_dir))?;
        for (index, m) in spec.mounts.iter().enumerate() {
            match m {
                StepMount::Secret { id, target, env: var, required, mode, uid, gid } => {
                    let Some(value) = secrets.get(id) else {
                        if *required {
                            return Err(RunError::MissingSecret { id: id.clone() });
                        }
                        continue;
                    };
                    secret_values.push(value.to_vec());
                    if let Some(var) = var {
                        env.push(format!("{var}={}", String::from_utf8_lossy(value)));
                    }
                    let target = match (target, var) {
                        (Some(t), _) => Some(t.clone()),
                        (None, None) => Some(format!("/run/secrets/{id}")),
                        (None, Some(_)) => None,
                    };
                    if let Some(target) = target {
                        let file = secret_dir.join(index.to_string());
                        std::fs::write(&file, value).map_err(io_err("write secret to tmpfs", &secret_dir))?;
                        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode & 0o7777))
                            .map_err(io_err("chmod", &file))?;
                        std::os::unix::fs::chown(&file, Some(*uid), Some(*gid)).map_err(io_err("chown", &file))?;
                        mounts.push(spec::bind(&file, &target, true)?);
                        points.push(MountPoint { target, dir: false });
                    }
                }
                StepMount::Cache { target, dir, readonly } => {
                    mounts.push(spec::bind(dir, target, *readonly)?);
                    points.push(MountPoint { target: target.clone(), dir: true });
                }
                StepMount::Tmpfs { target, size } => {
                    mounts.push(spec::tmpfs(target, *size)?);
                    points.push(MountPoint { target: target.clone(), dir: true });
                }
                StepMount::Bind { target, source, readonly } => {
                    mounts.push(spec::bind(source, target, *readonly)?);
                    points.push(MountPoint { target: target.clone(), dir: source.is_dir() });
                }
            }
        }
        for p in &points {
            sys::ensure_mount_point(&rootfs, Path::new(&p.target), p.dir)
                .map_err(io_err("create mount point", Path::new(&p.target)))?;
        }
        let mut excluded_trees: HashSet<PathBuf> = HashSet::new();
        let mut excluded_exact: HashSet<PathBuf> = HashSet::new();
        for p in &points {
            let rel = sys::relative(Path::new(&p.target));
            for a in rel.ancestors().skip(1).filter(|a| !a.as_os_str().is_empty()) {
                excluded_exact.insert(a.to_path_buf());
            }
            excluded_trees.insert(rel);
        }
        let before = match mode {
            RootfsMode::Copy => Some(Scan::take(&rootfs, &excluded_trees)?),
            _ => None,
        };

        let cwd = if spec.cwd.is_empty() { "/".to_string() } else { spec.cwd.clone() };
        sys::mkdir_all_in_root(&rootfs, Path::new(&cwd))
            .map_err(io_err("create working directory", Path::new(&cwd)))?;
        let user = resolve_user(&rootfs, &spec.user)?;
        let runtime = spec::build_spec(spec::SpecInput {
            rootfs: &rootfs,
            args: spec.args.clone(),
            env,
            cwd,
            user,
            host_network: spec.network == Network::Host,
            mounts,
        })?;
        let config = private.join("config.json");
        runtime.save(&config).map_err(|e| RunError::Spec(format!("writing {}: {e}", config.display())))?;

        let status = self.run_container(&private, &mut cleanup, &secret_values, events, step, cancel)?;
        let last_lines = status.1;
        cleanup.stop_container();
        cleanup.unmount_all();
        drop(cleanup);
        if !status.0.success() {
            use std::os::unix::process::ExitStatusExt;
            let code = status.0.code().unwrap_or_else(|| 128 + status.0.signal().unwrap_or(0));
            return Err(RunError::Failed { code, last_lines });
        }

        let mut changes = match (&upper, before) {
            (Some(upper), _) => diff::upper_changes(upper, &excluded_trees)?,
            (None, Some(before)) => before.changes(&Scan::take(&rootfs, &excluded_trees)?),
            (None, None) => Vec::new(),
        };
        changes.retain(|c| match c {
            Change::Write(p) | Change::Opaque(p) => !excluded_exact.contains(p),
            Change::Delete(_) => true,
        });
        let mut layer = Layer::new();
        layer.add_changes(upper.as_deref().unwrap_or(&rootfs), &changes)?;
        Ok(RunOutput { layer, changes, mode, _work: work })
    }

    /// Makes the root filesystem: `(rootfs, Some(upper) for overlay, mode used)`.
    fn prepare_rootfs(
        &self,
        store: &BlobStore,
        layers: &[LayerRef],
        work: &Path,
        cleanup: &mut Cleanup<'_>,
    ) -> Result<(PathBuf, Option<PathBuf>, RootfsMode), RunError> {
        let mkdir = |p: &Path| -> Result<(), RunError> {
            std::fs::create_dir(p).map_err(io_err("create", p))?;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).map_err(io_err("chmod", p))
        };
        if self.opts.rootfs != RootfsMode::Copy {
            let mut lowers = self.snapshots.prepare(store, layers)?;
            lowers.reverse();
            // Overlay needs at least one lower dir; an empty one stands for scratch.
            if lowers.is_empty() {
                let empty = work.join("empty");
                mkdir(&empty)?;
                lowers.push(empty);
            }
            let (upper, ovl_work, merged) = (work.join("upper"), work.join("work"), work.join("merged"));
            for d in [&upper, &ovl_work, &merged] {
                mkdir(d)?;
            }
            match sys::mount_overlay(&lowers, Some((&upper, &ovl_work)), &merged) {
                Ok(()) => {
                    cleanup.mounts.push(merged.clone());
                    return Ok((merged, Some(upper), RootfsMode::Overlay));
                }
                Err(source) if self.opts.rootfs == RootfsMode::Overlay => {
                    return Err(RunError::Overlay { path: merged, source });
                }
                Err(e) => tracing::warn!(error = %e, "overlayfs unavailable; copying the root filesystem"),
            }
        }
        let rootfs = work.join("rootfs");
        mkdir(&rootfs)?;
        SnapshotStore::materialize(store, layers, &rootfs)?;
        Ok((rootfs, None, RootfsMode::Copy))
    }

    /// Starts runc on the bundle and waits, streaming logs; returns the exit status and the last
    /// lines printed.
    fn run_container(
        &self,
        bundle: &Path,
        cleanup: &mut Cleanup<'_>,
        secrets: &[Vec<u8>],
        events: &EventSink,
        step: Option<&str>,
        cancel: &CancellationToken,
    ) -> Result<(ExitStatus, Vec<String>), RunError> {
        let id = format!("nullspace-{}-{}", std::process::id(), unique());
        let mut cmd = cleanup.runc();
        cmd.args(["run", "--bundle"]).arg(bundle).arg(&id).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|source| RunError::Runc { runc: self.opts.runc.clone(), source })?;
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        cleanup.container = Some(id);
        cleanup.child = Some(child);
        let last: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());
        let step = step.map(str::to_string);
        let outcome = std::thread::scope(|scope| {
            let reader = |stream: Box<dyn std::io::Read + Send>, level: LogLevel| {
                let (last, step) = (&last, step.clone());
                scope.spawn(move || {
                    let mut reader = BufReader::new(stream);
                    let mut buf = Vec::new();
                    while matches!(reader.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
                        let text = String::from_utf8_lossy(&buf);
                        let line = redact(text.trim_end_matches(['\n', '\r']), secrets);
                        buf.clear();
                        if let Ok(mut l) = last.lock() {
                            if l.len() == LAST_LINES {
                                l.pop_front();
                            }
                            l.push_back(line.clone());
                        }
                        events.send(Event::Log { level, step: step.clone(), message: line });
                    }
                })
            };
            let handles: Vec<_> = [
                stdout.map(|s| reader(Box::new(s), LogLevel::Info)),
                stderr.map(|s| reader(Box::new(s), LogLevel::Warn)),
            ]
            .into_iter()
            .flatten()
            .collect();
            let result = loop {
                if cancel.is_cancelled() {
                    // Killing the container closes its pipes, which ends the readers.
                    cleanup.stop_container();
                    break Err(RunError::Cancelled);
                }
                let Some(child) = cleanup.child.as_mut() else { break Err(RunError::Cancelled) };
                match child.try_wait() {
                    Ok(Some(status)) => break Ok(status),
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                    Err(source) => break Err(RunError::Runc { runc: self.opts.runc.clone(), source }),
                }
            };
            for h in handles {
                let _ = h.join();
            }
            result
        })?;
        let lines = last.into_inner().map(Vec::from).unwrap_or_default();
        Ok((outcome, lines))
    }
}

/// A process-unique number for container ids.
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    (u64::from(nanos) << 20) | (NEXT.fetch_add(1, Ordering::Relaxed) & 0xfffff)
}
