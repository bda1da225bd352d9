//! The native executor end to end on the busybox fixture with real runc: build, cross-check
//! with umoci + runc + skopeo, step cache (unchanged rebuild, one changed file), secrets never
//! stored, failing RUN.

#[path = "common/fixture.rs"]
mod fixture;
#[path = "common/tools.rs"]
mod tools;

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nullspace_engine::cache::{CacheKeys, KeyContext, compute};
use nullspace_engine::context::contenthash::hash_context;
use nullspace_engine::context::select::{ContextSelector, walk};
use nullspace_engine::executor::{
    Artifact, ContextSnapshot, Event, EventSink, ExecError, ExecRequest, Executor, OutputSpec, Secrets,
};
use nullspace_native::executor::{NativeExecutor, NativeOptions};
use nullspace_native::run::RunnerOptions;
use nullspace_plan::builder::{Template, wait_for_port};
use nullspace_plan::normalize::{PlanOptions, plan};
use nullspace_plan::plan::BuildPlan;
use sha2::Digest as _;
use tokio_util::sync::CancellationToken;

struct Setup {
    dir: tempfile::TempDir,
    exec: NativeExecutor,
    marker: String,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let exec = NativeExecutor::new(&dir.path().join("state"), NativeOptions::default()).unwrap();
        let ctx = dir.path().join("ctx");
        std::fs::create_dir_all(ctx.join("app/conf")).unwrap();
        std::fs::write(ctx.join("app/hello.txt"), "hello v1\n").unwrap();
        std::fs::write(ctx.join("app/conf/settings.ini"), "k=v\n").unwrap();
        std::fs::write(ctx.join("app/skip.tmp"), "excluded\n").unwrap();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let marker = format!("MARKER{:x}{:x}", nanos, std::process::id());
        Self { dir, exec, marker }
    }

    fn ctx(&self) -> PathBuf {
        self.dir.path().join("ctx")
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }
}

fn template() -> Template {
    Template::from_image(fixture::busybox_ref())
        .add_build_secret_env("token", "NS_TEST_TOKEN")
        .run_cmd("rm /bin/wget && echo deleted-wget")
        .copy_with(["app"], "/app/", nullspace_plan::builder::CopyOptions::default().exclude("*.tmp"))
        .set_envs([("GREETING", "hello world")])
        .set_workdir("/app")
        .run_cmd(
            "mkdir -p /data && echo built > /data/out.txt && busybox sha256sum /run/secrets/token > /data/secret.sha \
             && chown -R app:app /data && echo wrote-data",
        )
        .set_user("app")
        .run_cmd("id -u > /data/whoami && pwd >> /data/whoami && echo $GREETING >> /data/whoami")
        .set_start_cmd("cat /app/hello.txt", wait_for_port(8080))
}

fn make_plan(t: &Template) -> BuildPlan {
    let outcome = plan(t, &PlanOptions::default());
    outcome.plan.unwrap_or_else(|| panic!("{:?}", outcome.diagnostics))
}

/// Builds; returns the result and the events.
async fn build(s: &Setup, p: &BuildPlan) -> (Result<Artifact, ExecError>, Vec<Event>) {
    let entries = walk(&s.ctx()).unwrap();
    let hashes = hash_context(&s.ctx(), &entries, None).unwrap();
    let images = s.exec.resolve_images(p, None).await.unwrap();
    let selector = ContextSelector::new(&entries, &hashes);
    let keys: CacheKeys =
        compute(p, &KeyContext { images: &images, sources: &selector, build_nonce: "nonce" }).unwrap();
    let mut secrets = Secrets::default();
    secrets.insert("token", s.marker.clone());
    let request = ExecRequest {
        build_id: "b".into(),
        plan: p.clone(),
        context: Some(ContextSnapshot { root: s.ctx(), entries }),
        keys,
        images,
        secrets,
        credentials: None,
        output: OutputSpec { oci_layout: Some(s.out()), registry: None, tag: Some("t".into()) },
    };
    let (sink, mut rx) = EventSink::channel();
    let result = s.exec.execute(request, sink, CancellationToken::new()).await;
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (result, events)
}

