//! RUN steps through real runc on the busybox fixture: overlay and copy paths agree, the
//! network can be cut, failures carry the exit code, cancellation leaves nothing behind, and
//! mount points never reach the layer.

#[path = "common/fixture.rs"]
mod fixture;
#[path = "common/tools.rs"]
mod tools;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nullspace_engine::cas::BlobStore;
use nullspace_engine::executor::{Event, EventSink, Secrets};
use nullspace_native::executor::OciLayoutSource;
use nullspace_native::layer::{Change, LayerOptions};
use nullspace_native::run::{
    HostFiles, LayerRef, Network, RootfsMode, RunError, RunOutput, RunSpec, Runner, RunnerOptions, StepContext,
    StepMount,
};
use tokio_util::sync::CancellationToken;

struct Env {
    _dir: tempfile::TempDir,
    state: PathBuf,
    store: BlobStore,
    layers: Vec<LayerRef>,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let store = BlobStore::new(state.join("cas")).unwrap();
    let image = OciLayoutSource.fetch_sync(&fixture::busybox_ref(), &store).unwrap();
    let layers = image
        .layers
        .iter()
        .zip(image.config.rootfs().diff_ids())
        .map(|(d, id)| LayerRef { digest: d.digest().to_string(), diff_id: id.clone() })
        .collect();
    Env { _dir: dir, state, store, layers }
}

fn runner(env: &Env, mode: RootfsMode) -> Runner {
    Runner::new(&env.state, RunnerOptions { rootfs: mode, ..RunnerOptions::default() }).unwrap()
}

fn sh(cmd: &str) -> RunSpec {
    RunSpec {
        args: vec!["/bin/sh".into(), "-c".into(), cmd.into()],
        env: vec!["PATH=/bin".into()],
        ..RunSpec::default()
    }
}

/// Runs and returns the output and the log lines.
fn run(runner: &Runner, env: &Env, spec: &RunSpec, secrets: &Secrets) -> (Result<RunOutput, RunError>, Vec<String>) {
    let (events, mut rx) = EventSink::channel();
    let cancel = CancellationToken::new();
    let ctx = StepContext { store: &env.store, secrets, events: &events, step: Some("0/0"), cancel: &cancel };
    let out = runner.run(&env.layers, spec, &ctx);
    let mut lines = Vec::new();
    while let Ok(e) = rx.try_recv() {
        if let Event::Log { message, .. } = e {
            lines.push(message);
        }
    }
    (out, lines)
}

const CHANGES: &str = "rm /bin/wget && mkdir -p /data/sub && echo one > /data/one && chmod 600 /data/one \
     && ln -s one /data/link && echo hi > /etc/motd && rm -r /home/app && chmod 700 /tmp && cat /etc/resolv.conf >/dev/null";

#[test]
fn overlay_and_copy_give_the_same_layer() {
    let env = env();
    let mut secrets = Secrets::default();
    secrets.insert("tok", "s3cr3t-value");
    let mut spec = sh(CHANGES);
    spec.mounts = vec![
        StepMount::Secret { id: "tok".into(), target: None, env: None, required: true, mode: 0o400, uid: 0, gid: 0 },
        StepMount::Tmpfs { target: "/scratch/tmp".into(), size: None },
    ];
    spec.cwd = "/work/dir".into();
    let mut ids = Vec::new();
    for mode in [RootfsMode::Overlay, RootfsMode::Copy] {
        let (out, lines) = run(&runner(&env, mode), &env, &spec, &secrets);
        let out = out.unwrap_or_else(|e| panic!("{mode:?}: {e} {lines:?}"));
        assert_eq!(out.mode, mode);
        let paths: Vec<String> = out
            .changes
            .iter()
            .map(|c| match c {
                Change::Write(p) => format!("W {}", p.display()),
                Change::Delete(p) => format!("D {}", p.display()),
                Change::Opaque(p) => format!("O {}", p.display()),
            })
            .collect();
        for expected in ["D bin/wget", "W data/one", "W data/link", "W etc/motd", "D home/app", "W work/dir"] {
            assert!(paths.iter().any(|p| p == expected), "{mode:?}: {expected} missing from {paths:?}");
        }
        // Mount points and their parents never reach the layer.
        for banned in ["run", "proc", "dev", "sys", "scratch", "etc/resolv.conf", "etc/ssl"] {
            assert!(
                !paths.iter().any(|p| p[2..] == *banned || p[2..].starts_with(&format!("{banned}/"))),
                "{mode:?}: {banned} in {paths:?}"
            );
        }
        let mut blob = Vec::new();
        let info = out.layer.write(&mut blob, &LayerOptions::default()).unwrap();
        let text = String::from_utf8_lossy(&flate2_decode(&blob)).into_owned();
        assert!(!text.contains("s3cr3t-value"));
        ids.push(info.diff_id);
    }
    assert_eq!(ids[0], ids[1], "overlay and copy layers differ");
}

fn flate2_decode(blob: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(blob).read_to_end(&mut out).unwrap();
    out
}

