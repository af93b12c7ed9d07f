//! Reads: a GET waits for R answers from the key's replicas in service (a value, a tombstone,
//! or "absent"), asking them in rank order and falling back down the ranking when one fails;
//! the newest version wins, a tombstone newest is a 404. A replica slow to answer is hedged:
//! one more is asked, and a replica that keeps losing hedges counts as failing. Replicas found
//! older than the newest get it written back in the background (read repair, within a budget).
//!
//! While a handoff window is open the key may still be on its earlier replicas only, or newer
//! there (a proxy that had not reloaded yet wrote there): they are asked too, and what they
//! hold competes by version; the winner is copied to the current replicas. Without versions
//! (`versioning: off`) replicas are asked one at a time and the first value found is
//! returned; earlier replicas are asked only when the current ones miss.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;

use super::hedge;
use super::outcome::{Attempted, Failure, ReadOutcome};
use super::DataPath;
use crate::backend::BackendError;
use crate::cluster::{Member, Op, Replicas, Snapshot};
use crate::handoff;
use crate::metrics::RankLabel;
use crate::version::{newest, Stored};

/// One answer: who gave it, what it holds, and where the node stands for the key.
struct Answer {
    member: Arc<Member>,
    held: Option<Stored>,
    from: Source,
}

#[derive(Clone, Copy)]
enum Source {
    /// A current replica, by rank.
    Replica(usize),
    /// A replica in the placement of this generation, asked during its handoff window.
    Earlier(u64),
}

impl Source {
    fn earlier(self) -> Option<u64> {
        match self {
            Source::Earlier(generation) => Some(generation),
            Source::Replica(_) => None,
        }
    }
}

pub(crate) async fn read(
    path: &Arc<DataPath>,
    snap: &Arc<Snapshot>,
    key: &Bytes,
    need: usize,
    deadline: Instant,
) -> ReadOutcome {
    let config = &snap.config;
    path.hedge_budget
        .on_read(config.resilience.hedge_budget_percent);
    path.repair_budget.on_read(config.repair_budget_percent);
    let versioned = config.versioned();
    let replicas = snap.placement.replicas(key);
    let Gathered {
        mut answers,
        mut attempts,
    } = gather(path, snap, key, &replicas, need, versioned, deadline).await;
    let found_value = answers
        .iter()
        .any(|a| a.held.as_ref().is_some_and(|s| !s.is_tombstone()));
    // Without versions the first value found is the answer; with them, R answers are.
    let settled = answers.len() >= need || (found_value && !versioned);
    if !settled {
        let why = Failure::of_read(&attempts, Instant::now() >= deadline);
        return ReadOutcome::Failed { why, attempts };
    }
    let mut earlier_failed = false;
    if snap.handoff_open() && (versioned || !found_value) {
        for earlier in handoff::earlier_replicas(snap, key) {
            let member = earlier.member;
            // Asked whatever its health: a node that left is no longer probed, so an ejection
            // would never end.
            let call = member.backend.get(key);
            match path
                .cluster
                .attempt(snap, &member, Op::Handoff, key, deadline, call)
                .await
            {
                Ok(held) => {
                    let value = held.as_ref().is_some_and(|s| !s.is_tombstone());
                    answers.push(Answer {
                        member,
                        held,
                        from: Source::Earlier(earlier.generation),
                    });
                    if value && !versioned {
                        break;
                    }
                }
                Err(e) => {
                    earlier_failed = true;
                    attempts.push(Attempted::failed(&member, e));
                }
            }
        }
    }
    // Of equal versions the first: current replicas before earlier ones, in rank order.
    let Some(newest) = newest(answers.iter().map(|a| a.held.as_ref())) else {
        if earlier_failed {
            let why = Failure::of_read(&attempts, Instant::now() >= deadline);
            return ReadOutcome::Failed { why, attempts };
        }
        return ReadOutcome::Missing { deleted: None };
    };
    let winner = &answers[newest];
    let stored = winner.held.clone().expect("the newest holds something");
    // A version seen here moves this proxy's clock past it (the hybrid clock's receive rule).
    path.cluster.clock.observe(stored.version);
    repair(
        path,
        snap,
        key,
        &answers,
        &stored,
        winner.from.earlier().is_some(),
    );
    match stored.value {
        Some(value) => {
            let metrics = &path.cluster.metrics;
            match winner.from {
                Source::Earlier(_) => {
                    metrics.handoff_hits.inc();
                }
                Source::Replica(rank) if rank > 0 => {
                    let rank = u16::try_from(rank + 1).unwrap_or(u16::MAX);
                    metrics
                        .read_fallbacks
                        .get_or_create(&RankLabel { rank })
                        .inc();
                }
                _ => {}
            }
            ReadOutcome::Found {
                value,
                version: stored.version,
                expires: stored.expires,
                node: winner.member.clone(),
                handoff_from: winner.from.earlier(),
            }
        }
        None => ReadOutcome::Missing {
            deleted: Some(stored.version),
        },
    }
}

/// Writes the newest back to the replicas that answered with something older, in the
/// background: within the repair budget for current replicas that fell behind, always when
/// the newest came from an earlier replica (handoff). Without versions only handoff copies.
fn repair(
    path: &Arc<DataPath>,
    snap: &Arc<Snapshot>,
    key: &Bytes,
    answers: &[Answer],
    newest: &Stored,
    handoff: bool,
) {
    let versioned = snap.config.versioned();
    if !versioned && !handoff {
        return;
    }
    let stale: Vec<Arc<Member>> = answers
        .iter()
        .filter(|a| a.from.earlier().is_none())
        .filter(|a| a.held.as_ref().is_none_or(|h| h.version < newest.version))
        .filter(|a| versioned || a.held.is_none())
        .map(|a| a.member.clone())
        .collect();
    if stale.is_empty() || !(handoff || path.repair_budget.try_spend()) {
        return;
    }
    let (path, snap, key, newest) = (path.clone(), snap.clone(), key.clone(), newest.clone());
    crate::net::context::spawn(async move {
        let metrics = &path.cluster.metrics;
        for member in stale {
            let written = path.cluster.copy_to(&snap, &member, &key, &newest).await;
            if matches!(written, Ok(crate::backend::Written::Stored)) {
                if handoff {
                    metrics.handoff_copies.inc();
                } else {
                    metrics.read_repairs.inc();
                }
            }
        }
    });
}

