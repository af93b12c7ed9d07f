//! Zero-miss handoff after a placement change: for the handoff window, a read that misses on
//! a key's current replicas asks the replicas it had in earlier snapshots and copies a value it
//! finds forward (only where absent), and writes remove the key from the earlier replicas, so
//! neither a deleted nor an overwritten value can come back from them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::backend::{with_timeout, Backend};
use crate::lock;
use crate::snapshot::Snapshot;

/// A replica a key had in an earlier snapshot, and not in the current one.
#[derive(Debug, Clone)]
pub struct PreviousReplica {
    pub node: String,
    pub generation: u64,
    pub backend: Arc<dyn Backend>,
}

/// The key's replicas in the snapshots whose window is open, newest first, from generation
/// `min_generation` on, excluding the current replicas and repeats. A node is its id: the id decides placement, and a node whose
/// URL changed is the same storage reached another way.
pub fn previous_replicas(snap: &Snapshot, key: &[u8], min_generation: u64) -> Vec<PreviousReplica> {
    let mut seen: Vec<&str> = snap.replicas(key).iter().map(|i| snap.node_id(i)).collect();
    let mut found = Vec::new();
    for retired in snap.open_windows() {
        let old = &retired.snapshot;
        if old.generation < min_generation {
            continue;
        }
        for index in old.replicas(key).iter() {
            let id = old.node_id(index);
            if seen.contains(&id) {
                continue;
            }
            seen.push(id);
            found.push(PreviousReplica {
                node: id.to_owned(),
                generation: old.generation,
                backend: old.backends[index].clone(),
            });
        }
    }
    found
}

/// The last client write of a key, while a handoff window is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    Put,
    Delete,
}

/// Client writes recorded while a handoff window is open or a rebalance runs. A key written
/// in that time is served from its current replicas only, and a copy made by handoff or
/// rebalance never lands over (or resurrects) it. Shared by every snapshot of one process.
#[derive(Debug, Default)]
pub struct RecentWrites {
    state: Mutex<Writes>,
    /// Rebalances running in this process; they need writes recorded even with no window open.
    rebalances: AtomicUsize,
}

/// A recorded write: when, what, and the generation of the snapshot it went to.
#[derive(Debug, Clone, Copy)]
pub struct Recorded {
    pub at: Instant,
    pub kind: WriteKind,
    pub generation: u64,
}

#[derive(Debug, Default)]
struct Writes {
    by_key: HashMap<Bytes, Recorded>,
    last_prune: Option<Instant>,
}

/// How often at most the map is pruned of entries older than the handoff window.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

impl RecentWrites {
    /// Whether writes must be recorded now.
    pub fn wanted(&self, snap: &Snapshot) -> bool {
        snap.handoff_open() || self.rebalances.load(Ordering::Relaxed) > 0
    }

    /// Records a write; entries older than `keep` are dropped now and then.
    pub fn record(&self, key: &Bytes, kind: WriteKind, generation: u64, keep: Duration) {
        let now = Instant::now();
        let mut writes = lock(&self.state);
        if writes
            .last_prune
            .is_none_or(|at| now.duration_since(at) >= PRUNE_EVERY)
        {
            writes.by_key.retain(|_, w| now.duration_since(w.at) < keep);
            writes.last_prune = Some(now);
        }
        let write = Recorded {
            at: now,
            kind,
            generation,
        };
        writes.by_key.insert(key.clone(), write);
    }

    /// The last write of `key` recorded, if any.
    pub fn last(&self, key: &[u8]) -> Option<Recorded> {
        lock(&self.state).by_key.get(key).copied()
    }

    /// The kind of the last write of `key` recorded at or after `since`.
    pub fn since(&self, key: &[u8], since: Instant) -> Option<WriteKind> {
        self.last(key).filter(|w| w.at >= since).map(|w| w.kind)
    }

    /// Marks a rebalance as running until the guard is dropped.
    pub fn rebalancing(self: &Arc<Self>) -> RebalanceGuard {
        self.rebalances.fetch_add(1, Ordering::Relaxed);
        RebalanceGuard(self.clone())
    }
}

pub struct RebalanceGuard(Arc<RecentWrites>);

impl Drop for RebalanceGuard {
    fn drop(&mut self) {
        self.0.rebalances.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Stores `value` on `targets` where absent, unless a client wrote the key since `began`;
/// undoes the copies if a client deleted it meanwhile. Returns (stored, already present,
/// failed) counts. Handoff and rebalance both copy through here.
pub async fn copy_where_absent(
    snap: &Snapshot,
    key: &Bytes,
    value: &Bytes,
    targets: impl IntoIterator<Item = usize>,
    began: Instant,
) -> CopyOutcome {
    let mut outcome = CopyOutcome::default();
    if snap.recent_writes.since(key, began).is_some() {
        return outcome;
    }
    let timeout = snap.config.timeouts.request();
    let mut stored = Vec::new();
    for index in targets {
        let backend = &snap.backends[index];
        match with_timeout(timeout, backend.put_if_absent(key, value.clone(), None)).await {
            Ok(true) => stored.push(index),
            Ok(false) => outcome.present += 1,
            Err(e) => {
                tracing::warn!(node = snap.node_id(index), error = %e, "copy to a new replica failed");
                outcome.failed += 1;
            }
        }
    }
    if snap.recent_writes.since(key, began) == Some(WriteKind::Delete) {
        for index in stored.drain(..) {
            let _ = with_timeout(timeout, snap.backends[index].delete(key)).await;
        }
        outcome.undone = true;
    }
    outcome.stored = stored.len() as u64;
    outcome
}

#[derive(Debug, Default, Clone, Copy)]
pub struct CopyOutcome {
    pub stored: u64,
    pub present: u64,
    pub failed: u64,
    /// A client deleted the key while it was being copied; the copies were removed.
    pub undone: bool,
}
