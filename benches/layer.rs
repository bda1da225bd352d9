//! Layer creation from a directory: walk + `Layer::add_copy` + gzip-6 write with both digests,
//! on the deterministic tree of `nullspace_benches::generate_tree` under `target/bench-tree`.
//! Criterion runs a smaller tree (2,000 files, 50 MB) by default so a run takes a minute; set
//! `NULLSPACE_BENCH_TREE=FILES,BYTES` for another. The full-size comparison with `tar | gzip -6`
//! is `benches/layer_vs_tar.sh`.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nullspace_engine::context::walk::Walker;
use nullspace_native::layer::{CopyOptions, Layer, LayerOptions};

fn tree() -> (PathBuf, u64) {
    let (files, bytes) = std::env::var("NULLSPACE_BENCH_TREE")
        .ok()
        .and_then(|v| {
            let (f, b) = v.split_once(',')?;
            Some((f.parse().ok()?, b.parse().ok()?))
        })
        .unwrap_or((2_000, 50_000_000));
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../target/bench-tree-{files}-{bytes}"));
    let total = nullspace_benches::generate_tree(&dir, files, bytes).expect("generate the tree");
    (dir, total)
}

fn layer(c: &mut Criterion) {
    let (dir, total) = tree();
    let mut group = c.benchmark_group("layer");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(total));
    group.bench_function("walk+copy+gzip6", |b| {
        b.iter(|| {
            let walked = Walker::new(&dir).walk().expect("walk");
            let mut layer = Layer::new();
            layer
                .add_copy(&dir, &walked.entries, &CopyOptions { dest: "/".into(), chown: None, chmod: None })
                .expect("add");
            black_box(layer.write(std::io::sink(), &LayerOptions::default()).expect("write"))
        })
    });
    group.finish();
}

criterion_group!(benches, layer);
criterion_main!(benches);
