//! What a membership change does to placement, before it is made: each node's share of the
//! keyspace before and after, and how many keys change replicas (`hrwproxy plan`, reload logs).

use super::rendezvous::{key_hash, Placement, Ring};
use super::IdMap;

/// One node's place in a change; `None` where the node is absent on that side.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeShare {
    pub id: String,
    pub weight_before: Option<f64>,
    pub weight_after: Option<f64>,
    /// Fraction of keys the node is primary for: exactly weight / sum.
    pub primary_before: Option<f64>,
    pub primary_after: Option<f64>,
    /// Fraction of sampled keys whose replica set includes the node.
    pub replica_before: f64,
    pub replica_after: f64,
}

/// One zone's share of replicas: the fraction of sampled replica slots its nodes fill.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneShare {
    pub zone: String,
    pub before: f64,
    pub after: f64,
}

/// The effect of going from one ring (with its replica count) to another.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeSummary {
    pub keys_sampled: usize,
    pub nodes: Vec<NodeShare>,
    /// The named zones of either ring, in the order they first appear.
    pub zones: Vec<ZoneShare>,
    /// Fraction of sampled keys whose set of replicas differs (order ignored).
    pub replica_sets_changed: f64,
    /// Fraction of sampled keys whose first replica differs.
    pub primaries_changed: f64,
    /// The exact expectation of `primaries_changed`, when no surviving node changed weight:
    /// a key keeps its primary iff the winner among all old and new nodes is a survivor, so
    /// `1 - survivors / (survivors + removed + added)` by weight.
    pub expected_primaries_changed: Option<f64>,
}

impl ChangeSummary {
    /// Measures the change on `keys` sampled keys (the hashes of 0, 1, 2, ... as 8 bytes).
    pub fn sample(before: (&Ring, usize), after: (&Ring, usize), keys: usize) -> ChangeSummary {
        let (old, r_old) = before;
        let (new, r_new) = after;
        let mut nodes: Vec<NodeShare> = (0..old.len())
            .map(|i| NodeShare {
                id: old.id(i).to_owned(),
                weight_before: Some(old.weight(i)),
                weight_after: None,
                primary_before: Some(old.share(i)),
                primary_after: None,
                replica_before: 0.0,
                replica_after: 0.0,
            })
            .collect();
        // For each node of the new ring, its slot in `nodes`.
        let old_slots: IdMap<&str, usize> = (0..old.len()).map(|i| (old.id(i), i)).collect();
        let mut slot_of_new = Vec::with_capacity(new.len());
        for i in 0..new.len() {
            let slot = match old_slots.get(new.id(i)) {
                Some(&slot) => slot,
                None => {
                    nodes.push(NodeShare {
                        id: new.id(i).to_owned(),
                        weight_before: None,
                        weight_after: None,
                        primary_before: None,
                        primary_after: None,
                        replica_before: 0.0,
                        replica_after: 0.0,
                    });
                    nodes.len() - 1
                }
            };
            nodes[slot].weight_after = Some(new.weight(i));
            nodes[slot].primary_after = Some(new.share(i));
            slot_of_new.push(slot);
        }

        // Each node's zone as a slot in `zones`, on each side.
        let mut zones: Vec<ZoneShare> = Vec::new();
        let mut zone_slots = |ring: &Ring| -> Vec<Option<usize>> {
            (0..ring.len())
                .map(|i| {
                    let zone = ring.zone(i)?;
                    Some(match zones.iter().position(|z| z.zone == zone) {
                        Some(slot) => slot,
                        None => {
                            zones.push(ZoneShare {
                                zone: zone.to_owned(),
                                before: 0.0,
                                after: 0.0,
                            });
                            zones.len() - 1
                        }
                    })
                })
                .collect()
        };
        let (zone_of_old, zone_of_new) = (zone_slots(old), zone_slots(new));
        let mut zone_before = vec![0u64; zones.len()];
        let mut zone_after = vec![0u64; zones.len()];
        let mut in_before = vec![0u64; nodes.len()];
        let mut in_after = vec![0u64; nodes.len()];
        let (mut sets_changed, mut primaries_changed) = (0u64, 0u64);
        for k in 0..keys as u64 {
            let hash = key_hash(&k.to_le_bytes());
            let top_old = old.top(hash, r_old);
            let top_new = new.top(hash, r_new);
            let mut set_old = [usize::MAX; super::MAX_REPLICAS];
            let mut set_new = [usize::MAX; super::MAX_REPLICAS];
            for (slot, i) in set_old.iter_mut().zip(top_old.iter()) {
                *slot = i;
                in_before[i] += 1;
                if let Some(zone) = zone_of_old[i] {
                    zone_before[zone] += 1;
                }
            }
            for (slot, i) in set_new.iter_mut().zip(top_new.iter()) {
                *slot = slot_of_new[i];
                in_after[*slot] += 1;
                if let Some(zone) = zone_of_new[i] {
                    zone_after[zone] += 1;
                }
            }
            if set_old[0] != set_new[0] {
                primaries_changed += 1;
            }
            set_old[..top_old.len()].sort_unstable();
            set_new[..top_new.len()].sort_unstable();
            if set_old[..top_old.len()] != set_new[..top_new.len()] {
                sets_changed += 1;
            }
        }
        let fraction = |count: u64| {
            if keys == 0 {
                0.0
            } else {
                count as f64 / keys as f64
            }
        };
        for (i, node) in nodes.iter_mut().enumerate() {
            node.replica_before = fraction(in_before[i]);
            node.replica_after = fraction(in_after[i]);
        }
        let slots = |r: usize| (keys * r.min(super::MAX_REPLICAS)) as f64;
        for (i, zone) in zones.iter_mut().enumerate() {
            zone.before = zone_before[i] as f64 / slots(r_old.min(old.len())).max(1.0);
            zone.after = zone_after[i] as f64 / slots(r_new.min(new.len())).max(1.0);
        }
        let tree = |ring: &Ring| matches!(ring.placement(), Placement::Hierarchical { .. });
        let expected_primaries_changed = if tree(old) || tree(new) {
            expected_tree_change(&nodes)
        } else {
            expected_primary_change(&nodes)
        };
        ChangeSummary {
            keys_sampled: keys,
            nodes,
            zones,
            replica_sets_changed: fraction(sets_changed),
            primaries_changed: fraction(primaries_changed),
            expected_primaries_changed,
        }
    }
}

