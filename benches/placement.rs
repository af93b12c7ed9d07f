//! Placement cost per request: hashing the key and picking the top-r nodes, for equal weights
//! (the fast path) and mixed weights, against the naive score-everything-and-sort baseline.
//!
//! cargo bench --bench placement

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hrwproxy::routing::{key_hash, Ring};

fn ring(nodes: usize, mixed: bool) -> Ring {
    let ids: Vec<String> = (0..nodes).map(|i| format!("node-{i}")).collect();
    let weight = |i: usize| if mixed { [1.0, 2.0, 0.5][i % 3] } else { 1.0 };
    Ring::new(
        ids.iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), weight(i))),
    )
    .unwrap()
}

fn keys() -> Vec<Vec<u8>> {
    (0..1024)
        .map(|i| format!("user:{i}:profile").into_bytes())
        .collect()
}

fn placement(c: &mut Criterion) {
    let keys = keys();
    let mut group = c.benchmark_group("top2");
    group.throughput(Throughput::Elements(keys.len() as u64));
    for nodes in [3, 10, 100] {
        for (label, mixed) in [("equal", false), ("mixed", true)] {
            let ring = ring(nodes, mixed);
            group.bench_with_input(BenchmarkId::new(label, nodes), &ring, |b, ring| {
                b.iter(|| {
                    for key in &keys {
                        black_box(ring.top(key_hash(black_box(key)), 2));
                    }
                })
            });
            group.bench_with_input(
                BenchmarkId::new(format!("{label}-sort-all"), nodes),
                &ring,
                |b, ring| {
                    b.iter(|| {
                        for key in &keys {
                            let mut ranked = ring.rank_all(key_hash(black_box(key)));
                            ranked.truncate(2);
                            black_box(ranked);
                        }
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, placement);
criterion_main!(benches);
