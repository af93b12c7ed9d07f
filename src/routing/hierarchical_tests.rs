//! Hierarchical placement: golden vectors, a naive reading of its definition, exact shares,
//! and where keys move when the tree changes and when it does not.

use super::*;

const KEYS: usize = 200_000;

fn keys() -> impl Iterator<Item = u64> {
    (0..KEYS).map(|i| key_hash(format!("key-{i}").as_bytes()))
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("node-{i}")).collect()
}

/// `names` with weights 1, 2, 0.5 in turn.
fn mixed(names: &[String]) -> Vec<(&str, f64)> {
    names
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), [1.0, 2.0, 0.5][i % 3]))
        .collect()
}

fn tree_ring(nodes: &[(&str, f64)], group_size: u32) -> Ring {
    Ring::with_placement(
        nodes.iter().map(|&(id, w)| (id, w, None)),
        Placement::Hierarchical { group_size },
    )
    .unwrap()
}

fn ids(ring: &Ring, hash: u64, r: usize) -> Vec<String> {
    ring.top(hash, r)
        .iter()
        .map(|i| ring.id(i).to_owned())
        .collect()
}

#[test]
fn golden_rankings() {
    // Seeds of a..e start 0111, 0111, 0001, 0001, 0101: with groups of 2 the root splits at
    // bit 1 into {c, d} and {a, b, e}, which splits at bit 2 into {e} and {a, b}.
    let small = tree_ring(
        &[("a", 1.0), ("b", 1.0), ("c", 1.0), ("d", 2.0), ("e", 0.5)],
        2,
    );
    assert_eq!(small.groups(), Some(3));
    assert_eq!(mix(key_hash(b"greeting"), TREE_SEED), 0x048d_9ce6_7839_5965);
    for (key, expected) in [
        ("greeting", ["c", "d", "e", "a", "b"]),
        ("user:42", ["d", "c", "e", "b", "a"]),
        ("hello world", ["e", "b", "a", "d", "c"]),
    ] {
        assert_eq!(ids(&small, key_hash(key.as_bytes()), 5), expected, "{key}");
    }
    let names = names(1000);
    let nodes = mixed(&names);
    for (group_size, groups, key, expected) in [
        (
            512,
            2,
            "greeting",
            ["node-605", "node-120", "node-267", "node-909", "node-97"],
        ),
        (
            512,
            2,
            "user:42",
            ["node-439", "node-946", "node-765", "node-451", "node-921"],
        ),
        (
            512,
            2,
            "hello world",
            ["node-566", "node-840", "node-154", "node-4", "node-367"],
        ),
        (
            64,
            22,
            "greeting",
            ["node-267", "node-686", "node-199", "node-339", "node-720"],
        ),
        (
            64,
            22,
            "user:42",
            ["node-439", "node-857", "node-357", "node-933", "node-697"],
        ),
        (
            64,
            22,
            "hello world",
            ["node-622", "node-711", "node-463", "node-68", "node-875"],
        ),
    ] {
        let ring = tree_ring(&nodes, group_size);
        assert_eq!(ring.groups(), Some(groups));
        assert_eq!(
            ids(&ring, key_hash(key.as_bytes()), 5),
            expected,
            "{key}, groups of {group_size}"
        );
    }
}

/// The ranking as the README defines it, computed naively: split every set of more than
/// `group_size` nodes by the next bit of their seeds, visit first the half whose bit equals
/// the key's target's, and rank each group by rendezvous score.
fn naive_ranking(nodes: &[(&str, f64)], group_size: usize, hash: u64) -> Vec<String> {
    fn walk(members: Vec<(&str, f64)>, depth: u32, g: usize, hash: u64, out: &mut Vec<String>) {
        if members.len() <= g || depth == 64 {
            let mut ranked: Vec<(f64, u64, &str)> = members
                .iter()
                .map(|&(id, w)| {
                    let mixed = mix(hash, node_seed(id));
                    (score(w, mixed), mixed >> 11, id)
                })
                .collect();
            ranked.sort_by(|a, b| {
                b.0.partial_cmp(&a.0)
                    .unwrap()
                    .then(b.1.cmp(&a.1))
                    .then(a.2.cmp(b.2))
            });
            out.extend(ranked.into_iter().map(|(_, _, id)| id.to_owned()));
            return;
        }
        let bit = |x: u64| (x >> (63 - depth)) & 1;
        let first = bit(mix(hash, TREE_SEED));
        let (near, far): (Vec<_>, Vec<_>) = members
            .into_iter()
            .partition(|(id, _)| bit(node_seed(id)) == first);
        walk(near, depth + 1, g, hash, out);
        walk(far, depth + 1, g, hash, out);
    }
    let mut out = Vec::new();
    walk(nodes.to_vec(), 0, group_size, hash, &mut out);
    out
}

