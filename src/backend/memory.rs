//! Keys held in memory, ordered so that they can be listed page by page: the built-in node's
//! data, and the fake backend's. Each entry is a value or a tombstone with its version; writes
//! land under a condition (put-if-newer for versioned writes), atomically under one lock.
//! Beside the entries, the hints: for a key stored here in place of a replica that was out of
//! service, that replica's id and the newest version it missed. Expired entries are invisible
//! at once and swept out by [`Store::sweep`], with the hints left pointing at nothing.

use std::collections::BTreeMap;
use std::sync::RwLock;

use bytes::Bytes;

use super::{Condition, HeldHint, Written};
use crate::version::{unix_now, Stored, Version};

#[derive(Debug, Default)]
pub(crate) struct Store {
    data: RwLock<Data>,
}

#[derive(Debug, Default)]
struct Data {
    entries: BTreeMap<Vec<u8>, Stored>,
    /// Per key, each replica it stands in for and the newest version that replica missed.
    hints: BTreeMap<Vec<u8>, Vec<(String, Version)>>,
}

impl Data {
    fn put(
        &mut self,
        key: Vec<u8>,
        stored: Stored,
        condition: Condition,
    ) -> (Written, Option<Version>) {
        let now = unix_now();
        let held = self.entries.get(&key).filter(|s| !s.expired(now));
        let keep = match (condition, held) {
            (_, None) | (Condition::Always, _) => false,
            (Condition::IfAbsent, Some(_)) => true,
            (Condition::IfNewer, Some(held)) => held.version >= stored.version,
        };
        if keep {
            return (Written::Kept, held.map(|s| s.version));
        }
        self.entries.insert(key, stored);
        (Written::Stored, None)
    }
}

impl Store {
    /// What the node holds for the key (a value or a tombstone), unless it expired.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Stored> {
        let now = unix_now();
        self.read()
            .entries
            .get(key)
            .filter(|s| !s.expired(now))
            .cloned()
    }

    /// Writes under `condition`, to expire when `stored` says: `Kept` (with what is held)
    /// when the node keeps its entry.
    pub(crate) fn put(
        &self,
        key: Vec<u8>,
        stored: Stored,
        condition: Condition,
    ) -> (Written, Option<Version>) {
        self.write().put(key, stored, condition)
    }

    /// A put-if-newer standing in for replica `owner`, and the hint that `owner` missed the
    /// key up to this version (kept even when the node keeps a newer one: the owner missed
    /// this write all the same), in one step.
    pub(crate) fn put_hinted(
        &self,
        key: Vec<u8>,
        stored: Stored,
        owner: &str,
    ) -> (Written, Option<Version>) {
        let mut data = self.write();
        let version = stored.version;
        let hints = data.hints.entry(key.clone()).or_default();
        match hints.iter_mut().find(|(o, _)| o == owner) {
            Some((_, held)) => *held = (*held).max(version),
            None => hints.push((owner.to_owned(), version)),
        }
        data.put(key, stored, Condition::IfNewer)
    }

    /// Up to `limit` hints, by key, of keys strictly after `after`; every hint of a key is in
    /// the same page.
    pub(crate) fn hints_after(&self, after: Option<&[u8]>, limit: usize) -> Vec<HeldHint> {
        use std::ops::Bound;
        let start = match after {
            Some(after) => Bound::Excluded(after),
            None => Bound::Unbounded,
        };
        let mut page = Vec::new();
        for (key, owners) in self
            .read()
            .hints
            .range::<[u8], _>((start, Bound::Unbounded))
        {
            if page.len() >= limit {
                break;
            }
            let key = Bytes::copy_from_slice(key);
            page.extend(owners.iter().map(|(owner, version)| HeldHint {
                key: key.clone(),
                owner: owner.clone(),
                version: *version,
            }));
        }
        page
    }

    /// Drops the hint that `owner` missed `key`, unless a newer write than `up_to` renewed
    /// it; with `release`, and no other hint left for the key, also removes the entry if it is
    /// no newer than `up_to` (a stand-in's copy, now handed over). One step.
    pub(crate) fn drop_hint(&self, key: &[u8], owner: &str, up_to: Version, release: bool) {
        let mut data = self.write();
        let Some(hints) = data.hints.get_mut(key) else {
            return;
        };
        hints.retain(|(o, version)| o != owner || *version > up_to);
        if !hints.is_empty() {
            return;
        }
        data.hints.remove(key);
        if release && data.entries.get(key).is_some_and(|s| s.version <= up_to) {
            data.entries.remove(key);
        }
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
            .entries
            .range::<[u8], _>((start, Bound::Unbounded))
            .filter(|(_, s)| !s.expired(now))
            .take(limit)
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect()
    }

    /// Drops expired entries, and the hints of keys that hold nothing any more.
    pub(crate) fn sweep(&self) {
        let now = unix_now();
        let mut data = self.write();
        data.entries.retain(|_, s| !s.expired(now));
        let Data { entries, hints } = &mut *data;
        hints.retain(|key, _| entries.contains_key(key));
    }

    /// Removes the key, whatever it holds.
    pub(crate) fn remove(&self, key: &[u8]) {
        self.write().entries.remove(key);
    }

    // A panic while holding the lock cannot leave the data half-changed (every operation is
    // a single call), so a poisoned lock is still safe to use.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Data> {
        self.data.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Data> {
        self.data.write().unwrap_or_else(|e| e.into_inner())
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

    #[test]
    fn a_hint_is_kept_until_handed_over_and_its_copy_released_unless_renewed() {
        let store = Store::default();
        store.put_hinted(b"k".to_vec(), value(5, b"five"), "a");
        // Kept: the node holds something newer; the owner missed version 3 all the same.
        store.put(b"j".to_vec(), value(9, b"nine"), Condition::IfNewer);
        assert_eq!(
            store.put_hinted(b"j".to_vec(), value(3, b"three"), "b").0,
            Written::Kept
        );
        let listed = store.hints_after(None, 10);
        assert_eq!(listed.len(), 2);
        assert_eq!(
            (
                &listed[0].key[..],
                listed[0].owner.as_str(),
                listed[0].version
            ),
            (&b"j"[..], "b", Version(3))
        );
        assert_eq!(
            store.hints_after(Some(b"j"), 10).len(),
            1,
            "after j: only k"
        );
        // Renewed by a newer hinted write: handing over version 5 does not drop it.
        store.put_hinted(b"k".to_vec(), value(6, b"six"), "a");
        store.drop_hint(b"k", "a", Version(5), true);
        assert_eq!(store.hints_after(None, 10).len(), 2);
        assert_eq!(store.get(b"k").unwrap().version, Version(6));
        // Handed over up to 6: the hint goes, and the copy with it.
        store.drop_hint(b"k", "a", Version(6), true);
        assert_eq!(store.hints_after(None, 10).len(), 1);
        assert_eq!(store.get(b"k"), None, "released");
        // Without release the copy stays (the node is a replica of the key).
        store.drop_hint(b"j", "b", Version(3), false);
        assert!(store.hints_after(None, 10).is_empty());
        assert_eq!(store.get(b"j").unwrap().version, Version(9));
    }
}
