//! Carrying out a plan against the nodes: replicated writes with a quorum, reads with fallback
//! down the ranking, a timeout on every attempt, and one log line per failed attempt.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::backend::{with_timeout, BackendError, Ttl};
use crate::handoff::{self, WriteKind};
use crate::routing::key_hash;
use crate::snapshot::Snapshot;

/// How long a recorded write is kept at least: longer than any one copy by handoff or
/// rebalance takes, so a copy always sees the writes made while it ran.
const RECENT_WRITES_MIN_KEEP: Duration = Duration::from_secs(60);

/// What happened on one node, for error bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub node: String,
    pub result: Result<&'static str, BackendError>,
}

/// Which node answered a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A replica of the current snapshot, by ring index.
    Current(usize),
    /// A replica the key had before a placement change (handoff), by id.
    Previous { node: String, generation: u64 },
}

#[derive(Debug)]
pub enum ReadOutcome {
    Found {
        source: Source,
        value: Bytes,
    },
    /// Enough replicas said the key is absent that no acknowledged write can be elsewhere.
    Missing,
    /// No replica answered usefully; `attempts` says what each did.
    Failed {
        attempts: Vec<Attempt>,
    },
}

#[derive(Debug, Clone)]
pub enum WriteOp {
    /// The value and its time to live.
    Put(Bytes, Option<Ttl>),
    Delete,
}

impl WriteOp {
    fn name(&self) -> &'static str {
        match self {
            WriteOp::Put(..) => "put",
            WriteOp::Delete => "delete",
        }
    }
}

#[derive(Debug)]
pub struct WriteOutcome {
    pub acks: usize,
    pub replicas: usize,
    pub quorum: usize,
    /// Failures seen before the answer was decided (later ones are only logged).
    pub failures: Vec<Attempt>,
}

impl WriteOutcome {
    pub fn reached_quorum(&self) -> bool {
        self.acks >= self.quorum
    }
}

/// Runs one backend call under the per-attempt timeout and logs it if it fails.
async fn attempt<T>(
    node: &str,
    op: &'static str,
    key: &[u8],
    timeout: Duration,
    call: impl Future<Output = Result<T, BackendError>>,
) -> Result<T, BackendError> {
    let result = with_timeout(timeout, call).await;
    if let Err(e) = &result {
        tracing::warn!(
            node,
            op,
            key_hash = format_args!("{:016x}", key_hash(key)),
            kind = e.kind(),
            error = %e,
            "backend attempt failed"
        );
    }
    result
}

/// Reads from the best replica, falling back down the ranking on an error or timeout, and on
/// a miss until the miss is final (see [`crate::routing::ReadPlan`]).
///
/// While a handoff window is open the current replicas may not have the key yet: every one of
/// them is asked, then the key's earlier replicas, newest first. A value found there is
/// returned and copied forward. Earlier replicas older than the key's last recorded PUT hold
/// stale values and are skipped; after a recorded DELETE none is asked. A miss is reported
/// only if every replica asked answered; otherwise the read failed.
pub async fn read(snap: &Arc<Snapshot>, key: &Bytes) -> ReadOutcome {
    let began = Instant::now();
    let last_write = snap.recent_writes.last(key);
    let handoff = snap.handoff_open() && last_write.is_none_or(|w| w.kind == WriteKind::Put);
    let current = read_current(snap, key, handoff).await;
    if !handoff || matches!(current, ReadOutcome::Found { .. }) {
        return current;
    }
    let timeout = snap.config.timeouts.request();
    let mut attempts = match current {
        ReadOutcome::Failed { attempts } => attempts,
        _ => Vec::new(),
    };
    let min_generation = last_write.map_or(0, |w| w.generation);
    for prev in handoff::previous_replicas(snap, key, min_generation) {
        match attempt(&prev.node, "get", key, timeout, prev.backend.get(key)).await {
            Ok(Some(value)) => {
                let (snap, key, copy) = (snap.clone(), key.clone(), value.clone());
                tokio::spawn(async move {
                    let targets = snap.replicas(&key);
                    handoff::copy_where_absent(&snap, &key, &copy, targets.iter(), began).await
                });
                return ReadOutcome::Found {
                    source: Source::Previous {
                        node: prev.node,
                        generation: prev.generation,
                    },
                    value,
                };
            }
            Ok(None) => {}
            Err(e) => attempts.push(Attempt {
                node: prev.node,
                result: Err(e),
            }),
        }
    }
    if attempts.iter().any(|a| a.result.is_err()) {
        ReadOutcome::Failed { attempts }
    } else {
        ReadOutcome::Missing
    }
}