/// The summary as `hrwproxy plan` prints it.
pub fn render(s: &ChangeSummary, replicas_before: usize, replicas_after: usize) -> String {
    use std::fmt::Write;
    // Two decimals, or enough to show a share of a large membership (0.0001% of a million).
    let pct = |f: Option<f64>| {
        f.map_or_else(
            || "-".to_string(),
            |f| match f * 100.0 {
                p if p == 0.0 || p >= 0.01 => format!("{p:.2}%"),
                p => format!("{p:.6}%"),
            },
        )
    };
    let weight = |w: Option<f64>| w.map_or_else(|| "-".to_string(), |w| w.to_string());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {:>12}  {:>18}  {:>18}",
        "node", "weight", "primary share", "in replica set"
    );
    for n in &s.nodes {
        let weights = format!("{} -> {}", weight(n.weight_before), weight(n.weight_after));
        let primary = format!("{} -> {}", pct(n.primary_before), pct(n.primary_after));
        let replica = format!(
            "{} -> {}",
            pct(n.weight_before.map(|_| n.replica_before)),
            pct(n.weight_after.map(|_| n.replica_after))
        );
        let _ = writeln!(
            out,
            "{:<12} {weights:>12}  {primary:>18}  {replica:>18}",
            n.id
        );
    }
    if !s.zones.is_empty() {
        let _ = writeln!(out, "{:<12} {:>33}", "zone", "share of replicas");
        for z in &s.zones {
            let share = format!("{} -> {}", pct(Some(z.before)), pct(Some(z.after)));
            let _ = writeln!(out, "{:<12} {share:>33}", z.zone);
        }
    }
    let _ = writeln!(out, "replicas: {replicas_before} -> {replicas_after}");
    let _ = writeln!(
        out,
        "keys whose replica set changes: {} (of {} sampled keys)",
        pct(Some(s.replica_sets_changed)),
        s.keys_sampled
    );
    let expected = match s.expected_primaries_changed {
        Some(e) => format!("{} expected", pct(Some(e))),
        None => "no closed form when a surviving node is reweighted".into(),
    };
    let _ = writeln!(
        out,
        "keys whose primary changes:     {} ({expected})",
        pct(Some(s.primaries_changed))
    );
    out
}

fn expected_primary_change(nodes: &[NodeShare]) -> Option<f64> {
    let (mut survivors, mut others) = (0.0, 0.0);
    for node in nodes {
        match (node.weight_before, node.weight_after) {
            (Some(b), Some(a)) if b == a => survivors += a,
            (Some(_), Some(_)) => return None,
            (Some(w), None) | (None, Some(w)) => others += w,
            (None, None) => {}
        }
    }
    Some(1.0 - survivors / (survivors + others))
}

