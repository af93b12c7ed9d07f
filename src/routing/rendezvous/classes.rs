//! Weight classes, and the scan that finds a key's best nodes among them: nodes of one
//! weight rank by their raw bits alone, so a class is one pass over contiguous node seeds and
//! only its winners are scored.

use std::ops::Range;

use super::{mix, u53, unit_interval, Candidate, Ring, RingNode, TopR, MAX_REPLICAS};

/// Nodes of one weight: within a class, the order by score equals the order by raw bits, so
/// only the class's top-r need a logarithm. Its members are `start..end` of a [`Classes`].
#[derive(Debug, Clone, Copy)]
pub(super) struct WeightClass {
    weight: f64,
    pub(super) start: u32,
    pub(super) end: u32,
}

/// Nodes grouped by weight: every class's node seeds contiguous, so a scan touches nothing
/// else, and their ring indices beside them. One table for a whole ring, or for all the groups
/// of a tree (each group a run of classes).
#[derive(Debug, Clone, Default)]
pub(super) struct Classes {
    pub(super) seeds: Vec<u64>,
    pub(super) members: Vec<u32>,
    pub(super) classes: Vec<WeightClass>,
}

impl Classes {
    /// Adds `members` (indices into `nodes`) as classes of one weight each; returns the
    /// numbers of those classes.
    pub(super) fn add(&mut self, nodes: &[RingNode], members: &[u32]) -> Range<u32> {
        let first = self.classes.len() as u32;
        let mut by_weight = members.to_vec();
        by_weight.sort_by_key(|&i| nodes[i as usize].weight.to_bits());
        for class in
            by_weight.chunk_by(|&a, &b| nodes[a as usize].weight == nodes[b as usize].weight)
        {
            let start = self.seeds.len() as u32;
            self.seeds
                .extend(class.iter().map(|&i| nodes[i as usize].seed));
            self.members.extend_from_slice(class);
            self.classes.push(WeightClass {
                weight: nodes[class[0] as usize].weight,
                start,
                end: self.seeds.len() as u32,
            });
        }
        first..self.classes.len() as u32
    }
}

/// The r best candidates of one weight class by raw bits, best first.
struct Kept {
    list: [Candidate; MAX_REPLICAS],
    len: usize,
    r: usize,
    /// Below this a node cannot enter: 0 until r are kept.
    floor: u64,
}

impl Kept {
    fn new(r: usize) -> Kept {
        Kept {
            list: [Candidate::NONE; MAX_REPLICAS],
            len: 0,
            r,
            floor: 0,
        }
    }

    #[inline]
    fn offer(&mut self, ring: &Ring, index: u32, bits: u64) {
        if bits < self.floor {
            return;
        }
        let cand = Candidate {
            index,
            u53: bits,
            score: 0.0,
        };
        ring.insert(&mut self.list, &mut self.len, self.r, cand);
        if self.len == self.r {
            self.floor = self.list[self.r - 1].u53;
        }
    }
}

impl Ring {
    /// The best `min(r, MAX_REPLICAS, len)` nodes of the key's ranking, best first, in one
    /// scan per weight class with no sort and no allocation.
    pub(super) fn top_of_ranking(&self, key_hash: u64, r: usize) -> TopR {
        let r = r.min(MAX_REPLICAS).min(self.nodes.len());
        let mut best = TopR::EMPTY;
        let all = 0..self.classes.classes.len() as u32;
        let (best_cand, best_len) = self.best_of_classes(&self.classes, all, key_hash, r);
        for (slot, cand) in best.indices.iter_mut().zip(&best_cand[..best_len]) {
            *slot = cand.index;
        }
        best.len = best_len as u8;
        best
    }

    /// The best `min(r, MAX_REPLICAS)` of the nodes in classes `which` of `table` for a key,
    /// best first (the scores filled in only where there is more than one class).
    pub(super) fn best_of_classes(
        &self,
        table: &Classes,
        which: Range<u32>,
        key_hash: u64,
        r: usize,
    ) -> ([Candidate; MAX_REPLICAS], usize) {
        let classes = &table.classes[which.start as usize..which.end as usize];
        let r = r.min(MAX_REPLICAS);
        let mut best_cand = [Candidate::NONE; MAX_REPLICAS];
        let mut best_len = 0usize;
        if r == 0 {
            return (best_cand, 0);
        }
        for class in classes {
            // Within a class every score is the same increasing function of u53, so rank by
            // the raw bits and score only the class winners.
            let mut kept = Kept::new(r);
            // Four nodes at a time: their mixes run in parallel and one comparison skips
            // all four in the common case.
            let (start, end) = (class.start as usize, class.end as usize);
            let (seeds, members) = (&table.seeds[start..end], &table.members[start..end]);
            let mut chunks = seeds.chunks_exact(4);
            for (chunk_no, chunk) in chunks.by_ref().enumerate() {
                let bits = [
                    u53(mix(key_hash, chunk[0])),
                    u53(mix(key_hash, chunk[1])),
                    u53(mix(key_hash, chunk[2])),
                    u53(mix(key_hash, chunk[3])),
                ];
                if bits[0].max(bits[1]).max(bits[2].max(bits[3])) < kept.floor {
                    continue;
                }
                for (k, &b) in bits.iter().enumerate() {
                    kept.offer(self, members[chunk_no * 4 + k], b);
                }
            }
            let done = seeds.len() - chunks.remainder().len();
            for (k, &seed) in chunks.remainder().iter().enumerate() {
                kept.offer(self, members[done + k], u53(mix(key_hash, seed)));
            }
            let (mut local, local_len) = (kept.list, kept.len);
            if classes.len() == 1 {
                return (local, local_len);
            }
            for cand in &mut local[..local_len] {
                cand.score = class.weight / -unit_interval(cand.u53).ln();
                self.insert(&mut best_cand, &mut best_len, r, *cand);
            }
        }
        (best_cand, best_len)
    }
}
