//! Writes: where they land, their ack level, deadlines, ejected replicas, versions in any order, and raw values without versioning.

use super::*;

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
        &format!("replicas: 2\nwrite_quorum: 2\nquorum: strict\n{FAST}"),
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
    let failures = write_failures(&outcome);
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].node, owners[1]);
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
    let failures = write_failures(&outcome);
    assert_eq!((outcome.acks, failures.len()), (1, 1));
    assert_eq!(failures[0].result, Err(BackendError::Ejected));
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
