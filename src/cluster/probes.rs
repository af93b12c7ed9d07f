//! The one driver that owns every health probe: it readmits ejected nodes once a probe passes
//! and the writes they missed (their hints) are replayed (ejecting them again, for longer,
//! when either fails), runs the active checks of nodes in service, and replays the hints of
//! nodes in service that missed a write. It works on the membership serving now, so a removed
//! node is never probed again, and its probes stop with it. On each pass it also lets go of
//! handoff windows that have closed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{hinted_handoff, Cluster, Member, Op, Snapshot};
use crate::backend::{with_timeout, BackendError, Condition};
use crate::health::Phase;
use crate::version::unix_now;

/// The longest the driver sleeps without looking at the membership again.
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// How long after a replay to a node in service the next may start: a node that fails its
/// replays is not hammered with them.
const REPLAY_PAUSE: Duration = Duration::from_secs(1);
/// The most nodes in service actively checked per health check interval: a larger membership
/// is checked in turn (a million nodes at the default 2 s: each every 2,000 s, not 500,000
/// probes a second). Failures of requests still eject a node at once.
pub(crate) const CHECKS_PER_INTERVAL: usize = 1000;

/// Why a node is probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// Its ejection ran out; it serves again once this passes.
    Readmit,
    /// An active check of a node in service.
    Check,
    /// A node in service missed writes: replay them.
    Replay,
}

/// Runs until aborted.
pub(crate) async fn drive(cluster: Arc<Cluster>) {
    let mut running: JoinSet<()> = JoinSet::new();
    // The node each probe task works on, and the nodes being probed: one probe at a time per
    // node, its slot freed however the probe ends.
    let mut tasks: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut probing: HashSet<String> = HashSet::new();
    // When each node in service may have its hints replayed again.
    let mut next_replay: HashMap<String, Instant> = HashMap::new();
    let mut next_check = Instant::now();
    // The first of the nodes the next active checks are for.
    let mut check_from = 0usize;
    loop {
        drop(cluster.log_budget.roll());
        cluster.release_closed_windows();
        let snap = cluster.snapshot();
        let now = Instant::now();
        let interval = snap.config.resilience.health_check_interval_ms;
        let check_now = interval > 0 && now >= next_check;
        let members = &snap.placement.members;
        let checked = if check_now {
            next_check = now + Duration::from_millis(interval);
            let from = if check_from >= members.len() {
                0
            } else {
                check_from
            };
            check_from = from + CHECKS_PER_INTERVAL;
            from..from + CHECKS_PER_INTERVAL
        } else {
            0..0
        };
        let mut wake = now + MAX_SLEEP;
        next_replay.retain(|_, at| *at > now);
        if interval > 0 {
            wake = wake.min(next_check);
        }
        for (at, member) in members.iter().enumerate() {
            let purpose = match member.health.phase() {
                // Probing with no probe running: its probe ended without a verdict.
                Phase::Ejected { .. } | Phase::Probing if member.health.start_probing(now) => {
                    Purpose::Readmit
                }
                Phase::Ejected { until } => {
                    wake = wake.min(until);
                    continue;
                }
                Phase::Up if checked.contains(&at) => Purpose::Check,
                Phase::Up if !member.hints.is_empty() => match next_replay.get(member.id()) {
                    Some(&at) if at > now => {
                        wake = wake.min(at);
                        continue;
                    }
                    _ => Purpose::Replay,
                },
                _ => continue,
            };
            if purpose == Purpose::Replay && !probing.contains(member.id()) {
                next_replay.insert(member.id().to_owned(), now + REPLAY_PAUSE);
            }
            if !probing.insert(member.id().to_owned()) {
                continue;
            }
            let (cluster, task_member) = (cluster.clone(), member.clone());
            let task = running.spawn(async move { probe(&cluster, &task_member, purpose).await });
            tasks.insert(task.id(), member.id().to_owned());
        }
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = cluster.probes.notified() => {}
            Some(ended) = running.join_next_with_id() => {
                if let Some(id) = tasks.remove(&task_id(ended)) {
                    probing.remove(&id);
                }
            }
        }
        // Reap every probe that ended, not one per wake: with many nodes a round ends in
        // thousands of them at once.
        while let Some(ended) = running.try_join_next_with_id() {
            if let Some(id) = tasks.remove(&task_id(ended)) {
                probing.remove(&id);
            }
        }
    }
}

