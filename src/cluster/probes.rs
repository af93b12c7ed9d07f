//! The one driver that owns every health probe: it readmits ejected nodes once a probe passes
//! (ejecting them again, for longer, when it fails) and runs the active checks of nodes in
//! service. It works on the membership serving now, so a removed node is never probed again,
//! and its probes stop with it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{Cluster, Member};
use crate::backend::with_timeout;
use crate::health::Phase;

/// The longest the driver sleeps without looking at the membership again.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// Why a node is probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// Its ejection ran out; it serves again once this passes.
    Readmit,
    /// An active check of a node in service.
    Check,
}

/// Runs until aborted.
pub(crate) async fn drive(cluster: Arc<Cluster>) {
    let mut running: JoinSet<String> = JoinSet::new();
    let mut probing: HashSet<String> = HashSet::new();
    let mut next_check = Instant::now();
    loop {
        drop(cluster.log_budget.roll());
        let snap = cluster.snapshot();
        let now = Instant::now();
        let interval = snap.config.resilience.health_check_interval_ms;
        let check_now = interval > 0 && now >= next_check;
        if check_now {
            next_check = now + Duration::from_millis(interval);
        }
        let mut wake = now + MAX_SLEEP;
        if interval > 0 {
            wake = wake.min(next_check);
        }
        for member in snap.placement.members.iter() {
            let purpose = match member.health.phase() {
                Phase::Ejected { until } if until <= now => Purpose::Readmit,
                Phase::Ejected { until } => {
                    wake = wake.min(until);
                    continue;
                }
                Phase::Up if check_now => Purpose::Check,
                _ => continue,
            };
            if !probing.insert(member.id().to_owned()) {
                continue;
            }
            let (cluster, member) = (cluster.clone(), member.clone());
            running.spawn(async move {
                probe(&cluster, &member, purpose).await;
                member.id().to_owned()
            });
        }
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = cluster.probes.notified() => {}
            Some(Ok(id)) = running.join_next() => {
                probing.remove(&id);
            }
        }
        // Reap every probe that finished, not one per wake: with many nodes a round ends in
        // thousands of them at once.
        while let Some(Ok(id)) = running.try_join_next() {
            probing.remove(&id);
        }
    }
}

async fn probe(cluster: &Cluster, member: &Member, purpose: Purpose) {
    let snap = cluster.snapshot();
    let policy = snap.config.resilience;
    let timeout = snap.config.timeouts.request();
    if purpose == Purpose::Readmit && !member.health.start_probing(Instant::now()) {
        return;
    }
    let result = with_timeout(timeout, member.backend.health()).await;
    match (purpose, result) {
        (Purpose::Check, Ok(())) => member.health.on_check_passed(),
        (Purpose::Check, Err(e)) => {
            if let Some(unlogged) = cluster.may_log_repeat(member) {
                tracing::warn!(node = member.id(), error = %e, unlogged, "health check failed");
            }
            cluster.record_failure(&snap, member, &e);
        }
        (Purpose::Readmit, result) => match member.health.on_probe(&result, &policy) {
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
                        "node failed its health probe; ejected again"
                    );
                }
            }
        },
    }
}
