//! Hints: writes a node missed, replayed before it serves again or while it serves.

use super::*;

#[tokio::test(start_paused = true)]
async fn a_node_that_comes_back_gets_the_writes_it_missed_before_it_serves() {
    let settings = format!("replicas: 2\nwrite_quorum: 1\neject_after: 1\neject_backoff_ms: 100\neject_backoff_max_ms: 100\nmax_ejected_percent: 50\n{FAST}");
    let nodes = TestCluster::new(&settings, &["a", "b"]);
    let path = data_path(&nodes);
    let driver = tokio::spawn(crate::cluster::probes::drive(nodes.cluster.clone()));
    let a = nodes.node("a");
    let member = nodes.snapshot().placement.member("a").unwrap().clone();
    a.go_down();
    // Missed while down (the first write's failure ejects it; the others reach it not at all).
    for i in 0..5 {
        assert!(put(&path, &format!("k{i}"), "v").await.failure().is_none());
    }
    assert_eq!(member.health.phase().name(), "ejected");
    assert_eq!(member.hints.counts().queued, 5);
    // Back, and slow to take writes: it passes its probe, then serves only once every missed
    // write is replayed.
    for op in [Op::Get, Op::Put, Op::Health] {
        a.fail(op, None);
    }
    a.delay(Op::Put, Duration::from_millis(80));
    let mut replaying = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (phase, queued) = (member.health.phase().name(), member.hints.counts().queued);
        assert!(
            phase != "up" || queued == 0,
            "up with {queued} writes missing"
        );
        replaying |= phase == "probing" && queued > 0 && queued < 5;
    }
    assert!(replaying, "never seen replaying");
    assert_eq!(member.health.phase().name(), "up");
    assert_eq!(member.hints.counts().queued, 0);
    for i in 0..5 {
        assert_eq!(
            a.value(format!("k{i}").as_bytes()),
            Some(Bytes::from_static(b"v")),
            "k{i}"
        );
    }
    assert_eq!(nodes.cluster.metrics.hints_replayed.get(), 5);
    driver.abort();
}

#[tokio::test(start_paused = true)]
async fn a_node_in_service_gets_missed_writes_replayed_but_never_what_it_refused() {
    // Never ejected: the replay is the in-service one.
    let settings = format!("replicas: 2\nwrite_quorum: 1\neject_after: 0\n{FAST}");
    let nodes = TestCluster::new(&settings, &["a", "b"]);
    let path = data_path(&nodes);
    let driver = tokio::spawn(crate::cluster::probes::drive(nodes.cluster.clone()));
    let a = nodes.node("a");
    let member = nodes.snapshot().placement.member("a").unwrap().clone();
    // One slow attempt (past request_ms) misses the write.
    a.delay(Op::Put, Duration::from_millis(150));
    assert!(put(&path, "slow", "v").await.failure().is_none());
    tokio::time::sleep(Duration::from_millis(110)).await;
    assert_eq!(member.health.phase().name(), "up");
    assert_eq!(member.hints.counts().queued, 1);
    // Still slow: each replay fails, and the next waits a while.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let tried = a.calls(Op::Put);
    assert!(tried <= 5, "{tried} attempts in 3 s");
    a.delay(Op::Put, Duration::ZERO);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(a.value(b"slow"), Some(Bytes::from_static(b"v")));
    assert_eq!(member.hints.counts().queued, 0);
    // A write the node refuses (too large for it) would be refused again: no hint.
    a.fail(
        Op::Put,
        Some(BackendError::Rejected("object too large".into())),
    );
    assert!(put(&path, "large", "v").await.failure().is_none());
    settle().await;
    assert_eq!(member.hints.counts().queued, 0);
    driver.abort();
}
