//! Placement cost per key: hashing a 32-byte key and picking its top-1 or top-3 of n nodes,
//! equal and mixed weights, against the crates hrw-hash and rendezvous_hash on the same keys
//! and nodes (equal weights).
//!
//! Then top-3 of 1,000 and 10,000 equal nodes by rendezvous and by consistent placement (100
//! points per unit of weight), over 65,536 keys so that the points' lookups are not all in
//! cache.
//!
//! cargo bench --bench placement

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use hrwproxy::routing::{key_hash, Placement, Ring};

const SIZES: [usize; 4] = [3, 10, 100, 1000];

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("node-{i}")).collect()
}

fn ring(ids: &[String], mixed: bool) -> Ring {
    let weight = |i: usize| if mixed { [1.0, 2.0, 0.5][i % 3] } else { 1.0 };
    Ring::new(
        ids.iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), weight(i))),
    )
    .unwrap()
}

/// 1024 distinct 32-byte keys.
fn keys() -> Vec<[u8; 32]> {
    (0..1024u32)
        .map(|i| {
            let mut key = [b'k'; 32];
            key[..4].copy_from_slice(&i.to_le_bytes());
            key
        })
        .collect()
}

fn placement(c: &mut Criterion) {
    let keys = keys();
    for r in [1, 3] {
        let mut group = c.benchmark_group(format!("top{r}"));
        for n in SIZES {
            let ids = ids(n);
            for (label, mixed) in [("hrwproxy-equal", false), ("hrwproxy-mixed", true)] {
                let ring = ring(&ids, mixed);
                group.bench_with_input(BenchmarkId::new(label, n), &ring, |b, ring| {
                    let mut i = 0;
                    b.iter(|| {
                        i = (i + 1) & 1023;
                        ring.top(key_hash(black_box(&keys[i])), r)
                    })
                });
            }
            let hrw = hrw_hash::HrwNodes::new(ids.iter().cloned());
            group.bench_function(BenchmarkId::new("hrw-hash", n), |b| {
                let mut i = 0;
                b.iter(|| {
                    i = (i + 1) & 1023;
                    hrw.sorted(black_box(&keys[i])).take(r).count()
                })
            });
            let mut rendezvous = rendezvous_hash::RendezvousNodes::default();
            for id in &ids {
                rendezvous.insert(id.as_str());
            }
            group.bench_function(BenchmarkId::new("rendezvous_hash", n), |b| {
                let mut i = 0;
                b.iter(|| {
                    i = (i + 1) & 1023;
                    rendezvous
                        .calc_candidates(black_box(&keys[i]))
                        .take(r)
                        .count()
                })
            });
        }
        group.finish();
    }
}

fn large(c: &mut Criterion) {
    let keys: Vec<u64> = (0..65536u32)
        .map(|i| key_hash(format!("key-{i}").as_bytes()))
        .collect();
    let mut group = c.benchmark_group("top3-large");
    for n in [1000, 10_000] {
        let ids = ids(n);
        let consistent = Placement::Consistent {
            points_per_weight: 100.0,
        };
        for (label, placement) in [
            ("rendezvous", Placement::Rendezvous),
            ("consistent", consistent),
        ] {
            let nodes = ids.iter().map(|id| (id.as_str(), 1.0, None));
            let ring = Ring::with_placement(nodes, placement).unwrap();
            ring.prepare();
            group.bench_with_input(BenchmarkId::new(label, n), &ring, |b, ring| {
                let mut i = 0;
                b.iter(|| {
                    i = (i + 1) & 65535;
                    ring.top(black_box(keys[i]), 3)
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, placement, large);
criterion_main!(benches);
