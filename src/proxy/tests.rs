//! The data path on in-memory fake nodes with tokio's paused clock: exact, fast, no sockets.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::outcome::{Failure, ReadOutcome, WriteOutcome};
use super::read::read;
use super::write::{write, WriteOp};
use super::DataPath;
use crate::backend::fake::Op;
use crate::backend::BackendError;
use crate::cluster::testing::TestCluster;
use crate::cluster::Snapshot;

fn data_path(nodes: &TestCluster) -> Arc<DataPath> {
    Arc::new(DataPath {
        cluster: nodes.cluster.clone(),
        recent: Arc::default(),
        hedge_budget: Default::default(),
    })
}

async fn get(path: &Arc<DataPath>, key: &str) -> ReadOutcome {
    let snap = path.cluster.snapshot();
    let deadline = Instant::now() + snap.config.timeouts.deadline();
    read(
        path,
        &snap,
        &Bytes::copy_from_slice(key.as_bytes()),
        deadline,
    )
    .await
}

async fn write_with(
    path: &Arc<DataPath>,
    key: &str,
    op: WriteOp,
    required: Option<usize>,
) -> WriteOutcome {
    let snap = path.cluster.snapshot();
    let deadline = Instant::now() + snap.config.timeouts.deadline();
    let required = required.unwrap_or(snap.config.write_quorum);
    let key = Bytes::copy_from_slice(key.as_bytes());
    write(path, &snap, key, op, required, deadline).await
}

async fn put(path: &Arc<DataPath>, key: &str, value: &str) -> WriteOutcome {
    let value = Bytes::copy_from_slice(value.as_bytes());
    write_with(path, key, WriteOp::Put(value, None), None).await
}

async fn delete(path: &Arc<DataPath>, key: &str) -> WriteOutcome {
    write_with(path, key, WriteOp::Delete, None).await
}

/// The value, the node that gave it and the handoff generation of a found read.
fn found(outcome: ReadOutcome) -> (String, String, Option<u64>) {
    match outcome {
        ReadOutcome::Found {
            value,
            node,
            handoff_from,
        } => (
            String::from_utf8_lossy(&value).into_owned(),
            node.id().to_owned(),
            handoff_from,
        ),
        other => panic!("expected a value, got {other:?}"),
    }
}

fn failure(outcome: ReadOutcome) -> Failure {
    match outcome {
        ReadOutcome::Failed { why, .. } => why,
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// The replica ids of `key`, best first.
fn replicas(snap: &Snapshot, key: &str) -> Vec<String> {
    snap.placement
        .replicas(key.as_bytes())
        .iter()
        .map(|m| m.id().to_owned())
        .collect()
}

/// The first key `k-N` whose replicas satisfy `wanted`.
fn key_where(snap: &Snapshot, wanted: impl Fn(&[String]) -> bool) -> String {
    (0..100_000)
        .map(|i| format!("k-{i}"))
        .find(|k| wanted(&replicas(snap, k)))
        .expect("some key")
}

/// Lets background tasks (copies, late replicas) run to completion.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(10)).await;
}

const FAST: &str =
    "timeouts: { connect_ms: 10, request_ms: 100, deadline_ms: 1000 }\nhealth_check_interval_ms: 0";

#[tokio::test(start_paused = true)]
async fn a_write_lands_on_exactly_the_top_r_and_answers_at_its_ack_level() {
    let nodes = TestCluster::new(&format!("replicas: 3\n{FAST}"), &["a", "b", "c", "d"]);
    let path = data_path(&nodes);
    let snap = nodes.snapshot();
    let key = "greeting";
    let owners = replicas(&snap, key);
    // The third replica is slow: the answer does not wait for it.
    nodes
        .node(&owners[2])
        .delay(Op::Put, Duration::from_millis(50));
    let started = Instant::now();
    let outcome = put(&path, key, "hello").await;
    assert_eq!(
        (outcome.acks, outcome.replicas, outcome.required),
        (2, 3, 2)
    );
    assert!(outcome.failure().is_none());
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "waited for the slow replica"
    );
    settle().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    for id in ["a", "b", "c", "d"] {
        let expected = owners
            .contains(&id.to_owned())
            .then(|| Bytes::from_static(b"hello"));
        assert_eq!(nodes.node(id).value(b"greeting"), expected, "{id}");
    }
    let (value, node, handoff) = found(get(&path, key).await);
    assert_eq!(
        (value.as_str(), node, handoff),
        ("hello", owners[0].clone(), None)
    );
}

