//! One immutable view of the membership (config, placement table, backend clients), swapped
//! whole, so a request sees one consistent membership from start to end.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::backend::{self, Backend};
use crate::config::Config;
use crate::routing::{key_hash, ReadPlan, Ring, WritePlan};

#[derive(Debug)]
pub struct Snapshot {
    /// Counts applied configs, starting at 1.
    pub generation: u64,
    pub config: Arc<Config>,
    pub ring: Ring,
    /// One client per node, in the ring's order.
    pub backends: Box<[Arc<dyn Backend>]>,
}

/// The live snapshot: one atomic load per request, one store per reload.
pub type SharedSnapshot = Arc<ArcSwap<Snapshot>>;

impl Snapshot {
    /// Builds the snapshot for `config`, reusing the clients (and their pooled connections) of
    /// nodes whose id, URL and connect timeout did not change.
    pub fn build(config: Config, generation: u64, previous: Option<&Snapshot>) -> Snapshot {
        let ring = config.ring();
        let backends = config
            .nodes
            .iter()
            .map(|spec| {
                previous
                    .and_then(|prev| {
                        let i = prev.ring.index_of(spec.id.as_str())?;
                        let old = &prev.config.nodes[i];
                        (old.url == spec.url
                            && prev.config.timeouts.connect_ms == config.timeouts.connect_ms)
                            .then(|| prev.backends[i].clone())
                    })
                    .unwrap_or_else(|| backend::connect(spec, &config.timeouts))
            })
            .collect();
        Snapshot {
            generation,
            config: Arc::new(config),
            ring,
            backends,
        }
    }

    pub fn write_plan(&self, key: &[u8]) -> WritePlan {
        WritePlan::new(
            self.ring.top(key_hash(key), self.config.replicas),
            self.config.write_quorum,
        )
    }

    pub fn read_plan(&self, key: &[u8]) -> ReadPlan {
        ReadPlan::new(
            self.ring.top(key_hash(key), self.config.replicas),
            self.config.write_quorum,
        )
    }

    pub fn node_id(&self, index: usize) -> &str {
        self.ring.id(index)
    }
}
