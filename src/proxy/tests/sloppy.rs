//! Sloppy quorum: stand-ins take the writes and answer the reads of replicas out of service,
//! keep hints on themselves, and hand the writes over when the replicas come back.

use super::*;
use crate::cluster::hinted_handoff::{hand_over, Pass};

const NODES: [&str; 4] = ["a", "b", "c", "d"];

/// The key's stand-ins, best first.
fn stand_ins(snap: &Snapshot, key: &str) -> Vec<String> {
    let placement = &snap.placement;
    placement
        .stand_ins(key.as_bytes(), &placement.replicas(key.as_bytes()))
        .iter()
        .map(|m| m.id().to_owned())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_replica_that_fails_a_write_is_stood_in_for_by_the_next_node_which_keeps_a_hint() {
    let nodes = TestCluster::new(&format!("replicas: 2\nwrite_quorum: 2\n{FAST}"), &NODES);
    let path = data_path(&nodes);
    let snap = nodes.snapshot();
    let (owners, stand_in) = (replicas(&snap, "k"), stand_ins(&snap, "k")[0].clone());
    nodes.node(&owners[1]).go_down();
    let outcome = put(&path, "k", "v").await;
    assert_eq!(outcome.failure(), None, "{}", outcome.message());
    assert_eq!((outcome.acks, outcome.stand_in_acks), (2, 1));
    let version = outcome.version.unwrap();
    let described = crate::proxy::outcome::describe(&outcome.nodes);
    assert!(
        described.contains(&format!("{} refused", owners[1]))
            && described.contains(&format!("{stand_in} acknowledged for {}", owners[1])),
        "{described}"
    );
    let held = nodes.node(&stand_in).held(b"k").unwrap();
    assert_eq!(
        (held.version, held.value.as_deref()),
        (version, Some(&b"v"[..]))
    );
    assert_eq!(
        nodes.node(&stand_in).hints_held(),
        vec![("k".to_owned(), owners[1].clone(), version.0)]
    );
    // Overwritten while the replica is still down: the hint moves up to the newer version.
    let newer = put(&path, "k", "v2").await.version.unwrap();
    assert_eq!(nodes.node(&stand_in).hints_held()[0].2, newer.0);
}

#[tokio::test(start_paused = true)]
async fn an_ejected_replica_is_stood_in_for_at_once_and_strict_mode_has_no_stand_ins() {
    let settings = format!("replicas: 2\nwrite_quorum: 2\neject_after: 1\n{FAST}");
    for strict in [false, true] {
        let settings = format!(
            "{settings}\nquorum: {}",
            if strict { "strict" } else { "sloppy" }
        );
        let nodes = TestCluster::new(&settings, &NODES);
        let path = data_path(&nodes);
        let owners = replicas(&nodes.snapshot(), "k");
        nodes
            .node(&owners[0])
            .fail(Op::Get, Some(BackendError::Refused));
        let _ = get(&path, "k").await;
        nodes.node(&owners[0]).fail(Op::Get, None);
        let outcome = put(&path, "k", "v").await;
        if strict {
            assert_eq!(outcome.failure(), Some(Failure::AckLevelMissed));
            assert_eq!(
                outcome.message(),
                format!(
                    "write quorum not reached: 1 of 2 acks needed: {} ejected, {} acknowledged",
                    owners[0], owners[1]
                )
            );
        } else {
            assert_eq!((outcome.acks, outcome.stand_in_acks), (2, 1));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn with_every_replica_down_a_write_is_answered_by_stand_ins_and_read_back_from_them() {
    // r=2, W=1: R=2.
    let nodes = TestCluster::new(&format!("replicas: 2\nwrite_quorum: 1\n{FAST}"), &NODES);
    let path = data_path(&nodes);
    let snap = nodes.snapshot();
    let owners = replicas(&snap, "k");
    let before = put(&path, "k", "old").await.version.unwrap();
    settle().await;
    for owner in &owners {
        nodes.node(owner).go_down();
    }
    let outcome = put(&path, "k", "new").await;
    assert!(outcome.failure().is_none(), "{}", outcome.message());
    assert!(outcome.version.unwrap() > before);
    settle().await;
    let (value, node, _) = found(get(&path, "k").await);
    assert_eq!(value, "new");
    assert!(stand_ins(&snap, "k").contains(&node));
    // A key no one wrote: the two stand-ins' answers make R.
    assert!(missing(&get(&path, "never").await));
    // Every node down: the failure names each node, in rank order, and what it did.
    for id in NODES {
        nodes.node(id).go_down();
    }
    let ReadOutcome::Failed(failed) = get(&path, "k").await else {
        panic!("read with every node down")
    };
    let ranked: Vec<&str> = failed.nodes.iter().map(|a| a.node.as_str()).collect();
    let expected: Vec<String> = owners
        .iter()
        .chain(&stand_ins(&snap, "k"))
        .cloned()
        .collect();
    assert_eq!(ranked, expected);
    assert!(
        failed
            .message()
            .starts_with("read quorum not reached: 0 of 2 answers: "),
        "{}",
        failed.message()
    );
}

#[tokio::test(start_paused = true)]
async fn a_read_repairs_replicas_but_never_writes_to_a_stand_in() {
    let settings = format!("replicas: 2\nwrite_quorum: 1\nrepair_budget_percent: 100\n{FAST}");
    let nodes = TestCluster::new(&settings, &NODES);
    let path = data_path(&nodes);
    let snap = nodes.snapshot();
    let (owners, stand_in) = (replicas(&snap, "k"), stand_ins(&snap, "k"));
    nodes.node(&owners[0]).go_down();
    nodes.node(&owners[1]).insert(b"k", 5, Some(b"v"));
    let (value, _, _) = found(get(&path, "k").await);
    assert_eq!(value, "v");
    settle().await;
    for id in &stand_in {
        assert_eq!(nodes.node(id).calls(Op::Put), 0, "{id} was written to");
    }
}

#[tokio::test(start_paused = true)]
async fn hints_on_stand_ins_are_handed_to_the_replica_once_it_is_back_and_the_copy_let_go() {
    let nodes = TestCluster::new(&format!("replicas: 2\nwrite_quorum: 2\n{FAST}"), &NODES);
    let path = data_path(&nodes);
    let snap = nodes.snapshot();
    let (owners, stand_in) = (replicas(&snap, "k"), stand_ins(&snap, "k")[0].clone());
    let down = nodes.node(&owners[1]);
    down.go_down();
    let version = put(&path, "k", "v").await.version.unwrap();
    let owner = snap.placement.member(&owners[1]).unwrap().clone();
    // Still down: the hint stays, counted for the replica (whose own hints cannot be
    // listed).
    let pass = hand_over(&nodes.cluster, &snap, None).await;
    assert_eq!(
        pass,
        Pass {
            found: 1,
            handed_off: 0,
            left: 1,
            unlisted: 1
        }
    );
    assert_eq!(owner.hints.counts().on_nodes.count, 1);
    // Back (and never ejected): the pass hands the write over and the stand-in lets go.
    for op in [Op::Get, Op::Put, Op::Remove, Op::List, Op::Health] {
        down.fail(op, None);
    }
    let pass = hand_over(&nodes.cluster, &snap, None).await;
    assert_eq!((pass.found, pass.handed_off, pass.left), (1, 1, 0));
    assert_eq!(down.held(b"k").unwrap().version, version);
    assert!(nodes.node(&stand_in).hints_held().is_empty());
    assert_eq!(
        nodes.node(&stand_in).held(b"k"),
        None,
        "the stand-in let go of its copy"
    );
    let counts = owner.hints.counts();
    assert_eq!((counts.on_nodes.count, counts.handed_off), (0, 1));
    assert_eq!(nodes.cluster.metrics.hints_handed_off.get(), 1);
    // Nothing is left: a second pass finds nothing.
    assert_eq!(
        hand_over(&nodes.cluster, &snap, None).await,
        Pass::default()
    );
}

#[tokio::test(start_paused = true)]
async fn the_hints_of_a_replica_removed_from_the_config_go_to_the_keys_replicas_now() {
    let settings = format!("replicas: 2\nwrite_quorum: 2\n{FAST}");
    let nodes = TestCluster::new(&settings, &NODES);
    let path = data_path(&nodes);
    let snap = nodes.snapshot();
    let (owners, stand_in) = (replicas(&snap, "k"), stand_ins(&snap, "k")[0].clone());
    nodes.node(&owners[1]).go_down();
    let version = put(&path, "k", "v").await.version.unwrap();
    let remaining: Vec<&str> = NODES.into_iter().filter(|id| *id != owners[1]).collect();
    let after = nodes.apply(&settings, &remaining);
    let pass = hand_over(&nodes.cluster, &after, None).await;
    assert_eq!((pass.handed_off, pass.left), (1, 0));
    for replica in replicas(&after, "k") {
        assert_eq!(
            nodes.node(&replica).held(b"k").unwrap().version,
            version,
            "{replica}"
        );
    }
    assert!(nodes.node(&stand_in).hints_held().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_slow_replica_is_hedged_to_replicas_only_never_to_a_stand_in() {
    // r=1: no second replica to hedge to, and a stand-in would answer "absent".
    let settings = format!("replicas: 1\nhedge_after_ms: 5\nhedge_budget_percent: 100\n{FAST}");
    let nodes = TestCluster::new(&settings, &NODES);
    let path = data_path(&nodes);
    let snap = nodes.snapshot();
    let owner = replicas(&snap, "k")[0].clone();
    nodes.node(&owner).insert(b"k", 5, Some(b"v"));
    nodes.node(&owner).delay(Op::Get, Duration::from_millis(50));
    let (value, node, _) = found(get(&path, "k").await);
    assert_eq!((value.as_str(), node), ("v", owner));
    for id in stand_ins(&snap, "k") {
        assert_eq!(nodes.node(&id).calls(Op::Get), 0, "{id} was asked");
    }
}

#[tokio::test(start_paused = true)]
async fn a_large_membership_is_listed_in_turn_and_its_hints_counted_once_the_round_ends() {
    use crate::cluster::hinted_handoff::HOLDERS_PER_PASS;
    let names: Vec<String> = (0..HOLDERS_PER_PASS * 5 / 2)
        .map(|i| format!("n{i}"))
        .collect();
    let ids: Vec<&str> = names.iter().map(String::as_str).collect();
    let nodes = TestCluster::new(&format!("replicas: 2\nwrite_quorum: 2\n{FAST}"), &ids);
    let path = data_path(&nodes);
    let snap = nodes.snapshot();
    let (owners, stand_in) = (replicas(&snap, "k"), stand_ins(&snap, "k")[0].clone());
    nodes.node(&owners[1]).go_down();
    put(&path, "k", "v").await.version.unwrap();
    let owner = snap.placement.member(&owners[1]).unwrap().clone();
    let at = |id: &str| {
        snap.placement
            .members
            .iter()
            .position(|m| m.id() == id)
            .unwrap()
    };
    // Three passes make a round: the hint is found by the one that lists its holder, the
    // replica's listing fails in the one that lists it, and the count is known at the end.
    for pass_no in 0..3 {
        let pass = hand_over(&nodes.cluster, &snap, None).await;
        assert_eq!(
            pass.found,
            u64::from(at(&stand_in) / HOLDERS_PER_PASS == pass_no)
        );
        assert_eq!(
            pass.unlisted,
            u64::from(at(&owners[1]) / HOLDERS_PER_PASS == pass_no)
        );
        let counted = owner.hints.counts().on_nodes.count;
        assert_eq!(counted, u64::from(pass_no == 2), "after pass {pass_no}");
    }
    let calls: usize = ids.iter().map(|id| nodes.node(id).calls(Op::List)).sum();
    assert_eq!(calls, ids.len(), "each node was listed once in the round");
}
