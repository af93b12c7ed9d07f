//! Placement cost per key: hashing a 32-byte key and picking its top-1 or top-3 of n nodes,
//! equal and mixed weights, against the crates hrw-hash and rendezvous_hash on the same keys
//! and nodes (equal weights).
//!
//! Then top-3 of 10 to 1,000,000 equal nodes by each placement function (consistent at 100
//! points per unit of weight, or fewer where a ring could not hold them; hierarchical in
//! groups of at most the default 256, or `GROUP_SIZE`), over 65,536 keys so that the lookups
//! are not all in cache (`LARGE_N=1000000` for one size only). Beside each hierarchical ring
//! it prints how the nodes' exact shares spread around their weight's (1.0 = weight / sum).
//!
//! cargo bench --bench placement

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use hrwproxy::routing::{key_hash, Placement, Ring, DEFAULT_GROUP_SIZE, MAX_POINTS};

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
    group.sample_size(20);
    let only: Option<usize> = std::env::var("LARGE_N").ok().and_then(|n| n.parse().ok());
    for n in [10, 1000, 10_000, 100_000, 1_000_000] {
        if only.is_some_and(|only| only != n) {
            continue;
        }
        let ids = ids(n);
        // 100 points per unit of weight, fewer where that passes the most points a ring holds.
        let consistent = Placement::Consistent {
            points_per_weight: (MAX_POINTS / n).min(100) as f64,
        };
        let hierarchical = Placement::Hierarchical {
            group_size: std::env::var("GROUP_SIZE")
                .ok()
                .and_then(|g| g.parse().ok())
                .unwrap_or(DEFAULT_GROUP_SIZE),
        };
        for (label, placement) in [
            ("rendezvous", Placement::Rendezvous),
            ("consistent", consistent),
            ("hierarchical", hierarchical),
        ] {
            let nodes = ids.iter().map(|id| (id.as_str(), 1.0, None));
            let ring = Ring::with_placement(nodes, placement).unwrap();
            ring.prepare();
            if let Some(groups) = ring.groups() {
                print_share_spread(&ring, groups);
            }
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

/// The nodes' exact shares over their weight's (all weights equal here): spread and extremes.
fn print_share_spread(ring: &Ring, groups: usize) {
    let n = ring.len();
    let mut relative: Vec<f64> = (0..n).map(|i| ring.share(i) * n as f64).collect();
    relative.sort_by(f64::total_cmp);
    let sd = (relative.iter().map(|x| (x - 1.0).powi(2)).sum::<f64>() / n as f64).sqrt();
    println!(
        "hierarchical n={n}: {groups} groups, share / weight's: sd {sd:.3}, min {:.3}, max {:.3}",
        relative[0],
        relative[n - 1]
    );
}

criterion_group!(benches, placement, large);
criterion_main!(benches);