/// Bounded load: when the first replica in service has more attempts in flight than `factor`
/// times the mean over the nodes in service, plus one, the first replica under that bound is
/// asked first instead (never a node outside the replicas: the data is not there). With none
/// under it, the order stays.
fn spill_past_loaded(
    snap: &Snapshot,
    replicas: &Replicas<'_>,
    in_service: &mut [usize],
    factor: f64,
    metrics: &crate::metrics::Metrics,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let load = |rank: usize| replicas.get(rank).in_flight.load(Relaxed) as f64;
    let (mut total, mut up) = (0u64, 0u64);
    for member in snap.placement.members.iter().filter(|m| m.health.is_up()) {
        total += member.in_flight.load(Relaxed);
        up += 1;
    }
    let bound = factor * total as f64 / up.max(1) as f64 + 1.0;
    let Some(&first) = in_service.first() else {
        return;
    };
    if load(first) <= bound {
        return;
    }
    if let Some(under) = in_service.iter().position(|&rank| load(rank) <= bound) {
        in_service[..=under].rotate_right(1);
        metrics.read_load_spills.inc();
    }
}

/// What the current replicas said.
struct Gathered {
    answers: Vec<Answer>,
    /// What went wrong (and, without versions, the misses), for the error body.
    attempts: Vec<Attempted>,
}

/// Asks the replicas in service, in rank order, until `need` answered (or, without versions,
/// one gave a value), moving on past failures, hedging once when the first ones are slow.
async fn gather(
    path: &DataPath,
    snap: &Snapshot,
    key: &[u8],
    replicas: &Replicas<'_>,
    need: usize,
    versioned: bool,
    deadline: Instant,
) -> Gathered {
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
    if let Some(factor) = snap.config.read_load_factor {
        spill_past_loaded(snap, replicas, &mut in_service, factor, &cluster.metrics);
    }
    let get = |rank: usize| {
        let member = replicas.get(rank);
        let call = cluster.attempt(
            snap,
            member,
            Op::Get,
            key,
            deadline,
            member.backend.get(key),
        );
        async move { (rank, call.await) }
    };
    let mut running = FuturesUnordered::new();
    // Ranks asked and not answered yet.
    let mut pending: Vec<usize> = Vec::new();
    let mut next = 0;
    // With versions the R replicas are asked at once; without, one at a time, the first
    // value being the answer.
    let width = if versioned { need } else { 1 };
    while pending.len() < width && next < in_service.len() {
        running.push(get(in_service[next]));
        pending.push(in_service[next]);
        next += 1;
    }
    // One hedge per read, once the first replica is slower than it usually is.
    let mut hedge_at = in_service
        .first()
        .and_then(|&rank| hedge::delay(&snap.config.resilience, &replicas.get(rank).health))
        .map(|delay| Instant::now() + delay);
    // The replicas a hedge raced: any still working when the read ends lost the race.
    let mut raced: Vec<usize> = Vec::new();
    let mut hedged: Option<usize> = None;
    let mut answers: Vec<Answer> = Vec::with_capacity(need);
    while answers.len() < need && !running.is_empty() {
        let hedge_due = hedge_at.filter(|_| next < in_service.len());
        tokio::select! {
            Some((rank, result)) = running.next() => {
                pending.retain(|&r| r != rank);
                // Asked one at a time, the next replica is asked at once anyway: a hedge is
                // for a first replica that is slow, not for the ones after it.
                if !versioned {
                    hedge_at = None;
                }
                let member = replicas.get(rank);
                match result {
                    Ok(held) => {
                        let value = held.as_ref().is_some_and(|s| !s.is_tombstone());
                        if held.is_none() && !versioned {
                            attempts.push(Attempted::missed(member));
                        }
                        if value && hedged == Some(rank) {
                            cluster.metrics.hedges_won.inc();
                        }
                        answers.push(Answer { member: member.clone(), held, from: Source::Replica(rank) });
                        if value && !versioned {
                            break;
                        }
                        if !versioned && answers.len() < need && next < in_service.len() {
                            running.push(get(in_service[next]));
                            pending.push(in_service[next]);
                            next += 1;
                        }
                    }
                    Err(e) => {
                        attempts.push(Attempted::failed(member, e));
                        if next < in_service.len() {
                            running.push(get(in_service[next]));
                            pending.push(in_service[next]);
                            next += 1;
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(hedge_due.unwrap_or(deadline)), if hedge_due.is_some() => {
                hedge_at = None;
                if path.hedge_budget.try_spend() {
                    cluster.metrics.hedges_sent.inc();
                    raced = pending.clone();
                    hedged = Some(in_service[next]);
                    running.push(get(in_service[next]));
                    pending.push(in_service[next]);
                    next += 1;
                }
            }
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    // A node that keeps losing hedges is hung or overloaded, and is ejected like one that
    // fails.
    if hedged.is_some() && !answers.is_empty() {
        for rank in raced.into_iter().filter(|r| pending.contains(r)) {
            cluster.record_failure(snap, replicas.get(rank), &BackendError::Slow);
        }
    }
    Gathered { answers, attempts }
}