/// `(step, cached)` of every finished step.
fn finished(events: &[Event]) -> Vec<(String, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::StepFinished { step, cached, .. } => Some((step.clone(), *cached)),
            _ => None,
        })
        .collect()
}

/// Log lines the commands printed (one RUN execution prints at least one).
fn command_lines(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Log { step: Some(_), message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

fn gunzip_if_needed(bytes: Vec<u8>) -> Vec<u8> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes.as_slice()).read_to_end(&mut out).unwrap();
        out
    } else {
        bytes
    }
}

fn all_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.symlink_metadata().unwrap().is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_cross_check_cache_and_secrets() {
    let s = Setup::new();
    let p = make_plan(&template());
    let (result, events) = build(&s, &p).await;
    let artifact = result.unwrap_or_else(|e| panic!("{e}\n{events:#?}"));
    assert_eq!(artifact.steps_total, 8);
    assert_eq!(artifact.steps_cached, 0);
    assert!(finished(&events).iter().all(|(_, cached)| !cached));
    let lines = command_lines(&events);
    for l in ["deleted-wget", "wrote-data"] {
        assert!(lines.contains(&l.to_string()), "{lines:?}");
    }
    let reference = format!("oci:{}:t", s.out().display());
    assert_eq!(artifact.location, reference);

    // umoci unpacks it; files, deletions, owners are as built.
    let work = tempfile::tempdir().unwrap();
    let bundle = work.path().join("bundle");
    tools::run_tool(
        Command::new("umoci").args(["unpack", "--image", &format!("{}:t", s.out().display())]).arg(&bundle),
    );
    let rootfs = bundle.join("rootfs");
    assert_eq!(std::fs::read_to_string(rootfs.join("app/hello.txt")).unwrap(), "hello v1\n");
    assert_eq!(std::fs::read_to_string(rootfs.join("app/conf/settings.ini")).unwrap(), "k=v\n");
    assert!(!rootfs.join("app/skip.tmp").exists(), "--exclude ignored");
    assert!(!rootfs.join("bin/wget").exists(), "deleted base file is back");
    assert!(rootfs.join("bin/busybox").is_file());
    assert_eq!(std::fs::read_to_string(rootfs.join("data/out.txt")).unwrap(), "built\n");
    assert_eq!(rootfs.join("data/out.txt").metadata().unwrap().uid(), 1000);
    let expected_sha = format!("{:x}", sha2::Sha256::digest(s.marker.as_bytes()));
    let sha_line = std::fs::read_to_string(rootfs.join("data/secret.sha")).unwrap();
    assert!(sha_line.starts_with(&expected_sha), "secret not readable in RUN: {sha_line}");
    assert_eq!(std::fs::read_to_string(rootfs.join("data/whoami")).unwrap(), "1000\n/app\nhello world\n");
    for absent in ["run/secrets", "etc/resolv.conf", "etc/ssl", "proc/cpuinfo"] {
        assert!(!rootfs.join(absent).exists(), "{absent} leaked into the image");
    }

    // runc runs it as the config says: user, workdir, env.
    let config_path = bundle.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    assert_eq!(spec["process"]["cwd"], "/app");
    assert_eq!(spec["process"]["user"]["uid"], 1000);
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(["sh", "-c", "id -u; pwd; echo $GREETING; cat hello.txt"]);
    std::fs::write(&config_path, serde_json::to_vec(&spec).unwrap()).unwrap();
    let id = format!("ns-exec-test-{}", std::process::id());
    let out = tools::run_tool(Command::new("timeout").args(["120", "runc", "run", "--bundle"]).arg(&bundle).arg(&id));
    let _ = Command::new("runc").args(["delete", "--force", &id]).output();
    assert_eq!(out.lines().collect::<Vec<_>>(), ["1000", "/app", "hello world", "hello v1"]);

    // skopeo reads the config: env, user, workdir, start command, ready labels, history.
    let config: serde_json::Value =
        serde_json::from_str(&tools::run_tool(Command::new("skopeo").args(["inspect", "--config", &reference])))
            .unwrap();
    let c = &config["config"];
    assert_eq!(c["User"], "app");
    assert_eq!(c["WorkingDir"], "/app");
    assert!(c["Env"].as_array().unwrap().contains(&"GREETING=hello world".into()), "{c}");
    assert_eq!(c["Cmd"], serde_json::json!(["/bin/sh", "-c", "cat /app/hello.txt"]));
    assert_eq!(c["Labels"]["dev.nullspace.ready.type"], "port");
    assert_eq!(c["Labels"]["dev.nullspace.ready.port"], "8080");
    let history = config["history"].as_array().unwrap();
    let ours: Vec<String> = history[history.len() - 8..]
        .iter()
        .map(|h| h["created_by"].as_str().unwrap().split(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(ours, ["RUN", "COPY", "ENV", "WORKDIR", "RUN", "USER", "RUN", "START"]);
    assert!(history[history.len() - 4]["created_by"].as_str().unwrap().contains("--mount=type=secret,id=token"));
    // Base + RUN, COPY, RUN, RUN.
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 5);
    let inspect: serde_json::Value =
        serde_json::from_str(&tools::run_tool(Command::new("skopeo").args(["inspect", &reference]))).unwrap();
    assert_eq!(inspect["Digest"], artifact.manifest_digest);

    // The secret value is in no blob of the layout (layers decompressed), nor in the state dir.
    let mut scanned = 0;
    for path in all_files(&s.out()).into_iter().chain(all_files(&s.dir.path().join("state/cas"))) {
        let bytes = gunzip_if_needed(std::fs::read(&path).unwrap());
        assert!(!bytes.windows(s.marker.len()).any(|w| w == s.marker.as_bytes()), "secret found in {}", path.display());
        scanned += 1;
    }
    assert!(scanned > 8, "scanned only {scanned} files");

    // Unchanged rebuild: every step cached, no command runs, same image.
    let (again, events) = build(&s, &p).await;
    let again = again.unwrap();
    assert_eq!(again.manifest_digest, artifact.manifest_digest);
    assert_eq!((again.steps_total, again.steps_cached, again.bytes_new), (8, 8, 0));
    assert!(finished(&events).iter().all(|(_, cached)| *cached));
    assert_eq!(command_lines(&events), Vec::<String>::new());

    // One copied file changes: the first RUN stays cached, the COPY and everything after rebuild.
    std::fs::write(s.ctx().join("app/hello.txt"), "hello v2\n").unwrap();
    let (changed, events) = build(&s, &p).await;
    let changed = changed.unwrap();
    assert_ne!(changed.manifest_digest, artifact.manifest_digest);
    let cached: Vec<bool> = finished(&events).iter().map(|(_, c)| *c).collect();
    assert_eq!(cached, [true, false, false, false, false, false, false, false]);
    let lines = command_lines(&events);
    assert!(!lines.contains(&"deleted-wget".to_string()) && lines.contains(&"wrote-data".to_string()), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_run_reports_exit_code_and_output() {
    let s = Setup::new();
    let p = make_plan(&Template::from_image(fixture::busybox_ref()).run_cmd("echo about-to-fail; exit 42"));
    let (result, _) = build(&s, &p).await;
    match result {
        Err(ExecError::StepFailed { step, message }) => {
            assert_eq!(step, "0/0");
            assert!(message.contains("code 42") && message.contains("about-to-fail"), "{message}");
            assert!(message.contains("step 0"), "span missing: {message}");
        }
        other => panic!("expected a step failure, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_build_stops_its_container() {
    let mut s = Setup::new();
    let runc_root = s.dir.path().join("runc");
    let runner = RunnerOptions { runc_root: Some(runc_root.clone()), ..RunnerOptions::default() };
    s.exec =
        NativeExecutor::new(&s.dir.path().join("state"), NativeOptions { runner, ..NativeOptions::default() }).unwrap();
    let p = make_plan(&Template::from_image(fixture::busybox_ref()).run_cmd("echo sleeping; sleep 60"));
    let entries = walk(&s.ctx()).unwrap();
    let hashes = hash_context(&s.ctx(), &entries, None).unwrap();
    let images = s.exec.resolve_images(&p, None).await.unwrap();
    let keys = compute(
        &p,
        &KeyContext { images: &images, sources: &ContextSelector::new(&entries, &hashes), build_nonce: "n" },
    )
    .unwrap();
    let request = ExecRequest {
        build_id: "c".into(),
        plan: p.clone(),
        context: None,
        keys,
        images,
        secrets: Secrets::default(),
        credentials: None,
        output: OutputSpec { oci_layout: Some(s.out()), registry: None, tag: None },
    };
    let (sink, mut rx) = EventSink::channel();
    let cancel = CancellationToken::new();
    let exec = s.exec.clone();
    let token = cancel.clone();
    let task = tokio::spawn(async move { exec.execute(request, sink, token).await });
    // The command's first line means the container runs.
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(60), rx.recv()).await {
            Ok(Some(Event::Log { message, .. })) if message == "sleeping" => break,
            Ok(Some(_)) => {}
            other => panic!("no output from the container: {other:?}"),
        }
    }
    let started = std::time::Instant::now();
    cancel.cancel();
    let result = task.await.unwrap();
    assert!(matches!(result, Err(ExecError::Cancelled)), "{result:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(fixture::runc_containers(&runc_root), Vec::<String>::new());
    assert_eq!(fixture::mounts_under(s.dir.path()), Vec::<String>::new());
    assert!(!s.out().join("index.json").exists(), "a cancelled build wrote an image");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scratch_copies_rename_chown_chmod_and_wildcards() {
    let s = Setup::new();
    std::fs::write(s.ctx().join("a.py"), "print(1)\n").unwrap();
    std::fs::write(s.ctx().join("b.py"), "print(2)\n").unwrap();
    let t = Template::from_image("scratch")
        .copy("app/hello.txt", "/etc/greeting")
        .copy_with(["*.py"], "/src/", nullspace_plan::builder::CopyOptions::default().owner("1000:1001").mode("0600"))
        .copy("app/conf", "/conf");
    let (result, _) = build(&s, &make_plan(&t)).await;
    let artifact = result.unwrap();
    assert_eq!(artifact.steps_total, 3);
    let work = tempfile::tempdir().unwrap();
    let bundle = work.path().join("bundle");
    tools::run_tool(
        Command::new("umoci").args(["unpack", "--image", &format!("{}:t", s.out().display())]).arg(&bundle),
    );
    let root = bundle.join("rootfs");
    assert_eq!(std::fs::read_to_string(root.join("etc/greeting")).unwrap(), "hello v1\n");
    for f in ["src/a.py", "src/b.py"] {
        let m = root.join(f).metadata().unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1000, 1001, 0o600), "{f}");
    }
    assert_eq!(std::fs::read_to_string(root.join("conf/settings.ini")).unwrap(), "k=v\n");
    assert!(!root.join("conf/conf").exists(), "a directory is copied by its content");
    let inspect: serde_json::Value = serde_json::from_str(&tools::run_tool(Command::new("skopeo").args([
        "inspect",
        "--config",
        &format!("oci:{}:t", s.out().display()),
    ])))
    .unwrap();
    assert_eq!(inspect["os"], "linux");
    assert_eq!(inspect["architecture"], "amd64");
}
