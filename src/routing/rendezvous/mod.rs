//! Weighted rendezvous (highest-random-weight) placement: the contract every client must share.

use std::cmp::Ordering;
use std::fmt;

use twox_hash::XxHash3_64;

use self::classes::Classes;
use self::points::Consistent;
pub use self::points::{point_counts, points_of, MAX_POINTS};
use self::tree::Tree;
pub use self::tree::{DEFAULT_GROUP_SIZE, MAX_GROUP_SIZE, MIN_GROUP_SIZE, TREE_SEED};
use self::zones::{Zones, ZonesBuilder};
use super::{IdHashing, IdSet};

mod classes;
mod points;
mod tree;
mod zones;

/// Seed of the xxh3-64 hash of a key (the plain, unseeded xxh3-64).
pub const KEY_SEED: u64 = 0;
/// Seed of the xxh3-64 hash of a node id; distinct from [`KEY_SEED`] so a key equal to a node id
/// is not special.
pub const NODE_SEED: u64 = 0x9E37_79B9_7F4A_7C15;
/// The largest replica count a [`Ring::top`] call can return; the fixed size of [`TopR`].
pub const MAX_REPLICAS: usize = 16;
/// The range of node weights: far inside the doubles where `weight / -ln(u)` stays finite and
/// normal (it would overflow near 1e292 and lose precision below about 1e-290), so shares
/// follow weights everywhere in it.
pub const MIN_WEIGHT: f64 = 1e-12;
pub const MAX_WEIGHT: f64 = 1e12;

/// Hashes a key once per request: xxh3-64 of the raw key bytes with [`KEY_SEED`].
#[inline]
pub fn key_hash(key: &[u8]) -> u64 {
    XxHash3_64::oneshot_with_seed(KEY_SEED, key)
}

/// The per-node seed: xxh3-64 of the node id's UTF-8 bytes with [`NODE_SEED`]. Derived from the
/// id, never the URL, so moving a node to a new address moves no keys.
#[inline]
pub fn node_seed(id: &str) -> u64 {
    XxHash3_64::oneshot_with_seed(NODE_SEED, id.as_bytes())
}

/// Combines a key hash and a node seed: the splitmix64 finaliser of their XOR. A plain XOR
/// would be badly skewed; the finaliser makes every input bit flip every output bit at ~50%.
#[inline]
pub fn mix(key_hash: u64, node_seed: u64) -> u64 {
    let mut z = key_hash ^ node_seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The 53 high bits of a mixed value: the integer `m` behind `u = (m + 0.5) / 2^53`.
#[inline]
fn u53(mixed: u64) -> u64 {
    mixed >> 11
}

/// Maps 53 bits to `u` in the open interval (0, 1), so `ln(u)` is finite and non-zero.
#[inline]
fn unit_interval(u53: u64) -> f64 {
    (u53 as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
}

/// The weighted score `weight / -ln(u)`: a node wins a key with probability proportional to
/// its weight (Schindelhauer and Schomaker).
#[inline]
pub fn score(weight: f64, mixed: u64) -> f64 {
    weight / -unit_interval(u53(mixed)).ln()
}

/// Why a set of nodes cannot form a [`Ring`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RingError {
    #[error("a ring needs at least one node")]
    Empty,
    #[error("node id must not be empty")]
    EmptyId,
    #[error("duplicate node id {0:?}")]
    DuplicateId(String),
    #[error("node {id:?}: weight {weight} must be from {MIN_WEIGHT:e} to {MAX_WEIGHT:e}")]
    BadWeight { id: String, weight: f64 },
    #[error("node {0:?}: zone must not be empty (leave it out for no zone)")]
    EmptyZone(String),
    #[error("more than {} nodes", u32::MAX)]
    TooManyNodes,
    #[error("node {id:?}: weight {weight} times points_per_weight {per_weight} must give at least one point")]
    NoPoints {
        id: String,
        weight: f64,
        per_weight: f64,
    },
    #[error("{0} points in all; consistent placement holds at most {MAX_POINTS} (lower points_per_weight or the weights)")]
    TooManyPoints(usize),
    #[error("group_size {0} must be from {MIN_GROUP_SIZE} to {MAX_GROUP_SIZE}")]
    BadGroupSize(u32),
}

/// How keys are placed on nodes.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Placement {
    /// Weighted rendezvous: every node scored for every key (the default, documented above).
    #[default]
    Rendezvous,
    /// Consistent hashing on points: each node owns `weight * points_per_weight` points on a
    /// circle; a key's ranking is the order nodes are first met clockwise from its hash.
    Consistent { points_per_weight: f64 },
    /// Rendezvous within groups of at most `group_size` nodes, found by walking a binary tree
    /// derived from the node ids: a lookup scores one group, not every node.
    Hierarchical { group_size: u32 },
}