/// With hierarchical placement, while no group splits or merges and each group only loses or
/// only gains nodes, a key changes primary exactly when its share moves: half the sum of the
/// shares' changes (the removed nodes' shares, or the added ones'). A split or merge moves more.
fn expected_tree_change(nodes: &[NodeShare]) -> Option<f64> {
    let mut moved = 0.0;
    for node in nodes {
        if node.weight_before.is_some()
            && node.weight_after.is_some()
            && node.weight_before != node.weight_after
        {
            return None;
        }
        moved += (node.primary_after.unwrap_or(0.0) - node.primary_before.unwrap_or(0.0)).abs();
    }
    Some(moved / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_a_node_matches_the_expectation() {
        let old = Ring::new([("a", 1.0), ("b", 1.0), ("c", 1.0)]).unwrap();
        let new = Ring::new([("a", 1.0), ("b", 1.0), ("c", 1.0), ("d", 1.0)]).unwrap();
        let s = ChangeSummary::sample((&old, 2), (&new, 2), 100_000);
        assert_eq!(s.expected_primaries_changed, Some(0.25));
        assert!((s.primaries_changed - 0.25).abs() < 0.01, "{s:?}");
        // d joins the replica set of half the keys (2 of 4 slots), evicting one old replica.
        assert!((s.replica_sets_changed - 0.5).abs() < 0.01, "{s:?}");
        let d = s.nodes.iter().find(|n| n.id == "d").unwrap();
        assert_eq!((d.primary_before, d.primary_after), (None, Some(0.25)));
        assert!((d.replica_after - 0.5).abs() < 0.01 && d.replica_before == 0.0);
    }

    #[test]
    fn removing_a_node_from_a_tree_moves_its_share() {
        let ids: Vec<String> = (0..400).map(|i| format!("n{i}")).collect();
        let tree = |ids: &[String]| {
            let nodes = ids.iter().map(|id| (id.as_str(), 1.0, None));
            Ring::with_placement(nodes, Placement::Hierarchical { group_size: 64 }).unwrap()
        };
        let (old, new) = (tree(&ids), tree(&ids[1..]));
        assert_eq!(old.groups(), new.groups());
        let s = ChangeSummary::sample((&old, 1), (&new, 1), 200_000);
        let expected = s.expected_primaries_changed.unwrap();
        assert!((expected - old.share(0)).abs() < 1e-12, "{expected}");
        let moved = s.primaries_changed;
        assert!(
            (moved - old.share(0)).abs() < 0.002,
            "{moved} against {}",
            old.share(0)
        );
    }

    #[test]
    fn zone_shares_count_replica_slots_on_each_side() {
        let old = Ring::with_zones([("a", 1.0, Some("x")), ("b", 1.0, Some("y"))]).unwrap();
        let new = Ring::with_zones([
            ("a", 1.0, Some("x")),
            ("b", 1.0, Some("y")),
            ("c", 1.0, Some("z")),
        ])
        .unwrap();
        let s = ChangeSummary::sample((&old, 2), (&new, 2), 30_000);
        let share = |zone: &str| {
            let z = s.zones.iter().find(|z| z.zone == zone).unwrap();
            (z.before, z.after)
        };
        assert_eq!(share("x").0, 0.5);
        assert_eq!(share("z").0, 0.0);
        for zone in ["x", "y", "z"] {
            assert!((share(zone).1 - 1.0 / 3.0).abs() < 0.01, "{s:?}");
        }
        assert!(render(&s, 2, 2).contains("share of replicas"));
    }

    #[test]
    fn no_change_moves_nothing_and_reweighting_has_no_closed_form() {
        let ring = Ring::new([("a", 1.0), ("b", 2.0)]).unwrap();
        let s = ChangeSummary::sample((&ring, 1), (&ring, 1), 10_000);
        assert_eq!((s.replica_sets_changed, s.primaries_changed), (0.0, 0.0));
        assert_eq!(s.expected_primaries_changed, Some(0.0));
        let heavier = Ring::new([("a", 1.0), ("b", 3.0)]).unwrap();
        let s = ChangeSummary::sample((&ring, 1), (&heavier, 1), 10_000);
        assert_eq!(s.expected_primaries_changed, None);
        assert!(s.primaries_changed > 0.0);
    }
}
