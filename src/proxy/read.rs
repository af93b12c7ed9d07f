//! Reads: a GET waits for R answers from the key's replicas in service (a value, a tombstone,
//! or "absent"), asking them in rank order and falling back down the ranking when one fails;
//! the newest version wins, a tombstone newest is a 404. With a sloppy quorum, when the
//! replicas in service cannot give R answers, the next nodes of the key's ranking (stand-ins,
//! which hold what was written while replicas were out) are asked too, and their answers count.
//! A node slow to answer is hedged: one more is asked, and a node that keeps losing hedges
//! counts as failing. Replicas found older than the newest get it written back in the
//! background (read repair, within a budget).
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
use super::outcome::{
    Attempted, Failure, ReadFailure, ReadOutcome, ANSWERED, NOT_FOUND, NO_ANSWER,
};
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    /// A current replica, by rank.
    Replica(usize),
    /// A stand-in for replicas out of service: the next nodes of the ranking, by place.
    StandIn(usize),
    /// A replica in the placement of this generation, asked during its handoff window.
    Earlier(u64),
}

impl Source {
    fn earlier(self) -> Option<u64> {
        match self {
            Source::Earlier(generation) => Some(generation),
            Source::Replica(_) | Source::StandIn(_) => None,
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
    let Gathered { mut answers, asked } = gather(path, snap, key, &replicas, need, deadline).await;
    let found_value = answers
        .iter()
        .any(|a| a.held.as_ref().is_some_and(|s| !s.is_tombstone()));
    // Without versions the first value found is the answer; with them, R answers are.
    let settled = answers.len() >= need || (found_value && !versioned);
    if !settled {
        return failed(path, key, answers.len(), need, asked.report(), deadline);
    }
    let mut attempts: Vec<Attempted> = Vec::new();
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
            let mut report = asked.report();
            report.extend(attempts);
            return failed(path, key, answers.len(), need, report, deadline);
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
                Source::Replica(rank) | Source::StandIn(rank) if rank > 0 => {
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

/// A read short of R: classified, worded once, and logged (within the log budget).
fn failed(
    path: &DataPath,
    key: &[u8],
    answers: usize,
    needed: usize,
    nodes: Vec<Attempted>,
    deadline: Instant,
) -> ReadOutcome {
    let why = Failure::of_read(&nodes, Instant::now() >= deadline);
    let failure = ReadFailure {
        why,
        answers,
        needed,
        nodes,
    };
    if path.cluster.log_budget.allow() {
        tracing::warn!(
            request_id = %crate::net::context::id_for_log(),
            key_hash = format_args!("{:016x}", crate::routing::key_hash(key)),
            "read failed: {}",
            failure.message()
        );
    }
    ReadOutcome::Failed(failure)
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
    // Only the replicas: stand-ins and earlier replicas hold copies, not the key.
    let stale: Vec<Arc<Member>> = answers
        .iter()
        .filter(|a| matches!(a.from, Source::Replica(_)))
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
    candidates: &mut [Candidate],
    factor: f64,
    metrics: &crate::metrics::Metrics,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let (mut total, mut up) = (0u64, 0u64);
    for member in snap.placement.members.iter().filter(|m| m.health.is_up()) {
        total += member.in_flight.load(Relaxed);
        up += 1;
    }
    let bound = factor * total as f64 / up.max(1) as f64 + 1.0;
    let in_service: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].heard == Heard::Queued)
        .collect();
    let load = |i: usize| candidates[i].member.in_flight.load(Relaxed) as f64;
    let Some(&first) = in_service.first() else {
        return;
    };
    if load(first) <= bound {
        return;
    }
    if let Some(under) = in_service.iter().position(|&i| load(i) <= bound) {
        // The one under the bound goes first; those before it move one place down.
        for k in (1..=under).rev() {
            candidates.swap(in_service[k], in_service[k - 1]);
        }
        metrics.read_load_spills.inc();
    }
}

/// What became of a node a read may ask.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Heard {
    /// In service, not asked yet.
    Queued,
    /// Out of service: not asked.
    Ejected,
    Waiting,
    Answered,
    /// Nothing there, without versions (where a miss is not the answer).
    Missed,
    Failed(BackendError),
}

/// A node a read may ask, where it stands in the order to ask, and what became of it.
struct Candidate {
    member: Arc<Member>,
    from: Source,
    heard: Heard,
}

/// The nodes a read may ask, in order: the key's replicas (in service first by rank), then,
/// with a sloppy quorum and only once they are needed, the stand-ins.
struct Candidates<'a> {
    list: Vec<Candidate>,
    /// The first that may still be queued.
    next: usize,
    /// Where the stand-ins come from, until they are added.
    stand_ins: Option<(&'a Snapshot, &'a [u8], &'a Replicas<'a>)>,
}