#[test]
fn rankings_match_the_definition_and_top_is_their_prefix() {
    let names = names(300);
    let nodes = mixed(&names);
    for group_size in [2, 3, 7, 40, 512] {
        let ring = tree_ring(&nodes, group_size);
        for hash in keys().take(300).chain([0, u64::MAX]) {
            let ours: Vec<String> = ring
                .rank_all(hash)
                .iter()
                .map(|r| r.id.to_owned())
                .collect();
            assert_eq!(ours, naive_ranking(&nodes, group_size as usize, hash));
            for r in [1, 3, 16] {
                assert_eq!(ids(&ring, hash, r), ours[..r], "groups of {group_size}");
                let head: Vec<usize> = ring.ranking_head(hash, r).iter().collect();
                assert_eq!(head, ring.top(hash, r).iter().collect::<Vec<_>>());
            }
        }
    }
}

#[test]
fn each_node_owns_the_share_its_group_gives_it() {
    let names = names(60);
    let nodes = mixed(&names);
    for group_size in [4, 16] {
        let ring = tree_ring(&nodes, group_size);
        let total: f64 = (0..ring.len()).map(|i| ring.share(i)).sum();
        assert!((total - 1.0).abs() < 1e-9, "shares sum to {total}");
        let mut owned = vec![0usize; ring.len()];
        for hash in keys() {
            owned[ring.top(hash, 1).as_slice()[0] as usize] += 1;
        }
        for (index, count) in owned.iter().enumerate() {
            let expected = ring.share(index);
            let actual = *count as f64 / KEYS as f64;
            assert!(
                (actual - expected).abs() < 4.0 * (expected / KEYS as f64).sqrt() + 1e-4,
                "{} owns {actual}, expected {expected}",
                ring.id(index)
            );
        }
    }
}

#[test]
fn large_groups_keep_shares_close_to_weights() {
    // 20,000 nodes in groups of at most 512 (about 60): each node's exact share against its
    // weight over the sum.
    let names = names(20_000);
    let nodes = mixed(&names);
    let ring = tree_ring(&nodes, 512);
    let total: f64 = nodes.iter().map(|n| n.1).sum();
    let ratios: Vec<f64> = (0..ring.len())
        .map(|i| ring.share(i) / (ring.weight(i) / total))
        .collect();
    let worst = ratios.iter().fold(0f64, |m, r| m.max((r - 1.0).abs()));
    assert!(worst < 0.35, "a share is {worst} off its weight's");
    let mean_off = ratios.iter().map(|r| (r - 1.0).abs()).sum::<f64>() / ratios.len() as f64;
    assert!(mean_off < 0.08, "shares are {mean_off} off on average");
}

/// The ids of each group of `ring`, less `without`, as sets.
fn groups(ring: &Ring, without: &str) -> std::collections::BTreeSet<Vec<String>> {
    let mut by_group: std::collections::BTreeMap<u32, Vec<String>> = Default::default();
    for i in 0..ring.len() {
        if ring.id(i) != without {
            by_group
                .entry(ring.group_of(i).unwrap())
                .or_default()
                .push(ring.id(i).to_owned());
        }
    }
    by_group
        .into_values()
        .map(|mut ids| {
            ids.sort();
            ids
        })
        .collect()
}

#[test]
fn a_change_that_keeps_the_groups_moves_only_its_node_and_a_split_only_its_group() {
    let names = names(400);
    let nodes = mixed(&names);
    let before = tree_ring(&nodes, 32);
    let (mut kept, mut split) = (0, 0);
    for gone in 0..nodes.len() {
        let mut fewer = nodes.clone();
        let (gone_id, _) = fewer.remove(gone);
        let after = tree_ring(&fewer, 32);
        let same_groups = groups(&before, gone_id) == groups(&after, gone_id);
        if same_groups && kept < 20 {
            kept += 1;
            for hash in keys().take(5000) {
                let old = ids(&before, hash, 3);
                if !old.iter().any(|id| id == gone_id) {
                    assert_eq!(ids(&after, hash, 3), old, "removing {gone_id}");
                }
            }
        } else if !same_groups && split < 3 {
            // Two groups merged: only keys whose replicas were in them move.
            split += 1;
            let merged: Vec<u32> = (0..after.len())
                .filter(|&i| {
                    let id = after.id(i);
                    let peers = groups(&after, gone_id);
                    !groups(&before, gone_id)
                        .iter()
                        .any(|g| g.iter().any(|p| p == id) && peers.contains(g))
                })
                .map(|i| after.group_of(i).unwrap())
                .collect();
            let mut moved = 0usize;
            for hash in keys().take(5000) {
                let (old, new) = (ids(&before, hash, 1), ids(&after, hash, 1));
                if old != new {
                    moved += 1;
                    let now = after.index_of(&new[0]).unwrap();
                    assert!(merged.contains(&after.group_of(now).unwrap()));
                }
            }
            assert!(moved > 0);
        }
    }
    assert_eq!((kept, split), (20, 3), "both kinds of change were tried");
}

#[test]
fn bad_group_sizes_are_refused() {
    for group_size in [0, 1, MAX_GROUP_SIZE + 1] {
        assert_eq!(
            Ring::with_placement([("a", 1.0, None)], Placement::Hierarchical { group_size })
                .unwrap_err(),
            RingError::BadGroupSize(group_size)
        );
    }
    let ring = tree_ring(&[("only", 1.0)], 2);
    assert_eq!(ring.top(key_hash(b"k"), 3).as_slice(), [0]);
    assert_eq!(ring.placement(), Placement::Hierarchical { group_size: 2 });
    assert_eq!(ring.share(0), 1.0);
}
