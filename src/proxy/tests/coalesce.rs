//! Coalesced reads: one backend read for a burst of GETs of a key, never an answer older than
//! a read of the client's own would have been.

use super::*;
use crate::proxy::coalesce::Coalescer;

const SLOW_OK: &str = "replicas: 1\ntimeouts: { connect_ms: 10, request_ms: 5000, deadline_ms: 10000 }\nhealth_check_interval_ms: 0";

/// A GET through the coalescer, in a task of its own.
fn shared_get(path: &Arc<DataPath>, key: &str) -> tokio::task::JoinHandle<ReadOutcome> {
    let (path, key) = (path.clone(), Bytes::copy_from_slice(key.as_bytes()));
    tokio::spawn(async move {
        let snap = path.cluster.snapshot();
        let deadline = Instant::now() + snap.config.timeouts.deadline();
        Coalescer::read(&path, &snap, &key, snap.config.read_quorum, deadline).await
    })
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_gets_of_one_key_costs_two_backend_reads() {
    let nodes = TestCluster::new(SLOW_OK, &["a"]);
    let path = data_path(&nodes);
    let a = nodes.node("a");
    a.insert(b"hot", 1, Some(b"v"));
    a.hold(Op::Get);
    let first = shared_get(&path, "hot");
    settle().await;
    // Ten more arrive while the first read is out: they wait for the next one, together.
    let mut others: Vec<_> = (0..10).map(|_| shared_get(&path, "hot")).collect();
    settle().await;
    assert_eq!(a.calls(Op::Get), 1);
    // A client that gives up takes nobody's answer with it.
    others.pop().unwrap().abort();
    a.release(Op::Get, 1);
    assert_eq!(found(first.await.unwrap()).0, "v");
    settle().await;
    assert_eq!(a.calls(Op::Get), 2, "the next read, for all who waited");
    a.release(Op::Get, 1);
    for other in others {
        assert_eq!(found(other.await.unwrap()).0, "v");
    }
    assert_eq!(a.calls(Op::Get), 2);
    // Nothing in flight any more: the next GET reads at once.
    a.release(Op::Get, 1);
    assert_eq!(found(shared_get(&path, "hot").await.unwrap()).0, "v");
    assert_eq!(a.calls(Op::Get), 3);
}

#[tokio::test(start_paused = true)]
async fn a_get_never_shares_a_read_sent_before_it_arrived() {
    let nodes = TestCluster::new(SLOW_OK, &["a"]);
    let path = data_path(&nodes);
    let a = nodes.node("a");
    a.insert(b"k", 1, Some(b"old"));
    a.hold(Op::Get);
    let before = shared_get(&path, "k");
    settle().await;
    // A write is acknowledged while that read is out, then a GET arrives: it must see the
    // write, though the read in flight took the old value.
    assert!(put(&path, "k", "new").await.failure().is_none());
    let after = shared_get(&path, "k");
    settle().await;
    a.release(Op::Get, 2);
    assert_eq!(found(before.await.unwrap()).0, "old");
    assert_eq!(found(after.await.unwrap()).0, "new");
}

#[tokio::test(start_paused = true)]
async fn a_waiter_gives_up_at_its_own_deadline() {
    let nodes = TestCluster::new(SLOW_OK, &["a"]);
    let path = data_path(&nodes);
    nodes.node("a").hold(Op::Get);
    let _first = shared_get(&path, "k");
    settle().await;
    let key = Bytes::from_static(b"k");
    let snap = path.cluster.snapshot();
    let deadline = Instant::now() + Duration::from_millis(50);
    let waited = Coalescer::read(&path, &snap, &key, 1, deadline).await;
    assert_eq!(failure(waited), Failure::Deadline);
}

#[tokio::test(start_paused = true)]
async fn the_waiters_are_answered_when_the_first_client_goes_away() {
    let nodes = TestCluster::new(SLOW_OK, &["a"]);
    let path = data_path(&nodes);
    let a = nodes.node("a");
    a.insert(b"k", 1, Some(b"v"));
    a.hold(Op::Get);
    let first = shared_get(&path, "k");
    settle().await;
    let waiters: Vec<_> = (0..3).map(|_| shared_get(&path, "k")).collect();
    settle().await;
    // The first client's connection closes mid-read: the next read goes out at once.
    first.abort();
    settle().await;
    assert_eq!(a.calls(Op::Get), 2);
    a.release(Op::Get, 1);
    for waiter in waiters {
        assert_eq!(found(waiter.await.unwrap()).0, "v");
    }
}

#[tokio::test(start_paused = true)]
async fn with_coalescing_off_every_get_reads_for_itself() {
    let nodes = TestCluster::new(&format!("{SLOW_OK}\ncoalesce_reads: false"), &["a"]);
    let path = data_path(&nodes);
    let a = nodes.node("a");
    a.insert(b"k", 1, Some(b"v"));
    a.hold(Op::Get);
    let gets: Vec<_> = (0..4).map(|_| shared_get(&path, "k")).collect();
    settle().await;
    assert_eq!(a.calls(Op::Get), 4);
    a.release(Op::Get, 4);
    for get in gets {
        assert_eq!(found(get.await.unwrap()).0, "v");
    }
}
