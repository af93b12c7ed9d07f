//! Carrying out a plan against the nodes: replicated writes answered at their ack level, reads
//! with fallback down the ranking and hedging, ejected nodes skipped, every attempt under the
//! per-attempt timeout and the request's deadline, one log line per failed attempt.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::backend::{with_timeout, BackendError, Ttl};
use crate::handoff::{self, WriteKind};
use crate::health::{self, AfterFailure};
use crate::hedge::{self, Raced};
use crate::metrics::RankLabel;
use crate::request_id;
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
        /// The request's deadline ran out.
        deadline_exceeded: bool,
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
    /// Acks the request needed (its ack level).
    pub required: usize,
    /// Failures seen before the answer was decided (later ones are only logged).
    pub failures: Vec<Attempt>,
    /// The request's deadline ran out before the ack level was reached or missed.
    pub deadline_exceeded: bool,
}

impl WriteOutcome {
    pub fn succeeded(&self) -> bool {
        self.acks >= self.required
    }
}

/// Runs one backend call under the per-attempt timeout, cut short by `deadline`, and logs it if
/// it fails.
async fn timed<T>(
    node: &str,
    op: &'static str,
    key: &[u8],
    timeout: Duration,
    deadline: Instant,
    call: impl Future<Output = Result<T, BackendError>>,
) -> Result<T, BackendError> {
    let timeout = timeout.min(deadline.saturating_duration_since(Instant::now()));
    let result = with_timeout(timeout, call).await;
    if let Err(e) = &result {
        tracing::warn!(
            request_id = %request_id::for_log(),
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

/// [`timed`] on a node of `snap`, feeding the node's health: a success records its latency,
/// a failure counts toward ejection and, when it ejects the node, schedules its probe.
async fn attempt<T>(
    snap: &Snapshot,
    index: usize,
    op: &'static str,
    key: &[u8],
    deadline: Instant,
    call: impl Future<Output = Result<T, BackendError>>,
) -> Result<T, BackendError> {
    let node = snap.node_id(index);
    let policy = &snap.config.resilience;
    let started = Instant::now();
    let result = timed(
        node,
        op,
        key,
        snap.config.timeouts.request(),
        deadline,
        call,
    )
    .await;
    let failure = result.as_ref().err().map(BackendError::kind);
    snap.node_metrics[index].attempt(&snap.metrics, op, started.elapsed(), failure);
    let health = &snap.health[index];
    match &result {
        Ok(_) => health.on_success(started.elapsed(), policy),
        Err(e) if health::counts_against_node(e) => {
            if let AfterFailure::Ejected(backoff) = health.on_failure(e, policy, snap.may_eject()) {
                schedule_probe(snap, index, e, backoff);
            }
        }
        Err(_) => {}
    }
    result
}

/// Logs an ejection and schedules the node's readmission probe.
fn schedule_probe(snap: &Snapshot, index: usize, why: &BackendError, backoff: Duration) {
    let node = snap.node_id(index);
    tracing::warn!(
        request_id = %request_id::for_log(),
        node,
        backoff_ms = backoff.as_millis() as u64,
        error = %why,
        "node ejected"
    );
    health::probe_after(
        node.to_owned(),
        snap.backends[index].clone(),
        snap.health[index].clone(),
        snap.config.resilience,
        snap.config.timeouts.request(),
        backoff,
    );
}

/// Reads from the best replica in service, falling back down the ranking on an error or
/// timeout, and on a miss until the miss is final (see [`crate::routing::ReadPlan`]). Ejected
/// replicas are skipped. A replica slow to answer is hedged: the next one is asked too, and the
/// first value wins.
///
/// While a handoff window is open the current replicas may not have the key yet: every one of
/// them is asked, then the key's earlier replicas, newest first. A value found there is
/// returned and copied forward. Earlier replicas older than the key's last recorded PUT hold
/// stale values and are skipped; after a recorded DELETE none is asked. A miss is reported
/// only if every replica asked answered; otherwise the read failed.
pub async fn read(snap: &Arc<Snapshot>, key: &Bytes, deadline: Instant) -> ReadOutcome {
    let began = Instant::now();
    snap.hedge_budget
        .on_read(snap.config.resilience.hedge_budget_percent);
    // Only while a window is open does the key's last write matter (and cost a lookup).
    let window_open = snap.handoff_open();
    let last_write = window_open.then(|| snap.recent_writes.last(key)).flatten();
    let handoff = window_open && last_write.is_none_or(|w| w.kind == WriteKind::Put);
    let current = read_current(snap, key, handoff, deadline).await;
    if !handoff
        || !matches!(
            current,
            ReadOutcome::Missing
                | ReadOutcome::Failed {
                    deadline_exceeded: false,
                    ..
                }
        )
    {
        return current;
    }
    let timeout = snap.config.timeouts.request();
    let mut attempts = match current {
        ReadOutcome::Failed { attempts, .. } => attempts,
        _ => Vec::new(),
    };
    let min_generation = last_write.map_or(0, |w| w.generation);
    for prev in handoff::previous_replicas(snap, key, min_generation) {
        let call = prev.backend.get(key);
        match timed(&prev.node, "get", key, timeout, deadline, call).await {
            Ok(Some(value)) => {
                snap.metrics.handoff_hits.inc();
                let (snap, key, copy) = (snap.clone(), key.clone(), value.clone());
                request_id::spawn(async move {
                    let targets = snap.replicas(&key);
                    let copied =
                        handoff::copy_where_absent(&snap, &key, &copy, targets.iter(), began).await;
                    snap.metrics.handoff_copies.inc_by(copied.stored);
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
        ReadOutcome::Failed {
            attempts,
            deadline_exceeded: Instant::now() >= deadline,
        }
    } else {
        ReadOutcome::Missing
    }
}

/// Reads the current replicas in rank order, hedging slow ones; with `exhaustive`, a miss never
/// ends the read early (the handoff case).
async fn read_current(
    snap: &Snapshot,
    key: &[u8],
    exhaustive: bool,
    deadline: Instant,
) -> ReadOutcome {
    let plan = snap.read_plan(key);
    let mut attempts = Vec::new();
    let mut in_service = Vec::with_capacity(plan.replicas.len());
    for index in plan.replicas.iter() {
        if snap.health[index].is_up() {
            in_service.push(index);
        } else {
            attempts.push(Attempt {
                node: snap.node_id(index).to_owned(),
                result: Err(BackendError::Ejected),
            });
        }
    }
    let get = |index: usize| {
        attempt(
            snap,
            index,
            "get",
            key,
            deadline,
            snap.backends[index].get(key),
        )
    };
    let mut misses = 0;
    let mut next = 0;
    while next < in_service.len() {
        if Instant::now() >= deadline {
            return ReadOutcome::Failed {
                attempts,
                deadline_exceeded: true,
            };
        }
        let first = in_service[next];
        let second = in_service.get(next + 1).copied();
        let delay = second.and_then(|_| hedge::delay(&snap.config.resilience, &snap.health[first]));
        let raced = hedge::race(
            get(first),
            delay,
            &snap.hedge_budget,
            || get(second.unwrap_or(first)),
            |r| matches!(r, Ok(Some(_))),
        )
        .await;
        if !matches!(raced, Raced::Alone(_)) {
            snap.metrics.hedges_sent.inc();
        }
        let (answers, asked) = match raced {
            Raced::Alone(a) | Raced::FirstWon(a) => ([Some((first, a)), None], 1),
            Raced::SecondWon(b) => {
                // The first replica was slower than its own p95 and was cancelled: a node
                // that keeps losing hedges is hung or overloaded, and is ejected like one
                // that fails.
                snap.metrics.hedges_won.inc();
                let slow = BackendError::Slow;
                let health = &snap.health[first];
                if let AfterFailure::Ejected(backoff) =
                    health.on_failure(&slow, &snap.config.resilience, snap.may_eject())
                {
                    schedule_probe(snap, first, &slow, backoff);
                }
                ([Some((second.unwrap_or(first), b)), None], 2)
            }
            Raced::Both(a, b) => ([Some((first, a)), Some((second.unwrap_or(first), b))], 2),
        };
        next += asked;
        // No allocation on the way to a value: node names are copied only for error bodies.
        for (index, answer) in answers.into_iter().flatten() {
            let node = || snap.node_id(index).to_owned();
            match answer {
                Ok(Some(value)) => {
                    let rank = plan.replicas.iter().position(|i| i == index).unwrap_or(0);
                    if rank > 0 {
                        let rank = u16::try_from(rank + 1).unwrap_or(u16::MAX);
                        snap.metrics
                            .read_fallbacks
                            .get_or_create(&RankLabel { rank })
                            .inc();
                    }
                    return ReadOutcome::Found {
                        source: Source::Current(index),
                        value,
                    };
                }
                Ok(None) => {
                    misses += 1;
                    if !exhaustive && misses >= plan.misses_to_stop {
                        return ReadOutcome::Missing;
                    }
                    attempts.push(Attempt {
                        node: node(),
                        result: Ok("not found"),
                    });
                }
                Err(e) => attempts.push(Attempt {
                    node: node(),
                    result: Err(e),
                }),
            }
        }
    }
    let any_failed = attempts.iter().any(|a| a.result.is_err());
    if exhaustive && !any_failed {
        ReadOutcome::Missing
    } else {
        ReadOutcome::Failed {
            attempts,
            deadline_exceeded: Instant::now() >= deadline,
        }
    }
}

/// Sends a write to every replica in parallel and returns once `required` acked; replicas
/// still working then finish in the background, and one that fails then is logged as a write
/// that missed a replica. Ejected replicas count as failed at once (the write is still sent to
/// them, best effort). A write that misses its ack level waits for every replica (each bounded
/// by the request timeout and the deadline), so the 503 reports what really happened,
/// including the replicas that did store it.
///
/// While a handoff window is open, the write is recorded (so no handoff copy lands over it)
/// and the key is deleted from its earlier replicas before answering (for a PUT, once the
/// ack level is reached), so no read or returning node can bring an old value back.
pub async fn write(
    snap: Arc<Snapshot>,
    key: Bytes,
    op: WriteOp,
    required: usize,
    deadline: Instant,
) -> WriteOutcome {
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
        WriteOp::Delete => delete_earlier(earlier.clone(), &key, timeout, deadline),
        WriteOp::Put(..) => Vec::new(),
    };
    let mut outcome = WriteOutcome {
        acks: 0,
        replicas: plan.replicas.len(),
        required,
        failures: Vec::new(),
        deadline_exceeded: false,
    };
    let (tx, mut rx) = mpsc::channel(outcome.replicas.max(1));
    let mut pending = 0;
    for index in plan.replicas.iter() {
        let ejected = !snap.health[index].is_up();
        if ejected {
            outcome.failures.push(Attempt {
                node: snap.node_id(index).to_owned(),
                result: Err(BackendError::Ejected),
            });
        } else {
            pending += 1;
        }
        let (snap, key, op, tx) = (snap.clone(), key.clone(), op.clone(), tx.clone());
        request_id::spawn(async move {
            let backend = &snap.backends[index];
            let name = op.name();
            let call = match op {
                WriteOp::Put(value, ttl) => backend.put(&key, value, ttl),
                WriteOp::Delete => backend.delete(&key),
            };
            if ejected {
                // Best effort, so the node is less stale when it returns; not counted.
                let node = snap.node_id(index);
                let _ = timed(node, name, &key, timeout, Instant::now() + timeout, call).await;
            } else {
                let result =
                    attempt(&snap, index, name, &key, Instant::now() + timeout, call).await;
                let _ = tx.send((index, result)).await;
            }
        });
    }
    drop(tx);
    while pending > 0 && outcome.acks < required {
        let received = tokio::select! {
            received = rx.recv() => received,
            _ = tokio::time::sleep_until(deadline.into()) => {
                outcome.deadline_exceeded = true;
                break;
            }
        };
        let Some((index, result)) = received else {
            break;
        };
        pending -= 1;
        match result {
            Ok(()) => outcome.acks += 1,
            Err(e) => outcome.failures.push(Attempt {
                node: snap.node_id(index).to_owned(),
                result: Err(e),
            }),
        }
    }
    if pending > 0 {
        request_id::spawn(log_late_failures(snap.clone(), key.clone(), rx));
    }
    // A PUT that reached its ack level makes the earlier copies stale: remove them, so a node
    // that becomes a replica again later cannot serve the old value.
    if matches!(op, WriteOp::Put(..)) && outcome.succeeded() {
        earlier_deletes = delete_earlier(earlier, &key, timeout, deadline);
    }
    for delete in earlier_deletes {
        let _ = delete.await;
    }
    if !outcome.succeeded() {
        snap.metrics.write_quorum_failures.inc();
    } else if outcome.acks < outcome.replicas {
        snap.metrics.writes_short_of_r.inc();
    }
    outcome
}

/// Replicas that fail after the answer went out: the write missed them. Logged, never silent.
async fn log_late_failures(
    snap: Arc<Snapshot>,
    key: Bytes,
    mut rx: mpsc::Receiver<(usize, Result<(), BackendError>)>,
) {
    while let Some((index, result)) = rx.recv().await {
        if let Err(e) = result {
            tracing::warn!(
                request_id = %request_id::for_log(),
                node = snap.node_id(index),
                key_hash = format_args!("{:016x}", key_hash(&key)),
                error = %e,
                "write missed a replica after its ack level was reached"
            );
        }
    }
}

fn delete_earlier(
    earlier: Vec<handoff::PreviousReplica>,
    key: &Bytes,
    timeout: Duration,
    deadline: Instant,
) -> Vec<tokio::task::JoinHandle<()>> {
    earlier
        .into_iter()
        .map(|prev| {
            let key = key.clone();
            request_id::spawn(async move {
                let call = prev.backend.delete(&key);
                let _ = timed(&prev.node, "delete", &key, timeout, deadline, call).await;
            })
        })
        .collect()
}
