//! Reads: the best replica in service first, falling back down the ranking on an error or a
//! timeout, and on a miss until the miss is final ([`misses_to_stop`]). Ejected replicas are
//! skipped. A replica slow to answer is hedged: the next one is asked too, and the first value
//! wins; a replica that keeps losing hedges counts as failing.
//!
//! While a handoff window is open the current replicas may not have the key yet: every one of
//! them is asked, then the key's earlier replicas (see [`crate::handoff`]). A miss is then
//! reported only if every replica asked answered; otherwise the read failed.

use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use super::hedge::{self, Raced};
use super::outcome::{Attempted, Failure, ReadOutcome};
use super::DataPath;
use crate::backend::BackendError;
use crate::cluster::{Member, Op, Snapshot};
use crate::handoff::{self, WriteKind};
use crate::metrics::RankLabel;
use crate::routing::misses_to_stop;

pub(crate) async fn read(
    path: &Arc<DataPath>,
    snap: &Arc<Snapshot>,
    key: &Bytes,
    deadline: Instant,
) -> ReadOutcome {
    let began = Instant::now();
    path.hedge_budget
        .on_read(snap.config.resilience.hedge_budget_percent);
    // Only while a window is open does the key's last write matter (and cost a lookup).
    let window_open = snap.handoff_open();
    let last_write = window_open.then(|| path.recent.last(key)).flatten();
    // After a recorded DELETE no earlier replica may answer.
    let handoff = window_open && last_write.is_none_or(|w| w.kind == WriteKind::Put);
    let mut attempts = match read_current(path, snap, key, handoff, deadline).await {
        Current::Failed(attempts) if handoff && Instant::now() < deadline => attempts,
        Current::Missing if handoff => Vec::new(),
        current => return current.into_outcome(deadline),
    };
    // Earlier replicas older than the key's last recorded PUT hold stale values.
    let min_generation = last_write.map_or(0, |w| w.generation);
    let cluster = &path.cluster;
    let (found, failures) = handoff::read_earlier(
        cluster,
        snap,
        &path.recent,
        key,
        min_generation,
        began,
        deadline,
    )
    .await;
    if let Some(found) = found {
        return ReadOutcome::Found {
            value: found.value,
            node: found.from.member,
            handoff_from: Some(found.from.generation),
        };
    }
    attempts.extend(failures.into_iter().map(|(m, e)| Attempted::failed(&m, e)));
    if attempts.iter().any(|a| a.result.is_err()) {
        let why = Failure::of_read(&attempts, Instant::now() >= deadline);
        ReadOutcome::Failed { why, attempts }
    } else {
        ReadOutcome::Missing
    }
}

/// What the current replicas said.
enum Current {
    Found(Bytes, Arc<Member>),
    Missing,
    /// Not every replica answered; what each did.
    Failed(Vec<Attempted>),
}

impl Current {
    fn into_outcome(self, deadline: Instant) -> ReadOutcome {
        match self {
            Current::Found(value, node) => ReadOutcome::Found {
                value,
                node,
                handoff_from: None,
            },
            Current::Missing => ReadOutcome::Missing,
            Current::Failed(attempts) => ReadOutcome::Failed {
                why: Failure::of_read(&attempts, Instant::now() >= deadline),
                attempts,
            },
        }
    }
}

/// Reads the current replicas in rank order, hedging slow ones; with `exhaustive`, a miss never
/// ends the read early (the handoff case).
async fn read_current(
    path: &DataPath,
    snap: &Snapshot,
    key: &[u8],
    exhaustive: bool,
    deadline: Instant,
) -> Current {
    let replicas = snap.placement.replicas(key);
    let stop_after = misses_to_stop(replicas.len(), snap.config.write_quorum);
    let cluster = &path.cluster;
    let mut attempts = Vec::new();
    let mut in_service: Vec<usize> = Vec::with_capacity(replicas.len());
    for (rank, member) in replicas.iter().enumerate() {
        if member.health.is_up() {
            in_service.push(rank);
        } else {
            attempts.push(Attempted::failed(member, BackendError::Ejected));
        }
    }
    let get = |rank: usize| {
        let member = replicas.get(rank);
        cluster.attempt(
            snap,
            member,
            Op::Get,
            key,
            deadline,
            member.backend.get(key),
        )
    };
    let mut misses = 0;
    let mut next = 0;
    while next < in_service.len() {
        if Instant::now() >= deadline {
            return Current::Failed(attempts);
        }
        let first = in_service[next];
        let second = in_service.get(next + 1).copied();
        let delay =
            second.and_then(|_| hedge::delay(&snap.config.resilience, &replicas.get(first).health));
        let raced = hedge::race(
            get(first),
            delay,
            &path.hedge_budget,
            || get(second.unwrap_or(first)),
            |r| matches!(r, Ok(Some(_))),
        )
        .await;
        if !matches!(raced, Raced::Alone(_)) {
            cluster.metrics.hedges_sent.inc();
        }
        let (answers, asked) = match raced {
            Raced::Alone(a) | Raced::FirstWon(a) => ([Some((first, a)), None], 1),
            Raced::SecondWon(b) => {
                // The first replica was slower than its own p95 and was cancelled: a node
                // that keeps losing hedges is hung or overloaded, and is ejected like one
                // that fails.
                cluster.metrics.hedges_won.inc();
                cluster.record_failure(snap, replicas.get(first), &BackendError::Slow);
                ([Some((second.unwrap_or(first), b)), None], 2)
            }
            Raced::Both(a, b) => ([Some((first, a)), Some((second.unwrap_or(first), b))], 2),
        };
        next += asked;
        for (rank, answer) in answers.into_iter().flatten() {
            let member = replicas.get(rank);
            match answer {
                Ok(Some(value)) => {
                    if rank > 0 {
                        let rank = u16::try_from(rank + 1).unwrap_or(u16::MAX);
                        cluster
                            .metrics
                            .read_fallbacks
                            .get_or_create(&RankLabel { rank })
                            .inc();
                    }
                    return Current::Found(value, member.clone());
                }
                Ok(None) => {
                    misses += 1;
                    if !exhaustive && misses >= stop_after {
                        return Current::Missing;
                    }
                    attempts.push(Attempted::missed(member));
                }
                Err(e) => attempts.push(Attempted::failed(member, e)),
            }
        }
    }
    if exhaustive && attempts.iter().all(|a| a.result.is_ok()) {
        Current::Missing
    } else {
        Current::Failed(attempts)
    }
}
