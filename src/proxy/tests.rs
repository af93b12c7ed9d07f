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
use crate::version::Version;

fn data_path(nodes: &TestCluster) -> Arc<DataPath> {
    Arc::new(DataPath {
        cluster: nodes.cluster.clone(),
        hedge_budget: Default::default(),
        repair_budget: Default::default(),
    })
}

async fn get_with(path: &Arc<DataPath>, key: &str, need: Option<usize>) -> ReadOutcome {
    let snap = path.cluster.snapshot();
    let deadline = Instant::now() + snap.config.timeouts.deadline();
    let need = need.unwrap_or(snap.config.read_quorum);
    read(
        path,
        &snap,
        &Bytes::copy_from_slice(key.as_bytes()),
        need,
        deadline,
    )
    .await
}

async fn get(path: &Arc<DataPath>, key: &str) -> ReadOutcome {
    get_with(path, key, None).await
}

async fn write_with(
    path: &Arc<DataPath>,
    key: &str,
    op: WriteOp,
    required: Option<usize>,
    version: Option<u128>,
) -> WriteOutcome {
    let snap = path.cluster.snapshot();
    let deadline = Instant::now() + snap.config.timeouts.deadline();
    let required = required.unwrap_or(snap.config.write_quorum);
    let key = Bytes::copy_from_slice(key.as_bytes());
    write(
        path,
        &snap,
        key,
        op,
        required,
        version.map(Version),
        deadline,
    )
    .await
}

async fn put(path: &Arc<DataPath>, key: &str, value: &str) -> WriteOutcome {
    let value = Bytes::copy_from_slice(value.as_bytes());
    write_with(path, key, WriteOp::Put(value, None), None, None).await
}

async fn delete(path: &Arc<DataPath>, key: &str) -> WriteOutcome {
    write_with(path, key, WriteOp::Delete, None, None).await
}

/// The value, the node that gave it and the handoff generation of a found read.
fn found(outcome: ReadOutcome) -> (String, String, Option<u64>) {
    match outcome {
        ReadOutcome::Found {
            value,
            node,
            handoff_from,
            ..
        } => (
            String::from_utf8_lossy(&value).into_owned(),
            node.id().to_owned(),
            handoff_from,
        ),
        other => panic!("expected a value, got {other:?}"),
    }
}

