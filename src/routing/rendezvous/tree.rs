//! `placement: hierarchical`, rendezvous hashing for memberships of up to millions: the nodes
//! are the leaves of a binary tree derived from their ids alone, and a key walks down it to one
//! group of at most `group_size` nodes, where weighted rendezvous picks as the default does.
//!
//! The tree: a node's path is its node seed read from the highest bit down. A prefix holding
//! more than `group_size` nodes splits in two by the next bit; one holding at most that many
//! is a group. A key's target is `mix(key_hash, TREE_SEED)`; at each split it goes first into
//! the half whose bit equals its target's, so the ranking is the groups in that order, each
//! group's nodes by rendezvous score. Two nodes' order depends only on them and the key while
//! the groups stay as they are, so removing a node only removes it from rankings and adding
//! one only inserts it; a change that makes a group split or two groups merge reorders that
//! group's keys among its own nodes. Each group takes a fixed share of the keys (half its
//! parent's), so a node's share is its weight over its group's, times the group's share.

use std::ops::Range;

use super::{mix, Candidate, Classes, Ranked, Ring, RingNode, TopR, MAX_REPLICAS};

/// Seed of a key's target path through the tree.
pub const TREE_SEED: u64 = 0x243F_6A88_85A3_08D3;
/// The default most nodes in one group: a lookup scores about one group, and shares follow
/// weights the closer, the larger the groups (at 256, node shares spread with a standard
/// deviation of about 7% of their weight's, against about 10% for consistent hashing at 100
/// points per unit of weight; see the README's placement function).
pub const DEFAULT_GROUP_SIZE: u32 = 256;
/// Group sizes a config may ask for.
pub const MIN_GROUP_SIZE: u32 = 2;
pub const MAX_GROUP_SIZE: u32 = 1 << 20;

/// One vertex of the tree.
#[derive(Debug, Clone)]
enum Vertex {
    /// A prefix split by bit `depth` of the paths: the vertices of its 0-half and 1-half.
    Split { depth: u8, halves: [u32; 2] },
    /// A group: its classes in the tree's table (none when a split left one half empty).
    Group { classes: Range<u32> },
}

/// The tree of a hierarchical ring, and each node's group.
#[derive(Debug, Clone)]
pub(super) struct Tree {
    pub(super) group_size: u32,
    vertices: Box<[Vertex]>,
    /// Every group's nodes by weight class.
    classes: Classes,
    /// Each node's group (its vertex) and the group's share of the keys per unit of weight
    /// in it: a node's share is its weight times that.
    group_of: Box<[(u32, f64)]>,
}

/// Bit `depth` of a path, counting from the highest.
#[inline]
fn bit(path: u64, depth: u8) -> usize {
    ((path >> (63 - depth)) & 1) as usize
}

impl Tree {
    /// The tree of `nodes` with groups of at most `group_size` (at least 2).
    pub(super) fn build(nodes: &[RingNode], group_size: u32) -> Tree {
        let mut by_path: Vec<u32> = (0..nodes.len() as u32).collect();
        by_path.sort_unstable_by_key(|&i| nodes[i as usize].seed);
        let mut tree = Tree {
            group_size,
            vertices: Box::new([]),
            classes: Classes::default(),
            group_of: vec![(0, 0.0); nodes.len()].into(),
        };
        let mut vertices = Vec::new();
        tree.grow(nodes, &by_path, 0, 1.0, &mut vertices);
        tree.vertices = vertices.into();
        tree
    }

    /// Adds the vertex for `members` (sorted by path, sharing `depth` leading bits) and those
    /// below it; returns its number.
    fn grow(
        &mut self,
        nodes: &[RingNode],
        members: &[u32],
        depth: u8,
        share: f64,
        vertices: &mut Vec<Vertex>,
    ) -> u32 {
        let at = vertices.len() as u32;
        if members.len() <= self.group_size as usize || depth == 64 {
            let weight: f64 = members.iter().map(|&m| nodes[m as usize].weight).sum();
            for &m in members {
                self.group_of[m as usize] = (at, share / weight);
            }
            let classes = self.classes.add(nodes, members);
            vertices.push(Vertex::Group { classes });
            return at;
        }
        vertices.push(Vertex::Split {
            depth,
            halves: [0, 0],
        });
        let ones = members.partition_point(|&m| bit(nodes[m as usize].seed, depth) == 0);
        let (zeros, ones) = members.split_at(ones);
        // A half with nothing in it takes no keys: the other half takes its parent's share.
        let (share0, share1) = match (zeros.is_empty(), ones.is_empty()) {
            (true, _) => (0.0, share),
            (_, true) => (share, 0.0),
            _ => (share / 2.0, share / 2.0),
        };
        let zero = self.grow(nodes, zeros, depth + 1, share0, vertices);
        let one = self.grow(nodes, ones, depth + 1, share1, vertices);
        vertices[at as usize] = Vertex::Split {
            depth,
            halves: [zero, one],
        };
        at
    }

