//! Hinted handoff: in sloppy mode a write whose replica is out of service lands on a
//! stand-in, which keeps it with a hint naming the replica (the owner). The hint lives on
//! the node, not in the proxy, so it outlives the proxy that wrote it and any proxy on the
//! same config hands it over. A pass pages through the hints every node holds and, for each
//! owner in service again, copies what the stand-in holds to it (put-if-newer), then drops
//! the hint; the stand-in lets go of its copy too when it is no replica of the key. An owner
//! removed from the config has its hints handed to the key's current replicas instead.
//! Passes run every `hints.scan_interval_s`, when a node is readmitted (before it serves),
//! and first in every repair. A pass lists at most [`HOLDERS_PER_PASS`] nodes: a larger
//! membership is listed in turn, a round of passes covering it all, so that a million nodes
//! are not all asked at once, every few seconds.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;

use super::{Cluster, Member, OnNodes, Op, Snapshot};
use crate::backend::{BackendError, HeldHint};

/// Hints asked for per page, and handed over at the same time.
const PAGE: usize = 500;
/// The most nodes one pass lists.
pub(crate) const HOLDERS_PER_PASS: usize = 1000;
const CONCURRENCY: usize = 16;
/// How often the driver looks at the config again while passes are off.
const IDLE: Duration = Duration::from_secs(1);

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Pass {
    /// Hints found, handed over, and left for a later pass (the owner is out of service,
    /// or a copy failed).
    pub found: u64,
    pub handed_off: u64,
    pub left: u64,
    /// Nodes whose hints could not be listed (to the end).
    pub unlisted: u64,
}

/// Where the passes over a large membership are: the next node to list, and what the round's
/// passes so far found left held for each owner.
#[derive(Debug, Default)]
pub(crate) struct Round {
    next: usize,
    held: HashMap<String, OnNodes>,
}

/// Runs passes until aborted: every scan interval, and sooner when woken.
pub(crate) async fn drive(cluster: Arc<Cluster>) {
    loop {
        let snap = cluster.snapshot();
        let wait = match snap.config.hints.scan_interval() {
            Some(interval) => {
                hand_over(&cluster, &snap, None).await;
                interval
            }
            None => IDLE,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cluster.hints_due.notified() => {}
        }
    }
}

/// One pass over the hints every node in service holds; with `only`, just the hints for
/// that owner (a node being readmitted, handed its writes before it serves again, so it is
/// not required to be in service). Records per owner what is left held for it.
pub(crate) async fn hand_over(cluster: &Cluster, snap: &Snapshot, only: Option<&str>) -> Pass {
    let mut pass = Pass::default();
    if !snap.config.versioned() {
        return pass;
    }
    let members = &snap.placement.members;
    // This pass's nodes: all of them, or the next in turn (a pass for one owner lists them
    // too, but leaves the turn to the round).
    let (turn, round_ends) = if members.len() <= HOLDERS_PER_PASS {
        (0..members.len(), true)
    } else {
        let mut round = crate::lock(&cluster.hint_round);
        let start = round.next.min(members.len());
        let end = (start + HOLDERS_PER_PASS).min(members.len());
        if only.is_none() {
            round.next = if end == members.len() { 0 } else { end };
        }
        (start..end, end == members.len())
    };
    let whole = turn.len() == members.len();
    let mut held: HashMap<String, OnNodes> = HashMap::new();
    for holder in members[turn].iter() {
        if !holder.backend.keeps_hints() || !holder.health.is_up() {
            continue;
        }
        let mut cursor: Option<String> = None;
        loop {
            let call = holder.backend.hints(cursor.as_deref(), PAGE);
            let page = match attempt(cluster, snap, holder, b"", call).await {
                Ok(page) => page,
                Err(e) => {
                    if let Some(unlogged) = cluster.may_log_repeat(holder) {
                        tracing::warn!(node = holder.id(), error = %e, unlogged, "hinted handoff: cannot list the node's hints; the rest wait for the next pass");
                    }
                    pass.unlisted += 1;
                    break;
                }
            };
            let readmitting = only.is_some();
            let handovers: Vec<_> = page
                .hints
                .iter()
                .filter(|h| only.is_none_or(|o| o == h.owner))
                .map(|h| hand_one(cluster, snap, holder, h, readmitting))
                .collect();
            let mut handed = futures_util::stream::iter(handovers).buffer_unordered(CONCURRENCY);
            while let Some((hint, done)) = handed.next().await {
                pass.found += 1;
                if done {
                    pass.handed_off += 1;
                } else {
                    pass.left += 1;
                    held.entry(hint.owner.clone())
                        .or_default()
                        .add(hint.version);
                }
            }
            cursor = page.next;
            if cursor.is_none() {
                break;
            }
        }
    }
    // What is left held is known per owner once every node was listed: in this pass, or in
    // the round this pass ends (a pass for one owner only does not count toward a round).
    if !whole && only.is_none() {
        let mut round = crate::lock(&cluster.hint_round);
        for (owner, left) in held.drain() {
            round.held.entry(owner).or_default().merge(left);
        }
        if round_ends {
            held = std::mem::take(&mut round.held);
        }
    }
    if whole || (round_ends && only.is_none()) {
        for member in members.iter() {
            if only.is_none_or(|o| o == member.id()) {
                let left = held.remove(member.id()).unwrap_or_default();
                member.hints.found_on_nodes(left);
            }
        }
    }
    if pass.handed_off > 0 {
        tracing::info!(
            found = pass.found,
            handed_off = pass.handed_off,
            left = pass.left,
            "hinted handoff pass"
        );
    }
    pass
}