/// One node as the placement function sees it: an id and a weight.
#[derive(Debug, Clone)]
struct RingNode {
    id: Box<str>,
    weight: f64,
    seed: u64,
}

/// The placement table of one membership: nodes in configuration order, grouped by weight.
#[derive(Debug, Clone)]
pub struct Ring {
    nodes: Box<[RingNode]>,
    total_weight: f64,
    /// All nodes by weight class (rendezvous; with a tree, its groups' classes are its own).
    classes: Classes,
    /// With zones: each node's zone number (a node without a zone has one of its own).
    zones: Option<Zones>,
    /// With consistent placement: every node's points, sorted once something needs them.
    consistent: Option<Consistent>,
    /// With hierarchical placement: the tree of groups.
    tree: Option<Tree>,
}

/// A node's place in a key's ranking, as [`Ring::rank_all`] reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked<'a> {
    /// Index of the node in the order the ring was built with.
    pub index: usize,
    pub id: &'a str,
    pub weight: f64,
    pub zone: Option<&'a str>,
    /// Higher ranks first. Rendezvous: `weight / -ln(u)`; consistent placement: 1 minus the
    /// clockwise distance from the key's hash to the node's first point, over 2^64.
    pub score: f64,
}

/// The best `r` nodes for a key, best first, as indices into the ring's node list. A fixed-size
/// value: computing it allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TopR {
    len: u8,
    indices: [u32; MAX_REPLICAS],
}

impl TopR {
    const EMPTY: TopR = TopR {
        len: 0,
        indices: [0; MAX_REPLICAS],
    };

    /// Node indices, best first.
    pub fn as_slice(&self) -> &[u32] {
        &self.indices[..self.len as usize]
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.as_slice().iter().map(|&i| i as usize)
    }

    fn push(&mut self, index: u32) {
        self.indices[self.len as usize] = index;
        self.len += 1;
    }

    /// With zones, when there are fewer zones than r: these replicas (one per zone), then the
    /// best other nodes of the ranking, up to `r`. They are among the ranking's first r
    /// (`best`), which hold at most `self.len()` of the nodes already taken.
    fn filled_from(self, best: TopR, r: usize) -> TopR {
        let mut top = self;
        for &index in best.as_slice() {
            if top.len() == r {
                break;
            }
            if !self.as_slice().contains(&index) {
                top.push(index);
            }
        }
        top
    }
}

