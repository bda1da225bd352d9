//! The native executor on the busybox fixture with a 10-step template (3 RUN steps through
//! runc, 2 COPY, 5 config steps):
//!
//! - `rebuild/unchanged-10-steps`: `NativeExecutor::execute` when every step is cached (OCI
//!   layout output); after the run it checks that no command ran and every step was cached.
//! - `cold_build/busybox-3-run`: the same template into a fresh state directory each time
//!   (base import, 3 runc containers, layers, layout).
//!
//! Needs root (runc) and the fixture tools (`scripts/ensure-tools.sh`).

use std::path::{Path, PathBuf};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use nullspace_engine::cache::{KeyContext, compute};
use nullspace_engine::context::contenthash::hash_context;
use nullspace_engine::context::select::ContextSelector;
use nullspace_engine::context::walk::Walker;
use nullspace_engine::executor::{
    Artifact, ContextSnapshot, Event, EventSink, ExecRequest, Executor, OutputSpec, Secrets,
};
use nullspace_native::executor::{NativeExecutor, NativeOptions};
use nullspace_plan::builder::{Template, wait_for_port};
use nullspace_plan::normalize::{PlanOptions, plan};
use tokio_util::sync::CancellationToken;

fn template(base: &Path) -> Template {
    Template::from_image(format!("oci:{}:busybox", base.display()))
        .run_cmd("echo one > /one")
        .copy("app", "/app/")
        .set_envs([("A", "1")])
        .run_cmd("echo two > /two && rm /bin/wget")
        .set_workdir("/app")
        .copy("conf", "/etc/conf/")
        .run_cmd("echo three > /three")
        .set_user("app")
        .set_envs([("B", "2")])
        .set_start_cmd("cat /app/hello.txt", wait_for_port(8080))
}

fn context() -> PathBuf {
    let ctx = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-rebuild-ctx");
    std::fs::create_dir_all(ctx.join("app")).expect("ctx");
    std::fs::create_dir_all(ctx.join("conf")).expect("ctx");
    std::fs::write(ctx.join("app/hello.txt"), "hello\n").expect("ctx");
    std::fs::write(ctx.join("conf/a.ini"), "a=1\n").expect("ctx");
    ctx
}

/// A request for the template, keyed as the engine would key it.
fn request(rt: &tokio::runtime::Runtime, exec: &NativeExecutor, out: &Path) -> ExecRequest {
    let base = nullspace_benches::busybox_fixture().expect("busybox fixture");
    let ctx = context();
    let outcome = plan(&template(&base), &PlanOptions::default());
    let p = outcome.plan.expect("plan");
    let entries = Walker::new(&ctx).walk().expect("walk").entries;
    let hashes = hash_context(&ctx, &entries, None).expect("hash");
    let images = rt.block_on(exec.resolve_images(&p, None)).expect("resolve");
    let keys = compute(
        &p,
        &KeyContext { images: &images, sources: &ContextSelector::new(&entries, &hashes), build_nonce: "n" },
    )
    .expect("keys");
    ExecRequest {
        build_id: "bench".into(),
        plan: p,
        context: Some(ContextSnapshot { root: ctx, entries }),
        keys,
        images,
        secrets: Secrets::default(),
        credentials: None,
        output: OutputSpec { oci_layout: Some(out.to_path_buf()), registry: None, tag: Some("bench".into()) },
    }
}

fn execute(rt: &tokio::runtime::Runtime, exec: &NativeExecutor, req: &ExecRequest) -> (Artifact, Vec<Event>) {
    let (sink, mut rx) = EventSink::channel();
    let artifact = rt.block_on(exec.execute(req.clone(), sink, CancellationToken::new())).expect("build");
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (artifact, events)
}

fn rebuild(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let exec = NativeExecutor::new(&dir.path().join("state"), NativeOptions::default()).expect("executor");
    let req = request(&rt, &exec, &dir.path().join("out"));
    let (first, _) = execute(&rt, &exec, &req);
    assert_eq!((first.steps_total, first.steps_cached), (10, 0));

    let mut group = c.benchmark_group("rebuild");
    group.bench_function("unchanged-10-steps", |b| b.iter(|| execute(&rt, &exec, &req)));
    group.finish();
    let (again, events) = execute(&rt, &exec, &req);
    assert_eq!((again.steps_cached, again.bytes_new), (10, 0), "not all cached");
    assert_eq!(again.manifest_digest, first.manifest_digest);
    assert!(
        !events.iter().any(|e| matches!(e, Event::Log { step: Some(_), .. })),
        "a command ran in a cached rebuild: {events:?}"
    );

    let mut group = c.benchmark_group("cold_build");
    group.sample_size(10);
    group.bench_function("busybox-3-run", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().expect("tempdir");
                let exec = NativeExecutor::new(&dir.path().join("state"), NativeOptions::default()).expect("executor");
                let req = request(&rt, &exec, &dir.path().join("out"));
                (dir, exec, req)
            },
            |(dir, exec, req)| {
                let (a, _) = execute(&rt, &exec, &req);
                assert_eq!(a.steps_cached, 0);
                dir
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, rebuild);
criterion_main!(benches);
