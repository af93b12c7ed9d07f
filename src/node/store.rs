//! The node's data: ordered, so that it can be listed page by page. Each entry is a value or a
//! tombstone with its version; writes land under a condition (put-if-newer for versioned
//! writes), atomically under one lock. Expired entries are invisible at once and swept out by
//! [`Store::sweep`].

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use crate::backend::{Condition, Written};
use crate::net::Ttl;
use crate::version::{unix_now, Stored, Version};

/// What the node holds for a key, and when it expires, if it does.
#[derive(Debug, Clone)]
struct Entry {
    stored: Stored,
    expires: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| now < at)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Store {
    map: RwLock<BTreeMap<Vec<u8>, Entry>>,
}

impl Store {
    /// What the node holds for the key (a value or a tombstone), unless it expired.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Stored> {
        let now = Instant::now();
        self.read()
            .get(key)
            .filter(|e| e.live(now))
            .map(|e| e.stored.clone())
    }

    /// Writes under `condition`: `Kept` (with what is held) when the node keeps its entry.
    pub(crate) fn put(
        &self,
        key: Vec<u8>,
        stored: Stored,
        ttl: Option<Ttl>,
        condition: Condition,
    ) -> (Written, Option<Version>) {
        let now = Instant::now();
        let mut map = self.write();
        let held = map.get(&key).filter(|e| e.live(now));
        let keep = match (condition, held) {
            (_, None) | (Condition::Always, _) => false,
            (Condition::IfAbsent, Some(_)) => true,
            (Condition::IfNewer, Some(e)) => e.stored.version >= stored.version,
        };
        if keep {
            return (Written::Kept, held.map(|e| e.stored.version));
        }
        let expires = ttl.map(|t| now + Duration::from_secs(u64::from(t.get())));
        // The same moment as a point in time, for GET to answer in `x-hrw-expires`.
        let stored = Stored {
            expires: ttl.map(|t| unix_now() + u64::from(t.get())),
            ..stored
        };
        map.insert(key, Entry { stored, expires });
        (Written::Stored, None)
    }

    /// Up to `limit` live keys strictly after `after`, in byte order, with what each holds.
    pub(crate) fn entries_after(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Vec<(Vec<u8>, Stored)> {
        use std::ops::Bound;
        let start = match after {
            Some(after) => Bound::Excluded(after),
            None => Bound::Unbounded,
        };
        let now = Instant::now();
        self.read()
            .range::<[u8], _>((start, Bound::Unbounded))
            .filter(|(_, e)| e.live(now))
            .take(limit)
            .map(|(k, e)| (k.clone(), e.stored.clone()))
            .collect()
    }

    /// Drops expired entries.
    pub(crate) fn sweep(&self) {
        let now = Instant::now();
        self.write().retain(|_, e| e.live(now));
    }

    /// Removes the key, whatever it holds.
    pub(crate) fn remove(&self, key: &[u8]) {
        self.write().remove(key);
    }

    // A panic while holding the lock cannot leave the map half-changed (every operation is a
    // single call), so a poisoned lock is still safe to use.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Vec<u8>, Entry>> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<Vec<u8>, Entry>> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn value(version: u128, v: &'static [u8]) -> Stored {
        Stored::new(Version(version), Some(Bytes::from_static(v)))
    }

    #[test]
    fn put_if_newer_keeps_the_newest_whatever_the_order() {
        let store = Store::default();
        let newer = Condition::IfNewer;
        assert_eq!(
            store.put(b"k".to_vec(), value(5, b"five"), None, newer).0,
            Written::Stored
        );
        assert_eq!(
            store.put(b"k".to_vec(), value(3, b"three"), None, newer),
            (Written::Kept, Some(Version(5)))
        );
        assert_eq!(
            store.put(b"k".to_vec(), value(5, b"again"), None, newer).0,
            Written::Kept
        );
        let tombstone = Stored::new(Version(7), None);
        assert_eq!(
            store.put(b"k".to_vec(), tombstone.clone(), None, newer).0,
            Written::Stored
        );
        assert_eq!(
            store.put(b"k".to_vec(), value(6, b"six"), None, newer).0,
            Written::Kept
        );
        assert_eq!(store.get(b"k"), Some(tombstone));
        // Listed with the tombstone; a blind write replaces anything.
        assert_eq!(store.entries_after(None, 10).len(), 1);
        assert_eq!(
            store
                .put(b"k".to_vec(), value(0, b"raw"), None, Condition::Always)
                .0,
            Written::Stored
        );
        assert_eq!(
            store
                .put(b"k".to_vec(), value(0, b"x"), None, Condition::IfAbsent)
                .0,
            Written::Kept
        );
        assert_eq!(store.get(b"k"), Some(value(0, b"raw")));
        store.remove(b"k");
        assert_eq!(store.get(b"k"), None);
    }
}
