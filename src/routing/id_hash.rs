//! Hashing node ids for the sets and maps that hold a whole membership: xxh3, several times
//! faster than the standard library's SipHash over a million ids. Ids come from the operator's
//! config, not from clients, so there is no flooding to resist.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};

use twox_hash::XxHash3_64;

/// Builds [`IdHasher`]s.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHashing;

/// xxh3 over everything written, each write seeded with the hash so far.
#[derive(Debug, Default)]
pub struct IdHasher(u64);

impl BuildHasher for IdHashing {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = XxHash3_64::oneshot_with_seed(self.0, bytes);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub type IdMap<K, V> = HashMap<K, V, IdHashing>;
pub type IdSet<K> = HashSet<K, IdHashing>;
