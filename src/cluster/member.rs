//! A member: one node of a placement with everything the proxy keeps for it. Its health,
//! in-flight count and hints belong to its id and survive every reload; its client is kept until an
//! address, connect timeout, value limit or backend CA changes.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::hints::Hints;
use crate::backend::Backend;
use crate::config::NodeSpec;
use crate::health::Health;
use crate::metrics::NodeMetrics;

#[derive(Debug)]
pub(crate) struct Member {
    /// The config's own entry, shared.
    pub spec: Arc<NodeSpec>,
    pub backend: Arc<dyn Backend>,
    pub health: Arc<Health>,
    /// Attempts on the node not yet answered.
    pub in_flight: Arc<AtomicU64>,
    /// Writes it missed, to replay before it serves again.
    pub hints: Arc<Hints>,
    /// Its own, or the one all nodes past `metrics_node_limit` share.
    pub metrics: Arc<NodeMetrics>,
}

impl Member {
    pub(crate) fn id(&self) -> &str {
        self.spec.id.as_str()
    }
}
