//! Zero-miss handoff after a placement change. For a window after the change, a read that
//! misses on a key's current replicas asks the replicas it had in earlier placements and
//! copies a value it finds forward (only where absent); writes remove the key from the
//! earlier replicas, and are recorded ([`RecentWrites`]) so that neither a deleted nor an
//! overwritten value comes back from them. Rebalance copies through the same function.

mod recent_writes;

use std::sync::Arc;

use bytes::Bytes;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub(crate) use self::recent_writes::{RecentWrites, WriteKind, MIN_KEEP};
use crate::backend::BackendError;
use crate::cluster::{Cluster, Member, Op, Snapshot};
use crate::net::context;

/// A replica a key had in an earlier placement, and not in the current one.
#[derive(Debug, Clone)]
pub(crate) struct Earlier {
    pub member: Arc<Member>,
    pub generation: u64,
}

/// The key's replicas in the placements whose window is open, newest first, from generation
/// `min_generation` on, without the current replicas and repeats. A node is its id: the id
/// decides placement, and a node whose URL changed is the same storage reached another way.
pub(crate) fn earlier_replicas(snap: &Snapshot, key: &[u8], min_generation: u64) -> Vec<Earlier> {
    let current = snap.placement.replicas(key);
    let mut found: Vec<Earlier> = Vec::new();
    for window in snap.open_windows() {
        let old = &window.placement;
        if old.generation < min_generation {
            continue;
        }
        for member in old.replicas(key).iter() {
            let id = member.id();
            if current.contains(id) || found.iter().any(|e| e.member.id() == id) {
                continue;
            }
            found.push(Earlier {
                member: member.clone(),
                generation: old.generation,
            });
        }
    }
    found
}

/// A value found on an earlier replica.
#[derive(Debug)]
pub(crate) struct Found {
    pub value: Bytes,
    pub from: Earlier,
}

/// Asks the key's earlier replicas, newest placement first, for a value its current replicas
/// do not have. Earlier replicas older than the key's last recorded PUT hold stale values and
/// are skipped. A value found is copied forward to the current replicas in the background
/// (unless a client writes the key after `began`). Also returns the replicas that failed.
pub(crate) async fn read_earlier(
    cluster: &Arc<Cluster>,
    snap: &Arc<Snapshot>,
    recent: &Arc<RecentWrites>,
    key: &Bytes,
    min_generation: u64,
    began: Instant,
    deadline: Instant,
) -> (Option<Found>, Vec<(Arc<Member>, BackendError)>) {
    let mut failures = Vec::new();
    for earlier in earlier_replicas(snap, key, min_generation) {
        let member = &earlier.member;
        let call = member.backend.get(key);
        match cluster
            .attempt(snap, member, Op::Get, key, deadline, call)
            .await
        {
            Ok(Some(value)) => {
                cluster.metrics.handoff_hits.inc();
                let (cluster, snap, recent) = (cluster.clone(), snap.clone(), recent.clone());
                let (key, copy) = (key.clone(), value.clone());
                context::spawn(async move {
                    let targets = snap.placement.replicas(&key);
                    let copied = copy_where_absent(
                        &cluster,
                        &snap,
                        &recent,
                        &key,
                        &copy,
                        targets.iter(),
                        began,
                    )
                    .await;
                    cluster.metrics.handoff_copies.inc_by(copied.stored);
                });
                let found = Found {
                    value,
                    from: earlier,
                };
                return (Some(found), failures);
            }
            Ok(None) => {}
            Err(e) => failures.push((earlier.member, e)),
        }
    }
    (None, failures)
}

/// What a copy did, per target.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CopyOutcome {
    pub stored: u64,
    pub present: u64,
    pub failed: u64,
}

/// Stores `value` on `targets` where absent, unless a client wrote the key since `began`;
/// removes the copies again if a client deleted it meanwhile.
pub(crate) async fn copy_where_absent<'a>(
    cluster: &Cluster,
    snap: &Snapshot,
    recent: &RecentWrites,
    key: &Bytes,
    value: &Bytes,
    targets: impl IntoIterator<Item = &'a Arc<Member>>,
    began: Instant,
) -> CopyOutcome {
    let mut outcome = CopyOutcome::default();
    if recent.since(key, began).is_some() {
        return outcome;
    }
    // Each call has its own attempt time: a slow first target must not starve the others,
    // nor the undo below.
    let deadline = || Instant::now() + snap.config.timeouts.request();
    let mut stored = Vec::new();
    for member in targets {
        let call = member.backend.put_if_absent(key, value.clone(), None);
        match cluster
            .attempt(snap, member, Op::Copy, key, deadline(), call)
            .await
        {
            Ok(true) => stored.push(member),
            Ok(false) => outcome.present += 1,
            Err(_) => outcome.failed += 1,
        }
    }
    if recent.since(key, began) == Some(WriteKind::Delete) {
        for member in stored.drain(..) {
            let call = member.backend.delete(key);
            let _ = cluster
                .attempt(snap, member, Op::Copy, key, deadline(), call)
                .await;
        }
    }
    outcome.stored = stored.len() as u64;
    outcome
}

/// Deletes the key from its earlier replicas, each in its own task.
pub(crate) fn delete_earlier(
    cluster: &Arc<Cluster>,
    snap: &Arc<Snapshot>,
    earlier: Vec<Earlier>,
    key: &Bytes,
    deadline: Instant,
) -> Vec<JoinHandle<()>> {
    earlier
        .into_iter()
        .map(|e| {
            let (cluster, snap, key) = (cluster.clone(), snap.clone(), key.clone());
            context::spawn(async move {
                let call = e.member.backend.delete(&key);
                let _ = cluster
                    .attempt(&snap, &e.member, Op::Delete, &key, deadline, call)
                    .await;
            })
        })
        .collect()
}
