//! Property tests and a fuzz-style harness (cargo-fuzz needs a nightly toolchain this machine
//! cannot fetch): key encoding round trips, percent-decoding agrees with a reference decoder,
//! no input makes the key decoder, the memcached key mapping or the config parser panic, and
//! replicas spread over zones follow the zone rule and move only where a node left or joined.
//! More cases: PROPTEST_CASES=1000000 cargo test --test properties

use hrwproxy::backend::memcache_key;
use hrwproxy::config::Config;
use hrwproxy::key;
use hrwproxy::routing::{Placement, Ring};
use proptest::prelude::*;

const VALID: &str = "listen: 127.0.0.1:8080\nreplicas: 2\nnodes:\n  - { id: a, url: \"http://127.0.0.1:7001\", weight: 1.0 }\n  - { id: b, url: \"redis://:pw@127.0.0.1:6379/1\" }\n  - { id: c, url: \"memcache://127.0.0.1:11211\", weight: 2.5 }\n";

/// Path text made of plain characters, well-formed escapes and stray `%`s.
fn path_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[A-Za-z0-9._~!$&'()*+,;=:@/-]{1,4}",
        4 => (0u8..=255).prop_map(|b| format!("%{b:02X}")),
        2 => (0u8..=255).prop_map(|b| format!("%{b:02x}")),
        1 => Just("%".to_string()),
        1 => "%[0-9A-Fa-f]",
        1 => "%[G-Zg-z][0-9]",
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|p| p.concat())
}

