//! Offline planning speed: parse + expand + normalize + validate of the 1,000-instruction fixture,
//! and parsing the whole BuildKit parser corpus.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nullspace_benches::{conformance_dir, fixture};
use nullspace_plan::builder::Template;
use nullspace_plan::dockerfile::{instructions, parser};
use nullspace_plan::normalize::{PlanOptions, plan};
use std::hint::black_box;

fn large(c: &mut Criterion) {
    let text = std::fs::read_to_string(fixture("dockerfiles/large-1000.Dockerfile")).expect("fixture");
    let template = Template::from_dockerfile_content(text.clone());
    let options = PlanOptions::default();
    let mut group = c.benchmark_group("large-1000");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("parse", |b| b.iter(|| parser::parse(black_box(text.as_bytes())).expect("parses")));
    let ast = parser::parse(text.as_bytes()).expect("parses").ast;
    group.bench_function("instructions", |b| b.iter(|| instructions::parse(black_box(&ast))));
    group.bench_function("plan+validate", |b| {
        b.iter(|| {
            let outcome = plan(black_box(&template), &options);
            assert!(outcome.plan.is_some());
            outcome
        })
    });
    // The plan digest is computed on first request; this is the figure with it.
    group.bench_function("plan+validate+digest", |b| {
        b.iter(|| {
            let outcome = plan(black_box(&template), &options);
            let digest_len = outcome.plan.as_ref().map(|p| p.plan_digest().len());
            assert_eq!(digest_len, Some(71));
            outcome
        })
    });
    group.finish();
}

fn corpus(c: &mut Criterion) {
    let mut files = Vec::new();
    for dir in ["dockerfile-parser/testfiles", "dockerfile-parser/testfiles-negative"] {
        let Ok(entries) = std::fs::read_dir(conformance_dir().join(dir)) else { continue };
        for entry in entries.flatten() {
            if let Ok(bytes) = std::fs::read(entry.path().join("Dockerfile")) {
                files.push(bytes);
            }
        }
    }
    assert!(!files.is_empty(), "no parser corpus under {}", conformance_dir().display());
    let mut group = c.benchmark_group("parser-corpus");
    group.throughput(Throughput::Elements(files.len() as u64));
    group.bench_function("parse+dump", |b| {
        b.iter(|| {
            for bytes in &files {
                if let Ok(parsed) = parser::parse(black_box(bytes)) {
                    black_box(parsed.ast.dump());
                }
            }
        })
    });
    group.finish();
}

criterion_group!(benches, large, corpus);
criterion_main!(benches);
