//! One immutable view of the membership, swapped whole so a request sees one membership from
//! start to end: the config, the placement (ring and members, in the same order by
//! construction) and the earlier placements whose handoff window is still open.

use std::sync::Arc;

use tokio::time::Instant;

use super::files::Files;
use super::member::Member;
use crate::backend::Backend;
use crate::config::{Config, NodeSpec, Scheme};
use crate::metrics::{node_label, Metrics};
use crate::net::auth::Tokens;
use crate::routing::{key_hash, node_seed, IdMap, IdSet, Ring, TopR, MAX_REPLICAS};

#[derive(Debug)]
pub(crate) struct Snapshot {
    /// Counts applied configs, starting at 1.
    pub generation: u64,
    pub config: Arc<Config>,
    pub placement: Arc<Placement>,
    /// Earlier placements replaced by a placement change, newest first, each consulted by
    /// reads that miss until its window closes.
    pub windows: Box<[Window]>,
    /// Bearer tokens the listeners require, read from the files the config names.
    pub tokens: Tokens,
    /// A digest of the CA bundle `https://` clients trust, to know when to rebuild them.
    backend_trust: u64,
}

/// Where keys live: the ring, and a member for each of its nodes in the ring's order.
#[derive(Debug)]
pub(crate) struct Placement {
    pub generation: u64,
    pub ring: Ring,
    pub replicas: usize,
    pub members: Box<[Arc<Member>]>,
    /// Each member's index by its node seed: 16 bytes a node, where a map by id would hold a
    /// copy of every id. Two ids with one seed (never seen; 64 bits) keep the first here.
    by_seed: IdMap<u64, u32>,
}

/// Opens a client for a node of a config: `backend::connect`, or a fake in unit tests.
pub(crate) type Connect<'a> = &'a dyn Fn(&NodeSpec, &Config, &Files) -> Arc<dyn Backend>;

/// An earlier placement, consulted by reads until `until`.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    pub placement: Arc<Placement>,
    pub until: Instant,
}

impl Placement {
    /// The key's replicas, best first.
    pub(crate) fn replicas(&self, key: &[u8]) -> Replicas<'_> {
        Replicas {
            placement: self,
            top: self.ring.top(key_hash(key), self.replicas),
        }
    }

    /// The nodes that may stand in for the key's replicas, best first: the next nodes of its
    /// ranking, up to [`MAX_REPLICAS`] ranks deep, without its replicas. Worked out only when
    /// a replica is out of service or fails.
    pub(crate) fn stand_ins(&self, key: &[u8], replicas: &Replicas<'_>) -> Vec<Arc<Member>> {
        self.ring
            .ranking_head(key_hash(key), MAX_REPLICAS)
            .iter()
            .filter(|&index| !replicas.top.as_slice().contains(&(index as u32)))
            .map(|index| self.members[index].clone())
            .collect()
    }

    pub(crate) fn member(&self, id: &str) -> Option<&Arc<Member>> {
        let found = &self.members[*self.by_seed.get(&node_seed(id))? as usize];
        if found.id() == id {
            return Some(found);
        }
        self.members.iter().find(|m| m.id() == id)
    }

    /// Whether `other` places every key the same: the same ids, weights, zones and replica
    /// count.
    fn places_like(&self, other: &Placement) -> bool {
        self.replicas == other.replicas
            && self.members.len() == other.members.len()
            && self.members.iter().all(|m| {
                other.member(m.id()).is_some_and(|o| {
                    o.spec.weight.get().to_bits() == m.spec.weight.get().to_bits()
                        && o.spec.zone == m.spec.zone
                })
            })
    }
}

/// A key's replicas: a fixed-size list, no allocation.
#[derive(Clone, Copy)]
pub(crate) struct Replicas<'a> {
    placement: &'a Placement,
    top: TopR,
}

