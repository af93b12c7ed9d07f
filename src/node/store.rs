//! The node's data: ordered, so that it can be listed page by page. Expired entries are
//! invisible at once and swept out by [`Store::sweep`].

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::net::Ttl;

/// A value and when it expires, if it does.
#[derive(Debug, Clone)]
struct Entry {
    value: Bytes,
    expires: Option<Instant>,
}

impl Entry {
    fn new(value: Bytes, ttl: Option<Ttl>) -> Entry {
        Entry {
            value,
            expires: ttl.map(|t| Instant::now() + Duration::from_secs(u64::from(t.get()))),
        }
    }

    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| now < at)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Store {
    map: RwLock<BTreeMap<Vec<u8>, Entry>>,
}

impl Store {
    pub(crate) fn get(&self, key: &[u8]) -> Option<Bytes> {
        let now = Instant::now();
        self.read()
            .get(key)
            .filter(|e| e.live(now))
            .map(|e| e.value.clone())
    }

    pub(crate) fn put(&self, key: Vec<u8>, value: Bytes, ttl: Option<Ttl>) {
        self.write().insert(key, Entry::new(value, ttl));
    }

    /// Stores only if the key is absent (or expired); true if it stored.
    pub(crate) fn put_if_absent(&self, key: Vec<u8>, value: Bytes, ttl: Option<Ttl>) -> bool {
        let now = Instant::now();
        let mut map = self.write();
        if map.get(&key).is_some_and(|e| e.live(now)) {
            return false;
        }
        map.insert(key, Entry::new(value, ttl));
        true
    }

    /// Up to `limit` live keys strictly after `after`, in byte order.
    pub(crate) fn keys_after(&self, after: Option<&[u8]>, limit: usize) -> Vec<Vec<u8>> {
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
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Drops expired entries.
    pub(crate) fn sweep(&self) {
        let now = Instant::now();
        self.write().retain(|_, e| e.live(now));
    }

    pub(crate) fn delete(&self, key: &[u8]) -> bool {
        let now = Instant::now();
        self.write().remove(key).is_some_and(|e| e.live(now))
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