#[tokio::test(start_paused = true)]
async fn a_write_short_of_its_ack_level_waits_for_every_replica_and_names_the_failed() {
    let nodes = TestCluster::new(
        &format!("replicas: 2\nwrite_quorum: 2\n{FAST}"),
        &["a", "b", "c"],
    );
    let path = data_path(&nodes);
    let owners = replicas(&nodes.snapshot(), "k");
    nodes.node(&owners[1]).go_down();
    nodes
        .node(&owners[0])
        .delay(Op::Put, Duration::from_millis(30));
    let outcome = put(&path, "k", "v").await;
    assert_eq!(outcome.failure(), Some(Failure::AckLevelMissed));
    assert_eq!(
        outcome.acks, 1,
        "the slow replica that stored it is counted"
    );
    assert_eq!(outcome.failures.len(), 1);
    assert_eq!(outcome.failures[0].node, owners[1]);
    // With ack level one, the live replica is enough.
    let outcome = write_with(&path, "k", WriteOp::Delete, Some(1)).await;
    assert!(outcome.failure().is_none());
    assert_eq!(outcome.acks, 1);
}

#[tokio::test(start_paused = true)]
async fn a_write_past_its_deadline_says_the_outcome_is_unknown() {
    let nodes = TestCluster::new(
        "replicas: 2\nwrite_quorum: 2\ntimeouts: { request_ms: 5000, deadline_ms: 200 }\nhealth_check_interval_ms: 0",
        &["a", "b"],
    );
    let path = data_path(&nodes);
    nodes.node("a").delay(Op::Put, Duration::from_secs(1));
    let started = Instant::now();
    let outcome = put(&path, "k", "v").await;
    assert_eq!(outcome.failure(), Some(Failure::Deadline));
    assert_eq!(started.elapsed(), Duration::from_millis(200));
    // The slow replica still gets the write.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(nodes.node("a").value(b"k"), Some(Bytes::from_static(b"v")));
}

#[tokio::test(start_paused = true)]
async fn an_ejected_replica_counts_as_failed_at_once_but_still_gets_the_write() {
    let nodes = TestCluster::new(
        &format!("replicas: 2\nwrite_quorum: 1\neject_after: 1\n{FAST}"),
        &["a", "b"],
    );
    let path = data_path(&nodes);
    nodes.node("a").fail(Op::Get, Some(BackendError::Refused));
    let _ = get(&path, "x").await;
    assert_eq!(
        nodes
            .snapshot()
            .placement
            .member("a")
            .unwrap()
            .health
            .phase()
            .name(),
        "ejected"
    );
    nodes.node("a").fail(Op::Get, None);
    let outcome = put(&path, "k", "v").await;
    assert_eq!((outcome.acks, outcome.failures.len()), (1, 1));
    assert_eq!(outcome.failures[0].result, Err(BackendError::Ejected));
    settle().await;
    assert_eq!(
        nodes.node("a").calls(Op::Put),
        1,
        "sent anyway, best effort"
    );
    assert_eq!(nodes.node("a").value(b"k"), Some(Bytes::from_static(b"v")));
}