impl Candidates<'_> {
    /// The next node to ask, if any is left (adding the stand-ins when the replicas run out).
    fn take_next(&mut self) -> Option<usize> {
        loop {
            while self.next < self.list.len() {
                let at = self.next;
                self.next += 1;
                if self.list[at].heard == Heard::Queued {
                    self.list[at].heard = Heard::Waiting;
                    return Some(at);
                }
            }
            let (snap, key, replicas) = self.stand_ins.take()?;
            let first = replicas.len();
            for (place, member) in snap
                .placement
                .stand_ins(key, replicas)
                .into_iter()
                .enumerate()
            {
                let heard = if member.health.is_up() {
                    Heard::Queued
                } else {
                    Heard::Ejected
                };
                self.list.push(Candidate {
                    member,
                    from: Source::StandIn(first + place),
                    heard,
                });
            }
        }
    }

    /// Whether a replica in service is still to be asked: a hedge goes only to replicas. A
    /// stand-in answers for a replica that is out, not for one that is slow (it would answer
    /// "absent" for a key it never held).
    fn has_next_replica(&self) -> bool {
        self.list[self.next..]
            .iter()
            .any(|c| c.heard == Heard::Queued && matches!(c.from, Source::Replica(_)))
    }

    /// What every node considered did, in rank order, for a failure's report.
    fn report(mut self) -> Vec<Attempted> {
        let place = |from: Source| match from {
            Source::Replica(rank) | Source::StandIn(rank) => rank,
            Source::Earlier(_) => usize::MAX,
        };
        self.list.sort_by_key(|c| place(c.from));
        self.list
            .iter()
            .filter_map(|c| {
                let member = &c.member;
                Some(match &c.heard {
                    Heard::Queued => return None,
                    Heard::Ejected => Attempted::failed(member, BackendError::Ejected),
                    Heard::Waiting => Attempted::said(member, NO_ANSWER),
                    Heard::Answered => Attempted::said(member, ANSWERED),
                    Heard::Missed => Attempted::said(member, NOT_FOUND),
                    Heard::Failed(e) => Attempted::failed(member, e.clone()),
                })
            })
            .collect()
    }
}

/// What the nodes asked said.
struct Gathered<'a> {
    answers: Vec<Answer>,
    asked: Candidates<'a>,
}

