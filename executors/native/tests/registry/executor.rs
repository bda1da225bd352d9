//! The native executor with a real `docker-registry` on loopback: a template whose base is the
//! busybox fixture pushed there (by skopeo) is built and pushed back, checked with skopeo, umoci
//! and runc; an unchanged rebuild pulls and uploads nothing (counted in the access log);
//! credentials come from the request or from a docker `config.json`.

use std::path::Path;
use std::process::Command;

use super::registry_support::{Auth, TestRegistry};
use super::{fixture, run};
use nullspace_engine::cache::{CacheKeys, KeyContext, compute};
use nullspace_engine::context::contenthash::hash_context;
use nullspace_engine::context::select::{ContextSelector, walk};
use nullspace_engine::executor::{
    Artifact, ContextSnapshot, Event, EventSink, ExecError, ExecRequest, Executor, OutputSpec, Secrets,
};
use nullspace_native::executor::{NativeExecutor, NativeOptions};
use nullspace_native::registry::RegistryConfig;
use nullspace_plan::builder::{Credentials, Template, wait_for_port};
use nullspace_plan::normalize::{PlanOptions, plan};
use nullspace_plan::plan::BuildPlan;
use tokio_util::sync::CancellationToken;

/// An executor reading `docker_config` (an empty one when `None`) for credentials.
fn executor(state: &Path, docker_config: Option<&Path>) -> NativeExecutor {
    let config = match docker_config {
        Some(p) => p.to_path_buf(),
        None => {
            let p = state.with_extension("docker.json");
            std::fs::write(&p, "{}").unwrap();
            p
        }
    };
    let registry = RegistryConfig { docker_config: Some(config), ..RegistryConfig::default() };
    NativeExecutor::new(state, NativeOptions { registry, ..NativeOptions::default() }).unwrap()
}

/// Pushes the busybox fixture to `HOST/busybox:1` with skopeo (independent of our client).
fn push_base(reg: &TestRegistry, creds: Option<&str>) -> String {
    let reference = format!("{}/busybox:1", reg.host());
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--dest-tls-verify=false"]);
    if let Some(c) = creds {
        cmd.args(["--dest-creds", c]);
    }
    cmd.arg(format!("oci:{}:busybox", fixture().display())).arg(format!("docker://{reference}"));
    run(&mut cmd);
    reference
}

fn template(base: &str) -> Template {
    Template::from_image(base)
        .copy("app", "/app/")
        .run_cmd("echo built-on-registry-base > /app/built.txt && rm /bin/wget && echo ran-step")
        .set_envs([("GREETING", "hi there")])
        .set_workdir("/app")
        .set_user("app")
        .set_start_cmd("cat /app/hello.txt", wait_for_port(8080))
}

fn make_plan(t: &Template) -> BuildPlan {
    let outcome = plan(t, &PlanOptions::default());
    outcome.plan.unwrap_or_else(|| panic!("{:?}", outcome.diagnostics))
}

fn context(dir: &Path) -> std::path::PathBuf {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(ctx.join("app")).unwrap();
    std::fs::write(ctx.join("app/hello.txt"), "hello from the registry build\n").unwrap();
    ctx
}

/// Resolves, keys and builds `p`; returns the result, the events and the keys.
async fn build(
    exec: &NativeExecutor,
    ctx: &Path,
    p: &BuildPlan,
    output: OutputSpec,
    credentials: Option<Credentials>,
) -> (Result<Artifact, ExecError>, Vec<Event>, CacheKeys) {
    let entries = walk(ctx).unwrap();
    let hashes = hash_context(ctx, &entries, None).unwrap();
    let images = exec.resolve_images(p, credentials.as_ref()).await.unwrap();
    let selector = ContextSelector::new(&entries, &hashes);
    let keys = compute(p, &KeyContext { images: &images, sources: &selector, build_nonce: "n" }).unwrap();
    let request = ExecRequest {
        build_id: "r".into(),
        plan: p.clone(),
        context: Some(ContextSnapshot { root: ctx.to_path_buf(), entries }),
        keys: keys.clone(),
        images,
        secrets: Secrets::default(),
        credentials,
        output,
    };
    let (sink, mut rx) = EventSink::channel();
    let result = exec.execute(request, sink, CancellationToken::new()).await;
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (result, events, keys)
}

