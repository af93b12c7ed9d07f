//! The data path on in-memory fake nodes with tokio's paused clock: exact, fast, no sockets.
//! The helpers are here; the tests are grouped by what they exercise.

mod coalesce;
mod handoff;
mod missed_writes;
mod reads;
mod sloppy;
mod writes;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::outcome::{Attempted, Failure, ReadOutcome, WriteOutcome};
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
        coalescer: Default::default(),
        hot_keys: Default::default(),
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
        ReadOutcome::Failed(failed) => failed.why,
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// The nodes that failed a write before its answer, in the order they failed.
fn write_failures(outcome: &WriteOutcome) -> Vec<&Attempted> {
    outcome.nodes.iter().filter(|a| a.result.is_err()).collect()
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