/// Asks the replicas in service, in rank order, until `need` answered (or, without versions,
/// one gave a value), moving on past failures (with a sloppy quorum, on to the stand-ins),
/// hedging once when the first ones are slow.
async fn gather<'a>(
    path: &DataPath,
    snap: &'a Snapshot,
    key: &'a [u8],
    replicas: &'a Replicas<'a>,
    need: usize,
    deadline: Instant,
) -> Gathered<'a> {
    let cluster = &path.cluster;
    let versioned = snap.config.versioned();
    let mut list = Vec::with_capacity(replicas.len());
    for (rank, member) in replicas.iter().enumerate() {
        let heard = if member.health.is_up() {
            Heard::Queued
        } else {
            Heard::Ejected
        };
        list.push(Candidate {
            member: member.clone(),
            from: Source::Replica(rank),
            heard,
        });
    }
    if let Some(factor) = snap.config.read_load_factor {
        spill_past_loaded(snap, &mut list, factor, &cluster.metrics);
    }
    let mut asked = Candidates {
        list,
        next: 0,
        stand_ins: snap.config.sloppy().then_some((snap, key, replicas)),
    };
    let get = |at: usize, member: Arc<Member>| async move {
        let call = member.backend.get(key);
        let result = cluster
            .attempt(snap, &member, Op::Get, key, deadline, call)
            .await;
        (at, result)
    };
    let mut running = FuturesUnordered::new();
    // With versions the R nodes are asked at once; without, one at a time, the first value
    // being the answer.
    let width = if versioned { need } else { 1 };
    // Asked and not answered yet.
    let mut pending: Vec<usize> = Vec::new();
    let ask = |asked: &mut Candidates<'_>, pending: &mut Vec<usize>| {
        let at = asked.take_next()?;
        pending.push(at);
        Some(get(at, asked.list[at].member.clone()))
    };
    while pending.len() < width {
        match ask(&mut asked, &mut pending) {
            Some(call) => running.push(call),
            None => break,
        }
    }
    // One hedge per read, once the first node is slower than it usually is.
    let mut hedge_at = pending
        .first()
        .and_then(|&at| hedge::delay(&snap.config.resilience, &asked.list[at].member.health))
        .map(|delay| Instant::now() + delay);
    // The nodes a hedge raced: any still working when the read ends lost the race.
    let mut raced: Vec<usize> = Vec::new();
    let mut hedged: Option<usize> = None;
    let mut answers: Vec<Answer> = Vec::with_capacity(need);
    while answers.len() < need && !running.is_empty() {
        let hedge_due = hedge_at.filter(|_| asked.has_next_replica());
        tokio::select! {
            Some((at, result)) = running.next() => {
                pending.retain(|&p| p != at);
                // Asked one at a time, the next node is asked at once anyway: a hedge is for
                // a first node that is slow, not for the ones after it.
                if !versioned {
                    hedge_at = None;
                }
                let candidate = &mut asked.list[at];
                match result {
                    Ok(held) => {
                        let value = held.as_ref().is_some_and(|s| !s.is_tombstone());
                        candidate.heard = if held.is_none() && !versioned {
                            Heard::Missed
                        } else {
                            Heard::Answered
                        };
                        if value && hedged == Some(at) {
                            cluster.metrics.hedges_won.inc();
                        }
                        answers.push(Answer {
                            member: candidate.member.clone(),
                            held,
                            from: candidate.from,
                        });
                        if value && !versioned {
                            break;
                        }
                        if !versioned && answers.len() < need {
                            running.extend(ask(&mut asked, &mut pending));
                        }
                    }
                    Err(e) => {
                        candidate.heard = Heard::Failed(e);
                        running.extend(ask(&mut asked, &mut pending));
                    }
                }
            }
            _ = tokio::time::sleep_until(hedge_due.unwrap_or(deadline)), if hedge_due.is_some() => {
                hedge_at = None;
                if path.hedge_budget.try_spend() {
                    cluster.metrics.hedges_sent.inc();
                    raced = pending.clone();
                    let call = ask(&mut asked, &mut pending);
                    hedged = pending.last().copied().filter(|_| call.is_some());
                    running.extend(call);
                }
            }
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    // A node that keeps losing hedges is hung or overloaded, and is ejected like one that
    // fails.
    if hedged.is_some() && !answers.is_empty() {
        for at in raced.into_iter().filter(|at| pending.contains(at)) {
            cluster.record_failure(snap, &asked.list[at].member, &BackendError::Slow);
        }
    }
    Gathered { answers, asked }
}
