//! Writes: stamped with a version (the proxy's hybrid clock, or the client's `x-hrw-version`)
//! and sent to every replica in parallel as put-if-newer, so that whatever order they land
//! in, the newest stays; a DELETE writes a tombstone that lives `tombstone_ttl_s`. A replica
//! that already holds something as new or newer acknowledges the write. The answer goes out
//! once the ack level is reached; replicas still working then finish in the background. A
//! replica that misses the write (it failed, or is ejected and gets the write only best
//! effort) gets a hint, replayed before it serves again. A write that misses its ack level
//! waits for every replica (each bounded by the attempt timeout and the deadline), so the
//! 503 reports what really happened, including the replicas that did store it.
//!
//! Without versions (`versioning: off`) a PUT overwrites and a DELETE removes, as they are
//! (during a handoff window from the earlier replicas too, which reads still ask).

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::outcome::{Attempted, WriteOutcome};
use super::DataPath;
use crate::backend::{BackendError, Condition};
use crate::cluster::{Cluster, Hint, Member, Op, Snapshot};
use crate::handoff;
use crate::net::{context, Ttl};
use crate::routing::key_hash;
use crate::version::{expiry_after, Stored, Version};

#[derive(Debug, Clone)]
pub(crate) enum WriteOp {
    /// The value and its time to live.
    Put(Bytes, Option<Ttl>),
    Delete,
}

pub(crate) async fn write(
    path: &Arc<DataPath>,
    snap: &Arc<Snapshot>,
    key: Bytes,
    op: WriteOp,
    required: usize,
    version: Option<Version>,
    deadline: Instant,
) -> WriteOutcome {
    let cluster = &path.cluster;
    let config = &snap.config;
    let versioned = config.versioned();
    let version = versioned.then(|| match version {
        Some(given) => {
            cluster.clock.observe(given);
            given
        }
        None => cluster.clock.next(),
    });
    // Expiry is a point in time, so that copies and replays made later expire with it.
    let (value, ttl) = match op {
        WriteOp::Put(value, ttl) => (Some(value), ttl.map(|t| u64::from(t.get()))),
        WriteOp::Delete => (None, Some(config.tombstone_ttl_s)),
    };
    let stored = Stored {
        version: version.unwrap_or(Version::ZERO),
        value,
        expires: ttl.map(expiry_after),
    };
    let condition = if versioned {
        Condition::IfNewer
    } else {
        Condition::Always
    };
    let replicas = snap.placement.replicas(&key);
    let mut outcome = WriteOutcome {
        version,
        acks: 0,
        replicas: replicas.len(),
        required,
        failures: Vec::new(),
        deadline_exceeded: false,
    };
    let (tx, mut rx) = mpsc::channel(outcome.replicas.max(1));
    let mut pending = 0;
    let attempt_deadline = Instant::now() + config.timeouts.request();
    for member in replicas.iter() {
        let ejected = !member.health.is_up();
        if ejected {
            outcome
                .failures
                .push(Attempted::failed(member, BackendError::Ejected));
        } else {
            pending += 1;
        }
        let (cluster, snap, member) = (cluster.clone(), snap.clone(), member.clone());
        let (key, stored, tx) = (key.clone(), stored.clone(), tx.clone());
        context::spawn(async move {
            let op = if stored.is_tombstone() {
                Op::Delete
            } else {
                Op::Put
            };
            // Without versions a delete is a removal; there are tombstones only with them.
            let call = async {
                if versioned || !stored.is_tombstone() {
                    member
                        .backend
                        .put(&key, stored.clone(), condition)
                        .await
                        .map(drop)
                } else {
                    member.backend.remove(&key).await
                }
            };
            // Not bounded by the request's deadline: a replica keeps its full attempt time
            // even after the answer went out.
            let result = cluster
                .attempt(&snap, &member, op, &key, attempt_deadline, call)
                .await;
            // Only the node's trouble is worth a replay: a write it refused (too large, say)
            // would be refused again.
            let missed = ejected
                || result
                    .as_ref()
                    .is_err_and(BackendError::counts_against_node);
            if missed {
                cluster.missed(&snap, &member, Hint { key, stored });
            }
            // An ejected replica's answer is not counted.
            if !ejected {
                let _ = tx.send((member, result)).await;
            }
        });
    }
    drop(tx);
    while pending > 0 && outcome.acks < required {
        let received = tokio::select! {
            received = rx.recv() => received,
            _ = tokio::time::sleep_until(deadline) => {
                outcome.deadline_exceeded = true;
                break;
            }
        };
        let Some((member, result)) = received else {
            break;
        };
        pending -= 1;
        match result {
            Ok(()) => outcome.acks += 1,
            Err(e) => outcome.failures.push(Attempted::failed(&member, e)),
        }
    }
    if pending > 0 {
        context::spawn(log_late_failures(key.clone(), rx));
    }
    if !versioned && stored.is_tombstone() && snap.handoff_open() {
        remove_from_earlier_replicas(cluster, snap, &key, deadline.min(attempt_deadline)).await;
    }
    if outcome.failure().is_some() {
        cluster.metrics.write_quorum_failures.inc();
    } else if outcome.acks < outcome.replicas {
        cluster.metrics.writes_short_of_r.inc();
    }
    outcome
}

/// Without versions nothing tells a delete from an older value: during a handoff window a
/// DELETE also removes the key from the replicas it had before, which reads still ask.
async fn remove_from_earlier_replicas(
    cluster: &Cluster,
    snap: &Snapshot,
    key: &Bytes,
    deadline: Instant,
) {
    let removals = handoff::earlier_replicas(snap, key)
        .into_iter()
        .map(|earlier| async move {
            let call = earlier.member.backend.remove(key);
            let _ = cluster
                .attempt(snap, &earlier.member, Op::Handoff, key, deadline, call)
                .await;
        });
    futures_util::future::join_all(removals).await;
}

/// Replicas that fail after the answer went out: the write missed them (and they have a hint).
/// Logged, never silent.
async fn log_late_failures(
    key: Bytes,
    mut rx: mpsc::Receiver<(Arc<Member>, Result<(), BackendError>)>,
) {
    while let Some((member, result)) = rx.recv().await {
        if let Err(e) = result {
            tracing::warn!(
                request_id = %context::id_for_log(),
                node = member.id(),
                key_hash = format_args!("{:016x}", key_hash(&key)),
                error = %e,
                "write missed a replica after its ack level was reached"
            );
        }
    }
}
