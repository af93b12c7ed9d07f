//! Golden vectors pin the placement function; the properties check what rendezvous promises.

use super::*;

fn ranking(ring: &Ring, key: &str) -> Vec<String> {
    ring.rank_all(key_hash(key.as_bytes()))
        .iter()
        .map(|r| r.id.to_string())
        .collect()
}

fn ring_of(nodes: &[(&str, f64)]) -> Ring {
    Ring::new(nodes.iter().copied()).unwrap()
}

const KEYS: usize = 300_000;

fn keys() -> impl Iterator<Item = u64> {
    (0..KEYS).map(|i| key_hash(format!("key-{i}").as_bytes()))
}

#[test]
fn golden_hashes() {
    // xxh3-64 of the empty input with seed 0 is the published reference value.
    assert_eq!(key_hash(b""), 0x2d06_8005_38d3_94c2);
    assert_eq!(key_hash(b"greeting"), 0x1fc8_09e0_902f_8741);
    assert_eq!(key_hash(b"user:42"), 0x9fc1_e605_fa71_74aa);
    assert_eq!(key_hash(b"a/b?c#d"), 0x045e_a97f_083e_2aba);
    assert_eq!(node_seed("a"), 0x7b01_3ec7_3230_c3a1);
    assert_eq!(node_seed("b"), 0x79be_023b_53de_541d);
    assert_eq!(node_seed("c"), 0x1119_9b85_5d37_6dc4);
    let mixed = mix(key_hash(b"greeting"), node_seed("a"));
    assert_eq!(mixed, 0x6189_65a3_df1f_c94d);
    assert_eq!(score(1.0, mixed), 1.036_324_571_448_758_1);
}

#[test]
fn golden_rankings() {
    let equal = ring_of(&[("a", 1.0), ("b", 1.0), ("c", 1.0)]);
    for (key, expected) in [
        ("greeting", ["a", "c", "b"]),
        ("user:42", ["b", "a", "c"]),
        ("x", ["a", "b", "c"]),
        ("hello world", ["b", "c", "a"]),
    ] {
        assert_eq!(ranking(&equal, key), expected, "equal weights, key {key:?}");
    }
    let weighted = ring_of(&[("a", 1.0), ("b", 1.0), ("c", 1.0), ("d", 2.0), ("e", 0.5)]);
    for (key, expected) in [
        ("greeting", ["a", "c", "b", "d", "e"]),
        ("user:42", ["b", "d", "a", "c", "e"]),
        ("hello world", ["d", "b", "c", "a", "e"]),
        ("1", ["d", "b", "c", "e", "a"]),
        ("3", ["e", "d", "a", "b", "c"]),
    ] {
        assert_eq!(
            ranking(&weighted, key),
            expected,
            "mixed weights, key {key:?}"
        );
    }
}

/// The zone rule on the mixed-weight ring above, zones added: a and b in x, c and d in y, e in
/// none (a zone of its own). Worked out by hand from the golden rankings.
#[test]
fn golden_zoned_replicas() {
    let zoned = Ring::with_zones([
        ("a", 1.0, Some("x")),
        ("b", 1.0, Some("x")),
        ("c", 1.0, Some("y")),
        ("d", 2.0, Some("y")),
        ("e", 0.5, None),
    ])
    .unwrap();
    for (key, r, expected) in [
        // Ranking b, d, a, c, e: b (x), d (y), then a and c share used zones, so e.
        ("user:42", 3, &["b", "d", "e"][..]),
        // Three zones for four replicas: the fourth is the best remaining node, a.
        ("user:42", 4, &["b", "d", "e", "a"]),
        ("greeting", 3, &["a", "c", "e"]),
        ("hello world", 2, &["d", "b"]),
        ("hello world", 5, &["d", "b", "e", "c", "a"]),
    ] {
        let ids: Vec<&str> = zoned
            .top(key_hash(key.as_bytes()), r)
            .iter()
            .map(|i| zoned.id(i))
            .collect();
        assert_eq!(ids, expected, "key {key:?}, r={r}");
    }
}

#[test]
fn top_is_the_prefix_of_the_full_ranking() {
    let rings = [
        ring_of(&[("a", 1.0), ("b", 1.0), ("c", 1.0), ("d", 1.0), ("e", 1.0)]),
        ring_of(&[("a", 1.0), ("b", 3.0), ("c", 0.25), ("d", 2.0), ("e", 1.0)]),
    ];
    for ring in &rings {
        for hash in keys().take(20_000) {
            let all: Vec<usize> = ring.rank_all(hash).iter().map(|r| r.index).collect();
            for r in 1..=ring.len() {
                assert_eq!(ring.top(hash, r).as_slice().len(), r);
                let top: Vec<usize> = ring.top(hash, r).iter().collect();
                assert_eq!(top, all[..r], "hash {hash:#x}, r {r}");
            }
        }
    }
}

fn ten_nodes() -> Vec<(String, f64)> {
    (0..10)
        .map(|i| (format!("node-{i}"), [1.0, 1.0, 2.0, 1.0, 0.5][i % 5]))
        .collect()
}

