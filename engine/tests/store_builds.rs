//! Builds and logs: records, status transitions, history, logs, recovery, retention, schema.

mod store_support;

use std::collections::BTreeMap;
use std::sync::Arc;

use nullspace_engine::store::*;
use store_support::*;

fn to(status: BuildStatus) -> BuildUpdate {
    BuildUpdate { status: Some(status), ..Default::default() }
}

#[tokio::test]
async fn create_build_records_everything_and_respects_tenancy() {
    let f = open().await;
    let mut nb = new_build("acme/py", Backend::Buildkit);
    nb.requested_tags = vec![tag("stable"), tag("v1")];
    let b = f.store.create_build(&f.a, nb).await.unwrap();
    assert!(b.id.as_str().starts_with("bld_"));
    assert_eq!(b.status, BuildStatus::Queued);
    assert_eq!(b.backend, Backend::Buildkit);
    assert_eq!(b.template.as_str(), "acme/py");
    assert_eq!(b.requested_tags, [tag("stable"), tag("v1")]);
    assert_eq!(b.definition, r#"{"steps":["RUN true"]}"#);
    assert_eq!(b.plan_digest.as_deref(), Some("sha256:plan"));
    assert_eq!(b.artifact_availability, ArtifactAvailability::None);
    assert!(b.started_at.is_none() && b.finished_at.is_none() && b.reason.is_none());
    // The template was created, private.
    let t = f.store.get_template(&f.a, &r("acme/py")).await.unwrap().template;
    assert_eq!(t.visibility, Visibility::Private);
    assert_eq!(t.id, b.template_id);

    // Not JSON: refused.
    let mut bad = new_build("acme/py", Backend::Native);
    bad.definition = "{not json".into();
    assert!(matches!(f.store.create_build(&f.a, bad).await, Err(StoreError::Invalid { field: "definition", .. })));

    // B can neither build into A's namespace nor see A's private build.
    assert!(is_denied(f.store.create_build(&f.b, new_build("acme/py", Backend::Native)).await));
    assert!(is_not_found(f.store.get_build(&f.b, &b.id).await));
    assert!(is_not_found(f.store.get_status(&f.b, &b.id, 0, 10).await));
    assert!(is_not_found(f.store.update_build(&f.b, &b.id, to(BuildStatus::Building)).await));
    assert!(is_not_found(f.store.append_logs(&f.b, &b.id, vec![]).await));
    assert!(is_not_found(f.store.read_logs(&f.b, &b.id, 0, 10).await));

    // Public: readable, still not changeable.
    f.store.set_visibility(&f.a, &r("acme/py"), Visibility::Public).await.unwrap();
    assert_eq!(f.store.get_build(&f.b, &b.id).await.unwrap().id, b.id);
    assert!(f.store.read_logs(&f.b, &b.id, 0, 10).await.is_ok());
    assert_eq!(f.store.get_status(&f.b, &b.id, 0, 10).await.unwrap().build.id, b.id);
    assert!(is_denied(f.store.update_build(&f.b, &b.id, to(BuildStatus::Building)).await));
    assert!(is_denied(f.store.append_logs(&f.b, &b.id, vec![NewLogEntry::new(LogLevel::Info, "x")]).await));
    let mut retry = new_build("bravo/py", Backend::Native);
    retry.retry_of = Some(b.id.clone());
    assert!(is_denied(f.store.create_build(&f.b, retry).await));

    // A retry by the owner links back.
    let mut retry = new_build("acme/py", Backend::Buildkit);
    retry.retry_of = Some(b.id.clone());
    let r2 = f.store.create_build(&f.a, retry).await.unwrap();
    assert_eq!(r2.retry_of.as_ref(), Some(&b.id));
}

#[tokio::test]
async fn status_transitions_are_validated() {
    let f = open().await;
    let b = f.store.create_build(&f.a, new_build("acme/py", Backend::Native)).await.unwrap();
    let building = f.store.update_build(&f.a, &b.id, to(BuildStatus::Building)).await.unwrap().build;
    assert_eq!(building.status, BuildStatus::Building);
    assert!(building.started_at.is_some());
    assert!(matches!(
        f.store.update_build(&f.a, &b.id, to(BuildStatus::Queued)).await,
        Err(StoreError::InvalidTransition { from: BuildStatus::Building, to: BuildStatus::Queued, .. })
    ));
    assert!(matches!(
        f.store.update_build(&f.a, &b.id, to(BuildStatus::Building)).await,
        Err(StoreError::InvalidTransition { .. })
    ));
    // Ready needs an artifact.
    assert!(matches!(
        f.store.update_build(&f.a, &b.id, to(BuildStatus::Ready)).await,
        Err(StoreError::Invalid { field: "artifact", .. })
    ));
    let summary = CacheSummary { steps_total: 5, steps_cached: 3, bytes_reused: 1 << 40, bytes_new: 12345 };
    let done = f
        .store
        .update_build(
            &f.a,
            &b.id,
            BuildUpdate {
                status: Some(BuildStatus::Ready),
                artifact: Some(artifact(7)),
                cache_key: Some("sha256:key".into()),
                cache_summary: Some(summary),
                retention_expires_at: Some(Timestamp(42)),
                logs: vec![NewLogEntry::new(LogLevel::Info, "done")],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(done.log_offsets, 0..1);
    let d = done.build;
    assert_eq!(d.status, BuildStatus::Ready);
    assert_eq!(d.artifact, Some(artifact(7)));
    assert_eq!(d.artifact_availability, ArtifactAvailability::Available);
    assert_eq!(d.cache_summary, Some(summary));
    assert_eq!(d.cache_key.as_deref(), Some("sha256:key"));
    assert_eq!(d.retention_expires_at, Some(Timestamp(42)));
    assert!(d.finished_at.is_some());

    // Terminal: no status may follow, the outcome is fixed, logs and retention still may change.
    for s in
        [BuildStatus::Queued, BuildStatus::Building, BuildStatus::Failed, BuildStatus::Cancelled, BuildStatus::Ready]
    {
        assert!(matches!(
            f.store.update_build(&f.a, &b.id, to(s)).await,
            Err(StoreError::InvalidTransition { from: BuildStatus::Ready, .. })
        ));
    }
    let changed =
        f.store.update_build(&f.a, &b.id, BuildUpdate { artifact: Some(artifact(8)), ..Default::default() }).await;
    assert!(matches!(changed, Err(StoreError::Finished { .. })));
    let later = f
        .store
        .update_build(
            &f.a,
            &b.id,
            BuildUpdate {
                retention_expires_at: Some(Timestamp(99)),
                logs: vec![NewLogEntry::new(LogLevel::Info, "note")],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(later.log_offsets, 1..2);
    assert_eq!(later.build.retention_expires_at, Some(Timestamp(99)));
    assert_eq!(later.build.artifact, Some(artifact(7)));

    // Cancel from queued records the reason with a durable entry in the same commit.
    let c = f.store.create_build(&f.a, new_build("acme/py", Backend::Native)).await.unwrap();
    let span = serde_json::json!({"file": "Dockerfile", "line": 3});
    let cancelled = f
        .store
        .update_build(
            &f.a,
            &c.id,
            BuildUpdate {
                status: Some(BuildStatus::Cancelled),
                reason: Some(BuildReason {
                    message: "user asked".into(),
                    step: Some("RUN make".into()),
                    span: Some(span.clone()),
                }),
                logs: vec![NewLogEntry::new(LogLevel::Warn, "cancelled: user asked")],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let reason = cancelled.build.reason.unwrap();
    assert_eq!(reason.step.as_deref(), Some("RUN make"));
    assert_eq!(reason.span, Some(span));
    let page = f.store.read_logs(&f.a, &c.id, 0, 0).await.unwrap();
    assert_eq!(page.entries.len(), 1);
    assert_eq!(page.entries[0].level, LogLevel::Warn);
    assert!(matches!(
        f.store.update_build(&f.a, &c.id, to(BuildStatus::Building)).await,
        Err(StoreError::InvalidTransition { from: BuildStatus::Cancelled, .. })
    ));
    assert!(matches!(
        f.store.update_build(&f.a, &BuildId::generate(), to(BuildStatus::Building)).await,
        Err(StoreError::NotFound { kind: ObjectKind::Build, .. })
    ));
}

#[tokio::test]
async fn list_builds_newest_first_with_filters_and_cursor() {
    let f = open().await;
    let mut expected = Vec::new();
    for i in 0..37 {
        let backend = if i % 3 == 0 { Backend::Native } else { Backend::Buildkit };
        let b = f.store.create_build(&f.a, new_build("acme/py", backend)).await.unwrap();
        let status = match i % 4 {
            0 => BuildStatus::Queued,
            1 => {
                f.store.update_build(&f.a, &b.id, to(BuildStatus::Failed)).await.unwrap();
                BuildStatus::Failed
            }
            2 => {
                let mut u = to(BuildStatus::Ready);
                u.artifact = Some(artifact(i));
                f.store.update_build(&f.a, &b.id, u).await.unwrap();
                BuildStatus::Ready
            }
            _ => {
                f.store.update_build(&f.a, &b.id, to(BuildStatus::Building)).await.unwrap();
                BuildStatus::Building
            }
        };
        expected.push((b.id, status, backend));
    }
    // Another template's builds stay out.
    f.store.create_build(&f.a, new_build("acme/other", Backend::Native)).await.unwrap();
    expected.reverse();

    let all = |q: BuildQuery| {
        let (store, a) = (f.store.clone(), f.a.clone());
        async move {
            let mut q = q;
            let mut out = Vec::new();
            loop {
                let page = store.list_builds(&a, &r("acme/py"), &q).await.unwrap();
                let cap = if q.limit == 0 { 50 } else { q.limit as usize };
                assert!(page.items.len() <= cap);
                out.extend(page.items.into_iter().map(|b| (b.id, b.status, b.backend)));
                match page.next_cursor {
                    Some(c) => q.cursor = Some(c),
                    None => return out,
                }
            }
        }
    };
    let q = |status: Vec<BuildStatus>, backend, limit| BuildQuery { status, backend, cursor: None, limit };
    assert_eq!(all(q(vec![], None, 5)).await, expected);
    assert_eq!(all(q(vec![], None, 0)).await, expected);
    let failed_native: Vec<_> =
        expected.iter().filter(|e| e.1 == BuildStatus::Failed && e.2 == Backend::Native).cloned().collect();
    assert!(!failed_native.is_empty());
    assert_eq!(all(q(vec![BuildStatus::Failed], Some(Backend::Native), 2)).await, failed_native);
    let done: Vec<_> =
        expected.iter().filter(|e| matches!(e.1, BuildStatus::Ready | BuildStatus::Failed)).cloned().collect();
    assert_eq!(all(q(vec![BuildStatus::Ready, BuildStatus::Failed], None, 4)).await, done);
    // Any ref form of the template lists the same history.
    let via_build =
        f.store.list_builds(&f.a, &TemplateRef::Build(expected[5].0.clone()), &q(vec![], None, 3)).await.unwrap();
    let ids: Vec<_> = via_build.items.iter().map(|b| b.id.clone()).collect();
    assert_eq!(ids, [expected[0].0.clone(), expected[1].0.clone(), expected[2].0.clone()]);
    let bad_cursor = BuildQuery { cursor: Some("zz".into()), ..Default::default() };
    assert!(matches!(
        f.store.list_builds(&f.a, &r("acme/py"), &bad_cursor).await,
        Err(StoreError::Invalid { field: "cursor", .. })
    ));

    // Tenant B: private not found, public visible.
    assert!(is_not_found(f.store.list_builds(&f.b, &r("acme/py"), &BuildQuery::default()).await));
    f.store.set_visibility(&f.a, &r("acme/py"), Visibility::Public).await.unwrap();
    let seen = f.store.list_builds(&f.b, &r("acme/py"), &q(vec![], None, 100)).await.unwrap();
    assert_eq!(seen.items.len(), expected.len());
}

#[tokio::test]
async fn logs_append_read_strip_and_status_snapshot() {
    let f = open().await;
    let b = f.store.create_build(&f.a, new_build("acme/py", Backend::Native)).await.unwrap();
    let entries = vec![
        NewLogEntry::new(LogLevel::Info, "\x1b[1;32m#1\x1b[0m FROM busybox").with_step("step-1"),
        NewLogEntry::new(LogLevel::Warn, "\x1b]0;title\x07col1\tcol2"),
        NewLogEntry {
            timestamp: Timestamp(1_700_000_000_000),
            level: LogLevel::Error,
            step: None,
            message: "plain".into(),
        },
    ];
    assert_eq!(f.store.append_logs(&f.a, &b.id, entries).await.unwrap(), 0..3);
    assert_eq!(f.store.append_logs(&f.a, &b.id, vec![]).await.unwrap(), 3..3);
    let more: Vec<_> = (0..10).map(|i| NewLogEntry::new(LogLevel::Debug, format!("line {i}"))).collect();
    assert_eq!(f.store.append_logs(&f.a, &b.id, more).await.unwrap(), 3..13);

    let page = f.store.read_logs(&f.a, &b.id, 0, 2).await.unwrap();
    assert_eq!(page.next_offset, 2);
    assert_eq!(page.entries[0].message, "#1 FROM busybox");
    assert_eq!(page.entries[0].step.as_deref(), Some("step-1"));
    assert_eq!(page.entries[1].message, "col1\tcol2");
    assert_eq!(page.entries[1].level, LogLevel::Warn);
    let page = f.store.read_logs(&f.a, &b.id, 2, 5).await.unwrap();
    let offsets: Vec<u64> = page.entries.iter().map(|e| e.offset).collect();
    assert_eq!(offsets, [2, 3, 4, 5, 6]);
    assert_eq!(page.entries[0].timestamp, Timestamp(1_700_000_000_000));
    assert_eq!(page.entries[1].message, "line 0");
    let end = f.store.read_logs(&f.a, &b.id, 13, 5).await.unwrap();
    assert!(end.entries.is_empty());
    assert_eq!(end.next_offset, 13);

    let status = f.store.get_status(&f.a, &b.id, 10, 100).await.unwrap();
    assert_eq!(status.build.id, b.id);
    assert_eq!(status.build.status, BuildStatus::Queued);
    let msgs: Vec<_> = status.logs.entries.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(msgs, ["line 7", "line 8", "line 9"]);
    assert_eq!(status.logs.next_offset, 13);
    assert_eq!(strip_ansi("a\x1b[2Kb\x1b[1Ac\r"), "abc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_stay_ordered_and_complete() {
    const BUILDS: usize = 6;
    const TASKS: usize = 8;
    const BATCHES: usize = 20;
    const LINES: usize = 15;
    let f = open().await;
    let store: Arc<dyn Store> = Arc::new(f.store.clone());
    let mut ids = Vec::new();
    for _ in 0..BUILDS {
        let b = store.create_build(&f.a, new_build("acme/py", Backend::Native)).await.unwrap();
        ids.push(b.id);
    }
    let mut tasks = Vec::new();
    for (bi, id) in ids.iter().enumerate() {
        for t in 0..TASKS {
            let (store, a, id) = (store.clone(), f.a.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                let mut acks = Vec::new();
                for batch in 0..BATCHES {
                    let entries = (0..LINES)
                        .map(|l| NewLogEntry::new(LogLevel::Info, format!("b{bi} t{t} n{batch} l{l}")))
                        .collect();
                    let range = store.append_logs(&a, &id, entries).await.unwrap();
                    assert_eq!(range.end - range.start, LINES as u64);
                    acks.push((range, batch));
                }
                (bi, t, acks)
            }));
        }
    }
    let mut acked: BTreeMap<(usize, u64), String> = BTreeMap::new();
    for task in tasks {
        let (bi, t, acks) = task.await.unwrap();
        let mut last = None;
        for (range, batch) in acks {
            // A task's batches land in the order it sent them.
            assert!(last < Some(range.start));
            last = Some(range.start);
            for (l, off) in range.enumerate() {
                acked.insert((bi, off), format!("b{bi} t{t} n{batch} l{l}"));
            }
        }
    }
    let total = (TASKS * BATCHES * LINES) as u64;
    for (bi, id) in ids.iter().enumerate() {
        let mut off = 0;
        let mut read = Vec::new();
        loop {
            let page = store.read_logs(&f.a, id, off, 1000).await.unwrap();
            if page.entries.is_empty() {
                break;
            }
            off = page.next_offset;
            read.extend(page.entries);
        }
        assert_eq!(read.len() as u64, total);
        for (i, e) in read.iter().enumerate() {
            assert_eq!(e.offset, i as u64, "gap or reorder in build {bi}");
            assert_eq!(acked[&(bi, e.offset)], e.message);
        }
    }
}

#[tokio::test]
async fn reopen_marks_in_flight_builds_interrupted() {
    let f = open().await;
    let path = f.store.path().to_owned();
    let queued = f.store.create_build(&f.a, new_build("acme/py", Backend::Native)).await.unwrap();
    let building = f.store.create_build(&f.b, new_build("bravo/py", Backend::Buildkit)).await.unwrap();
    f.store.update_build(&f.b, &building.id, to(BuildStatus::Building)).await.unwrap();
    f.store.append_logs(&f.b, &building.id, vec![NewLogEntry::new(LogLevel::Info, "working")]).await.unwrap();
    let ready = ready_build(&f.store, &f.a, "acme/py", None).await;

    // While the primary is open: a second primary is refused; a shared opener recovers nothing.
    assert!(matches!(SqliteStore::open(&path).await, Err(StoreError::Locked { .. })));
    let shared = SqliteStore::open_shared(&path).await.unwrap();
    assert!(shared.recovered().is_empty());
    assert_eq!(shared.get_build(&f.a, &queued.id).await.unwrap().status, BuildStatus::Queued);
    drop(shared);
    assert!(f.store.recovered().is_empty());
    drop(f.store);

    let store = SqliteStore::open(&path).await.unwrap();
    let mut recovered = store.recovered().to_vec();
    recovered.sort();
    let mut want = vec![queued.id.clone(), building.id.clone()];
    want.sort();
    assert_eq!(recovered, want);
    for (t, id, logs_before) in [(&f.a, &queued.id, 0), (&f.b, &building.id, 1)] {
        let s = store.get_status(t, id, 0, 100).await.unwrap();
        assert_eq!(s.build.status, BuildStatus::Failed);
        assert_eq!(s.build.reason.as_ref().unwrap().message, "interrupted");
        assert!(s.build.finished_at.is_some());
        assert_eq!(s.logs.entries.len(), logs_before + 1);
        let last = s.logs.entries.last().unwrap();
        assert_eq!(last.level, LogLevel::Error);
        assert!(last.message.contains("interrupted"), "{}", last.message);
    }
    assert_eq!(store.get_build(&f.a, &ready.id).await.unwrap().status, BuildStatus::Ready);
    // Nothing is left to recover.
    assert!(store.recover_interrupted().await.unwrap().is_empty());
}

#[tokio::test]
async fn retention_lists_expired_untagged_and_marks_forward_only() {
    let f = open().await;
    let now = Timestamp::now();
    let past = Timestamp(now.0 - 1000);
    let future = now.plus(std::time::Duration::from_secs(3600));
    let expired_a = ready_build(&f.store, &f.a, "acme/py", Some(past)).await;
    let expired_b = ready_build(&f.store, &f.b, "bravo/py", Some(Timestamp(past.0 - 10))).await;
    let tagged = ready_build(&f.store, &f.a, "acme/py", Some(past)).await;
    let _fresh = ready_build(&f.store, &f.a, "acme/py", Some(future)).await;
    let _no_retention = ready_build(&f.store, &f.a, "acme/py", None).await;
    let failed = f.store.create_build(&f.a, new_build("acme/py", Backend::Native)).await.unwrap();
    let mut u = to(BuildStatus::Failed);
    u.retention_expires_at = Some(past);
    f.store.update_build(&f.a, &failed.id, u).await.unwrap();
    f.store.assign_tags(&f.a, &TemplateRef::Build(tagged.id.clone()), &[tag("keep")]).await.unwrap();

    let ids = |v: Vec<ExpiredArtifact>| v.into_iter().map(|e| e.build_id).collect::<Vec<_>>();
    let listed = f.store.list_expired_artifacts(now, 100).await.unwrap();
    assert_eq!(listed[1].artifact, expired_a.artifact.clone().unwrap());
    assert_eq!(listed[0].tenant, f.b);
    assert_eq!(ids(listed), [expired_b.id.clone(), expired_a.id.clone()]);
    assert_eq!(ids(f.store.list_expired_artifacts(now, 1).await.unwrap()), std::slice::from_ref(&expired_b.id));

    let changed = f
        .store
        .mark_artifacts(&[expired_a.id.clone(), tagged.id.clone(), failed.id.clone()], ArtifactAvailability::Expired)
        .await
        .unwrap();
    assert_eq!(changed, std::slice::from_ref(&expired_a.id));
    let a_now = f.store.get_build(&f.a, &expired_a.id).await.unwrap();
    assert_eq!(a_now.artifact_availability, ArtifactAvailability::Expired);
    // An expired artifact cannot be promoted.
    assert!(matches!(
        f.store.assign_tags(&f.a, &TemplateRef::Build(expired_a.id.clone()), &[tag("x")]).await,
        Err(StoreError::NotPromotable { .. })
    ));
    // Still listed (blobs may remain) until deleted; then gone; never back to expired.
    assert_eq!(f.store.list_expired_artifacts(now, 100).await.unwrap().len(), 2);
    let changed = f
        .store
        .mark_artifacts(&[expired_a.id.clone(), expired_b.id.clone()], ArtifactAvailability::Deleted)
        .await
        .unwrap();
    assert_eq!(changed.len(), 2);
    assert!(f.store.list_expired_artifacts(now, 100).await.unwrap().is_empty());
    assert!(
        f.store
            .mark_artifacts(std::slice::from_ref(&expired_a.id), ArtifactAvailability::Expired)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        f.store.mark_artifacts(std::slice::from_ref(&expired_a.id), ArtifactAvailability::Available).await,
        Err(StoreError::Invalid { .. })
    ));
    assert_eq!(
        f.store.get_build(&f.b, &expired_b.id).await.unwrap().artifact_availability,
        ArtifactAvailability::Deleted
    );

    // Untagging the kept build makes it collectable.
    f.store.remove_tag(&f.a, &r("acme/py"), &tag("keep")).await.unwrap();
    assert_eq!(ids(f.store.list_expired_artifacts(now, 100).await.unwrap()), std::slice::from_ref(&tagged.id));
}

#[tokio::test]
async fn schema_is_versioned_and_newer_files_are_refused() {
    let f = open().await;
    let path = f.store.path().to_owned();
    drop(f.store);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, 1);
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        let logs_sql: String =
            conn.query_row("SELECT sql FROM sqlite_master WHERE name = 'logs'", [], |r| r.get(0)).unwrap();
        assert!(logs_sql.contains("WITHOUT ROWID"));
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    match SqliteStore::open(&path).await {
        Err(StoreError::SchemaTooNew { found, supported, .. }) => assert_eq!((found, supported), (99, 1)),
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    let _ = f.dir;
}
