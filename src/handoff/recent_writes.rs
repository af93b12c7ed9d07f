//! Client writes recorded while a handoff window is open or a rebalance runs, so that a key
//! written in that time is served from its current replicas only, and a copy made by handoff
//! or rebalance never lands over (or resurrects) it. One per proxy process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::lock;

/// How long a recorded write is kept at least: longer than any one copy by handoff or
/// rebalance takes, so a copy always sees the writes made while it ran.
pub(crate) const MIN_KEEP: Duration = Duration::from_secs(60);
/// How often at most the map is pruned of old entries.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// The last client write of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteKind {
    Put,
    Delete,
}

/// A recorded write: when, what, and the generation of the snapshot it went to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Recorded {
    pub at: Instant,
    pub kind: WriteKind,
    pub generation: u64,
}

#[derive(Debug, Default)]
pub(crate) struct RecentWrites {
    state: Mutex<Writes>,
    /// Rebalances running in this process; they need writes recorded even with no window open.
    rebalances: AtomicUsize,
}

#[derive(Debug, Default)]
struct Writes {
    by_key: HashMap<Bytes, Recorded>,
    last_prune: Option<Instant>,
}

impl RecentWrites {
    /// Whether writes must be recorded now, with a handoff window open or not.
    pub(crate) fn wanted(&self, window_open: bool) -> bool {
        window_open || self.rebalances.load(Ordering::Relaxed) > 0
    }

    /// Records a write; entries older than `keep` are dropped now and then.
    pub(crate) fn record(&self, key: &Bytes, kind: WriteKind, generation: u64, keep: Duration) {
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
    pub(crate) fn last(&self, key: &[u8]) -> Option<Recorded> {
        lock(&self.state).by_key.get(key).copied()
    }

    /// The kind of the last write of `key` recorded at or after `since`.
    pub(crate) fn since(&self, key: &[u8], since: Instant) -> Option<WriteKind> {
        self.last(key).filter(|w| w.at >= since).map(|w| w.kind)
    }

    /// Marks a rebalance as running until the guard is dropped.
    pub(crate) fn rebalancing(self: &Arc<Self>) -> RebalanceGuard {
        self.rebalances.fetch_add(1, Ordering::Relaxed);
        RebalanceGuard(self.clone())
    }
}

pub(crate) struct RebalanceGuard(Arc<RecentWrites>);

impl Drop for RebalanceGuard {
    fn drop(&mut self) {
        self.0.rebalances.fetch_sub(1, Ordering::Relaxed);
    }
}
