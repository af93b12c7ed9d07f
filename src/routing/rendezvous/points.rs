//! `placement: consistent`, the opt-in placement for large memberships: every node owns points
//! on a circle of 2^64 positions, as many as its weight times `points_per_weight`, and a key's
//! ranking is the order in which nodes are first met walking clockwise from the key's hash. A
//! lookup is a table read, a short binary search and a walk of a few points, whatever the
//! number of nodes, where rendezvous scores every node. Removing a node deletes its points and
//! so only removes it from rankings; adding one only inserts it: the same minimal movement.

use std::sync::OnceLock;

use super::{mix, Ranked, Ring, RingError, RingNode, TopR, MAX_REPLICAS};

/// The most points a ring may hold (12 bytes each).
pub const MAX_POINTS: usize = 1 << 24;
/// The bits of a position that index the lookup table, at most.
const MAX_INDEX_BITS: u32 = 20;

/// The sorted points of every node, and a table from a position's high bits to the first
/// point at or after it.
#[derive(Debug, Clone)]
pub(super) struct Points {
    positions: Box<[u64]>,
    /// The node of each point, beside `positions`.
    owners: Box<[u32]>,
    index_bits: u32,
    /// `starts[b]`: the first point whose position's high `index_bits` bits are `b` or more.
    starts: Box<[u32]>,
}

/// How many points a node of this weight owns: its weight times `per_weight`, rounded.
pub fn points_of(weight: f64, per_weight: f64) -> usize {
    (weight * per_weight).round() as usize
}

/// Every node's point count, checked: each node at least one, all of them within
/// [`MAX_POINTS`]. What building a ring checks, without building it.
pub fn point_counts<'a>(
    nodes: impl IntoIterator<Item = (&'a str, f64)>,
    per_weight: f64,
) -> Result<Vec<usize>, RingError> {
    let mut counts = Vec::new();
    let mut total = 0usize;
    for (id, weight) in nodes {
        let count = points_of(weight, per_weight);
        if count == 0 {
            return Err(RingError::NoPoints {
                id: id.to_owned(),
                weight,
                per_weight,
            });
        }
        total = total.saturating_add(count);
        counts.push(count);
    }
    if total > MAX_POINTS {
        return Err(RingError::TooManyPoints(total));
    }
    Ok(counts)
}

impl Points {
    /// The points of `nodes` at `per_weight` points per unit of weight.
    pub(super) fn of_nodes(nodes: &[RingNode], per_weight: f64) -> Result<Points, RingError> {
        let counts = point_counts(nodes.iter().map(|n| (&*n.id, n.weight)), per_weight)?;
        let mut by_id: Vec<u32> = (0..nodes.len() as u32).collect();
        by_id.sort_unstable_by(|&a, &b| nodes[a as usize].id.cmp(&nodes[b as usize].id));
        let mut id_rank = vec![0u32; nodes.len()];
        for (rank, &node) in by_id.iter().enumerate() {
            id_rank[node as usize] = rank as u32;
        }
        let seeds: Vec<u64> = nodes.iter().map(|n| n.seed).collect();
        Ok(Points::build(&seeds, &counts, &id_rank))
    }

