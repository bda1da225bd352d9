//! The `Engine` facade end to end: real SQLite store, real native executor with runc, the
//! busybox fixture. One binary holds every scenario (each test has its own state dir).

mod engine_support;

use std::time::{Duration, Instant};

use engine_support::{Setup, all_files, busybox_ref, layout_dir, read_plain, runc_containers};
use futures_util::StreamExt;
use nullspace_engine::engine::{Promotability, RetryOptions};
use nullspace_engine::store::{ArtifactAvailability, BuildStatus, StoreError, TemplateRef, Timestamp};
use nullspace_engine::{BuildOptions, Engine, EngineError};
use nullspace_plan::builder::Template;
use sha2::Digest as _;

const KEEP: Duration = Duration::from_secs(3600);

fn hello(s: &Setup, echo: &str) -> Template {
    Template::from_image(busybox_ref())
        .context_dir(s.ctx())
        .copy("app", "/app/")
        .run_cmd(format!("echo {echo} && cat /app/hello.txt"))
}

async fn messages(engine: &Engine, id: &nullspace_engine::store::BuildId) -> Vec<String> {
    let h = engine.connect(&"acme".parse().unwrap(), id).await.unwrap();
    h.logs(0, false).map(|e| e.unwrap().message).collect().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_ready_tagged_then_rebuild_all_cached() {
    let s = Setup::new();
    let engine = s.engine(2, KEEP).await;
    let tenant = "acme".parse().unwrap();
    let name = "acme/hello".parse().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let options = BuildOptions::default()
        .tag("stable".parse().unwrap())
        .on_log(std::sync::Arc::new(move |e: &nullspace_engine::store::LogEntry| sink.lock().unwrap().push(e.offset)));
    let first = engine.build(&tenant, &hello(&s, "first-run"), &name, options).await.unwrap();
    assert_eq!(first.status, BuildStatus::Ready, "{:?}", first.reason);
    let artifact = first.artifact.clone().unwrap();
    assert!(artifact.manifest_digest.starts_with("sha256:"));
    assert!(layout_dir(&artifact.location).join("index.json").is_file());
    assert_eq!(first.artifact_availability, ArtifactAvailability::Available);
    assert_eq!(first.promotability, Promotability::Yes);
    assert!(first.retention_expires_at.is_some_and(|t| t > Timestamp::now()));
    assert_eq!(first.tags, vec!["stable".parse().unwrap()]);
    let summary = first.cache_summary.unwrap();
    assert_eq!((summary.steps_total, summary.steps_cached), (2, 0));
    assert!(summary.bytes_new > 0);
    let logs = messages(&engine, &first.id).await;
    assert!(logs.iter().any(|m| m == "first-run"), "{logs:?}");
    assert!(logs.iter().any(|m| m == "hello v1"), "{logs:?}");
    // The callback saw every stored entry, in order, without gaps.
    let offsets = seen.lock().unwrap().clone();
    assert_eq!(offsets, (0..offsets.len() as u64).collect::<Vec<_>>());
    assert_eq!(offsets.len(), logs.len());

    let resolved = engine.get(&tenant, &"acme/hello:stable".parse().unwrap()).await.unwrap();
    assert_eq!(resolved.build.unwrap().id, first.id);

    let again = engine.build(&tenant, &hello(&s, "first-run"), &name, BuildOptions::default()).await.unwrap();
    assert_eq!(again.status, BuildStatus::Ready);
    let summary = again.cache_summary.unwrap();
    assert_eq!((summary.steps_total, summary.steps_cached, summary.bytes_new), (2, 2, 0));
    assert_eq!(again.artifact.as_ref().unwrap().manifest_digest, artifact.manifest_digest);
    assert!(!messages(&engine, &again.id).await.iter().any(|m| m == "first-run"), "a cached RUN ran again");

    // no_cache runs the step again.
    let fresh =
        engine.build(&tenant, &hello(&s, "first-run"), &name, BuildOptions::default().no_cache()).await.unwrap();
    assert_eq!(fresh.cache_summary.unwrap().steps_cached, 0);

    let history = engine.list_builds(&tenant, &TemplateRef::Name(name), &Default::default()).await.unwrap();
    assert_eq!(history.items.iter().map(|b| &b.id).collect::<Vec<_>>(), [&fresh.id, &again.id, &first.id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_build_connect_and_follow_from_another_engine() {
    let s = Setup::new();
    let engine = s.engine(2, KEEP).await;
    let tenant = "acme".parse().unwrap();
    let t = Template::from_image(busybox_ref()).run_cmd("echo start-line && sleep 2 && echo end-line");
    let handle =
        engine.build_in_background(&tenant, &t, &"acme/bg".parse().unwrap(), BuildOptions::default()).await.unwrap();
    // Returned at once: not terminal yet.
    assert!(!handle.info().await.unwrap().status.is_terminal());

    // A second engine on the same state dir (the store opened shared, no executor), as another
    // process would.
    let other = Engine::builder().state_dir(s.state()).shared().build().await.unwrap();
    let remote = other.connect(&tenant, handle.id()).await.unwrap();
    let followed: Vec<_> = remote.logs(0, true).map(|e| e.unwrap()).collect().await;
    let texts: Vec<_> = followed.iter().map(|e| e.message.as_str()).collect();
    let start = texts.iter().position(|m| *m == "start-line").expect("start-line");
    let end = texts.iter().position(|m| *m == "end-line").expect("end-line");
    assert!(start < end);
    assert!(texts.last().unwrap().starts_with("ready"), "{texts:?}");
    assert_eq!(followed.iter().map(|e| e.offset).collect::<Vec<_>>(), (0..followed.len() as u64).collect::<Vec<_>>());
    let info = remote.wait_until_terminal(Some(Duration::from_secs(5)), None).await.unwrap();
    assert_eq!(info.status, BuildStatus::Ready);
    // get_status pages from an offset.
    let status = remote.get_status(end as u64).await.unwrap();
    assert_eq!(status.logs.entries[0].message, "end-line");
    // A shared engine does not build; a second primary cannot open the store.
    let t2 = Template::from_image(busybox_ref());
    let refused = other.build_in_background(&tenant, &t2, &"acme/bg".parse().unwrap(), BuildOptions::default()).await;
    assert!(matches!(refused, Err(EngineError::Config(_))));
    let locked = Engine::builder().state_dir(s.state()).build().await.unwrap_err();
    assert!(matches!(locked, EngineError::Store(StoreError::Locked { .. })), "{locked}");
    // Another tenant cannot connect.
    let err = other.connect(&"intruder".parse().unwrap(), handle.id()).await.unwrap_err();
    assert!(matches!(err, EngineError::Store(StoreError::NotFound { .. })), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_a_running_build_stops_the_container() {
    let s = Setup::new();
    let engine = s.engine(2, KEEP).await;
    let tenant = "acme".parse().unwrap();
    let t = Template::from_image(busybox_ref()).run_cmd("echo sleeping && sleep 60");
    let handle = engine
        .build_in_background(&tenant, &t, &"acme/sleepy".parse().unwrap(), BuildOptions::default())
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let status = handle.get_status(0).await.unwrap();
        if status.logs.entries.iter().any(|e| e.message == "sleeping") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never started: {:?}", status.logs.entries);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(runc_containers(&s.runc_root()).len(), 1);
    let info = handle.cancel("test asked").await.unwrap();
    assert_eq!(info.status, BuildStatus::Cancelled);
    assert_eq!(info.reason.as_ref().unwrap().message, "cancelled: test asked");
    // The executor really stops: no container left, well before the sleep would end.
    loop {
        if runc_containers(&s.runc_root()).is_empty() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "container still there");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(started.elapsed() < Duration::from_secs(40));
    let logs = messages(&engine, handle.id()).await;
    assert!(logs.iter().any(|m| m == "cancelled: test asked"), "{logs:?}");
    assert_eq!(handle.info().await.unwrap().status, BuildStatus::Cancelled);
    // Cancelling a finished build is refused.
    assert!(matches!(handle.cancel("again").await, Err(EngineError::Store(StoreError::Finished { .. }))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_needs_secrets_again() {
    let s = Setup::new();
    let engine = s.engine(2, KEEP).await;
    let tenant = "acme".parse().unwrap();
    let t = Template::from_image(busybox_ref())
        .add_build_secret_env("token", "NS_FACADE_TEST_UNSET_TOKEN")
        .run_cmd("busybox sha256sum /run/secrets/token > /token.sha");
    let name = "acme/secretive".parse().unwrap();
    let first = engine
        .build(&tenant, &t, &name, BuildOptions::default().secret("token", "value-1").tag("v1".parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(first.status, BuildStatus::Ready, "{:?}", first.reason);
    let handle = engine.connect(&tenant, &first.id).await.unwrap();

    let err = handle.retry(RetryOptions::default()).await.unwrap_err();
    match &err {
        EngineError::MissingSecrets { ids, envs } => {
            assert_eq!(ids, &["token"]);
            assert_eq!(envs, &["$NS_FACADE_TEST_UNSET_TOKEN"]);
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("never persisted"));
    let before = engine.list_builds(&tenant, &TemplateRef::Name(name.clone()), &Default::default()).await.unwrap();
    assert_eq!(before.items.len(), 1, "a refused retry recorded a build");

    let mut secrets = nullspace_engine::executor::Secrets::default();
    secrets.insert("token", "value-2");
    let retried = handle
        .retry(RetryOptions { tags: Some(vec!["v2".parse().unwrap()]), build_secrets: secrets, ..Default::default() })
        .await
        .unwrap();
    let info = retried.wait_until_terminal(Some(Duration::from_secs(120)), None).await.unwrap();
    assert_eq!(info.status, BuildStatus::Ready, "{:?}", info.reason);
    assert_eq!(info.retry_of.as_ref(), Some(&first.id));
    assert_eq!(info.definition, first.definition);
    assert_eq!(info.tags, vec!["v2".parse().unwrap()]);

    // A first build without the secret fails with the same clear reason.
    let failed = engine.build(&tenant, &t, &name, BuildOptions::default()).await.unwrap();
    assert_eq!(failed.status, BuildStatus::Failed);
    assert!(failed.reason.as_ref().unwrap().message.contains("token"), "{:?}", failed.reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_moves_a_tag_and_refuses_unready_builds() {
    let s = Setup::new();
    let engine = s.engine(2, KEEP).await;
    let tenant = "acme".parse().unwrap();
    let name = "acme/promo".parse().unwrap();
    let stable = "stable".parse().unwrap();
    let a = engine.build(&tenant, &hello(&s, "a"), &name, BuildOptions::default().tag(stable)).await.unwrap();
    let b = engine.build(&tenant, &hello(&s, "b"), &name, BuildOptions::default()).await.unwrap();
    assert!(b.tags.is_empty());
    let moved = engine.connect(&tenant, &b.id).await.unwrap().promote(&"stable".parse().unwrap()).await.unwrap();
    assert_eq!(moved.previous.as_ref(), Some(&a.id));
    assert_eq!(moved.build_id, b.id);
    let r = engine.get(&tenant, &"acme/promo:stable".parse().unwrap()).await.unwrap();
    assert_eq!(r.build.unwrap().id, b.id);

    let bad = Template::from_image(busybox_ref()).run_cmd("exit 1");
    let failed = engine.build(&tenant, &bad, &name, BuildOptions::default()).await.unwrap();
    assert!(matches!(failed.promotability, Promotability::No { .. }));
    let err = engine.connect(&tenant, &failed.id).await.unwrap().promote(&"stable".parse().unwrap()).await.unwrap_err();
    assert!(matches!(err, EngineError::Store(StoreError::NotPromotable { .. })), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_builds_run_once_and_the_queue_bounds_concurrency() {
    let s = Setup::new();
    let engine = s.engine(1, KEEP).await;
    let tenant = "acme".parse().unwrap();
    let name = "acme/dedup".parse().unwrap();
    let t = Template::from_image(busybox_ref()).run_cmd("sleep 1 && echo ran-once");
    let h1 = engine.build_in_background(&tenant, &t, &name, BuildOptions::default()).await.unwrap();
    let h2 = engine.build_in_background(&tenant, &t, &name, BuildOptions::default()).await.unwrap();
    let other = Template::from_image(busybox_ref()).run_cmd("sleep 1 && echo other");
    let h3 = engine.build_in_background(&tenant, &other, &name, BuildOptions::default()).await.unwrap();
    let mut infos = Vec::new();
    for h in [&h1, &h2, &h3] {
        infos.push(h.wait_until_terminal(Some(Duration::from_secs(120)), None).await.unwrap());
    }
    for i in &infos {
        assert_eq!(i.status, BuildStatus::Ready, "{:?}", i.reason);
    }
    let mut runs = 0;
    for h in [&h1, &h2] {
        runs += messages(&engine, h.id()).await.iter().filter(|m| *m == "ran-once").count();
    }
    assert_eq!(runs, 1, "identical builds both ran");
    let (a1, a2) = (infos[0].artifact.clone().unwrap(), infos[1].artifact.clone().unwrap());
    assert_eq!(a1.manifest_digest, a2.manifest_digest);
    assert_ne!(layout_dir(&a1.location), layout_dir(&a2.location), "each build owns its layout");
    assert!(layout_dir(&a2.location).join("index.json").is_file());
    assert_eq!(infos[0].cache_key, infos[1].cache_key);
    // Concurrency 1: the two executions (h1 or h2, and h3) did not overlap.
    let executed: Vec<_> = infos.iter().filter(|i| i.started_at.is_some()).collect();
    assert_eq!(executed.len(), 2, "the sharing build executed");
    let (x, y) = (executed[0], executed[1]);
    let (first, second) = if x.started_at < y.started_at { (x, y) } else { (y, x) };
    assert!(second.started_at.unwrap() >= first.finished_at.unwrap(), "two builds ran at once with concurrency 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_a_queued_build() {
    let s = Setup::new();
    let engine = s.engine(1, KEEP).await;
    let tenant = "acme".parse().unwrap();
    let name = "acme/queue".parse().unwrap();
    let long = Template::from_image(busybox_ref()).run_cmd("echo long-start && sleep 60");
    let running = engine.build_in_background(&tenant, &long, &name, BuildOptions::default()).await.unwrap();
    let started = Instant::now();
    while running.info().await.unwrap().status != BuildStatus::Building {
        assert!(started.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let waiting = Template::from_image(busybox_ref()).run_cmd("echo never-runs");
    let queued = engine.build_in_background(&tenant, &waiting, &name, BuildOptions::default()).await.unwrap();
    // Planned and keyed, it waits for the only slot.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(queued.info().await.unwrap().status, BuildStatus::Queued);
    let info = queued.cancel("not needed").await.unwrap();
    assert_eq!(info.status, BuildStatus::Cancelled);
    running.cancel("done testing").await.unwrap();
    for h in [&running, &queued] {
        let end = h.wait_until_terminal(Some(Duration::from_secs(30)), None).await.unwrap();
        assert_eq!(end.status, BuildStatus::Cancelled);
    }
    assert!(queued.info().await.unwrap().started_at.is_none(), "a cancelled queued build started");
    assert!(!messages(&engine, queued.id()).await.iter().any(|m| m == "never-runs"));
    // wait_until_terminal gives up at its timeout.
    let slow = engine.build_in_background(&tenant, &long, &name, BuildOptions::default().no_cache()).await.unwrap();
    let err = slow.wait_until_terminal(Some(Duration::from_millis(300)), None).await.unwrap_err();
    assert!(matches!(err, EngineError::Timeout { .. }), "{err}");
    slow.cancel("").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_collects_untagged_artifacts_only() {
    let s = Setup::new();
    let engine = s.engine(2, Duration::ZERO).await;
    let tenant = "acme".parse().unwrap();
    let name = "acme/kept".parse().unwrap();
    let tagged = engine
        .build(&tenant, &hello(&s, "t"), &name, BuildOptions::default().tag("keep".parse().unwrap()))
        .await
        .unwrap();
    let untagged = engine.build(&tenant, &hello(&s, "u"), &name, BuildOptions::default()).await.unwrap();
    let (tdir, udir) = (
        layout_dir(&tagged.artifact.as_ref().unwrap().location),
        layout_dir(&untagged.artifact.as_ref().unwrap().location),
    );
    assert!(udir.join("index.json").is_file());
    let stats = engine.collect_expired(Timestamp::now().plus(Duration::from_secs(1))).await.unwrap();
    assert_eq!((stats.expired, stats.deleted), (1, 1));
    let u = engine.connect(&tenant, &untagged.id).await.unwrap().info().await.unwrap();
    assert_eq!(u.artifact_availability, ArtifactAvailability::Deleted);
    assert!(matches!(u.promotability, Promotability::No { .. }));
    assert!(!udir.exists(), "expired layout still on disk");
    let t = engine.connect(&tenant, &tagged.id).await.unwrap().info().await.unwrap();
    assert_eq!(t.artifact_availability, ArtifactAvailability::Available);
    assert!(tdir.join("index.json").is_file());
    // Nothing more to do on a second pass.
    assert_eq!(engine.collect_expired(Timestamp::now().plus(Duration::from_secs(1))).await.unwrap().deleted, 0);

    // The background collector does the same.
    let bg = Engine::builder()
        .state_dir(s.dir.path().join("state2"))
        .executor(std::sync::Arc::new(s.executor()))
        .retention(Duration::ZERO)
        .collect_every(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let b = bg.build(&tenant, &hello(&s, "bg"), &name, BuildOptions::default()).await.unwrap();
    let h = bg.connect(&tenant, &b.id).await.unwrap();
    let started = Instant::now();
    while h.info().await.unwrap().artifact_availability != ArtifactAvailability::Deleted {
        assert!(started.elapsed() < Duration::from_secs(10), "background collector did not run");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_carry_step_span_and_diagnostics() {
    let s = Setup::new();
    let engine = s.engine(2, KEEP).await;
    let tenant = "acme".parse().unwrap();
    let name = "acme/broken".parse().unwrap();
    let t = Template::from_image(busybox_ref()).run_cmd("echo ok").run_cmd("echo about-to-fail && exit 3");
    let failed = engine.build(&tenant, &t, &name, BuildOptions::default()).await.unwrap();
    assert_eq!(failed.status, BuildStatus::Failed);
    let reason = failed.reason.clone().unwrap();
    assert_eq!(reason.step.as_deref(), Some("0/1"));
    assert_eq!(reason.span, Some(serde_json::json!({"kind": "builder", "index": 1})));
    assert!(reason.message.contains('3'), "{}", reason.message);
    let logs = messages(&engine, &failed.id).await;
    assert!(logs.iter().any(|m| m == "about-to-fail"));
    assert!(logs.last().unwrap().starts_with("failed: "), "{logs:?}");

    // Validation errors fail the build with every diagnostic, before any executor runs.
    let invalid = Template::from_image("Busybox").run_cmd("");
    let failed = engine.build(&tenant, &invalid, &name, BuildOptions::default()).await.unwrap();
    assert_eq!(failed.status, BuildStatus::Failed);
    let message = &failed.reason.as_ref().unwrap().message;
    assert!(message.contains("InvalidImageReference") && message.contains("EmptyRun"), "{message}");
    assert!(failed.started_at.is_none());
    let logs = messages(&engine, &failed.id).await;
    assert!(logs.iter().any(|m| m.starts_with("EmptyRun")), "{logs:?}");

    // Native is refused for Dockerfile input.
    let docker = Template::from_dockerfile_content("FROM busybox\nRUN true\n");
    let failed = engine
        .build(&tenant, &docker, &name, BuildOptions::default().backend(nullspace_plan::builder::Backend::Native))
        .await
        .unwrap();
    assert!(failed.reason.as_ref().unwrap().message.contains("NativeBackendDockerfile"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_values_appear_nowhere() {
    let s = Setup::new();
    let engine = s.engine(2, KEEP).await;
    let tenant = "acme".parse().unwrap();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let marker = format!("SECRETMARKER{nanos:x}{:x}", std::process::id());
    let t = Template::from_image(busybox_ref())
        .context_dir(s.ctx())
        .add_build_secret_env("token", "NS_FACADE_SECRET_ENV")
        .copy("app", "/app/")
        .run_cmd("busybox sha256sum /run/secrets/token > /token.sha && wc -c /run/secrets/token");
    let info = engine
        .build(&tenant, &t, &"acme/secret".parse().unwrap(), BuildOptions::default().secret("token", marker.clone()))
        .await
        .unwrap();
    assert_eq!(info.status, BuildStatus::Ready, "{:?}", info.reason);
    let artifact = info.artifact.clone().unwrap();

    // Positive control: the RUN did read the secret (its hash is in a layer).
    let expected_sha = format!("{:x}", sha2::Sha256::digest(marker.as_bytes()));
    let mut found_sha = false;
    // Every file of the state dir (SQLite db and WAL, stat cache, blob store, step records, the
    // output layout with its config/history and decompressed layers): no marker.
    let files = all_files(&s.state());
    assert!(files.iter().any(|f| f.to_string_lossy().ends_with("nullspace.db-wal")), "no WAL to scan");
    assert!(files.iter().any(|f| f.starts_with(layout_dir(&artifact.location))));
    for f in &files {
        let bytes = read_plain(f);
        assert!(!bytes.windows(marker.len()).any(|w| w == marker.as_bytes()), "secret found in {}", f.display());
        found_sha |= bytes.windows(expected_sha.len()).any(|w| w == expected_sha.as_bytes());
    }
    assert!(found_sha, "the RUN step never saw the secret");
    // Logs, the persisted definition and the record.
    let logs = messages(&engine, &info.id).await;
    assert!(logs.iter().any(|m| m.contains(&format!("{} /run/secrets/token", marker.len()))), "{logs:?}");
    assert!(logs.iter().all(|m| !m.contains(&marker)));
    assert!(!info.definition.contains(&marker));
    assert!(info.definition.contains("NS_FACADE_SECRET_ENV"));
    assert!(!serde_json::to_string(&info).unwrap().contains(&marker));
    // The plan, as the definition plans again.
    let def: nullspace_engine::engine::BuildDefinition = serde_json::from_str(&info.definition).unwrap();
    let plan = nullspace_plan::normalize::plan(&def.template, &Default::default()).plan.unwrap();
    assert!(!String::from_utf8_lossy(&plan.canonical_json()).contains(&marker));
}