    /// The groups in a key's order, best first, each as its weight classes.
    fn groups_for(&self, key_hash: u64) -> Walk<'_> {
        let mut walk = Walk {
            tree: self,
            target: mix(key_hash, TREE_SEED),
            pending: [0; 66],
            len: 1,
        };
        walk.pending[0] = 0;
        walk
    }

    /// How many groups the tree has (empty halves left out).
    pub(super) fn groups(&self) -> usize {
        self.vertices
            .iter()
            .filter(|v| matches!(v, Vertex::Group { classes } if !classes.is_empty()))
            .count()
    }

    /// A node's group (its vertex number) and the group's share of the keys per unit of
    /// weight in it.
    pub(super) fn group(&self, node: usize) -> (u32, f64) {
        self.group_of[node]
    }
}

/// A walk down the tree in a key's order: a depth-first walk taking first, at each split,
/// the half whose bit equals the key's target's.
struct Walk<'a> {
    tree: &'a Tree,
    target: u64,
    /// The vertices still to visit, the next on top; depth is at most 64, so at most 65 of
    /// them wait at once.
    pending: [u32; 66],
    len: usize,
}

impl Iterator for Walk<'_> {
    /// A group's classes in the tree's table.
    type Item = Range<u32>;

    fn next(&mut self) -> Option<Range<u32>> {
        while self.len > 0 {
            self.len -= 1;
            match &self.tree.vertices[self.pending[self.len] as usize] {
                Vertex::Split { depth, halves } => {
                    let first = bit(self.target, *depth);
                    self.pending[self.len] = halves[1 - first];
                    self.pending[self.len + 1] = halves[first];
                    self.len += 2;
                }
                Vertex::Group { classes } => return Some(classes.clone()),
            }
        }
        None
    }
}

impl Ring {
    /// The hierarchical ring's tree, if this ring is one.
    pub(super) fn tree(&self) -> Option<&Tree> {
        self.tree.as_ref()
    }

    /// The key's replicas by the tree: without zones its first `r` nodes, with zones the zone
    /// rule walked over its ranking.
    pub(super) fn top_of_tree(&self, tree: &Tree, key_hash: u64, r: usize) -> TopR {
        match self.zones {
            None => self.head_of_tree(tree, key_hash, r),
            Some(_) => self.top_of_order(|| self.tree_order(tree, key_hash), r),
        }
    }

    /// The first `r` nodes of the key's ranking by the tree: the first groups' best, in
    /// group order. No allocation.
    pub(super) fn head_of_tree(&self, tree: &Tree, key_hash: u64, r: usize) -> TopR {
        let r = r.min(MAX_REPLICAS).min(self.nodes.len());
        let mut top = TopR::EMPTY;
        if r == 0 {
            return top;
        }
        for classes in tree.groups_for(key_hash) {
            if top.len() == r {
                break;
            }
            let (best, len) = self.best_of_classes(&tree.classes, classes, key_hash, r - top.len());
            best[..len].iter().for_each(|c| top.push(c.index));
        }
        top
    }

    /// The key's whole ranking by the tree, lazily: a group is ranked when it is reached.
    fn tree_order<'a>(&'a self, tree: &'a Tree, key_hash: u64) -> impl Iterator<Item = u32> + 'a {
        tree.groups_for(key_hash)
            .flat_map(move |classes| self.rank_group(tree, classes, key_hash))
            .map(|c| c.index)
    }

    /// A group's nodes by rendezvous, best first, with their scores.
    fn rank_group(&self, tree: &Tree, classes: Range<u32>, key_hash: u64) -> Vec<Candidate> {
        let table = &tree.classes;
        let (first, last) = (classes.start as usize, classes.end as usize);
        let nodes = match table.classes[first..last] {
            [] => 0..0,
            [ref one, ..] => one.start as usize..table.classes[last - 1].end as usize,
        };
        let mut ranked: Vec<Candidate> = table.members[nodes]
            .iter()
            .map(|&index| self.candidate(index, key_hash))
            .collect();
        ranked.sort_by(|a, b| self.order(a, b));
        ranked
    }

    /// Every node ranked by the tree, with its rendezvous score within its group.
    pub(super) fn rank_by_tree(&self, tree: &Tree, key_hash: u64) -> Vec<Ranked<'_>> {
        tree.groups_for(key_hash)
            .flat_map(|classes| self.rank_group(tree, classes, key_hash))
            .map(|c| self.ranked(c.index as usize, c.score))
            .collect()
    }
}