/// The task a probe ran in, whether it ended or failed (panicked, was cancelled).
fn task_id(ended: Result<(tokio::task::Id, ()), tokio::task::JoinError>) -> tokio::task::Id {
    match ended {
        Ok((id, ())) => id,
        Err(e) => {
            tracing::error!(error = %e, "a health probe ended without a verdict; it will be tried again");
            e.id()
        }
    }
}

async fn probe(cluster: &Cluster, member: &Member, purpose: Purpose) {
    let snap = cluster.snapshot();
    let policy = snap.config.resilience;
    let timeout = snap.config.timeouts.request();
    if purpose == Purpose::Replay {
        let _ = replay(cluster, &snap, member).await;
        return;
    }
    let mut result = with_timeout(timeout, member.backend.health()).await;
    // A node comes back only once it has the writes it missed: those this proxy kept, then
    // those stand-ins hold for it (a stand-in that cannot be reached keeps its hints for the
    // next pass rather than keep the node out).
    if purpose == Purpose::Readmit && result.is_ok() {
        result = replay(cluster, &snap, member).await;
        if result.is_ok() {
            hinted_handoff::hand_over(cluster, &snap, Some(member.id())).await;
        }
    }
    match (purpose, result) {
        (Purpose::Check, Ok(())) => member.health.on_check_passed(),
        (Purpose::Check, Err(e)) => {
            if let Some(unlogged) = cluster.may_log_repeat(member) {
                tracing::warn!(node = member.id(), error = %e, unlogged, "health check failed");
            }
            cluster.record_failure(&snap, member, &e);
        }
        (_, result) => match member.health.on_probe(&result, &policy) {
            None if cluster.may_log_change() => {
                tracing::info!(
                    node = member.id(),
                    "node readmitted: its health probe passed"
                )
            }
            None => {}
            Some(backoff) => {
                if let Some(unlogged) = cluster.may_log_repeat(member) {
                    let error = result.err().map(|e| e.to_string()).unwrap_or_default();
                    tracing::warn!(
                        node = member.id(),
                        error,
                        backoff_ms = backoff.as_millis() as u64,
                        unlogged,
                        "node failed its health probe or the replay of its missed writes; ejected again"
                    );
                }
            }
        },
    }
}

/// Replays the writes `member` missed, oldest first, put-if-newer, skipping those expired
/// since; stops at the first the node fails (it stays queued). One the node refuses (too
/// large for it now, say) would be refused again: it is dropped.
async fn replay(cluster: &Cluster, snap: &Snapshot, member: &Member) -> Result<(), BackendError> {
    while let Some(hint) = member.hints.front() {
        // Without versions a replay could overwrite something newer: hints from before a
        // reload turned versioning off are dropped.
        if !snap.config.versioned() {
            cluster.metrics.hints_dropped.inc();
        } else if !hint.stored.expired(unix_now()) {
            let deadline = Instant::now() + snap.config.timeouts.request();
            let call = member
                .backend
                .put(&hint.key, hint.stored.clone(), Condition::IfNewer);
            match cluster
                .attempt(snap, member, Op::Copy, &hint.key, deadline, call)
                .await
            {
                Ok(_) => {
                    cluster.metrics.hints_replayed.inc();
                }
                Err(e) if e.counts_against_node() => return Err(e),
                Err(_) => {
                    cluster.metrics.hints_dropped.inc();
                }
            }
        }
        member.hints.pop();
    }
    Ok(())
}