fn ring_from(nodes: &[(String, f64)]) -> Ring {
    Ring::new(nodes.iter().map(|(id, w)| (id.as_str(), *w))).unwrap()
}

fn ids(ring: &Ring, hash: u64) -> Vec<String> {
    ring.rank_all(hash)
        .iter()
        .map(|r| r.id.to_string())
        .collect()
}

#[test]
fn removing_a_node_moves_only_its_keys_and_keeps_survivor_order() {
    let nodes = ten_nodes();
    let before = ring_from(&nodes);
    let removed = "node-3";
    let survivors: Vec<_> = nodes
        .iter()
        .filter(|(id, _)| id != removed)
        .cloned()
        .collect();
    let after = ring_from(&survivors);
    for hash in keys() {
        let mut old = ids(&before, hash);
        let owner_before = old[0].clone();
        let owner_after = after
            .id(after.top(hash, 1).as_slice()[0] as usize)
            .to_string();
        if owner_before != removed {
            assert_eq!(owner_before, owner_after, "a key moved between survivors");
        }
        old.retain(|id| id != removed);
        assert_eq!(old, ids(&after, hash), "survivor order changed");
    }
}

#[test]
fn adding_a_node_takes_its_weight_share_all_onto_itself() {
    let mut nodes = ten_nodes();
    let before = ring_from(&nodes);
    let weight = 2.0;
    nodes.push(("node-new".to_string(), weight));
    let after = ring_from(&nodes);
    let sum: f64 = nodes.iter().map(|(_, w)| w).sum();
    let mut moved = 0usize;
    for hash in keys() {
        let was = before.id(before.top(hash, 1).as_slice()[0] as usize);
        let now = after.id(after.top(hash, 1).as_slice()[0] as usize);
        if was != now {
            assert_eq!(now, "node-new", "a key moved between old nodes");
            moved += 1;
        }
    }
    let expected = weight / sum;
    let actual = moved as f64 / KEYS as f64;
    assert!(
        (actual - expected).abs() / expected < 0.01,
        "new node took {actual}, expected {expected}"
    );
}

#[test]
fn each_node_owns_its_weight_share() {
    let nodes = ten_nodes();
    let ring = ring_from(&nodes);
    let mut owned = vec![0usize; ring.len()];
    for hash in keys() {
        owned[ring.top(hash, 1).as_slice()[0] as usize] += 1;
    }
    for (index, count) in owned.iter().enumerate() {
        let expected = ring.share(index);
        let actual = *count as f64 / KEYS as f64;
        assert!(
            (actual - expected).abs() / expected < 0.02,
            "{} owns {actual}, expected {expected}",
            ring.id(index)
        );
    }
}

#[test]
fn bad_rings_are_refused_and_r_is_capped() {
    assert_eq!(Ring::new(std::iter::empty()).unwrap_err(), RingError::Empty);
    assert!(matches!(
        Ring::new([("a", 1.0), ("a", 2.0)]),
        Err(RingError::DuplicateId(_))
    ));
    assert!(matches!(Ring::new([("", 1.0)]), Err(RingError::EmptyId)));
    for weight in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::MAX, 1e300, 1e-300] {
        assert!(matches!(
            Ring::new([("a", weight)]),
            Err(RingError::BadWeight { .. })
        ));
    }
    let ring = ring_of(&[("a", 1.0), ("b", 1.0)]);
    assert_eq!(ring.top(0, 0).len(), 0);
    assert_eq!(ring.top(0, 5).len(), 2, "r is capped at the node count");
}

#[test]
fn shares_follow_weights_at_both_ends_of_the_weight_range() {
    // Near the float maximum, weight / -ln(u) overflowed to infinity and every node tied.
    for (big, small) in [
        (MAX_WEIGHT, MAX_WEIGHT / 2.0),
        (MIN_WEIGHT * 2.0, MIN_WEIGHT),
    ] {
        let ring = ring_of(&[("big", big), ("small", small)]);
        let mut big_wins = 0usize;
        for hash in keys().take(60_000) {
            big_wins += usize::from(ring.id(ring.top(hash, 1).as_slice()[0] as usize) == "big");
        }
        let share = big_wins as f64 / 60_000.0;
        assert!(
            (share - 2.0 / 3.0).abs() < 0.02,
            "{big} vs {small}: {share}"
        );
    }
}

fn consistent_ring(nodes: &[(&str, f64, Option<&str>)], per_weight: f64) -> Ring {
    Ring::with_placement(
        nodes.iter().copied(),
        Placement::Consistent {
            points_per_weight: per_weight,
        },
    )
    .unwrap()
}

