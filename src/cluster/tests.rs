//! Members, the ejection cap and the probe driver, on in-memory fake nodes.

use std::sync::Arc;
use std::time::Duration;

use super::testing::TestCluster;
use super::{probes, Member};
use crate::backend::fake::Op;
use crate::backend::BackendError;

fn member(nodes: &TestCluster, id: &str) -> Arc<Member> {
    nodes.snapshot().placement.member(id).unwrap().clone()
}

fn phase(nodes: &TestCluster, id: &str) -> &'static str {
    member(nodes, id).health.phase().name()
}

#[test]
fn the_ejection_cap_holds_when_every_node_fails_at_once() {
    // Eight nodes fail at the same instant; at 50% four may be ejected, never more, however
    // the failures interleave.
    let ids: Vec<String> = (0..8).map(|i| format!("n{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    for round in 0..300 {
        let nodes = Arc::new(TestCluster::new(
            "eject_after: 1\nmax_ejected_percent: 50\nhealth_check_interval_ms: 0",
            &ids,
        ));
        let barrier = Arc::new(std::sync::Barrier::new(ids.len()));
        let threads: Vec<_> = ids
            .iter()
            .map(|id| {
                let (nodes, barrier, m) = (nodes.clone(), barrier.clone(), member(&nodes, id));
                std::thread::spawn(move || {
                    let snap = nodes.snapshot();
                    barrier.wait();
                    nodes
                        .cluster
                        .record_failure(&snap, &m, &BackendError::Refused);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let ejected = ids.iter().filter(|id| phase(&nodes, id) != "up").count();
        assert_eq!(ejected, 4, "round {round}");
    }
}

#[test]
fn members_keep_health_and_clients_by_id_across_unrelated_edits() {
    let base = "replicas: 2\neject_after: 1\nhealth_check_interval_ms: 0";
    let nodes = TestCluster::new(base, &["a", "b", "c"]);
    let before = member(&nodes, "a");
    let snap = nodes.snapshot();
    nodes
        .cluster
        .record_failure(&snap, &before, &BackendError::Refused);
    assert_eq!(phase(&nodes, "a"), "ejected");
    // Timeouts, value limit, key limit, weights of others: the node stays ejected, keeps its
    // client and its in-flight count.
    for edit in [
        "timeouts: { request_ms: 777 }",
        "max_key_bytes: 10",
        "max_value_bytes: 1000",
        "timeouts: { connect_ms: 99 }",
    ] {
        nodes.apply(&format!("{base}\n{edit}"), &["a", "b", "c"]);
        let now = member(&nodes, "a");
        assert_eq!(now.health.phase().name(), "ejected", "after {edit}");
        assert!(Arc::ptr_eq(&now.health, &before.health), "after {edit}");
        assert!(
            Arc::ptr_eq(&now.in_flight, &before.in_flight),
            "after {edit}"
        );
    }
    // Edits unrelated to how to reach a node keep its client (and its pooled connections);
    // a new connect timeout opens a new one, health kept all the same.
    let connects = nodes.connects("a");
    for edit in [
        "timeouts: { connect_ms: 99 }\nmax_key_bytes: 11",
        "timeouts: { request_ms: 5, connect_ms: 99 }",
        "timeouts: { connect_ms: 99 }\nmax_ejected_percent: 40",
    ] {
        nodes.apply(&format!("{base}\n{edit}"), &["a", "b", "c"]);
        assert_eq!(nodes.connects("a"), connects, "after {edit}");
    }
    nodes.apply(
        &format!("{base}\ntimeouts: {{ connect_ms: 98 }}"),
        &["a", "b", "c"],
    );
    assert_eq!(
        nodes.connects("a"),
        connects + 1,
        "a new connect timeout, a new client"
    );
    assert_eq!(phase(&nodes, "a"), "ejected");
    // A node that is new starts up.
    nodes.apply(base, &["a", "b", "c", "d"]);
    assert_eq!(phase(&nodes, "d"), "up");
}

#[tokio::test(start_paused = true)]
async fn the_driver_readmits_only_after_a_passing_probe_and_forgets_removed_nodes() {
    let settings = "eject_after: 1\neject_backoff_ms: 100\neject_backoff_max_ms: 400\nhealth_check_interval_ms: 50\nmax_ejected_percent: 100";
    let nodes = TestCluster::new(settings, &["a", "b"]);
    let driver = tokio::spawn(probes::drive(nodes.cluster.clone()));
    nodes.node("a").go_down();
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(phase(&nodes, "a"), "ejected", "the active check failed");
    assert_eq!(phase(&nodes, "b"), "up");
    // Probes keep failing: it stays out, with a growing backoff (100, 200, 400, 400 ms).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_ne!(phase(&nodes, "a"), "up");
    let probes_so_far = nodes.node("a").calls(Op::Health);
    assert!((3..=6).contains(&probes_so_far), "{probes_so_far} probes");
    nodes.node("a").fail(Op::Health, None);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(phase(&nodes, "a"), "up", "readmitted by a passing probe");
    // A node removed from the config is never probed again.
    nodes.node("a").go_down();
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(phase(&nodes, "a"), "ejected");
    nodes.apply(settings, &["b"]);
    let calls = nodes.node("a").calls(Op::Health);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        nodes.node("a").calls(Op::Health),
        calls,
        "probed after removal"
    );
    assert!(
        nodes.node("b").calls(Op::Health) > 50,
        "the others are still checked"
    );
    driver.abort();
}

#[tokio::test(start_paused = true)]
async fn a_large_membership_is_checked_in_turn() {
    use super::probes::CHECKS_PER_INTERVAL;
    let names: Vec<String> = (0..CHECKS_PER_INTERVAL * 5 / 2)
        .map(|i| format!("n{i}"))
        .collect();
    let ids: Vec<&str> = names.iter().map(String::as_str).collect();
    let nodes = TestCluster::new("health_check_interval_ms: 100", &ids);
    let driver = tokio::spawn(probes::drive(nodes.cluster.clone()));
    let checked = || {
        ids.iter()
            .filter(|id| nodes.node(id).calls(Op::Health) > 0)
            .count()
    };
    // Intervals start at 0, 100 and 200 ms: the first two check 1000 nodes each, the third
    // the last 500; then the turn starts over.
    let most = || ids.iter().map(|id| nodes.node(id).calls(Op::Health)).max();
    for (after_ms, expected, most_checks) in [
        (50, 1000, 1),
        (150, 2000, 1),
        (250, 2500, 1),
        (350, 2500, 2),
    ] {
        tokio::time::sleep(Duration::from_millis(if after_ms == 50 { 50 } else { 100 })).await;
        assert_eq!(
            (checked(), most()),
            (expected, Some(most_checks)),
            "after {after_ms} ms"
        );
    }
    driver.abort();
}

/// Active checks of every node failing together keep to the cap (the race itself, with real
/// threads, is `the_ejection_cap_holds_when_every_node_fails_at_once`).
#[tokio::test(start_paused = true)]
async fn active_checks_of_failing_nodes_keep_to_the_cap() {
    let settings = "eject_after: 1\nhealth_check_interval_ms: 50\nmax_ejected_percent: 50";
    let nodes = TestCluster::new(settings, &["a", "b"]);
    let driver = tokio::spawn(probes::drive(nodes.cluster.clone()));
    nodes.node("a").go_down();
    nodes.node("b").go_down();
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        let ejected = ["a", "b"]
            .iter()
            .filter(|id| phase(&nodes, id) != "up")
            .count();
        assert!(ejected <= 1, "both ejected");
    }
    driver.abort();
}

#[tokio::test(start_paused = true)]
async fn a_closed_window_gives_its_placement_back_without_a_reload() {
    let settings = "handoff_window_s: 60\nhealth_check_interval_ms: 0";
    let nodes = TestCluster::new(settings, &["a", "b", "c"]);
    let earlier = Arc::downgrade(&nodes.snapshot().placement);
    nodes.apply(settings, &["a", "b"]);
    let driver = tokio::spawn(probes::drive(nodes.cluster.clone()));
    tokio::time::sleep(Duration::from_secs(59)).await;
    assert_eq!(nodes.snapshot().windows.len(), 1);
    assert!(earlier.upgrade().is_some(), "still open, still held");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(nodes.snapshot().windows.len(), 0);
    assert_eq!(nodes.snapshot().generation, 2, "the same config serving");
    assert!(
        earlier.upgrade().is_none(),
        "the earlier placement is freed"
    );
    driver.abort();
}

#[test]
fn entries_that_reach_one_node_the_same_way_share_its_client() {
    use super::{Files, Snapshot};
    use crate::backend::Backend;
    use crate::config::Config;
    use crate::metrics::Metrics;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let yaml = "nodes:\n  - { id: a, url: \"http://shared.fake:1\" }\n  - { id: b, url: \"http://shared.fake:1\" }\n  - { id: c, url: \"http://shared.fake:1\", store: plain }\n  - { id: d, url: \"http://other.fake:1\" }\n";
    let opened = AtomicUsize::new(0);
    let connect = |_: &crate::config::NodeSpec, _: &Config, _: &Files| -> Arc<dyn Backend> {
        opened.fetch_add(1, Ordering::Relaxed);
        Arc::new(crate::backend::fake::FakeBackend::default())
    };
    let build = |yaml: &str, previous: Option<&Snapshot>| {
        let config = Config::from_yaml(yaml).unwrap();
        Snapshot::build(
            config,
            &Files::default(),
            1,
            previous,
            &Metrics::default(),
            &connect,
        )
    };
    let snap = build(yaml, None);
    let client = |snap: &Snapshot, id: &str| snap.placement.member(id).unwrap().backend.clone();
    assert!(Arc::ptr_eq(&client(&snap, "a"), &client(&snap, "b")));
    assert!(
        !Arc::ptr_eq(&client(&snap, "a"), &client(&snap, "c")),
        "another store, another client"
    );
    assert_eq!(opened.load(Ordering::Relaxed), 3);
    // A new entry for the same node, after a reload, takes the client the others kept.
    let more = format!("{yaml}  - {{ id: e, url: \"http://shared.fake:1\" }}\n");
    let next = build(&more, Some(&snap));
    assert!(Arc::ptr_eq(&client(&next, "e"), &client(&snap, "a")));
    assert_eq!(opened.load(Ordering::Relaxed), 3);
}