#[tokio::test(start_paused = true)]
async fn reads_fall_back_down_the_ranking_and_a_miss_is_final_once_no_quorum_can_be_elsewhere() {
    let nodes = TestCluster::new(
        &format!("replicas: 3\nwrite_quorum: 2\n{FAST}"),
        &["a", "b", "c", "d"],
    );
    let path = data_path(&nodes);
    let owners = replicas(&nodes.snapshot(), "k");
    nodes.node(&owners[1]).insert(b"k", b"v");
    nodes.node(&owners[0]).go_down();
    let (value, node, _) = found(get(&path, "k").await);
    assert_eq!((value.as_str(), node.as_str()), ("v", owners[1].as_str()));
    let fallbacks = nodes
        .cluster
        .metrics
        .read_fallbacks
        .get_or_create(&crate::metrics::RankLabel { rank: 2 })
        .get();
    assert_eq!(fallbacks, 1);
    // r=3, W=2: two misses are final, the third replica is not asked.
    nodes.node(&owners[0]).fail(Op::Get, None);
    let absent = replicas(&nodes.snapshot(), "absent");
    let third = nodes.node(&absent[2]).calls(Op::Get);
    assert!(matches!(get(&path, "absent").await, ReadOutcome::Missing));
    assert_eq!(nodes.node(&absent[2]).calls(Op::Get), third);
    // W=1: a value may be on any one replica, so every replica is asked before a miss.
    let nodes = TestCluster::new(
        &format!("replicas: 3\nwrite_quorum: 1\n{FAST}"),
        &["a", "b", "c"],
    );
    let path = data_path(&nodes);
    let owners = replicas(&nodes.snapshot(), "k");
    nodes.node(&owners[2]).insert(b"k", b"only here");
    let (value, node, _) = found(get(&path, "k").await);
    assert_eq!(
        (value.as_str(), node.as_str()),
        ("only here", owners[2].as_str())
    );
}

#[tokio::test(start_paused = true)]
async fn failed_reads_are_classified_ejected_timed_out_or_unanswered() {
    let settings =
        format!("replicas: 2\nwrite_quorum: 1\neject_after: 1\nmax_ejected_percent: 100\n{FAST}");
    let nodes = TestCluster::new(&settings, &["a", "b"]);
    let path = data_path(&nodes);
    // Every replica times out (request_ms 100).
    nodes.node("a").delay(Op::Get, Duration::from_secs(1));
    nodes.node("b").delay(Op::Get, Duration::from_secs(1));
    assert_eq!(failure(get(&path, "k").await), Failure::AllTimedOut);
    // Both are now ejected.
    assert_eq!(failure(get(&path, "k").await), Failure::AllEjected);
    let nodes = TestCluster::new(
        &format!("replicas: 2\nwrite_quorum: 1\neject_after: 0\n{FAST}"),
        &["a", "b"],
    );
    let path = data_path(&nodes);
    nodes
        .node("a")
        .fail(Op::Get, Some(BackendError::Protocol("garbage".into())));
    nodes.node("b").fail(Op::Get, Some(BackendError::Refused));
    assert_eq!(failure(get(&path, "k").await), Failure::Unanswered);
    // A deadline shorter than the attempts: 504 for the deadline.
    let nodes = TestCluster::new(
        "replicas: 2\nwrite_quorum: 1\ntimeouts: { request_ms: 1000, deadline_ms: 150 }\nhealth_check_interval_ms: 0",
        &["a", "b"],
    );
    let path = data_path(&nodes);
    nodes.node("a").delay(Op::Get, Duration::from_secs(1));
    nodes.node("b").delay(Op::Get, Duration::from_secs(1));
    let started = Instant::now();
    assert_eq!(failure(get(&path, "k").await), Failure::Deadline);
    assert_eq!(started.elapsed(), Duration::from_millis(150));
}

#[tokio::test(start_paused = true)]
async fn a_slow_primary_is_hedged_and_ejected_after_losing_hedges() {
    let settings = "replicas: 2\nwrite_quorum: 1\ntimeouts: { request_ms: 60000, deadline_ms: 60000 }\nhealth_check_interval_ms: 0\nhedge_after_ms: 20\nhedge_budget_percent: 100\neject_after: 3";
    let nodes = TestCluster::new(settings, &["a", "b"]);
    let path = data_path(&nodes);
    let owners = replicas(&nodes.snapshot(), "k");
    for id in &owners {
        nodes.node(id).insert(b"k", b"v");
    }
    nodes
        .node(&owners[0])
        .delay(Op::Get, Duration::from_secs(10));
    for lost in 1..=3 {
        let started = Instant::now();
        let (_, node, _) = found(get(&path, "k").await);
        assert_eq!(node, owners[1], "hedge {lost}");
        assert_eq!(started.elapsed(), Duration::from_millis(20));
    }
    let metrics = &nodes.cluster.metrics;
    assert_eq!(
        (metrics.hedges_sent.get(), metrics.hedges_won.get()),
        (3, 3)
    );
    let primary = nodes
        .snapshot()
        .placement
        .member(&owners[0])
        .unwrap()
        .clone();
    assert_eq!(
        primary.health.phase().name(),
        "ejected",
        "three lost hedges in a row"
    );
    // Ejected: it is not asked, and no hedge is needed.
    let started = Instant::now();
    let (_, node, _) = found(get(&path, "k").await);
    assert_eq!(
        (node.as_str(), started.elapsed()),
        (owners[1].as_str(), Duration::ZERO)
    );
}