#[test]
fn consistent_golden_rankings() {
    assert_eq!(
        mix(0, node_seed("a")),
        0x22ef_c1d9_473e_68cc,
        "point 0 of a"
    );
    assert_eq!(
        mix(1, node_seed("a")),
        0x20d8_8afc_862b_f749,
        "point 1 of a"
    );
    let equal = consistent_ring(
        &[("a", 1.0, None), ("b", 1.0, None), ("c", 1.0, None)],
        100.0,
    );
    for (key, expected) in [
        ("greeting", ["c", "a", "b"]),
        ("user:42", ["b", "c", "a"]),
        ("x", ["b", "a", "c"]),
        ("hello world", ["c", "b", "a"]),
    ] {
        assert_eq!(ranking(&equal, key), expected, "equal weights, key {key:?}");
    }
    let mixed = [
        ("a", 1.0, None),
        ("b", 1.0, None),
        ("c", 1.0, None),
        ("d", 2.0, None),
        ("e", 0.5, None),
    ];
    let weighted = consistent_ring(&mixed, 100.0);
    for (key, expected) in [
        ("greeting", ["c", "a", "b", "d", "e"]),
        ("user:42", ["b", "d", "c", "e", "a"]),
        ("hello world", ["c", "e", "d", "b", "a"]),
        ("1", ["a", "d", "e", "c", "b"]),
        ("3", ["b", "d", "c", "a", "e"]),
    ] {
        assert_eq!(
            ranking(&weighted, key),
            expected,
            "mixed weights, key {key:?}"
        );
    }
    let zones = [Some("x"), Some("x"), Some("y"), Some("y"), None];
    let zoned: Vec<_> = mixed
        .iter()
        .zip(zones)
        .map(|(n, z)| (n.0, n.1, z))
        .collect();
    let zoned = consistent_ring(&zoned, 100.0);
    for (key, r, expected) in [
        ("user:42", 3, &["b", "d", "e"][..]),
        ("user:42", 4, &["b", "d", "e", "c"]),
        ("hello world", 5, &["c", "e", "b", "d", "a"]),
    ] {
        let top: Vec<&str> = zoned
            .top(key_hash(key.as_bytes()), r)
            .iter()
            .map(|i| zoned.id(i))
            .collect();
        assert_eq!(top, expected, "zoned, key {key:?}, r {r}");
    }
}

/// The consistent ranking as the README defines it, computed naively: every point, sorted by
/// position then id, walked clockwise from the key's hash.
fn naive_consistent_ranking(nodes: &[(&str, f64)], per_weight: f64, hash: u64) -> Vec<String> {
    let mut points: Vec<(u64, &str)> = Vec::new();
    for (id, weight) in nodes {
        for j in 0..points_of(*weight, per_weight) as u64 {
            points.push((mix(j, node_seed(id)), id));
        }
    }
    points.sort();
    let start = points.iter().position(|p| p.0 >= hash).unwrap_or(0);
    let mut order: Vec<String> = Vec::new();
    for k in 0..points.len() {
        let id = points[(start + k) % points.len()].1;
        if !order.iter().any(|o| o == id) {
            order.push(id.to_owned());
        }
    }
    order
}

#[test]
fn consistent_rankings_match_the_definition_and_shares_follow_weights() {
    let names: Vec<String> = (0..40).map(|i| format!("node-{i}")).collect();
    let nodes: Vec<(&str, f64)> = names
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), [0.5, 1.0, 2.0][i % 3]))
        .collect();
    let with_zones: Vec<_> = nodes.iter().map(|&(id, w)| (id, w, None)).collect();
    let ring = consistent_ring(&with_zones, 100.0);
    for hash in keys().take(2000).chain([0, u64::MAX]) {
        let ours: Vec<String> = ring
            .rank_all(hash)
            .iter()
            .map(|r| r.id.to_owned())
            .collect();
        assert_eq!(
            ours,
            naive_consistent_ranking(&nodes, 100.0, hash),
            "{hash:#x}"
        );
        let top: Vec<usize> = ring.top(hash, 3).iter().collect();
        let first: Vec<usize> = ring.rank_all(hash)[..3].iter().map(|r| r.index).collect();
        assert_eq!(top, first);
    }
    // 100 points per unit of weight: shares within 30% of weight shares (about 10% spread).
    let mut owned = vec![0usize; nodes.len()];
    for hash in keys() {
        owned[ring.top(hash, 1).as_slice()[0] as usize] += 1;
    }
    let total: f64 = nodes.iter().map(|n| n.1).sum();
    for (i, (id, weight)) in nodes.iter().enumerate() {
        let share = owned[i] as f64 / KEYS as f64;
        let expected = weight / total;
        assert!(
            (share / expected - 1.0).abs() < 0.3,
            "{id}: {share} vs {expected}"
        );
    }
}

#[test]
fn consistent_placement_refuses_nodes_without_points_and_too_many_points() {
    let consistent = |per_weight| Placement::Consistent {
        points_per_weight: per_weight,
    };
    assert!(matches!(
        Ring::with_placement([("a", 1.0, None), ("tiny", 0.001, None)], consistent(100.0)),
        Err(RingError::NoPoints { .. })
    ));
    assert!(matches!(
        Ring::with_placement([("a", 1e9, None)], consistent(100.0)),
        Err(RingError::TooManyPoints(_))
    ));
    let ring = Ring::with_placement([("only", 1.0, None)], consistent(1.0)).unwrap();
    assert_eq!(ring.top(key_hash(b"k"), 3).as_slice(), [0]);
    assert_eq!(ring.placement(), consistent(1.0));
}