/// Hands one hint held on `holder` over; true once it is dropped. `readmitting`: the owner
/// is being readmitted, so it is asked though not in service yet.
async fn hand_one<'a>(
    cluster: &Cluster,
    snap: &Snapshot,
    holder: &Member,
    hint: &'a HeldHint,
    readmitting: bool,
) -> (&'a HeldHint, bool) {
    let owner = snap.placement.member(&hint.owner);
    let replicas = snap.placement.replicas(&hint.key);
    // To the owner while it is a replica of the key; else (removed, or the placement moved
    // the key) to the key's replicas now. Every one of them must be in service: a hint is
    // dropped only once all have the write.
    let targets: Vec<&Arc<Member>> = match owner {
        Some(owner) if replicas.contains(owner.id()) => vec![owner],
        _ => replicas.iter().filter(|r| r.id() != holder.id()).collect(),
    };
    if !readmitting && targets.iter().any(|t| !t.health.is_up()) {
        return (hint, false);
    }
    let call = holder.backend.get(&hint.key);
    let Ok(stored) = attempt(cluster, snap, holder, &hint.key, call).await else {
        return (hint, false);
    };
    // Where the hint and the value are two steps (memcached), the hint may be ahead of a
    // value still on its way: only what was copied is handed over, until the write has had
    // time to land or fail.
    let settled = hint_age(hint) > 2 * snap.config.timeouts.request();
    let up_to = match &stored {
        Some(s) if s.version < hint.version && !settled => s.version,
        None if !settled => return (hint, false),
        _ => hint.version,
    };
    // Nothing held (expired, or let go already): nothing to hand over.
    if let Some(stored) = &stored {
        for target in targets {
            if cluster
                .copy_to(snap, target, &hint.key, stored)
                .await
                .is_err()
            {
                return (hint, false);
            }
        }
    }
    // The stand-in's copy goes with the key's last hint, where the key does not belong.
    let belongs = replicas.contains(holder.id())
        || snap
            .open_windows()
            .any(|w| w.placement.replicas(&hint.key).contains(holder.id()));
    let call = holder
        .backend
        .drop_hint(&hint.key, &hint.owner, up_to, !belongs);
    let dropped = up_to == hint.version
        && attempt(cluster, snap, holder, &hint.key, call)
            .await
            .is_ok();
    if dropped {
        cluster.metrics.hints_handed_off.inc();
        if let Some(owner) = owner {
            owner.hints.handed_off();
        }
    }
    (hint, dropped)
}

/// One attempt of a pass on `node`, with an attempt's time of its own.
async fn attempt<T>(
    cluster: &Cluster,
    snap: &Snapshot,
    node: &Member,
    key: &[u8],
    call: impl Future<Output = Result<T, BackendError>>,
) -> Result<T, BackendError> {
    let deadline = Instant::now() + snap.config.timeouts.request();
    cluster
        .attempt(snap, node, Op::Handoff, key, deadline, call)
        .await
}

/// How long ago the write a hint is for was made, by its version's clock.
fn hint_age(hint: &HeldHint) -> Duration {
    let now = crate::version::unix_now().saturating_mul(1_000_000);
    Duration::from_micros(now.saturating_sub(hint.version.micros()))
}
