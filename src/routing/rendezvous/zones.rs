//! Zones: a key's replicas spread over failure domains. The ranking is walked taking the best
//! node of each zone not yet used, until there are r or every zone is used; with fewer zones
//! than r, the rest are the best remaining nodes in rank order. A node without a zone is a
//! zone of its own.

use crate::routing::IdMap;

use super::{mix, score, u53, Candidate, Ring, TopR, MAX_REPLICAS};

/// The zones of a ring where some node has one.
#[derive(Debug, Clone)]
pub(super) struct Zones {
    /// Each node's zone number.
    of_node: Box<[u32]>,
    /// Each zone's name; `None` for the zone of a node that has none.
    names: Box<[Option<Box<str>>]>,
}

impl Zones {
    pub(super) fn name(&self, node: usize) -> Option<&str> {
        self.names[self.of_node[node] as usize].as_deref()
    }

    /// The zone number of a node.
    pub(super) fn of(&self, node: usize) -> u32 {
        self.of_node[node]
    }

    /// How many zones there are (each node without one counts as one).
    pub(super) fn count(&self) -> usize {
        self.names.len()
    }
}

/// Numbers zones as the ring's nodes are added, in order.
#[derive(Default)]
pub(super) struct ZonesBuilder<'a> {
    of_node: Vec<u32>,
    names: Vec<Option<Box<str>>>,
    number: IdMap<&'a str, u32>,
}

impl<'a> ZonesBuilder<'a> {
    pub(super) fn add(&mut self, zone: Option<&'a str>) {
        let names = &mut self.names;
        let mut new_zone = |name: Option<&str>| {
            names.push(name.map(Into::into));
            names.len() as u32 - 1
        };
        let number = match zone {
            Some(zone) => *self
                .number
                .entry(zone)
                .or_insert_with(|| new_zone(Some(zone))),
            None => new_zone(None),
        };
        self.of_node.push(number);
    }

    /// The zones, if any node named one.
    pub(super) fn finish(self) -> Option<Zones> {
        (!self.number.is_empty()).then(|| Zones {
            of_node: self.of_node.into(),
            names: self.names.into(),
        })
    }
}

impl Ring {
    /// The replica rule of [`Ring::top`] over a ranking that `order` walks (node indices,
    /// best first): its first `r`, or over zones the best of each zone, then the best of the
    /// rest. `order` is walked again only when there are fewer zones than `r`.
    pub(super) fn top_of_order<I: Iterator<Item = u32>>(
        &self,
        order: impl Fn() -> I,
        r: usize,
    ) -> TopR {
        let r = r.min(MAX_REPLICAS).min(self.nodes.len());
        let first = || {
            let mut first = TopR::EMPTY;
            order().take(r).for_each(|node| first.push(node));
            first
        };
        let Some(zones) = &self.zones else {
            return first();
        };
        let mut top = TopR::EMPTY;
        let mut used = Vec::with_capacity(r);
        let zone_count = zones.count();
        for node in order() {
            if top.len() == r || used.len() == zone_count {
                break;
            }
            let zone = zones.of(node as usize);
            if !used.contains(&zone) {
                used.push(zone);
                top.push(node);
            }
        }
        // Fewer zones than r: the rest are the best remaining nodes in rank order.
        if top.len() < r {
            top = top.filled_from(first(), r);
        }
        top
    }

    pub(super) fn top_over_zones(&self, zones: &Zones, key_hash: u64, r: usize) -> TopR {
        let r = r.min(MAX_REPLICAS).min(self.nodes.len());
        // The best node of each of the best zones so far, best first: a node whose zone is
        // held is kept only if it beats that zone's node. A zone pushed out cannot come
        // back: every later node of it is worse than the one pushed out.
        let mut held = [(0u32, Candidate::NONE); MAX_REPLICAS];
        let mut len = 0usize;
        for (index, node) in self.nodes.iter().enumerate() {
            let mixed = mix(key_hash, node.seed);
            let cand = Candidate {
                index: index as u32,
                u53: u53(mixed),
                score: score(node.weight, mixed),
            };
            let zone = zones.of_node[index];
            let mut pos = match held[..len].iter().position(|(z, _)| *z == zone) {
                Some(at) if self.better(&cand, &held[at].1) => at,
                Some(_) => continue,
                None if len < r => {
                    len += 1;
                    len - 1
                }
                None if self.better(&cand, &held[r - 1].1) => r - 1,
                None => continue,
            };
            while pos > 0 && self.better(&cand, &held[pos - 1].1) {
                held[pos] = held[pos - 1];
                pos -= 1;
            }
            held[pos] = (zone, cand);
        }
        let mut top = TopR::EMPTY;
        for (slot, (_, cand)) in top.indices.iter_mut().zip(&held[..len]) {
            *slot = cand.index;
        }
        top.len = len as u8;
        // Fewer zones than r: every zone is held; the rest come from the ranking.
        if len < r {
            top = top.filled_from(self.top_of_ranking(key_hash, r), r);
        }
        top
    }
}
