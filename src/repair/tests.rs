//! Repair on in-memory fake nodes: the newest version wins whatever order copies and client
//! writes land in, deletes propagate, a run resumes, prune drains non-owners.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::{run, Cursor, Options, Progress, RunState, Scope};
use crate::backend::fake::Op;
use crate::cluster::testing::TestCluster;

const SETTINGS: &str = "replicas: 2\nhandoff_window_s: 600\nhealth_check_interval_ms: 0";

fn scope(nodes: &TestCluster) -> Scope {
    Scope {
        cluster: nodes.cluster.clone(),
        snap: nodes.snapshot(),
    }
}

fn owners(nodes: &TestCluster, key: &str) -> Vec<String> {
    nodes
        .snapshot()
        .placement
        .replicas(key.as_bytes())
        .iter()
        .map(|m| m.id().to_owned())
        .collect()
}

async fn repair(nodes: &TestCluster, options: Options) -> Progress {
    let progress = Mutex::new(Progress::default());
    run(scope(nodes), options, &progress, |_| {}).await
}

#[tokio::test(start_paused = true)]
async fn a_client_write_during_a_copy_is_never_overwritten_by_it() {
    let nodes = TestCluster::new(SETTINGS, &["a", "b", "c", "d"]);
    let key = (0..)
        .map(|i| format!("k-{i}"))
        .find(|k| owners(&nodes, k).contains(&"d".to_owned()))
        .unwrap();
    // The key as it was before d joined: on its other owner and on one more node.
    let other = owners(&nodes, &key)
        .into_iter()
        .find(|id| id != "d")
        .unwrap();
    let old_holder = ["a", "b", "c"].into_iter().find(|id| *id != other).unwrap();
    for id in [other.as_str(), old_holder] {
        nodes.node(id).insert(key.as_bytes(), 1, Some(b"v1"));
    }
    // Copies to d wait there.
    let d = nodes.node("d");
    d.hold(Op::Put);
    let progress = Arc::new(Mutex::new(Progress::default()));
    let running = tokio::spawn({
        let (scope, progress) = (scope(&nodes), progress.clone());
        async move { run(scope, Options::default(), &progress, |_| {}).await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(d.calls(Op::Put), 1, "a copy to d is in flight");
    // The client's newer write lands on both owners while the copy waits.
    for id in owners(&nodes, &key) {
        nodes.node(&id).insert(key.as_bytes(), 2, Some(b"v2"));
    }
    d.release(Op::Put, 100);
    let report = running.await.unwrap();
    assert_eq!((report.state, report.failed), (RunState::Done, 0));
    for id in owners(&nodes, &key) {
        assert_eq!(
            nodes.node(&id).value(key.as_bytes()),
            Some(Bytes::from_static(b"v2")),
            "{id}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn one_pass_leaves_every_replica_with_the_newest_deletes_included() {
    let nodes = TestCluster::new(SETTINGS, &["a", "b", "c"]);
    let keys: Vec<String> = (0..30).map(|i| format!("key-{i:02}")).collect();
    for (i, key) in keys.iter().enumerate() {
        let owners = owners(&nodes, key);
        let (first, second) = (nodes.node(&owners[0]), nodes.node(&owners[1]));
        match i % 3 {
            // The second replica missed an overwrite.
            0 => {
                first.insert(key.as_bytes(), 2, Some(b"new"));
                second.insert(key.as_bytes(), 1, Some(b"old"));
            }
            // The first replica missed a delete.
            1 => {
                first.insert(key.as_bytes(), 1, Some(b"old"));
                second.insert(key.as_bytes(), 2, None);
            }
            // The second replica was restarted empty.
            _ => first.insert(key.as_bytes(), 1, Some(b"only")),
        }
    }
    let report = repair(&nodes, Options::default()).await;
    assert_eq!(report.failed, 0);
    for key in &keys {
        let held: Vec<_> = owners(&nodes, key)
            .iter()
            .map(|id| nodes.node(id).held(key.as_bytes()).expect("present"))
            .collect();
        assert_eq!(held[0], held[1], "{key}");
        assert!(
            held[0].version.0 == 2 || held[0].value.as_deref() == Some(&b"only"[..]),
            "{key}"
        );
    }
    assert_eq!(report.copied, 30, "one copy per key");
    // A second pass finds nothing to do.
    let again = repair(&nodes, Options::default()).await;
    assert_eq!((again.copied, again.failed), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_run_resumes_after_its_cursor_and_prune_drains_non_owners() {
    let nodes = TestCluster::new(SETTINGS, &["a", "b", "c"]);
    let keys: Vec<String> = (0..40).map(|i| format!("key-{i:02}")).collect();
    // Everything on a alone, as if a had been the only node.
    for key in &keys {
        nodes
            .node("a")
            .insert(key.as_bytes(), 1, Some(key.as_bytes()));
    }
    let resume = Cursor {
        node: "a".into(),
        after: Some("key-19".into()),
    };
    let options = Options {
        prune: true,
        rate: None,
        resume: Some(resume),
    };
    let report = repair(&nodes, options).await;
    assert_eq!((report.state, report.failed), (RunState::Done, 0));
    // Keys before the cursor were done already: only the other 20 are copied.
    let copies: usize = keys[20..]
        .iter()
        .map(|k| owners(&nodes, k).iter().filter(|id| *id != "a").count())
        .sum();
    assert_eq!(report.copied, copies as u64);
    for key in &keys {
        let resumed = key.as_str() > "key-19";
        for id in ["a", "b", "c"] {
            let owner = owners(&nodes, key).contains(&id.to_owned());
            let expected = if id == "a" {
                !resumed || owner
            } else {
                resumed && owner
            };
            assert_eq!(
                nodes.node(id).value(key.as_bytes()).is_some(),
                expected,
                "{key} on {id}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_rate_spaces_keys_out() {
    let nodes = TestCluster::new(SETTINGS, &["a", "b"]);
    for i in 0..50 {
        nodes
            .node("a")
            .insert(format!("k{i}").as_bytes(), 1, Some(b"v"));
    }
    let started = tokio::time::Instant::now();
    let options = Options {
        rate: Some(100.0),
        ..Options::default()
    };
    let report = repair(&nodes, options).await;
    // 100 keys (50 on a, then 50 copies on b) at 100 per second: about a second.
    assert_eq!(report.scanned, 100);
    let took = started.elapsed();
    assert!(
        (Duration::from_millis(980)..Duration::from_millis(1100)).contains(&took),
        "{took:?}"
    );
}
