//! Hints: the writes a node missed (it was ejected, cut off or too slow when they were made),
//! kept in memory by the proxy that made them and replayed with put-if-newer before the node
//! serves again. Bounded per node by writes and bytes; past the bounds writes are dropped and
//! counted. The durable copy of a hint is the one a stand-in node keeps (see
//! `hinted_handoff`); what the last pass over the nodes found for this node, and how many
//! were handed over, are kept here beside the queue.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;

use crate::config::HintLimits;
use crate::lock;
use crate::version::{Stored, Version};

/// One missed write.
#[derive(Debug, Clone)]
pub(crate) struct Hint {
    pub key: Bytes,
    pub stored: Stored,
}

impl Hint {
    fn bytes(&self) -> usize {
        self.key.len() + self.stored.value.as_ref().map_or(0, Bytes::len)
    }
}

#[derive(Debug, Default)]
struct Queue {
    hints: VecDeque<Hint>,
    bytes: usize,
    /// Hints dropped because the queue was full, ever.
    dropped: u64,
}

/// One node's hints; kept by node id across reloads, like its health.
#[derive(Debug, Default)]
pub(crate) struct Hints {
    queue: Mutex<Queue>,
    /// What other nodes held for this one at the end of the last pass over them.
    on_nodes: Mutex<OnNodes>,
    /// Hints held on other nodes and handed over to this one, ever.
    handed_off: AtomicU64,
}

/// Hints other nodes hold for one node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OnNodes {
    pub count: u64,
    /// The oldest version among them.
    pub oldest: Option<Version>,
}

impl OnNodes {
    /// Adds what another pass found.
    pub(crate) fn merge(&mut self, other: OnNodes) {
        self.count += other.count;
        self.oldest = match (self.oldest, other.oldest) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    pub(crate) fn add(&mut self, version: Version) {
        self.count += 1;
        self.oldest = Some(self.oldest.map_or(version, |o| o.min(version)));
    }
}

/// What the queue holds, for `/admin/nodes` and the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct HintCounts {
    pub queued: usize,
    pub dropped: u64,
    /// The version of the first write queued (the longest waiting).
    pub oldest_queued: Option<Version>,
    pub on_nodes: OnNodes,
    pub handed_off: u64,
}

impl HintCounts {
    /// Seconds since the oldest hint for the node was written, in memory or on a node (by
    /// its version's clock; 0 for a version that is no clock reading).
    pub(crate) fn oldest_age_s(&self) -> Option<u64> {
        let oldest = match (self.oldest_queued, self.on_nodes.oldest) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        let now = crate::version::unix_now().saturating_mul(1_000_000);
        Some(now.saturating_sub(oldest.micros()) / 1_000_000)
    }
}

impl Hints {
    /// Keeps a missed write; false if the queue is full and it was dropped.
    pub(crate) fn push(&self, hint: Hint, limits: &HintLimits) -> bool {
        let mut q = lock(&self.queue);
        let size = hint.bytes();
        if q.hints.len() >= limits.max_writes || q.bytes + size > limits.max_bytes {
            q.dropped += 1;
            return false;
        }
        q.bytes += size;
        q.hints.push_back(hint);
        true
    }

    /// The oldest missed write, to replay.
    pub(crate) fn front(&self) -> Option<Hint> {
        lock(&self.queue).hints.front().cloned()
    }

    /// The oldest missed write was replayed: it goes.
    pub(crate) fn pop(&self) {
        let mut q = lock(&self.queue);
        if let Some(hint) = q.hints.pop_front() {
            q.bytes -= hint.bytes();
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        lock(&self.queue).hints.is_empty()
    }

    pub(crate) fn counts(&self) -> HintCounts {
        let q = lock(&self.queue);
        HintCounts {
            queued: q.hints.len(),
            dropped: q.dropped,
            oldest_queued: q.hints.front().map(|h| h.stored.version),
            on_nodes: *lock(&self.on_nodes),
            handed_off: self.handed_off.load(Ordering::Relaxed),
        }
    }

    /// What a pass over the nodes found held for this one.
    pub(crate) fn found_on_nodes(&self, found: OnNodes) {
        *lock(&self.on_nodes) = found;
    }

    /// A hint held on another node was handed over to this one.
    pub(crate) fn handed_off(&self) {
        self.handed_off.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::Version;

    fn hint(key: &str, value: usize) -> Hint {
        Hint {
            key: Bytes::copy_from_slice(key.as_bytes()),
            stored: Stored::new(Version(1), Some(Bytes::from(vec![0; value]))),
        }
    }

    #[test]
    fn the_queue_is_bounded_by_writes_and_bytes() {
        let hints = Hints::default();
        let limits = HintLimits {
            max_writes: 3,
            max_bytes: 100,
            scan_interval_s: 10,
        };
        assert!(hints.push(hint("a", 10), &limits));
        assert!(hints.push(hint("b", 10), &limits));
        assert!(!hints.push(hint("c", 100), &limits), "over the bytes");
        assert!(hints.push(hint("d", 10), &limits));
        assert!(!hints.push(hint("e", 1), &limits), "over the writes");
        assert_eq!((hints.counts().queued, hints.counts().dropped), (3, 2));
        assert_eq!(hints.counts().oldest_queued, Some(Version(1)));
        assert_eq!(&hints.front().unwrap().key[..], b"a", "oldest first");
        hints.pop();
        hints.pop();
        hints.pop();
        assert!(hints.is_empty());
        assert!(
            hints.push(hint("f", 90), &limits),
            "the bytes were given back"
        );
        let none = HintLimits {
            max_writes: 0,
            ..limits
        };
        assert!(!hints.push(hint("g", 1), &none), "0 writes: no hints");
    }
}