#[test]
fn secrets_are_readable_and_env_secrets_redacted_in_logs() {
    let env = env();
    let mut secrets = Secrets::default();
    secrets.insert("tok", "marker-1234567");
    let mut spec = sh("cat /run/secrets/tok; echo; echo \"env=$TOKEN\"; stat -c '%a %u' /run/secrets/tok");
    spec.mounts = vec![
        StepMount::Secret { id: "tok".into(), target: None, env: None, required: true, mode: 0o440, uid: 1000, gid: 0 },
        StepMount::Secret {
            id: "tok".into(),
            target: None,
            env: Some("TOKEN".into()),
            required: true,
            mode: 0o400,
            uid: 0,
            gid: 0,
        },
    ];
    let (out, lines) = run(&runner(&env, RootfsMode::Auto), &env, &spec, &secrets);
    let out = out.unwrap();
    assert_eq!(lines, ["****", "env=****", "440 1000"]);
    assert!(out.changes.is_empty(), "{:?}", out.changes);
    // A missing required secret fails before anything runs.
    spec.mounts[0] =
        StepMount::Secret { id: "nope".into(), target: None, env: None, required: true, mode: 0o400, uid: 0, gid: 0 };
    assert!(matches!(
        run(&runner(&env, RootfsMode::Auto), &env, &spec, &secrets).0,
        Err(RunError::MissingSecret { .. })
    ));
}

fn interfaces(lines: &[String]) -> Vec<String> {
    lines.iter().skip(2).filter_map(|l| l.split(':').next()).map(|s| s.trim().to_string()).collect()
}

#[test]
fn network_none_has_only_loopback() {
    let env = env();
    let runner = runner(&env, RootfsMode::Auto);
    let mut spec = sh("cat /proc/net/dev");
    spec.network = Network::None;
    let (out, lines) = run(&runner, &env, &spec, &Secrets::default());
    out.unwrap();
    assert_eq!(interfaces(&lines), ["lo"], "{lines:?}");
    spec.network = Network::Host;
    let (out, lines) = run(&runner, &env, &spec, &Secrets::default());
    out.unwrap();
    let host = interfaces(&lines);
    assert!(host.len() > 1 && host.contains(&"lo".to_string()), "host network: {host:?}");
}

#[test]
fn user_workdir_env_and_ca_bundle() {
    let env = env();
    let mut spec =
        sh("id -u; id -g; pwd; echo $SSL_CERT_FILE $PIP_CERT; test -s /etc/ssl/certs/ca-certificates.crt && echo ca");
    spec.user = "app".into();
    spec.cwd = "/home/app/w".into();
    let (out, lines) = run(&runner(&env, RootfsMode::Auto), &env, &spec, &Secrets::default());
    let out = out.unwrap();
    assert_eq!(
        lines,
        ["1000", "1000", "/home/app/w", "/etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt", "ca"]
    );
    // Only the created working directory (and, with overlay, its copied-up parents).
    assert!(out.changes.contains(&Change::Write("home/app/w".into())), "{:?}", out.changes);
    let allowed = [Change::Write("home".into()), Change::Write("home/app".into()), Change::Write("home/app/w".into())];
    assert!(out.changes.iter().all(|c| allowed.contains(c)), "{:?}", out.changes);
    // Without host files nothing is mounted.
    let runner =
        Runner::new(&env.state, RunnerOptions { host_files: HostFiles::none(), ..RunnerOptions::default() }).unwrap();
    let (out, lines) = run(
        &runner,
        &env,
        &sh("test -e /etc/ssl/certs/ca-certificates.crt || echo none; echo ${SSL_CERT_FILE:-unset}"),
        &Secrets::default(),
    );
    out.unwrap();
    assert_eq!(lines, ["none", "unset"]);
}

#[test]
fn failure_carries_exit_code_and_last_lines() {
    let env = env();
    let (out, _) =
        run(&runner(&env, RootfsMode::Auto), &env, &sh("echo before-fail; echo oops >&2; exit 7"), &Secrets::default());
    match out {
        Err(RunError::Failed { code, last_lines }) => {
            assert_eq!(code, 7);
            assert!(last_lines.contains(&"before-fail".to_string()) && last_lines.contains(&"oops".to_string()));
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(fixture::mounts_under(&env.state).is_empty());
}

#[test]
fn cancellation_removes_container_and_mounts() {
    let env = env();
    let runc_root = env.state.join("runc");
    let runner =
        Runner::new(&env.state, RunnerOptions { runc_root: Some(runc_root.clone()), ..RunnerOptions::default() })
            .unwrap();
    let cancel = CancellationToken::new();
    let (events, _rx) = EventSink::channel();
    let secrets = Secrets::default();
    let started = Instant::now();
    let result = std::thread::scope(|s| {
        let handle = s.spawn(|| {
            let ctx =
                StepContext { store: &env.store, secrets: &secrets, events: &events, step: None, cancel: &cancel };
            runner.run(&env.layers, &sh("echo started; sleep 60"), &ctx)
        });
        // Wait until the container exists, then cancel.
        let deadline = Instant::now() + Duration::from_secs(30);
        while fixture::runc_containers(&runc_root).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!fixture::runc_containers(&runc_root).is_empty(), "container never appeared");
        assert!(!fixture::mounts_under(&env.state).is_empty(), "overlay/tmpfs should be mounted while running");
        cancel.cancel();
        handle.join().unwrap()
    });
    assert!(matches!(result, Err(RunError::Cancelled)), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(30), "cancellation took {:?}", started.elapsed());
    assert_eq!(fixture::runc_containers(&runc_root), Vec::<String>::new());
    assert_eq!(fixture::mounts_under(&env.state), Vec::<String>::new());
    let leftovers: Vec<_> = std::fs::read_dir(env.state.join("run")).unwrap().collect();
    assert!(leftovers.is_empty(), "step dirs left: {leftovers:?}");
}
