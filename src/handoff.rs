//! Zero-miss handoff after a placement change: for the handoff window, a read that misses on
//! a key's current replicas asks the replicas it had in earlier snapshots and copies a value it
//! finds forward (only where absent), and a delete also reaches the earlier replicas, so a
//! deleted key cannot come back from them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::backend::Backend;
use crate::routing::key_hash;
use crate::snapshot::Snapshot;

/// A replica a key had in an earlier snapshot, and not in the current one.
#[derive(Debug, Clone)]
pub struct PreviousReplica {
    pub node: String,
    pub generation: u64,
    pub backend: Arc<dyn Backend>,
}

/// The key's replicas in the snapshots whose window is open, newest first, excluding the
/// current replicas and repeats (a node is its id at its URL).
pub fn previous_replicas(snap: &Snapshot, key: &[u8]) -> Vec<PreviousReplica> {
    let now = Instant::now();
    let hash = key_hash(key);
    let mut seen: Vec<(&str, &str)> = snap
        .ring
        .top(hash, snap.config.replicas)
        .iter()
        .map(|i| snap.node_identity(i))
        .collect();
    let mut found = Vec::new();
    for retired in snap.previous.iter().filter(|r| r.is_open(now)) {
        let old = &retired.snapshot;
        for index in old.ring.top(hash, old.config.replicas).iter() {
            let identity = old.node_identity(index);
            if seen.contains(&identity) {
                continue;
            }
            seen.push(identity);
            found.push(PreviousReplica {
                node: old.node_id(index).to_owned(),
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

/// Client writes recorded while a handoff window is open, so a value copied forward never
/// lands over (or resurrects) something a client did after the read began. Shared by every
/// snapshot of one process.
#[derive(Debug, Default)]
pub struct RecentWrites {
    writes: Mutex<HashMap<Bytes, (Instant, WriteKind)>>,
}

/// Entries older than this are dropped when the map grows: a read copying a value forward
/// takes at most a few request timeouts.
const RECENT_WRITES_TTL: Duration = Duration::from_secs(60);
const RECENT_WRITES_PRUNE_AT: usize = 100_000;

impl RecentWrites {
    pub fn record(&self, key: &Bytes, kind: WriteKind) {
        let now = Instant::now();
        let mut writes = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        if writes.len() >= RECENT_WRITES_PRUNE_AT {
            writes.retain(|_, (at, _)| now.duration_since(*at) < RECENT_WRITES_TTL);
        }
        writes.insert(key.clone(), (now, kind));
    }

    /// The kind of the last write of `key` recorded after `since`.
    pub fn since(&self, key: &[u8], since: Instant) -> Option<WriteKind> {
        let writes = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        writes
            .get(key)
            .filter(|(at, _)| *at >= since)
            .map(|(_, kind)| *kind)
    }
}

/// Copies a value found on an earlier replica to the key's current replicas, where absent.
/// Skipped if a client wrote the key since `read_began`; undone where it landed if a client
/// deleted the key meanwhile.
pub async fn copy_forward(snap: Arc<Snapshot>, key: Bytes, value: Bytes, read_began: Instant) {
    if snap.recent_writes.since(&key, read_began).is_some() {
        return;
    }
    let timeout = snap.config.timeouts.request();
    let mut stored = Vec::new();
    for index in snap.ring.top(key_hash(&key), snap.config.replicas).iter() {
        let backend = &snap.backends[index];
        match tokio::time::timeout(timeout, backend.put_if_absent(&key, value.clone(), None)).await
        {
            Ok(Ok(true)) => stored.push(index),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                tracing::debug!(node = snap.node_id(index), error = %e, "handoff copy failed")
            }
            Err(_) => tracing::debug!(node = snap.node_id(index), "handoff copy timed out"),
        }
    }
    if snap.recent_writes.since(&key, read_began) == Some(WriteKind::Delete) {
        for index in stored {
            let _ = tokio::time::timeout(timeout, snap.backends[index].delete(&key)).await;
        }
    }
}