fn missing(outcome: &ReadOutcome) -> bool {
    matches!(outcome, ReadOutcome::Missing { .. })
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
async fn a_write_lands_on_exactly_the_top_r_with_its_version_and_answers_at_its_ack_level() {
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
    let version = outcome.version.expect("a version");
    tokio::time::sleep(Duration::from_millis(60)).await;
    for id in ["a", "b", "c", "d"] {
        let held = nodes.node(id).held(b"greeting");
        if owners.contains(&id.to_owned()) {
            let held = held.unwrap();
            assert_eq!(
                (held.version, held.value.as_deref()),
                (version, Some(&b"hello"[..]))
            );
        } else {
            assert_eq!(held, None, "{id}");
        }
    }
    let (value, node, handoff) = found(get(&path, key).await);
    assert_eq!(
        (value.as_str(), node, handoff),
        ("hello", owners[0].clone(), None)
    );
    // A later write gets a later version.
    assert!(put(&path, key, "again").await.version.unwrap() > version);
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
    let outcome = write_with(&path, "k", WriteOp::Delete, Some(1), None).await;
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
async fn an_ejected_replica_counts_as_failed_at_once_still_gets_the_write_and_a_hint() {
    let nodes = TestCluster::new(
        &format!("replicas: 2\nwrite_quorum: 1\neject_after: 1\n{FAST}"),
        &["a", "b"],
    );
    let path = data_path(&nodes);
    nodes.node("a").fail(Op::Get, Some(BackendError::Refused));
    let _ = get(&path, "x").await;
    let a = nodes.snapshot().placement.member("a").unwrap().clone();
    assert_eq!(a.health.phase().name(), "ejected");
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
    assert_eq!(a.hints.counts().queued, 1, "and kept to replay");
}

#[tokio::test(start_paused = true)]
async fn a_read_waits_for_r_answers_falls_back_past_failures_and_a_miss_needs_r_misses() {
    // r=3, W=2: R=2.
    let nodes = TestCluster::new(
        &format!("replicas: 3\nwrite_quorum: 2\n{FAST}"),
        &["a", "b", "c", "d"],
    );
    let path = data_path(&nodes);
    let owners = replicas(&nodes.snapshot(), "k");
    nodes.node(&owners[1]).insert(b"k", 5, Some(b"v"));
    nodes.node(&owners[2]).insert(b"k", 5, Some(b"v"));
    nodes.node(&owners[0]).go_down();
    let (value, node, _) = found(get(&path, "k").await);
    assert_eq!((value.as_str(), node.as_str()), ("v", owners[1].as_str()));
    assert_eq!(
        nodes.node(&owners[2]).calls(Op::Get),
        1,
        "the third answered for the failed first"
    );
    let fallbacks = nodes
        .cluster
        .metrics
        .read_fallbacks
        .get_or_create(&crate::metrics::RankLabel { rank: 2 })
        .get();
    assert_eq!(fallbacks, 1);
    // Two misses are final: the third replica is not asked.
    nodes.node(&owners[0]).fail(Op::Get, None);
    let absent = replicas(&nodes.snapshot(), "absent");
    let third = nodes.node(&absent[2]).calls(Op::Get);
    assert!(missing(&get(&path, "absent").await));
    assert_eq!(nodes.node(&absent[2]).calls(Op::Get), third);
    // Only one replica answers: fewer than R, so the read fails rather than guess.
    nodes.node(&absent[1]).go_down();
    nodes.node(&absent[2]).go_down();
    assert_eq!(failure(get(&path, "absent").await), Failure::Unanswered);
}

#[tokio::test(start_paused = true)]
async fn the_newest_version_wins_and_a_stale_replica_is_repaired() {
    let nodes = TestCluster::new(
        &format!("replicas: 3\nwrite_quorum: 2\nrepair_budget_percent: 100\n{FAST}"),
        &["a", "b", "c"],
    );
    let path = data_path(&nodes);
    let owners = replicas(&nodes.snapshot(), "k");
    // The first replica missed the overwrite (it was cut off): it holds the older value.
    nodes.node(&owners[0]).insert(b"k", 1, Some(b"old"));
    nodes.node(&owners[1]).insert(b"k", 2, Some(b"new"));
    nodes.node(&owners[2]).insert(b"k", 2, Some(b"new"));
    for _ in 0..5 {
        let (value, node, _) = found(get(&path, "k").await);
        assert_eq!((value.as_str(), node.as_str()), ("new", owners[1].as_str()));
    }
    settle().await;
    assert_eq!(
        nodes.node(&owners[0]).value(b"k"),
        Some(Bytes::from_static(b"new")),
        "repaired"
    );
    assert!(nodes.cluster.metrics.read_repairs.get() >= 1);
    // With R=1 the stale first replica would have answered alone: that is what R costs.
    nodes.node(&owners[0]).insert(b"k", 1, Some(b"old"));
    let (value, _, _) = found(get_with(&path, "k", Some(1)).await);
    assert_eq!(value, "old");
}

#[tokio::test(start_paused = true)]
async fn writes_landing_out_of_order_leave_the_newest_and_a_delete_stays_deleted() {
    let nodes = TestCluster::new(
        &format!("replicas: 2\nwrite_quorum: 1\n{FAST}"),
        &["a", "b"],
    );
    let path = data_path(&nodes);
    let owners = replicas(&nodes.snapshot(), "k");
    // Two overwrites while the first replica is held (paused): released, the older of the two
    // arrives last.
    let slow = nodes.node(&owners[0]);
    slow.hold(Op::Put);
    let v1 = put(&path, "k", "v1").await.version.unwrap();
    let v2 = put(&path, "k", "v2").await.version.unwrap();
    assert!(v2 > v1);
    slow.release(Op::Put, 100);
    settle().await;
    assert_eq!(slow.value(b"k"), Some(Bytes::from_static(b"v2")));
    // A delete is a tombstone, newer than both; a late older write does not undo it.
    assert!(delete(&path, "k").await.failure().is_none());
    for id in &owners {
        assert!(nodes.node(id).held(b"k").unwrap().is_tombstone(), "{id}");
    }
    let late = write_with(
        &path,
        "k",
        WriteOp::Put(Bytes::from_static(b"late"), None),
        None,
        Some(v1.0),
    )
    .await;
    assert_eq!(late.acks, 1, "kept by the replicas: they hold newer");
    let outcome = get(&path, "k").await;
    assert!(
        matches!(outcome, ReadOutcome::Missing { deleted: Some(_) }),
        "{outcome:?}"
    );
    // A client's own version orders its writes.
    let mine = |v: u128, value: &'static str| {
        write_with(
            &path,
            "mine",
            WriteOp::Put(Bytes::from_static(value.as_bytes()), None),
            None,
            Some(v),
        )
    };
    mine(50, "fifty").await;
    mine(40, "forty").await;
    assert_eq!(found(get(&path, "mine").await).0, "fifty");
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
    let settings = "replicas: 2\nwrite_quorum: 2\ntimeouts: { request_ms: 60000, deadline_ms: 60000 }\nhealth_check_interval_ms: 0\nhedge_after_ms: 20\nhedge_budget_percent: 100\neject_after: 3";
    let nodes = TestCluster::new(settings, &["a", "b"]);
    let path = data_path(&nodes);
    let owners = replicas(&nodes.snapshot(), "k");
    for id in &owners {
        nodes.node(id).insert(b"k", 1, Some(b"v"));
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
async fn a_request_in_flight_finishes_on_the_snapshot_it_started_with() {
    let nodes = TestCluster::new(&format!("replicas: 1\n{FAST}"), &["a", "b"]);
    let path = data_path(&nodes);
    let key = key_where(&nodes.snapshot(), |r| r[0] == "a");
    nodes.node("a").insert(key.as_bytes(), 1, Some(b"v"));
    nodes.node("a").hold(Op::Get);
    let reading = tokio::spawn({
        let (path, key) = (path.clone(), key.clone());
        async move { get(&path, &key).await }
    });
    settle().await;
    nodes.apply(&format!("replicas: 1\nhandoff_window_s: 0\n{FAST}"), &["b"]);
    assert!(nodes.snapshot().placement.member("a").is_none());
    nodes.node("a").release(Op::Get, 1);
    let (value, node, _) = found(reading.await.unwrap());
    assert_eq!((value.as_str(), node.as_str()), ("v", "a"));
}

#[tokio::test(start_paused = true)]
async fn without_versioning_values_are_raw_overwrites_and_deletes_remove() {
    let nodes = TestCluster::new(
        &format!("versioning: off\nreplicas: 2\n{FAST}"),
        &["a", "b"],
    );
    let path = data_path(&nodes);
    let outcome = put(&path, "k", "one").await;
    assert_eq!(outcome.version, None);
    put(&path, "k", "two").await;
    for id in ["a", "b"] {
        let held = nodes.node(id).held(b"k").unwrap();
        assert_eq!(
            (held.version, held.value.as_deref()),
            (Version::ZERO, Some(&b"two"[..]))
        );
    }
    assert_eq!(found(get(&path, "k").await).0, "two");
    delete(&path, "k").await;
    assert_eq!(nodes.node("a").held(b"k"), None, "removed, no tombstone");
    assert!(missing(&get(&path, "k").await));
}

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

#[tokio::test(start_paused = true)]
async fn copies_expire_when_the_original_does() {
    let nodes = TestCluster::new(
        &format!("replicas: 2\nrepair_budget_percent: 100\n{FAST}"),
        &["a", "b"],
    );
    let path = data_path(&nodes);
    let value = Bytes::from_static(b"v");
    let ttl = crate::net::Ttl::new(3600);
    write_with(&path, "k", WriteOp::Put(value, ttl), None, None).await;
    let owners = replicas(&nodes.snapshot(), "k");
    let original = nodes.node(&owners[0]).held(b"k").unwrap();
    let expires = original.expires.expect("an expiry time");
    assert!(expires > crate::version::unix_now() + 3500);
    // One replica lost it; read repair puts it back with the same expiry time.
    let stale = nodes.node(&owners[1]);
    crate::backend::Backend::remove(stale.as_ref(), b"k")
        .await
        .unwrap();
    found(get_with(&path, "k", Some(2)).await);
    settle().await;
    assert_eq!(stale.held(b"k"), Some(original.clone()));
    // Something expired is not copied at all.
    let past = crate::version::Stored {
        expires: Some(crate::version::unix_now() - 1),
        ..original
    };
    let snap = nodes.snapshot();
    let member = snap.placement.member(&owners[1]).unwrap();
    crate::backend::Backend::remove(stale.as_ref(), b"k")
        .await
        .unwrap();
    let copied = nodes.cluster.copy_to(&snap, member, b"k", &past).await;
    assert_eq!(copied, Ok(crate::backend::Written::Kept));
    assert_eq!(stale.held(b"k"), None);
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
