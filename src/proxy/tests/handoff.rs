//! Handoff: reads during a window after a placement change, copies forward, chained windows, deletes in a window.

use super::*;

/// Settings where a key's single replica changes when a node joins.
const HANDOFF: &str = "replicas: 1\nhandoff_window_s: 60\ntimeouts: { request_ms: 100, deadline_ms: 1000 }\nhealth_check_interval_ms: 0";

#[tokio::test(start_paused = true)]
async fn after_a_node_joins_a_read_finds_the_key_on_its_earlier_replica_and_copies_it_forward() {
    let nodes = TestCluster::new(HANDOFF, &["a", "b"]);
    let path = data_path(&nodes);
    let before = nodes.snapshot();
    let after_ids = ["a", "b", "c"];
    let probe = TestCluster::new(HANDOFF, &after_ids).snapshot();
    let key = key_where(&probe, |r| r[0] == "c");
    let earlier = replicas(&before, &key)[0].clone();
    let version = put(&path, &key, "v1").await.version.unwrap();
    nodes.apply(HANDOFF, &after_ids);
    let (value, node, handoff) = found(get(&path, &key).await);
    assert_eq!(
        (value.as_str(), node.as_str(), handoff),
        ("v1", earlier.as_str(), Some(1))
    );
    settle().await;
    let copied = nodes.node("c").held(key.as_bytes()).unwrap();
    assert_eq!(copied.version, version, "copied forward with its version");
    let metrics = &nodes.cluster.metrics;
    assert_eq!(
        (metrics.handoff_hits.get(), metrics.handoff_copies.get()),
        (1, 1)
    );
    let (_, node, handoff) = found(get(&path, &key).await);
    assert_eq!(
        (node.as_str(), handoff),
        ("c", None),
        "now served by its replica"
    );
    // A key that was never written is still a miss.
    assert!(missing(&get(&path, "never-written").await));
}

#[tokio::test(start_paused = true)]
async fn in_a_window_the_newest_wins_wherever_it_is() {
    let nodes = TestCluster::new(HANDOFF, &["a", "b"]);
    let path = data_path(&nodes);
    let after = TestCluster::new(HANDOFF, &["a", "b", "c"]).snapshot();
    let keys: Vec<String> = (0..100_000)
        .map(|i| format!("k-{i}"))
        .filter(|k| replicas(&after, k)[0] == "c")
        .take(3)
        .collect();
    for key in &keys {
        assert!(put(&path, key, "old").await.failure().is_none());
    }
    let earlier: Vec<String> = keys
        .iter()
        .map(|k| replicas(&nodes.snapshot(), k)[0].clone())
        .collect();
    nodes.apply(HANDOFF, &["a", "b", "c"]);
    // Overwritten after the change: the earlier copy is older and loses.
    assert!(put(&path, &keys[0], "new").await.failure().is_none());
    assert_eq!(
        nodes.node(&earlier[0]).value(keys[0].as_bytes()),
        Some(Bytes::from_static(b"old"))
    );
    assert_eq!(found(get(&path, &keys[0]).await).0, "new");
    // Deleted after the change: the tombstone beats the earlier copy.
    assert!(delete(&path, &keys[1]).await.failure().is_none());
    assert!(missing(&get(&path, &keys[1]).await));
    // Written after the change through a proxy that had not reloaded yet (to the earlier
    // replica, newer than what the current one holds): the newer one wins.
    nodes
        .node("c")
        .insert(keys[2].as_bytes(), 1, Some(b"copied"));
    nodes
        .node(&earlier[2])
        .insert(keys[2].as_bytes(), u128::MAX, Some(b"newest"));
    let (value, _, handoff) = found(get(&path, &keys[2]).await);
    assert_eq!((value.as_str(), handoff), ("newest", Some(1)));
    settle().await;
    assert_eq!(
        nodes.node("c").value(keys[2].as_bytes()),
        Some(Bytes::from_static(b"newest"))
    );
}