fn command_lines(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Log { step: Some(_), message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

fn skopeo_inspect(reference: &str, extra: &[&str]) -> serde_json::Value {
    let out = run(Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .args(extra)
        .arg(format!("docker://{reference}")));
    serde_json::from_str(&out).unwrap()
}

fn registry_output(target: &str) -> OutputSpec {
    OutputSpec { oci_layout: None, registry: Some(target.to_string()), tag: None }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_base_build_push_and_unchanged_rebuild() {
    let reg = TestRegistry::start();
    let base = push_base(&reg, None);
    let base_digest = skopeo_inspect(&base, &[])["Digest"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path());
    let exec = executor(&dir.path().join("state"), None);
    let p = make_plan(&template(&base));
    let target = format!("{}/app:1", reg.host());

    let uploads_before = reg.upload_requests();
    let (result, events, keys) = build(&exec, &ctx, &p, registry_output(&target), None).await;
    let artifact = result.unwrap_or_else(|e| panic!("{e}\n{events:#?}"));
    assert!(command_lines(&events).contains(&"ran-step".to_string()));
    // The tag was resolved to the manifest digest skopeo sees, and that is what the key holds.
    assert_eq!(keys.steps[0].inputs.base_digest.as_deref(), Some(base_digest.as_str()));
    assert_eq!(artifact.location, target);

    // The registry holds what we built: skopeo sees the same digest, config and layers.
    let inspect = skopeo_inspect(&target, &[]);
    assert_eq!(inspect["Digest"], artifact.manifest_digest);
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 3, "base + COPY + RUN");
    let config = skopeo_inspect(&target, &["--config"]);
    assert_eq!(config["config"]["User"], "app");
    assert_eq!(config["config"]["WorkingDir"], "/app");
    assert_eq!(config["config"]["Labels"]["dev.nullspace.ready.port"], "8080");
    // Two new blobs and the config were uploaded; the base layer was mounted from busybox.
    let mounted = reg.access_log().lines().filter(|l| l.contains("mount=") && l.contains("HTTP/1.1\" 201 ")).count();
    assert_eq!(mounted, 1, "{}", reg.access_log());
    let uploads_first = reg.upload_requests() - uploads_before;
    assert!(uploads_first >= 3, "{uploads_first} upload requests");

    // skopeo copies it to a layout (verifying every digest); umoci unpacks; runc runs it.
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("oci");
    run(Command::new("skopeo").args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{target}"),
        &format!("oci:{}:app", layout.display()),
    ]));
    let bundle = work.path().join("bundle");
    run(Command::new("umoci").args(["unpack", "--image", &format!("{}:app", layout.display())]).arg(&bundle));
    let rootfs = bundle.join("rootfs");
    assert!(!rootfs.join("bin/wget").exists(), "the RUN deletion is lost");
    assert_eq!(std::fs::read_to_string(rootfs.join("app/built.txt")).unwrap(), "built-on-registry-base\n");
    let config_path = bundle.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(["sh", "-c", "id -u; pwd; echo $GREETING; cat hello.txt"]);
    std::fs::write(&config_path, serde_json::to_vec(&spec).unwrap()).unwrap();
    let id = format!("ns-exec-reg-{}", std::process::id());
    let out = run(Command::new("timeout").args(["120", "runc", "run", "--bundle"]).arg(&bundle).arg(&id));
    let _ = Command::new("runc").args(["delete", "--force", &id]).output();
    assert_eq!(out.lines().collect::<Vec<_>>(), ["1000", "/app", "hi there", "hello from the registry build"]);

    // Unchanged rebuild: no command, no blob fetched or uploaded, same digest.
    let (uploads, blob_gets) = (reg.upload_requests(), reg.count("GET", "/blobs/"));
    let (again, events, _) = build(&exec, &ctx, &p, registry_output(&target), None).await;
    let again = again.unwrap();
    assert_eq!(again.manifest_digest, artifact.manifest_digest);
    assert_eq!((again.steps_cached, again.bytes_new), (again.steps_total, 0));
    assert_eq!(command_lines(&events), Vec::<String>::new());
    assert_eq!(reg.upload_requests(), uploads, "an unchanged rebuild uploaded blobs");
    assert_eq!(reg.count("GET", "/blobs/"), blob_gets, "an unchanged rebuild pulled blobs");

    // A fresh executor (empty store) pulls the base once, and pushing to a second repository
    // uploads only what the registry lacks there (all blobs are mounted or already present).
    let exec2 = executor(&dir.path().join("state2"), None);
    let target2 = format!("{}/other:2", reg.host());
    let gets = reg.count("GET", "/blobs/");
    let (third, _, _) = build(&exec2, &ctx, &p, registry_output(&target2), None).await;
    assert_eq!(third.unwrap().manifest_digest, artifact.manifest_digest, "the build is reproducible");
    assert_eq!(reg.count("GET", "/blobs/") - gets, 2, "base config and layer pulled once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_request_or_docker_config() {
    let reg = TestRegistry::start_with(Auth::Htpasswd { user: "builder".into(), password: "s3cret".into() });
    let base = push_base(&reg, Some("builder:s3cret"));
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path());
    let p = make_plan(&Template::from_image(&base).copy("app", "/app/"));
    let target = format!("{}/private:1", reg.host());

    // Anonymous: the registry refuses, and the error names the reference.
    let anon = executor(&dir.path().join("anon"), None);
    let err = anon.resolve_images(&p, None).await.unwrap_err().to_string();
    assert!(err.contains(&base) && err.to_lowercase().contains("unauthorized"), "{err}");

    // Credentials given with the request: pull and push work.
    let creds = Credentials::Basic { username: "builder".into(), password: "s3cret".into() };
    let (result, events, _) = build(&anon, &ctx, &p, registry_output(&target), Some(creds)).await;
    let artifact = result.unwrap_or_else(|e| panic!("{e}\n{events:#?}"));
    let inspect = skopeo_inspect(&target, &["--creds", "builder:s3cret"]);
    assert_eq!(inspect["Digest"], artifact.manifest_digest);

    // Credentials from a docker config.json, none in the request.
    let docker = dir.path().join("config.json");
    let auth = base64_encode(b"builder:s3cret");
    std::fs::write(&docker, format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.host())).unwrap();
    let from_config = executor(&dir.path().join("cfg"), Some(&docker));
    let target2 = format!("{}/private:2", reg.host());
    let (result, _, _) = build(&from_config, &ctx, &p, registry_output(&target2), None).await;
    assert_eq!(result.unwrap().manifest_digest, artifact.manifest_digest);
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
