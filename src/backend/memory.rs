//! Keys held in memory, ordered so that they can be listed page by page: the built-in node's
//! data, and the fake backend's. Each entry is a value or a tombstone with its version; writes
//! land under a condition (put-if-newer for versioned writes), atomically under one lock.
//! Expired entries are invisible at once and swept out by [`Store::sweep`].

use std::collections::BTreeMap;
use std::sync::RwLock;

use super::{Condition, Written};
use crate::version::{unix_now, Stored, Version};

#[derive(Debug, Default)]
pub(crate) struct Store {
    map: RwLock<BTreeMap<Vec<u8>, Stored>>,
}

impl Store {
    /// What the node holds for the key (a value or a tombstone), unless it expired.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Stored> {
        let now = unix_now();
        self.read().get(key).filter(|s| !s.expired(now)).cloned()
    }

    /// Writes under `condition`, to expire when `stored` says: `Kept` (with what is held)
    /// when the node keeps its entry.
    pub(crate) fn put(
        &self,
        key: Vec<u8>,
        stored: Stored,
        condition: Condition,
    ) -> (Written, Option<Version>) {
        let now = unix_now();
        let mut map = self.write();
        let held = map.get(&key).filter(|s| !s.expired(now));
        let keep = match (condition, held) {
            (_, None) | (Condition::Always, _) => false,
            (Condition::IfAbsent, Some(_)) => true,
            (Condition::IfNewer, Some(held)) => held.version >= stored.version,
        };
        if keep {
            return (Written::Kept, held.map(|s| s.version));
        }
        map.insert(key, stored);
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
        let now = unix_now();
        self.read()
            .range::<[u8], _>((start, Bound::Unbounded))
            .filter(|(_, s)| !s.expired(now))
            .take(limit)
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect()
    }

    /// Drops expired entries.
    pub(crate) fn sweep(&self) {
        let now = unix_now();
        self.write().retain(|_, s| !s.expired(now));
    }

    /// Removes the key, whatever it holds.
    pub(crate) fn remove(&self, key: &[u8]) {
        self.write().remove(key);
    }

    // A panic while holding the lock cannot leave the map half-changed (every operation is a
    // single call), so a poisoned lock is still safe to use.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Vec<u8>, Stored>> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<Vec<u8>, Stored>> {
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
            store.put(b"k".to_vec(), value(5, b"five"), newer).0,
            Written::Stored
        );
        assert_eq!(
            store.put(b"k".to_vec(), value(3, b"three"), newer),
            (Written::Kept, Some(Version(5)))
        );
        assert_eq!(
            store.put(b"k".to_vec(), value(5, b"again"), newer).0,
            Written::Kept
        );
        let tombstone = Stored::new(Version(7), None);
        assert_eq!(
            store.put(b"k".to_vec(), tombstone.clone(), newer).0,
            Written::Stored
        );
        assert_eq!(
            store.put(b"k".to_vec(), value(6, b"six"), newer).0,
            Written::Kept
        );
        assert_eq!(store.get(b"k"), Some(tombstone));
        // Listed with the tombstone; a blind write replaces anything.
        assert_eq!(store.entries_after(None, 10).len(), 1);
        assert_eq!(
            store
                .put(b"k".to_vec(), value(0, b"raw"), Condition::Always)
                .0,
            Written::Stored
        );
        assert_eq!(
            store
                .put(b"k".to_vec(), value(0, b"x"), Condition::IfAbsent)
                .0,
            Written::Kept
        );
        assert_eq!(store.get(b"k"), Some(value(0, b"raw")));
        store.remove(b"k");
        assert_eq!(store.get(b"k"), None);
    }
}