#[tokio::test(start_paused = true)]
async fn chained_windows_are_all_consulted_and_close_on_time() {
    let nodes = TestCluster::new(HANDOFF, &["a", "b"]);
    let path = data_path(&nodes);
    let g2 = TestCluster::new(HANDOFF, &["a", "b", "c"]).snapshot();
    let g3 = TestCluster::new(HANDOFF, &["a", "b", "c", "d"]).snapshot();
    // Keys that moved twice: to c, then to d.
    let moved_twice = |r: &[String], k: &str| r[0] == "d" && replicas(&g2, k) == ["c"];
    let keys: Vec<String> = (0..100_000)
        .map(|i| format!("k-{i}"))
        .filter(|k| moved_twice(&replicas(&g3, k), k))
        .take(2)
        .collect();
    let first: Vec<String> = keys
        .iter()
        .map(|k| replicas(&nodes.snapshot(), k)[0].clone())
        .collect();
    for key in &keys {
        assert!(put(&path, key, "old").await.failure().is_none());
    }
    nodes.apply(HANDOFF, &["a", "b", "c"]);
    tokio::time::sleep(Duration::from_secs(30)).await;
    nodes.apply(HANDOFF, &["a", "b", "c", "d"]);
    let c_gets = nodes.node("c").calls(Op::Get);
    let (value, node, handoff) = found(get(&path, &keys[0]).await);
    assert_eq!(
        (value.as_str(), node, handoff),
        ("old", first[0].clone(), Some(1))
    );
    assert_eq!(
        nodes.node("c").calls(Op::Get),
        c_gets + 1,
        "the newer window was asked too"
    );
    // The first window closes 60 s after its change; the second is still open.
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(nodes.snapshot().open_windows().count(), 1);
    let gets = nodes.node(&first[1]).calls(Op::Get);
    assert!(missing(&get(&path, &keys[1]).await));
    assert_eq!(
        nodes.node(&first[1]).calls(Op::Get),
        gets,
        "a closed window is not asked"
    );
}

#[tokio::test(start_paused = true)]
async fn a_copy_forward_racing_a_delete_never_brings_the_value_back() {
    let nodes = TestCluster::new(HANDOFF, &["a", "b"]);
    let path = data_path(&nodes);
    let after = TestCluster::new(HANDOFF, &["a", "b", "c"]).snapshot();
    let key = key_where(&after, |r| r[0] == "c");
    assert!(put(&path, &key, "old").await.failure().is_none());
    nodes.apply(HANDOFF, &["a", "b", "c"]);
    let c = nodes.node("c");
    c.hold(Op::Put);
    let (value, _, handoff) = found(get(&path, &key).await);
    assert_eq!((value.as_str(), handoff), ("old", Some(1)));
    settle().await;
    assert_eq!(c.calls(Op::Put), 1, "the copy is in flight");
    let deleting = tokio::spawn({
        let (path, key) = (path.clone(), key.clone());
        async move { delete(&path, &key).await }
    });
    settle().await;
    // Whichever lands first, the tombstone is newer.
    c.release(Op::Put, 2);
    assert!(deleting.await.unwrap().failure().is_none());
    settle().await;
    assert!(c.held(key.as_bytes()).unwrap().is_tombstone());
    assert!(missing(&get(&path, &key).await));
}

#[tokio::test(start_paused = true)]
async fn without_versions_a_delete_in_a_window_also_removes_the_earlier_replicas_copy() {
    let settings = format!("versioning: off\n{HANDOFF}");
    let nodes = TestCluster::new(&settings, &["a", "b"]);
    let path = data_path(&nodes);
    let probe = TestCluster::new(&settings, &["a", "b", "c"]).snapshot();
    let key = key_where(&probe, |r| r[0] == "c");
    put(&path, &key, "v1").await;
    let earlier = replicas(&nodes.snapshot(), &key)[0].clone();
    nodes.apply(&settings, &["a", "b", "c"]);
    assert!(delete(&path, &key).await.failure().is_none());
    assert_eq!(nodes.node(&earlier).held(key.as_bytes()), None);
    assert!(
        missing(&get(&path, &key).await),
        "not brought back from {earlier}"
    );
}
