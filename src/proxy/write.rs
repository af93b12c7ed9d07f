//! Writes: sent to every replica in parallel, answered once the ack level is reached; replicas
//! still working then finish in the background, and one that fails then is logged as a write
//! that missed a replica. Ejected replicas count as failed at once (the write is still sent to
//! them, best effort). A write that misses its ack level waits for every replica (each bounded
//! by the attempt timeout and the deadline), so the 503 reports what really happened,
//! including the replicas that did store it.
//!
//! While a handoff window is open, the write is recorded (so no handoff copy lands over it)
//! and the key is deleted from its earlier replicas before answering (for a PUT, once the ack
//! level is reached), so no read or returning node can bring an old value back.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::outcome::{Attempted, WriteOutcome};
use super::DataPath;
use crate::backend::BackendError;
use crate::cluster::{Member, Op, Snapshot};
use crate::handoff::{self, WriteKind, MIN_KEEP};
use crate::net::{context, Ttl};
use crate::routing::key_hash;

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
    deadline: Instant,
) -> WriteOutcome {
    let cluster = &path.cluster;
    let window_open = snap.handoff_open();
    if path.recent.wanted(window_open) {
        let kind = match op {
            WriteOp::Put(..) => WriteKind::Put,
            WriteOp::Delete => WriteKind::Delete,
        };
        let keep = snap.config.handoff_window().max(MIN_KEEP);
        path.recent.record(&key, kind, snap.generation, keep);
    }
    let earlier = if window_open {
        handoff::earlier_replicas(snap, &key, 0)
    } else {
        Vec::new()
    };
    // A DELETE removes the earlier copies from the start.
    let mut earlier_deletes = match op {
        WriteOp::Delete => handoff::delete_earlier(cluster, snap, earlier.clone(), &key, deadline),
        WriteOp::Put(..) => Vec::new(),
    };
    let replicas = snap.placement.replicas(&key);
    let mut outcome = WriteOutcome {
        acks: 0,
        replicas: replicas.len(),
        required,
        failures: Vec::new(),
        deadline_exceeded: false,
    };
    let (tx, mut rx) = mpsc::channel(outcome.replicas.max(1));
    let mut pending = 0;
    let attempt_deadline = Instant::now() + snap.config.timeouts.request();
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
        let (key, op, tx) = (key.clone(), op.clone(), tx.clone());
        context::spawn(async move {
            let (call, kind) = match op {
                WriteOp::Put(value, ttl) => (member.backend.put(&key, value, ttl), Op::Put),
                WriteOp::Delete => (member.backend.delete(&key), Op::Delete),
            };
            // Not bounded by the request's deadline: a replica keeps its full attempt time
            // even after the answer went out.
            let result = cluster
                .attempt(&snap, &member, kind, &key, attempt_deadline, call)
                .await;
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
    // A PUT that reached its ack level makes the earlier copies stale: remove them, so a node
    // that becomes a replica again later cannot serve the old value.
    let succeeded = outcome.failure().is_none();
    if matches!(op, WriteOp::Put(..)) && succeeded {
        earlier_deletes = handoff::delete_earlier(cluster, snap, earlier, &key, deadline);
    }
    for delete in earlier_deletes {
        let _ = delete.await;
    }
    if !succeeded {
        cluster.metrics.write_quorum_failures.inc();
    } else if outcome.acks < outcome.replicas {
        cluster.metrics.writes_short_of_r.inc();
    }
    outcome
}

/// Replicas that fail after the answer went out: the write missed them. Logged, never silent.
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