impl fmt::Debug for TopR {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// A candidate during selection: what the ranking order compares.
#[derive(Clone, Copy)]
struct Candidate {
    index: u32,
    u53: u64,
    score: f64,
}

impl Candidate {
    const NONE: Candidate = Candidate {
        index: 0,
        u53: 0,
        score: 0.0,
    };
}

impl Ring {
    /// Builds a ring from `(id, weight)` pairs. Ids must be unique and non-empty, weights
    /// from [`MIN_WEIGHT`] to [`MAX_WEIGHT`].
    ///
    /// ```
    /// use hrwproxy::routing::{key_hash, Ring};
    ///
    /// let ring = Ring::new([("a", 1.0), ("b", 1.0), ("c", 2.0)]).unwrap();
    /// let replicas = ring.top(key_hash(b"user:42"), 2);
    /// let ids: Vec<&str> = replicas.iter().map(|i| ring.id(i)).collect();
    /// assert_eq!(ids.len(), 2);
    /// // The full ranking starts with the same nodes.
    /// let all = ring.rank_all(key_hash(b"user:42"));
    /// assert_eq!(all[0].id, ids[0]);
    /// assert_eq!(all[1].id, ids[1]);
    /// ```
    pub fn new<'a, I>(nodes: I) -> Result<Ring, RingError>
    where
        I: IntoIterator<Item = (&'a str, f64)>,
    {
        Ring::with_zones(nodes.into_iter().map(|(id, weight)| (id, weight, None)))
    }

    /// Builds a ring from `(id, weight, zone)` triples: a key's replicas are spread over zones
    /// (see [`Ring::top`]). Without any zone it is exactly [`Ring::new`].
    ///
    /// ```
    /// use hrwproxy::routing::{key_hash, Ring};
    ///
    /// let ring = Ring::with_zones([
    ///     ("a1", 1.0, Some("a")),
    ///     ("a2", 1.0, Some("a")),
    ///     ("b1", 1.0, Some("b")),
    /// ])
    /// .unwrap();
    /// let zones: Vec<_> = ring.top(key_hash(b"k"), 2).iter().map(|i| ring.zone(i)).collect();
    /// assert!(zones.contains(&Some("a")) && zones.contains(&Some("b")));
    /// ```
    pub fn with_zones<'a, I>(nodes: I) -> Result<Ring, RingError>
    where
        I: IntoIterator<Item = (&'a str, f64, Option<&'a str>)>,
    {
        Ring::with_placement(nodes, Placement::Rendezvous)
    }

    /// Builds a ring from `(id, weight, zone)` triples with the given placement function.
    ///
    /// ```
    /// use hrwproxy::routing::{key_hash, Placement, Ring};
    ///
    /// let consistent = Placement::Consistent { points_per_weight: 100.0 };
    /// let nodes = (0..1000).map(|i| format!("node-{i}")).collect::<Vec<_>>();
    /// let ring = Ring::with_placement(nodes.iter().map(|id| (id.as_str(), 1.0, None)), consistent)
    ///     .unwrap();
    /// assert_eq!(ring.top(key_hash(b"k"), 3).len(), 3);
    /// ```
    pub fn with_placement<'a, I>(nodes: I, placement: Placement) -> Result<Ring, RingError>
    where
        I: IntoIterator<Item = (&'a str, f64, Option<&'a str>)>,
    {
        let mut built: Vec<RingNode> = Vec::new();
        let mut zones = ZonesBuilder::default();
        // Hashed, not scanned: tens of thousands of nodes are checked in milliseconds.
        let nodes = nodes.into_iter();
        let mut seen: IdSet<&str> = IdSet::with_capacity_and_hasher(nodes.size_hint().0, IdHashing);
        for (id, weight, zone) in nodes {
            if id.is_empty() {
                return Err(RingError::EmptyId);
            }
            if zone == Some("") {
                return Err(RingError::EmptyZone(id.to_owned()));
            }
            zones.add(zone);
            if !(MIN_WEIGHT..=MAX_WEIGHT).contains(&weight) {
                return Err(RingError::BadWeight {
                    id: id.to_owned(),
                    weight,
                });
            }
            if !seen.insert(id) {
                return Err(RingError::DuplicateId(id.to_owned()));
            }
            built.push(RingNode {
                id: id.into(),
                weight,
                seed: node_seed(id),
            });
        }
        if built.is_empty() {
            return Err(RingError::Empty);
        }
        if built.len() > u32::MAX as usize {
            return Err(RingError::TooManyNodes);
        }
        let (mut consistent, mut tree, mut classes) = (None, None, Classes::default());
        match placement {
            Placement::Rendezvous => {
                let all: Vec<u32> = (0..built.len() as u32).collect();
                classes.add(&built, &all);
            }
            Placement::Consistent { points_per_weight } => {
                point_counts(built.iter().map(|n| (&*n.id, n.weight)), points_per_weight)?;
                consistent = Some(Consistent::new(points_per_weight));
            }
            Placement::Hierarchical { group_size } => {
                if !(MIN_GROUP_SIZE..=MAX_GROUP_SIZE).contains(&group_size) {
                    return Err(RingError::BadGroupSize(group_size));
                }
                tree = Some(Tree::build(&built, group_size));
            }
        }
        Ok(Ring {
            total_weight: built.iter().map(|n| n.weight).sum(),
            nodes: built.into(),
            classes,
            zones: zones.finish(),
            consistent,
            tree,
        })
    }

    /// The placement function this ring uses.
    pub fn placement(&self) -> Placement {
        match (&self.consistent, &self.tree) {
            (Some(c), _) => Placement::Consistent {
                points_per_weight: c.per_weight,
            },
            (None, Some(tree)) => Placement::Hierarchical {
                group_size: tree.group_size,
            },
            (None, None) => Placement::Rendezvous,
        }
    }

    /// With hierarchical placement, how many groups its tree has.
    pub fn groups(&self) -> Option<usize> {
        Some(self.tree()?.groups())
    }

    /// With hierarchical placement, the group of the node at `index` (a number that names
    /// the group within this ring only).
    pub fn group_of(&self, index: usize) -> Option<u32> {
        Some(self.tree()?.group(index).0)
    }

    /// The zone of the node at `index`, if it was given one.
    pub fn zone(&self, index: usize) -> Option<&str> {
        self.zones.as_ref()?.name(index)
    }

    /// Whether some node has a zone, so that [`Ring::top`] spreads replicas over zones.
    pub fn has_zones(&self) -> bool {
        self.zones.is_some()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The id of the node at `index` (configuration order).
    pub fn id(&self, index: usize) -> &str {
        &self.nodes[index].id
    }

    pub fn weight(&self, index: usize) -> f64 {
        self.nodes[index].weight
    }

    /// The node's share of the keyspace (the keys it is first in the ranking for): its weight
    /// over the sum of weights; with hierarchical placement, over its group's weight, times
    /// the group's share.
    pub fn share(&self, index: usize) -> f64 {
        let weight = self.nodes[index].weight;
        match self.tree() {
            Some(tree) => weight * tree.group(index).1,
            None => weight / self.total_weight,
        }
    }

    /// The index of the node with this id, if it is in the ring.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| &*n.id == id)
    }

    /// The ranking order as an [`Ordering`], best first.
    fn order(&self, a: &Candidate, b: &Candidate) -> Ordering {
        if self.better(a, b) {
            Ordering::Less
        } else if self.better(b, a) {
            Ordering::Greater
        } else {
            Ordering::Equal
        }
    }

    /// The node at `index` scored for a key.
    fn candidate(&self, index: u32, key_hash: u64) -> Candidate {
        let node = &self.nodes[index as usize];
        let mixed = mix(key_hash, node.seed);
        Candidate {
            index,
            u53: u53(mixed),
            score: score(node.weight, mixed),
        }
    }

    /// Ranking order: higher score first, then higher raw bits, then the smaller id.
    #[inline]
    fn better(&self, a: &Candidate, b: &Candidate) -> bool {
        match a.score.partial_cmp(&b.score) {
            Some(Ordering::Greater) => true,
            Some(Ordering::Less) => false,
            _ => match a.u53.cmp(&b.u53) {
                Ordering::Greater => true,
                Ordering::Less => false,
                Ordering::Equal => {
                    self.nodes[a.index as usize].id < self.nodes[b.index as usize].id
                }
            },
        }
    }

    /// The key's `min(r, MAX_REPLICAS, len)` replicas. Without zones, the best nodes of its
    /// ranking, best first. With zones, the ranking is walked taking the best node of each zone
    /// not yet used, until there are r or every zone is used; if there are fewer zones than
    /// r, the rest are the best remaining nodes in rank order. The first replica is the best
    /// node either way. One scan, no sort, no allocation.
    pub fn top(&self, key_hash: u64, r: usize) -> TopR {
        if let Some(tree) = self.tree() {
            return self.top_of_tree(tree, key_hash, r);
        }
        match (self.points(), &self.zones) {
            (Some(points), _) => self.top_of_points(points, key_hash, r),
            (None, None) => self.top_of_ranking(key_hash, r),
            (None, Some(zones)) => self.top_over_zones(zones, key_hash, r),
        }
    }

    /// The first `min(k, MAX_REPLICAS, len)` nodes of the key's ranking, best first, without
    /// the zone rule: where a sloppy quorum looks for nodes to stand in for replicas that are
    /// out of service (the ranking's next nodes after the replicas).
    pub fn ranking_head(&self, key_hash: u64, k: usize) -> TopR {
        if let Some(tree) = self.tree() {
            return self.head_of_tree(tree, key_hash, k);
        }
        match self.points() {
            Some(points) => points.top(key_hash, k.min(MAX_REPLICAS).min(self.nodes.len())),
            None => self.top_of_ranking(key_hash, k),
        }
    }

    /// Inserts `cand` into the sorted prefix `list[..*len]` holding at most `r` entries.
    #[inline]
    fn insert(
        &self,
        list: &mut [Candidate; MAX_REPLICAS],
        len: &mut usize,
        r: usize,
        cand: Candidate,
    ) {
        let mut pos = if *len < r {
            *len += 1;
            *len - 1
        } else if self.better(&cand, &list[r - 1]) {
            r - 1
        } else {
            return;
        };
        while pos > 0 && self.better(&cand, &list[pos - 1]) {
            list[pos] = list[pos - 1];
            pos -= 1;
        }
        list[pos] = cand;
    }

    /// Every node ranked for a key hash, best first, with its score. Allocates; meant for
    /// inspection (`hrwproxy locate`), not the request path. Without zones its first `r`
    /// entries are exactly [`Ring::top`]`(key_hash, r)`.
    pub fn rank_all(&self, key_hash: u64) -> Vec<Ranked<'_>> {
        if let Some(c) = &self.consistent {
            return self.rank_by_points(c, key_hash);
        }
        if let Some(tree) = self.tree() {
            return self.rank_by_tree(tree, key_hash);
        }
        let mut cands: Vec<Candidate> = (0..self.nodes.len() as u32)
            .map(|index| self.candidate(index, key_hash))
            .collect();
        cands.sort_by(|a, b| self.order(a, b));
        cands
            .into_iter()
            .map(|c| self.ranked(c.index as usize, c.score))
            .collect()
    }

    fn ranked(&self, index: usize, score: f64) -> Ranked<'_> {
        let node = &self.nodes[index];
        Ranked {
            index,
            id: &node.id,
            weight: node.weight,
            zone: self.zone(index),
            score,
        }
    }

    /// Every node for a key hash in the order to show it: the key's `r` replicas as
    /// [`Ring::top`] gives them, then the other nodes by rank. Without zones, the ranking.
    pub fn replicas_then_ranking(&self, key_hash: u64, r: usize) -> Vec<Ranked<'_>> {
        let mut ranking = self.rank_all(key_hash);
        let top = match self.consistent {
            // From the ranking: no table of points to build for one key.
            Some(_) => self.top_of_order(|| ranking.iter().map(|n| n.index as u32), r),
            None => self.top(key_hash, r),
        };
        ranking.sort_by_key(|node| {
            top.as_slice()
                .iter()
                .position(|&i| i as usize == node.index)
                .unwrap_or(MAX_REPLICAS)
        });
        ranking
    }
}