    /// `counts[i]` points for node i of seed `seeds[i]`; a tie of positions (a chance of about
    /// n^2 / 2^64) goes to the node whose id sorts first, `id_rank`. Placed by bucket (the
    /// lookup table's) and then sorted within each bucket, which holds about one point: linear
    /// time (a comparison sort of a million points took twice as long), and no memory beyond
    /// the table itself.
    fn build(seeds: &[u64], counts: &[usize], id_rank: &[u32]) -> Points {
        let total: usize = counts.iter().sum();
        let index_bits = (usize::BITS - total.leading_zeros()).clamp(1, MAX_INDEX_BITS);
        let bucket = |position: u64| (position >> (64 - index_bits)) as usize;
        let each_point = || {
            seeds
                .iter()
                .zip(counts)
                .enumerate()
                .flat_map(|(node, (&seed, &count))| {
                    (0..count as u64).map(move |j| (mix(j, seed), node as u32))
                })
        };
        // starts[b + 1] counts bucket b's points, then becomes where bucket b + 1 begins.
        let mut starts = vec![0u32; (1 << index_bits) + 1];
        for (position, _) in each_point() {
            starts[bucket(position) + 1] += 1;
        }
        for b in 1..starts.len() {
            starts[b] += starts[b - 1];
        }
        let mut positions = vec![0u64; total];
        let mut owners = vec![0u32; total];
        let mut next: Vec<u32> = starts[..starts.len() - 1].to_vec();
        for (position, owner) in each_point() {
            let at = &mut next[bucket(position)];
            positions[*at as usize] = position;
            owners[*at as usize] = owner;
            *at += 1;
        }
        drop(next);
        let key = |at: usize, positions: &[u64], owners: &[u32]| {
            (positions[at], id_rank[owners[at] as usize])
        };
        for b in 0..starts.len() - 1 {
            let (lo, hi) = (starts[b] as usize, starts[b + 1] as usize);
            for i in lo + 1..hi {
                let mut at = i;
                while at > lo && key(at - 1, &positions, &owners) > key(at, &positions, &owners) {
                    positions.swap(at - 1, at);
                    owners.swap(at - 1, at);
                    at -= 1;
                }
            }
        }
        Points {
            positions: positions.into(),
            owners: owners.into(),
            index_bits,
            starts: starts.into(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.positions.len()
    }

    /// The first point at or after `position`, wrapping past the last to the first.
    fn first_from(&self, position: u64) -> usize {
        let bucket = (position >> (64 - self.index_bits)) as usize;
        let (lo, hi) = (
            self.starts[bucket] as usize,
            self.starts[bucket + 1] as usize,
        );
        let at = lo + self.positions[lo..hi].partition_point(|&p| p < position);
        if at == self.positions.len() {
            0
        } else {
            at
        }
    }

    /// The nodes in the key's ranking order: each node once, where it is first met.
    pub(super) fn ranking(
        &self,
        key_hash: u64,
        nodes: usize,
    ) -> impl Iterator<Item = (u32, u64)> + '_ {
        let start = self.first_from(key_hash);
        let mut seen = vec![false; nodes];
        (0..self.len())
            .map(move |k| (start + k) % self.len())
            .filter_map(move |i| {
                let owner = self.owners[i];
                let first = !std::mem::replace(&mut seen[owner as usize], true);
                first.then(|| (owner, self.positions[i].wrapping_sub(key_hash)))
            })
    }

    /// The key's best `r` nodes: the first `r` distinct owners clockwise. No allocation.
    pub(super) fn top(&self, key_hash: u64, r: usize) -> TopR {
        let mut top = TopR::EMPTY;
        let start = self.first_from(key_hash);
        for k in 0..self.len() {
            if top.len() == r {
                break;
            }
            let owner = self.owners[(start + k) % self.len()];
            if !top.as_slice().contains(&owner) {
                top.push(owner);
            }
        }
        top
    }
}

/// Consistent placement's points: the count per unit of weight, and the sorted table, built
/// on first use (a key's whole ranking needs no table: see [`Ring::rank_all`]).
#[derive(Debug, Clone)]
pub(super) struct Consistent {
    pub per_weight: f64,
    table: OnceLock<Points>,
}

impl Consistent {
    pub(super) fn new(per_weight: f64) -> Consistent {
        Consistent {
            per_weight,
            table: OnceLock::new(),
        }
    }
}

impl Ring {
    /// Builds what [`Ring::top`] reads (consistent placement's table of points) now, so that
    /// the first request does not wait for it.
    pub fn prepare(&self) {
        self.points();
    }

    /// Consistent placement's sorted points, built on first use.
    pub(super) fn points(&self) -> Option<&Points> {
        let c = self.consistent.as_ref()?;
        Some(c.table.get_or_init(|| {
            Points::of_nodes(&self.nodes, c.per_weight).expect("point counts checked at build")
        }))
    }

    /// Every node ranked for a key hash without the table: where the walk clockwise from the
    /// key's hash first meets a node is that node's nearest point, so one pass over the points
    /// ranks them all.
    pub(super) fn rank_by_points(&self, c: &Consistent, key_hash: u64) -> Vec<Ranked<'_>> {
        // Where the walk first meets a node is its point nearest clockwise; a tie goes to
        // the smaller id, as in the table. One pass over the points, no table.
        let mut nearest: Vec<(u64, usize)> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(index, node)| {
                let count = points_of(node.weight, c.per_weight) as u64;
                let distance = (0..count)
                    .map(|j| mix(j, node.seed).wrapping_sub(key_hash))
                    .min()
                    .expect("every node has a point");
                (distance, index)
            })
            .collect();
        nearest
            .sort_unstable_by(|a, b| (a.0, &self.nodes[a.1].id).cmp(&(b.0, &self.nodes[b.1].id)));
        let whole = 2f64.powi(64);
        nearest
            .into_iter()
            .map(|(distance, index)| self.ranked(index, 1.0 - distance as f64 / whole))
            .collect()
    }

    /// The consistent-placement top `r`, over zones when the ring has them: the same rule as
    /// rendezvous, walked over this ranking.
    pub(super) fn top_of_points(&self, points: &Points, key_hash: u64, r: usize) -> TopR {
        if self.zones.is_none() {
            return points.top(key_hash, r.min(MAX_REPLICAS).min(self.nodes.len()));
        }
        let order = || {
            points
                .ranking(key_hash, self.nodes.len())
                .map(|(node, _)| node)
        };
        self.top_of_order(order, r)
    }
}