/// A straightforward decoder to compare with: `None` where an escape is malformed.
fn reference_decode(raw: &str) -> Option<Vec<u8>> {
    let bytes = raw.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

proptest! {
    #[test]
    fn encoded_keys_decode_to_themselves(key in proptest::collection::vec(any::<u8>(), 1..600)) {
        let encoded = key::encode(&key);
        prop_assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_~%".contains(&b)));
        let decoded = key::decode(&encoded, usize::MAX).unwrap();
        prop_assert_eq!(decoded.as_ref(), &key[..]);
    }

    #[test]
    fn the_key_decoder_agrees_with_a_reference_decoder(raw in path_text(), max in 1usize..64) {
        match (key::decode(&raw, max), reference_decode(&raw)) {
            (Ok(decoded), Some(expected)) => {
                prop_assert_eq!(decoded.as_ref(), &expected[..]);
                prop_assert!(!expected.is_empty() && expected.len() <= max);
            }
            (Err(_), Some(expected)) => prop_assert!(expected.is_empty() || expected.len() > max),
            (Err(_), None) => {}
            (Ok(decoded), None) => prop_assert!(false, "{raw:?} decoded to {decoded:?}"),
        }
    }

    #[test]
    fn the_key_decoder_never_panics(raw in ".{0,300}", max in 1usize..2048) {
        if let Ok(decoded) = key::decode(&raw, max) {
            prop_assert!(!decoded.is_empty() && decoded.len() <= max);
        }
    }

    #[test]
    fn memcached_keys_are_always_legal(key in proptest::collection::vec(any::<u8>(), 1..400)) {
        let mapped = memcache_key(&key);
        prop_assert!(!mapped.is_empty() && mapped.len() <= 250);
        prop_assert!(mapped.iter().all(|b| (0x21..=0x7e).contains(b)));
    }

    #[test]
    fn the_config_parser_never_panics_on_any_text(text in ".{0,400}") {
        let _ = Config::from_yaml(&text);
    }

    #[test]
    fn the_config_parser_never_panics_on_a_mangled_valid_config(
        cut in 0..VALID.len(),
        insert in "[ -~\n]{0,12}",
    ) {
        let mut text = VALID.to_string();
        let at = (0..=cut).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        text.insert_str(at, &insert);
        let _ = Config::from_yaml(&text);
        let _ = Config::from_yaml(&VALID[..cut]);
    }
}

#[test]
fn the_valid_seed_config_is_valid() {
    Config::from_yaml(VALID).unwrap();
}

/// Inputs that once looked dangerous, kept as seeds with their known answers.
#[test]
fn seed_inputs_get_their_known_answers() {
    let decoded = |raw: &str| {
        key::decode(raw, 1024)
            .map(|k| k.into_owned())
            .map_err(|e| e.to_string())
    };
    for (raw, expected) in [
        ("%2F", Ok(&b"/"[..])),
        ("%252F", Ok(b"%2F")),
        ("%2e%2e", Ok(b"..")),
        ("..%2F..%2F", Ok(b"../../")),
        ("%00", Ok(b"\0")),
        ("%0D%0A", Ok(b"\r\n")),
        ("%ff%fe", Ok(b"\xff\xfe")),
        ("a?b#c", Ok(b"a?b#c")),
        ("caf%C3%A9", Ok("caf\u{e9}".as_bytes())),
        ("%E2%82", Ok(b"\xe2\x82")),
        ("~_-.", Ok(b"~_-.")),
    ] {
        assert_eq!(
            decoded(raw).as_deref(),
            expected
                .map(|e| e as &[u8])
                .map_err(|e: &str| e.to_string())
                .as_deref(),
            "{raw}"
        );
    }
    for (raw, why) in [
        ("", "empty key"),
        ("%", "at byte 0"),
        ("%%", "at byte 0"),
        ("%2", "at byte 0"),
        ("%zz", "at byte 0"),
        ("ab%4", "at byte 2"),
    ] {
        let err = decoded(raw).unwrap_err();
        assert!(err.contains(why), "{raw}: {err}");
    }
    assert!(key::decode("ab", 1)
        .unwrap_err()
        .to_string()
        .contains("limit is 1"));
    for (yaml, why) in [
        ("", "missing field `nodes`"),
        ("nodes:", "missing field `nodes`"),
        ("nodes: []", "at least one node"),
        ("nodes: [{}]", "missing field `id`"),
        ("nodes: [{ id: a }]", "missing field `url`"),
        ("nodes: [{ id: a, url: \"\" }]", "bad URL"),
        (
            "nodes: [{ id: a, url: \"http://[::1]:99999\" }]",
            "bad port",
        ),
        ("nodes: !!binary aGVsbG8=", "invalid type"),
        ("&a [*a]", ""),
        (
            "nodes: [{ id: a, url: \"http://h:1\", weight: 1e309 }]",
            "invalid type: string \"1e309\"",
        ),
        (
            "replicas: -1\nnodes: [{ id: a, url: \"http://h:1\" }]",
            "replicas: invalid type: integer `-1`",
        ),
        (
            "limits: { max_header_bytes: 1 }\nnodes: [{ id: a, url: \"http://h:1\" }]",
            "max_header_bytes at least 8192",
        ),
        (
            "tls: { cert_file: x }\nnodes: [{ id: a, url: \"http://h:1\" }]",
            "cert_file and key_file go together",
        ),
        ("nodes: [{ id: a, url: \"redis://:@h\" }]", ""),
    ] {
        match Config::from_yaml(yaml) {
            Err(e) => assert!(e.to_string().contains(why), "{yaml:?}: {e}"),
            Ok(_) => assert!(why.is_empty(), "{yaml:?} was accepted"),
        }
    }
}

/// Nodes for a zoned ring: ids n0.., weights of a few classes, zones z0-z3 or none.
fn zoned_nodes(at_least: usize) -> impl Strategy<Value = Vec<(String, f64, Option<String>)>> {
    let node = (
        prop_oneof![Just(0.5), Just(1.0), Just(2.0)],
        proptest::option::of(0u8..4),
    );
    proptest::collection::vec(node, at_least..12).prop_map(|nodes| {
        nodes
            .into_iter()
            .enumerate()
            .map(|(i, (weight, zone))| (format!("n{i}"), weight, zone.map(|z| format!("z{z}"))))
            .collect()
    })
}

fn zoned_ring(nodes: &[(String, f64, Option<String>)], placement: Placement) -> Ring {
    Ring::with_placement(
        nodes
            .iter()
            .map(|(id, w, z)| (id.as_str(), *w, z.as_deref())),
        placement,
    )
    .unwrap()
}

/// Any placement function; consistent with few points, so that points of different nodes
/// interleave in every way; hierarchical with tiny groups, so that its tree has many levels.
fn placement() -> impl Strategy<Value = Placement> {
    prop_oneof![
        Just(Placement::Rendezvous),
        Just(Placement::Hierarchical { group_size: 2 }),
        Just(Placement::Hierarchical { group_size: 3 }),
        Just(Placement::Consistent {
            points_per_weight: 4.0
        }),
        Just(Placement::Consistent {
            points_per_weight: 100.0
        }),
    ]
}

/// Whether the groups of a hierarchical ring are the same on both sides, apart from the node
/// that left or joined (always, for the other functions): a change that splits or merges a
/// group reorders that group's keys, by design.
fn same_groups(before: &Ring, after: &Ring, changed: &str) -> bool {
    let groups = |ring: &Ring| {
        let mut by_group = std::collections::BTreeMap::<u32, Vec<&str>>::new();
        for i in 0..ring.len() {
            if let Some(group) = ring.group_of(i).filter(|_| ring.id(i) != changed) {
                by_group.entry(group).or_default().push(ring.id(i));
            }
        }
        let mut sets: Vec<Vec<&str>> = by_group.into_values().collect();
        sets.iter_mut().for_each(|ids| ids.sort());
        sets.sort();
        sets.into_iter()
            .map(|ids| ids.join(","))
            .collect::<Vec<_>>()
    };
    groups(before) == groups(after)
}

/// A key's replicas as ids, by `Ring::top`.
fn replica_ids(ring: &Ring, hash: u64, r: usize) -> Vec<String> {
    ring.top(hash, r)
        .iter()
        .map(|i| ring.id(i).to_owned())
        .collect()
}

/// The zone rule read literally off the full ranking: the best node of each zone not yet used
/// until r or every zone is used, then the best remaining nodes in rank order.
fn zone_rule(ring: &Ring, hash: u64, r: usize) -> Vec<String> {
    let ranking = ring.rank_all(hash);
    let r = r.min(ranking.len());
    let zone = |index: usize| {
        ring.zone(index)
            .map_or(format!("node {}", ring.id(index)), str::to_owned)
    };
    let mut used = std::collections::HashSet::new();
    let mut chosen: Vec<usize> = Vec::new();
    for node in &ranking {
        if chosen.len() < r && used.insert(zone(node.index)) {
            chosen.push(node.index);
        }
    }
    for node in &ranking {
        if chosen.len() < r && !chosen.contains(&node.index) {
            chosen.push(node.index);
        }
    }
    chosen.into_iter().map(|i| ring.id(i).to_owned()).collect()
}

proptest! {
    #[test]
    fn zoned_replicas_follow_the_zone_rule(
        nodes in zoned_nodes(1), r in 1usize..6, seed in any::<u64>(), placement in placement(),
    ) {
        let ring = zoned_ring(&nodes, placement);
        for k in 0..64u64 {
            let hash = hrwproxy::routing::mix(seed, k);
            prop_assert_eq!(replica_ids(&ring, hash, r), zone_rule(&ring, hash, r));
        }
    }

    #[test]
    fn locate_lists_the_replicas_top_gives_then_every_other_node_once(
        nodes in zoned_nodes(1), r in 1usize..6, seed in any::<u64>(), placement in placement(),
    ) {
        // A fresh ring: with consistent placement, locate ranks without the table of points
        // that `top` builds; the two must agree.
        let ring = zoned_ring(&nodes, placement);
        for k in 0..16u64 {
            let hash = hrwproxy::routing::mix(seed, k);
            let listed: Vec<String> = ring
                .replicas_then_ranking(hash, r)
                .iter()
                .map(|n| n.id.to_string())
                .collect();
            let replicas = replica_ids(&ring, hash, r);
            prop_assert_eq!(&listed[..replicas.len()], &replicas[..]);
            let mut each = listed.clone();
            each.sort();
            each.dedup();
            prop_assert_eq!(each.len(), ring.len());
        }
    }

    #[test]
    fn removing_a_node_changes_only_the_sets_that_held_it(
        nodes in zoned_nodes(2), r in 1usize..6, seed in any::<u64>(), gone in any::<prop::sample::Index>(),
        placement in placement(),
    ) {
        let before = zoned_ring(&nodes, placement);
        let mut fewer = nodes.clone();
        let (gone_id, _, _) = fewer.remove(gone.index(nodes.len()));
        let after = zoned_ring(&fewer, placement);
        prop_assume!(same_groups(&before, &after, &gone_id));
        for k in 0..64u64 {
            let hash = hrwproxy::routing::mix(seed, k);
            let old = replica_ids(&before, hash, r);
            if !old.contains(&gone_id) {
                prop_assert_eq!(replica_ids(&after, hash, r), old);
            }
        }
    }

    #[test]
    fn adding_a_node_changes_only_the_sets_it_joins(
        nodes in zoned_nodes(1), r in 1usize..6, seed in any::<u64>(), zone in proptest::option::of(0u8..5),
        placement in placement(),
    ) {
        let before = zoned_ring(&nodes, placement);
        let mut more = nodes.clone();
        more.push(("new".into(), 1.0, zone.map(|z| format!("z{z}"))));
        let after = zoned_ring(&more, placement);
        prop_assume!(same_groups(&before, &after, "new"));
        for k in 0..64u64 {
            let hash = hrwproxy::routing::mix(seed, k);
            let new = replica_ids(&after, hash, r);
            if !new.iter().any(|id| id == "new") {
                prop_assert_eq!(new, replica_ids(&before, hash, r));
            }
        }
    }
}