/// A cluster whose key `key` moves, at the next config, from `from` to a replica set that no
/// longer holds it (r=1: a node joins).
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
    assert!(put(&path, &key, "v1").await.failure().is_none());
    nodes.apply(HANDOFF, &after_ids);
    let (value, node, handoff) = found(get(&path, &key).await);
    assert_eq!(
        (value.as_str(), node.as_str(), handoff),
        ("v1", earlier.as_str(), Some(1))
    );
    settle().await;
    assert_eq!(
        nodes.node("c").value(key.as_bytes()),
        Some(Bytes::from_static(b"v1")),
        "copied forward"
    );
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
    // A key that was never written is still a miss, after asking the earlier replica once.
    assert!(matches!(
        get(&path, "never-written").await,
        ReadOutcome::Missing
    ));
}

#[tokio::test(start_paused = true)]
async fn chained_windows_are_all_consulted_newest_first_and_close_on_time() {
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
        "the newer window was asked first"
    );
    // The first window closes 60 s after its change; the second is still open.
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(nodes.snapshot().open_windows().count(), 1);
    let gets = nodes.node(&first[1]).calls(Op::Get);
    assert!(matches!(get(&path, &keys[1]).await, ReadOutcome::Missing));
    assert_eq!(
        nodes.node(&first[1]).calls(Op::Get),
        gets,
        "a closed window is not asked"
    );
}

#[tokio::test(start_paused = true)]
async fn writes_in_a_window_remove_the_earlier_copies_and_a_failed_removal_never_resurfaces() {
    let nodes = TestCluster::new(HANDOFF, &["a", "b"]);
    let path = data_path(&nodes);
    let after = TestCluster::new(HANDOFF, &["a", "b", "c"]).snapshot();
    let keys: Vec<String> = (0..100_000)
        .map(|i| format!("k-{i}"))
        .filter(|k| replicas(&after, k)[0] == "c")
        .take(2)
        .collect();
    for key in &keys {
        assert!(put(&path, key, "old").await.failure().is_none());
    }
    let earlier: Vec<String> = keys
        .iter()
        .map(|k| replicas(&nodes.snapshot(), k)[0].clone())
        .collect();
    nodes.apply(HANDOFF, &["a", "b", "c"]);
    // A PUT removes the earlier copy before it answers.
    assert!(put(&path, &keys[0], "new").await.failure().is_none());
    assert_eq!(nodes.node(&earlier[0]).value(keys[0].as_bytes()), None);
    assert_eq!(
        nodes.node("c").value(keys[0].as_bytes()),
        Some(Bytes::from_static(b"new"))
    );
    // A DELETE whose removal from the earlier replica fails: that replica still holds the
    // old value, and the read must not bring it back.
    nodes
        .node(&earlier[1])
        .fail(Op::Delete, Some(BackendError::Refused));
    assert!(delete(&path, &keys[1]).await.failure().is_none());
    assert_eq!(
        nodes.node(&earlier[1]).value(keys[1].as_bytes()),
        Some(Bytes::from_static(b"old"))
    );
    assert!(matches!(get(&path, &keys[1]).await, ReadOutcome::Missing));
}