impl<'a> Replicas<'a> {
    pub(crate) fn len(&self) -> usize {
        self.top.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &'a Arc<Member>> + 'a {
        let (placement, top) = (self.placement, self.top);
        (0..top.len()).map(move |rank| &placement.members[top.as_slice()[rank] as usize])
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        self.iter().any(|m| m.id() == id)
    }
}

impl Window {
    pub(crate) fn is_open(&self, now: Instant) -> bool {
        now < self.until
    }
}

impl Snapshot {
    /// Builds the snapshot for `config` and the files it names. Members keep their health
    /// and in-flight count by id from `previous`, and their client unless how to reach the
    /// node changed. After a placement change, `previous`'s placement opens a handoff window.
    pub(crate) fn build(
        config: Config,
        files: &Files,
        generation: u64,
        previous: Option<&Snapshot>,
        metrics: &Metrics,
        connect: Connect<'_>,
    ) -> Snapshot {
        let reach_same = |prev: &Snapshot| {
            prev.config.timeouts.connect_ms == config.timeouts.connect_ms
                && prev.config.max_value_bytes == config.max_value_bytes
                && prev.config.versioning == config.versioning
        };
        let own_series = |at: usize| at < config.metrics_node_limit;
        // Entries that reach one node the same way share its client, and so its connections.
        let mut clients: IdMap<_, Arc<dyn Backend>> = IdMap::default();
        let members: Box<[Arc<Member>]> = config
            .nodes
            .iter()
            .enumerate()
            .map(|(at, spec)| {
                let earlier = previous.and_then(|p| p.placement.member(spec.id.as_str()));
                let reusable = previous.zip(earlier).is_some_and(|(prev, old)| {
                    old.spec.url == spec.url
                        && old.spec.store == spec.store
                        && reach_same(prev)
                        && (spec.url.scheme != Scheme::Https
                            || prev.backend_trust == files.backend_trust)
                });
                let label = node_label(spec.id.as_str(), own_series(at));
                let reach = (&spec.url.base, &spec.url.credentials, spec.store);
                // Unchanged in every way: the same member, so that the handoff windows of a
                // large membership share its members instead of holding copies.
                match earlier {
                    Some(old) if reusable && old.spec == *spec && old.metrics.label() == label => {
                        clients.entry(reach).or_insert_with(|| old.backend.clone());
                        return old.clone();
                    }
                    _ => {}
                }
                let backend = match (earlier, clients.get(&reach)) {
                    (Some(old), _) if reusable => old.backend.clone(),
                    (_, Some(shared)) => shared.clone(),
                    _ => connect(spec, &config, files),
                };
                clients.entry(reach).or_insert_with(|| backend.clone());
                Arc::new(Member {
                    spec: spec.clone(),
                    backend,
                    health: earlier.map(|m| m.health.clone()).unwrap_or_default(),
                    in_flight: earlier.map(|m| m.in_flight.clone()).unwrap_or_default(),
                    hints: earlier.map(|m| m.hints.clone()).unwrap_or_default(),
                    metrics: match earlier {
                        Some(old) if old.metrics.label() == label => old.metrics.clone(),
                        _ => metrics.node(spec.id.as_str(), own_series(at)),
                    },
                })
            })
            .collect();
        if let Some(prev) = previous {
            let kept: IdSet<&str> = members.iter().map(|m| m.metrics.label()).collect();
            for old in prev.placement.members.iter() {
                if !kept.contains(old.metrics.label()) {
                    metrics.forget(&old.metrics);
                }
            }
        }
        let mut by_seed = IdMap::with_capacity_and_hasher(members.len(), Default::default());
        for (i, m) in members.iter().enumerate() {
            by_seed.entry(node_seed(m.id())).or_insert(i as u32);
        }
        // Consistent placement's table is built here, with the reload, not by a request.
        let ring = config.ring();
        ring.prepare();
        let placement = Arc::new(Placement {
            generation,
            ring,
            replicas: config.replicas,
            members,
            by_seed,
        });
        let now = Instant::now();
        let mut windows = Vec::new();
        if let Some(prev) = previous {
            if !prev.placement.places_like(&placement) {
                if let Some(until) = now.checked_add(config.handoff_window()) {
                    windows.push(Window {
                        placement: prev.placement.clone(),
                        until,
                    });
                }
            }
            // Windows already open stay open, whatever this change is.
            windows.extend(prev.windows.iter().filter(|w| w.is_open(now)).cloned());
        }
        Snapshot {
            generation,
            config: Arc::new(config),
            placement,
            windows: windows.into(),
            tokens: files.tokens.clone(),
            backend_trust: files.backend_trust,
        }
    }

    /// The handoff windows open now, newest first.
    pub(crate) fn open_windows(&self) -> impl Iterator<Item = &Window> {
        let now = Instant::now();
        self.windows.iter().filter(move |w| w.is_open(now))
    }

    /// This snapshot without its closed windows, if it has any: the placements they hold (at
    /// 10,000 nodes, tens of MB) are given back soon after they close, not at the next reload.
    pub(crate) fn without_closed_windows(&self, now: Instant) -> Option<Snapshot> {
        if self.windows.iter().all(|w| w.is_open(now)) {
            return None;
        }
        Some(Snapshot {
            generation: self.generation,
            config: self.config.clone(),
            placement: self.placement.clone(),
            windows: self
                .windows
                .iter()
                .filter(|w| w.is_open(now))
                .cloned()
                .collect(),
            tokens: self.tokens.clone(),
            backend_trust: self.backend_trust,
        })
    }

    /// Whether reads that miss still ask earlier replicas.
    pub(crate) fn handoff_open(&self) -> bool {
        self.open_windows().next().is_some()
    }

    /// Whether the placement changed from the snapshot before (a window opened with it).
    pub(crate) fn placement_changed(&self) -> bool {
        self.windows
            .first()
            .is_some_and(|w| w.placement.generation + 1 == self.generation)
    }
}