/// Reads the current replicas in rank order; with `exhaustive`, a miss never ends the read
/// early (the handoff case).
async fn read_current(snap: &Snapshot, key: &[u8], exhaustive: bool) -> ReadOutcome {
    let plan = snap.read_plan(key);
    let timeout = snap.config.timeouts.request();
    let mut attempts = Vec::new();
    let mut misses = 0;
    for index in plan.replicas.iter() {
        let node = snap.node_id(index);
        match attempt(node, "get", key, timeout, snap.backends[index].get(key)).await {
            Ok(Some(value)) => {
                return ReadOutcome::Found {
                    source: Source::Current(index),
                    value,
                }
            }
            Ok(None) => {
                misses += 1;
                if !exhaustive && misses >= plan.misses_to_stop {
                    return ReadOutcome::Missing;
                }
                attempts.push(Attempt {
                    node: node.to_owned(),
                    result: Ok("not found"),
                });
            }
            Err(e) => attempts.push(Attempt {
                node: node.to_owned(),
                result: Err(e),
            }),
        }
    }
    let any_failed = attempts.iter().any(|a| a.result.is_err());
    if (exhaustive && !any_failed) || (!exhaustive && misses >= plan.misses_to_stop) {
        ReadOutcome::Missing
    } else {
        ReadOutcome::Failed { attempts }
    }
}

/// Sends a write to every replica in parallel and returns as soon as the quorum is reached;
/// replicas still working then finish in the background. A write that misses its quorum waits
/// for every replica (each bounded by the request timeout), so the 503 reports what really
/// happened, including the replicas that did store it.
///
/// While a handoff window is open, the write is recorded (so no handoff copy lands over it)
/// and the key is deleted from its earlier replicas before answering (for a PUT, once the
/// quorum is reached), so no read or returning node can bring an old value back.
pub async fn write(snap: Arc<Snapshot>, key: Bytes, op: WriteOp) -> WriteOutcome {
    let plan = snap.write_plan(&key);
    let timeout = snap.config.timeouts.request();
    if snap.recent_writes.wanted(&snap) {
        let kind = match op {
            WriteOp::Put(..) => WriteKind::Put,
            WriteOp::Delete => WriteKind::Delete,
        };
        let keep = snap.config.handoff_window().max(RECENT_WRITES_MIN_KEEP);
        snap.recent_writes.record(&key, kind, snap.generation, keep);
    }
    let earlier = if snap.handoff_open() {
        handoff::previous_replicas(&snap, &key, 0)
    } else {
        Vec::new()
    };
    // A DELETE removes the earlier copies from the start.
    let mut earlier_deletes = match op {
        WriteOp::Delete => delete_earlier(earlier.clone(), &key, timeout),
        WriteOp::Put(..) => Vec::new(),
    };
    let replicas = plan.replicas.len();
    let (tx, mut rx) = mpsc::channel(replicas.max(1));
    for index in plan.replicas.iter() {
        let (snap, key, op, tx) = (snap.clone(), key.clone(), op.clone(), tx.clone());
        tokio::spawn(async move {
            let backend = &snap.backends[index];
            let node = snap.node_id(index);
            let name = op.name();
            let call = match op {
                WriteOp::Put(value, ttl) => backend.put(&key, value, ttl),
                WriteOp::Delete => backend.delete(&key),
            };
            let result = attempt(node, name, &key, timeout, call).await;
            let _ = tx.send((index, result)).await;
        });
    }
    drop(tx);
    let mut outcome = WriteOutcome {
        acks: 0,
        replicas,
        quorum: plan.quorum,
        failures: Vec::new(),
    };
    while let Some((index, result)) = rx.recv().await {
        match result {
            Ok(()) => outcome.acks += 1,
            Err(e) => outcome.failures.push(Attempt {
                node: snap.node_id(index).to_owned(),
                result: Err(e),
            }),
        }
        if outcome.acks >= plan.quorum {
            break;
        }
    }
    // A PUT that reached its quorum makes the earlier copies stale: remove them, so a node
    // that becomes a replica again later cannot serve the old value.
    if matches!(op, WriteOp::Put(..)) && outcome.reached_quorum() {
        earlier_deletes = delete_earlier(earlier, &key, timeout);
    }
    for delete in earlier_deletes {
        let _ = delete.await;
    }
    outcome
}

fn delete_earlier(
    earlier: Vec<handoff::PreviousReplica>,
    key: &Bytes,
    timeout: Duration,
) -> Vec<tokio::task::JoinHandle<()>> {
    earlier
        .into_iter()
        .map(|prev| {
            let key = key.clone();
            tokio::spawn(async move {
                let call = prev.backend.delete(&key);
                let _ = attempt(&prev.node, "delete", &key, timeout, call).await;
            })
        })
        .collect()
}
