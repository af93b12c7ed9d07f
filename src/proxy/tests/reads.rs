//! Reads: R answers and the miss rule, the newest version and read repair, failure classes, hedging, the snapshot a request keeps, expiry of copies.

use super::*;

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
    // Only one replica answers: the stand-in (the fourth node) answers for the others.
    nodes.node(&absent[1]).go_down();
    nodes.node(&absent[2]).go_down();
    assert!(missing(&get(&path, "absent").await));
    // With it down too, fewer than R answer, so the read fails rather than guess.
    let stand_in = ["a", "b", "c", "d"]
        .into_iter()
        .find(|id| !absent.iter().any(|o| o == id))
        .unwrap();
    nodes.node(stand_in).go_down();
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
async fn a_loaded_first_replica_is_passed_for_the_next_under_the_bound() {
    use std::sync::atomic::Ordering::Relaxed;
    let settings = format!("replicas: 2\nread_load_factor: 1.25\n{FAST}");
    let nodes = TestCluster::new(&settings, &["a", "b", "c"]);
    let path = data_path(&nodes);
    let snap = nodes.snapshot();
    let key = key_where(&snap, |r| r[0] == "a" && r[1] == "b");
    for id in ["a", "b"] {
        nodes.node(id).insert(key.as_bytes(), 1, Some(b"v"));
    }
    let in_flight = |id: &str| snap.placement.member(id).unwrap().in_flight.clone();
    // a has 10 attempts out, the mean over three nodes is 3.3: the bound is 1.25 * 3.3 + 1.
    in_flight("a").store(10, Relaxed);
    assert_eq!(found(get(&path, &key).await).1, "b");
    assert_eq!(nodes.node("a").calls(Op::Get), 0);
    assert_eq!(path.cluster.metrics.read_load_spills.get(), 1);
    // Both replicas over the bound: the order stays, and c, which has no copy, is not asked.
    in_flight("b").store(10, Relaxed);
    assert_eq!(found(get(&path, &key).await).1, "a");
    assert_eq!(nodes.node("c").calls(Op::Get), 0);
    // Off by default: the first replica is asked whatever its load (kept across the reload).
    in_flight("b").store(0, Relaxed);
    nodes.apply(&format!("replicas: 2\n{FAST}"), &["a", "b", "c"]);
    assert_eq!(found(get(&path, &key).await).1, "a");
}
