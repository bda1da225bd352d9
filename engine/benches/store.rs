//! Store speed with 10,000 builds and 1,000,000 log lines: a build's status with one page of its
//! log, one page of build history, and log append throughput.
//!
//! The fixture is generated once (one transaction through `SqliteStore::batch`, prepared
//! statements) into Cargo's target tmp dir and reused; each run works on a fresh copy so appends
//! do not grow it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nullspace_engine::store::*;

const FIXTURE_VERSION: u32 = 1;
/// Builds of the history template.
const HISTORY_BUILDS: usize = 9_999;
/// Log lines of each history build.
const HISTORY_LINES: usize = 10;
/// Log lines of the one big build: with the history, 1,000,000 lines in all.
const BIG_LINES: usize = 1_000_000 - HISTORY_BUILDS * HISTORY_LINES;

fn tenant() -> TenantId {
    "bench".parse().expect("tenant")
}

fn new_build(template: &str) -> NewBuild {
    NewBuild {
        template: template.parse().expect("name"),
        backend: Backend::Native,
        definition: r#"{"from":"busybox","steps":["RUN make"]}"#.into(),
        plan_digest: Some("sha256:plan".into()),
        requested_tags: vec![],
        retry_of: None,
    }
}

fn line(i: usize) -> NewLogEntry {
    NewLogEntry {
        timestamp: Timestamp(1_700_000_000_000 + i as i64),
        level: LogLevel::Info,
        step: Some(format!("step-{}", i % 40)),
        message: format!(
            "#{} 0.{:03} compiling module {} of the project with some typical output",
            i % 40,
            i % 1000,
            i
        ),
    }
}

fn finish(status: BuildStatus, i: usize) -> BuildUpdate {
    BuildUpdate {
        status: Some(status),
        artifact: (status == BuildStatus::Ready).then(|| Artifact {
            manifest_digest: format!("sha256:{i:064x}"),
            location: "oci-layout:/var/lib/nullspace".into(),
        }),
        reason: (status != BuildStatus::Ready).then(|| BuildReason::message("step failed")),
        cache_summary: Some(CacheSummary {
            steps_total: 12,
            steps_cached: 9,
            bytes_reused: 1 << 30,
            bytes_new: 1 << 20,
        }),
        ..Default::default()
    }
}

/// Generates the fixture at `path` unless it is there already.
async fn fixture(path: &Path) {
    if path.exists() {
        return;
    }
    let started = Instant::now();
    let tmp = path.with_extension("partial");
    for p in [tmp.clone(), PathBuf::from(format!("{}-wal", tmp.display()))] {
        let _ = std::fs::remove_file(p);
    }
    let store = SqliteStore::open(&tmp).await.expect("open fixture");
    store
        .batch(|b| {
            let t = tenant();
            for i in 0..HISTORY_BUILDS {
                let build = b.create_build(&t, &new_build("bench/app"))?;
                b.update_build(&t, &build.id, &finish(BuildStatus::Building, i))?;
                let status = match i % 20 {
                    0..=15 => BuildStatus::Ready,
                    16..=18 => BuildStatus::Failed,
                    _ => BuildStatus::Cancelled,
                };
                let lines: Vec<_> = (0..HISTORY_LINES).map(line).collect();
                b.append_logs(&t, &build.id, &lines)?;
                b.update_build(&t, &build.id, &finish(status, i))?;
            }
            let big = b.create_build(&t, &new_build("bench/big"))?;
            b.update_build(&t, &big.id, &finish(BuildStatus::Building, 0))?;
            for chunk in (0..BIG_LINES).collect::<Vec<_>>().chunks(10_000) {
                let lines: Vec<_> = chunk.iter().map(|&i| line(i)).collect();
                b.append_logs(&t, &big.id, &lines)?;
            }
            Ok(())
        })
        .await
        .expect("generate fixture");
    drop(store);
    std::fs::rename(&tmp, path).expect("publish fixture");
    let _ = std::fs::remove_file(format!("{}.lock", tmp.display()));
    eprintln!("store fixture generated in {:.1?}", started.elapsed());
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let fixture_path = dir.join(format!("store-bench-fixture-v{FIXTURE_VERSION}.db"));
    rt.block_on(fixture(&fixture_path));
    let run_path = dir.join("store-bench-run.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", run_path.display()));
    }
    std::fs::copy(&fixture_path, &run_path).expect("copy fixture");

    let store = rt.block_on(SqliteStore::open(&run_path)).expect("open copy");
    let t = tenant();
    let big = rt
        .block_on(store.list_builds(&t, &"bench/big".parse().expect("ref"), &BuildQuery::default()))
        .expect("big build")
        .items
        .remove(0);
    let history: TemplateRef = "bench/app".parse().expect("ref");
    let deep_cursor = {
        let q = BuildQuery { limit: 1000, ..Default::default() };
        let mut page = rt.block_on(store.list_builds(&t, &history, &q)).expect("page");
        for _ in 0..4 {
            let q = BuildQuery { cursor: page.next_cursor.clone(), limit: 1000, ..Default::default() };
            page = rt.block_on(store.list_builds(&t, &history, &q)).expect("page");
        }
        page.next_cursor
    };

    let mut g = c.benchmark_group("get_status");
    for offset in [0u64, BIG_LINES as u64 / 2, BIG_LINES as u64 - 100] {
        g.bench_with_input(BenchmarkId::new("1M_line_build_page_100", offset), &offset, |b, &offset| {
            b.to_async(&rt).iter(|| async {
                let v = store.get_status(&t, &big.id, offset, 100).await.expect("status");
                assert_eq!(v.logs.entries.len(), 100);
            });
        });
    }
    g.finish();

    let mut g = c.benchmark_group("list_builds");
    let cases = [
        ("newest_50", BuildQuery { limit: 50, ..Default::default() }),
        ("failed_50", BuildQuery { status: vec![BuildStatus::Failed], limit: 50, ..Default::default() }),
        ("page_50_after_5000", BuildQuery { cursor: deep_cursor, limit: 50, ..Default::default() }),
    ];
    for (name, q) in &cases {
        g.bench_function(*name, |b| {
            b.to_async(&rt).iter(|| async {
                let p = store.list_builds(&t, &history, q).await.expect("list");
                assert_eq!(p.items.len(), 50);
            });
        });
    }
    g.finish();

    let target = rt.block_on(store.create_build(&t, new_build("bench/append"))).expect("append target");
    let mut g = c.benchmark_group("append_logs");
    for batch in [100usize, 1000, 5000] {
        g.throughput(Throughput::Elements(batch as u64));
        let lines: Vec<_> = (0..batch).map(line).collect();
        g.bench_with_input(BenchmarkId::new("lines_per_batch", batch), &lines, |b, lines| {
            b.to_async(&rt).iter(|| async {
                let r = store.append_logs(&t, &target.id, lines.clone()).await.expect("append");
                assert_eq!(r.end - r.start, lines.len() as u64);
            });
        });
    }
    g.finish();
    drop(store);
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", run_path.display()));
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
