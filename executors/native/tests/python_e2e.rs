//! End to end (issue 4's "done means"): a Python template on the Debian+Python fixture —
//! `pip_install` of a real package from PyPI (through this machine's TLS-intercepting proxy,
//! with the host CA bundle mounted during RUN), `copy` of an app, env, user 1000, workdir, a
//! start command with a ready check — built by the native executor; the image is unpacked by
//! umoci and its start command run by runc on the host network, and the app must answer. No CA
//! bundle or resolv.conf content may be in any layer we made.

#[path = "common/tools.rs"]
mod tools;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nullspace_engine::cache::{KeyContext, compute};
use nullspace_engine::context::contenthash::hash_context;
use nullspace_engine::context::select::{ContextSelector, walk};
use nullspace_engine::executor::{ContextSnapshot, Event, EventSink, ExecRequest, Executor, OutputSpec, Secrets};
use nullspace_native::executor::{NativeExecutor, NativeOptions};
use nullspace_native::layout::OciDir;
use nullspace_plan::builder::{CopyOptions, Template, wait_for_port};
use nullspace_plan::normalize::{PlanOptions, plan};
use tokio_util::sync::CancellationToken;
use tools::{fixture_layout, run_tool};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

const SERVER: &str = r#"import os, http.server, six

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello from %s, six %s, uid %d\n" % (os.getcwd(), six.__version__, os.getuid())).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#;

/// `GET /` on 127.0.0.1:`port`: the body, once something answers.
fn http_get(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

/// The decompressed tar of a layer blob.
fn layer_tar(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()).read_to_end(&mut out).unwrap();
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_template_builds_and_its_app_answers() {
    let base = fixture_layout("python");
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(ctx.join("app")).unwrap();
    std::fs::write(ctx.join("app/server.py"), SERVER).unwrap();
    let port = free_port();
    let t = Template::from_image(format!("oci:{}:python", base.display()))
        .pip_install(["six==1.16.0"])
        .copy_with(["app"], "/app/", CopyOptions::default().owner("1000:1000"))
        .set_envs([("PORT", port.to_string().as_str()), ("PYTHONUNBUFFERED", "1")])
        .set_user("1000")
        .set_workdir("/app")
        .set_start_cmd("exec python3 server.py", wait_for_port(port));
    let outcome = plan(&t, &PlanOptions::default());
    let p = outcome.plan.unwrap_or_else(|| panic!("{:?}", outcome.diagnostics));

    let exec = NativeExecutor::new(&dir.path().join("state"), NativeOptions::default()).unwrap();
    let entries = walk(&ctx).unwrap();
    let hashes = hash_context(&ctx, &entries, None).unwrap();
    let images = exec.resolve_images(&p, None).await.unwrap();
    let keys = compute(
        &p,
        &KeyContext { images: &images, sources: &ContextSelector::new(&entries, &hashes), build_nonce: "n" },
    )
    .unwrap();
    let out = dir.path().join("out");
    let request = ExecRequest {
        build_id: "py".into(),
        plan: p,
        context: Some(ContextSnapshot { root: ctx.clone(), entries }),
        keys,
        images,
        secrets: Secrets::default(),
        credentials: None,
        output: OutputSpec { oci_layout: Some(out.clone()), registry: None, tag: Some("app".into()) },
    };
    let (sink, mut rx) = EventSink::channel();
    let result = exec.execute(request, sink, CancellationToken::new()).await;
    let mut log = Vec::new();
    while let Ok(e) = rx.try_recv() {
        if let Event::Log { message, .. } = e {
            log.push(message);
        }
    }
    let artifact = result.unwrap_or_else(|e| panic!("{e}\n{}", log.join("\n")));
    assert!(log.iter().any(|l| l.contains("Successfully installed six-1.16.0")), "{}", log.join("\n"));

    // No CA bundle or resolv.conf in the layers we added (the base is the fixture's own).
    let oci = OciDir::open(&out).unwrap();
    let image = oci.load_image(Some("app")).unwrap();
    let layers = image.manifest.layers();
    assert_eq!(layers.len(), 3, "base + pip + COPY");
    let host_resolv = std::fs::read("/etc/resolv.conf").unwrap_or_default();
    let resolv_line = host_resolv.split(|b| *b == b'\n').find(|l| l.starts_with(b"nameserver")).unwrap_or_default();
    for layer in &layers[1..] {
        let tar = layer_tar(&oci.blob_path(layer.digest()).unwrap());
        let mut archive = tar::Archive::new(tar.as_slice());
        for entry in archive.entries().unwrap() {
            let path = entry.unwrap().path().unwrap().into_owned();
            let p = path.to_string_lossy();
            assert!(
                !p.contains("ca-certificates.crt") && !p.ends_with("resolv.conf"),
                "{p} in layer {}",
                layer.digest()
            );
        }
        assert!(!contains(&tar, b"-----BEGIN CERTIFICATE-----"), "a certificate in layer {}", layer.digest());
        assert!(!contains(&tar, resolv_line), "host resolv.conf in layer {}", layer.digest());
    }

    // umoci unpacks it; runc runs the image's own start command on the host network.
    let work = tempfile::tempdir().unwrap();
    let bundle = work.path().join("bundle");
    run_tool(Command::new("umoci").args(["unpack", "--image", &format!("{}:app", out.display())]).arg(&bundle));
    let config_path = bundle.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    assert_eq!(spec["process"]["args"], serde_json::json!(["/bin/sh", "-c", "exec python3 server.py"]));
    assert_eq!(spec["process"]["cwd"], "/app");
    assert_eq!(spec["process"]["user"]["uid"], 1000);
    spec["process"]["terminal"] = false.into();
    if let Some(ns) = spec["linux"]["namespaces"].as_array_mut() {
        ns.retain(|n| n["type"] != "network");
    }
    std::fs::write(&config_path, serde_json::to_vec(&spec).unwrap()).unwrap();
    let runc_root = work.path().join("runc");
    let id = format!("ns-py-e2e-{}", std::process::id());
    let mut child = Command::new("runc")
        .arg("--root")
        .arg(&runc_root)
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut body = None;
    while Instant::now() < deadline && body.is_none() {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("the app exited with {status}: {err}");
        }
        body = http_get(port);
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("runc").arg("--root").arg(&runc_root).args(["kill", &id, "KILL"]).output();
    let _ = child.wait();
    let _ = Command::new("runc").arg("--root").arg(&runc_root).args(["delete", "--force", &id]).output();
    assert_eq!(body.as_deref(), Some("hello from /app, six 1.16.0, uid 1000\n"));
    assert!(artifact.manifest_digest.starts_with("sha256:"));
}