#[tokio::test(start_paused = true)]
async fn a_delete_in_a_window_is_never_undone_by_a_replica_whose_delete_failed() {
    // r=2, W=1. A window is open (e joined) when the key is deleted; one of its replicas
    // fails the delete and keeps the old value. A later change moves the key elsewhere:
    // reads in that window must not bring the old value back from the window's replicas.
    let base = "replicas: 2\nwrite_quorum: 1\nhandoff_window_s: 600\ntimeouts: { request_ms: 100, deadline_ms: 1000 }\nhealth_check_interval_ms: 0";
    let g1 = ["a", "b", "c", "d"];
    let g2 = ["a", "b", "c", "d", "e"];
    let g3 = ["a", "b", "c", "d", "e", "f", "g"];
    let snaps = [&g1[..], &g2, &g3].map(|ids| TestCluster::new(base, ids).snapshot());
    let key = (0..100_000)
        .map(|i| format!("k-{i}"))
        .find(|k| {
            replicas(&snaps[0], k) == replicas(&snaps[1], k)
                && replicas(&snaps[2], k)
                    .iter()
                    .all(|id| id == "f" || id == "g")
        })
        .expect("some key");
    let nodes = TestCluster::new(base, &g1);
    let path = data_path(&nodes);
    assert!(put(&path, &key, "old").await.failure().is_none());
    nodes.apply(base, &g2);
    let owners = replicas(&nodes.snapshot(), &key);
    nodes
        .node(&owners[0])
        .fail(Op::Delete, Some(BackendError::Refused));
    let deleted = delete(&path, &key).await;
    assert_eq!((deleted.acks, deleted.failure()), (1, None));
    assert_eq!(
        nodes.node(&owners[0]).value(key.as_bytes()),
        Some(Bytes::from_static(b"old"))
    );
    nodes.apply(base, &g3);
    assert!(matches!(get(&path, &key).await, ReadOutcome::Missing));
}

#[tokio::test(start_paused = true)]
async fn a_copy_forward_undoes_itself_when_a_client_deletes_the_key_meanwhile() {
    let nodes = TestCluster::new(HANDOFF, &["a", "b"]);
    let path = data_path(&nodes);
    let after = TestCluster::new(HANDOFF, &["a", "b", "c"]).snapshot();
    let key = key_where(&after, |r| r[0] == "c");
    assert!(put(&path, &key, "old").await.failure().is_none());
    nodes.apply(HANDOFF, &["a", "b", "c"]);
    nodes.node("c").hold(Op::PutIfAbsent);
    let (value, _, handoff) = found(get(&path, &key).await);
    assert_eq!((value.as_str(), handoff), ("old", Some(1)));
    settle().await;
    assert_eq!(
        nodes.node("c").calls(Op::PutIfAbsent),
        1,
        "the copy is in flight"
    );
    assert!(delete(&path, &key).await.failure().is_none());
    nodes.node("c").release(Op::PutIfAbsent, 1);
    settle().await;
    assert_eq!(
        nodes.node("c").value(key.as_bytes()),
        None,
        "the copy was undone"
    );
    assert!(matches!(get(&path, &key).await, ReadOutcome::Missing));
}

#[tokio::test(start_paused = true)]
async fn a_request_in_flight_finishes_on_the_snapshot_it_started_with() {
    let nodes = TestCluster::new(
        &format!(
            "replicas: 1
{FAST}"
        ),
        &["a", "b"],
    );
    let path = data_path(&nodes);
    let key = key_where(&nodes.snapshot(), |r| r[0] == "a");
    nodes.node("a").insert(key.as_bytes(), b"v");
    nodes.node("a").hold(Op::Get);
    let reading = tokio::spawn({
        let (path, key) = (path.clone(), key.clone());
        async move { get(&path, &key).await }
    });
    settle().await;
    nodes.apply(
        &format!(
            "replicas: 1
handoff_window_s: 0
{FAST}"
        ),
        &["b"],
    );
    assert!(nodes.snapshot().placement.member("a").is_none());
    nodes.node("a").release(Op::Get, 1);
    let (value, node, _) = found(reading.await.unwrap());
    assert_eq!((value.as_str(), node.as_str()), ("v", "a"));
}
