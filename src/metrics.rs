//! Prometheus metrics, in one place: their names, their labels, the registry and the scrape.
//! A leaf: the scrape is handed plain values, so nothing here knows a snapshot. One `Metrics`
//! per proxy process, so reloads never reset a counter.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub const REQUESTS: &str = "hrw_requests";
pub const REQUEST_DURATION: &str = "hrw_request_duration_seconds";
pub const NODE_ATTEMPTS: &str = "hrw_node_attempts";
pub const NODE_FAILURES: &str = "hrw_node_failures";
pub const NODE_ATTEMPT_DURATION: &str = "hrw_node_attempt_duration_seconds";
pub const NODE_EJECTED: &str = "hrw_node_ejected";
pub const NODE_SHARE: &str = "hrw_node_share";
pub const NODE_IN_FLIGHT: &str = "hrw_node_in_flight";
pub const READ_FALLBACKS: &str = "hrw_read_fallbacks";
pub const READ_LOAD_SPILLS: &str = "hrw_read_load_spills";
pub const HEDGES_SENT: &str = "hrw_hedges_sent";
pub const HEDGES_WON: &str = "hrw_hedges_won";
pub const WRITES_SHORT_OF_R: &str = "hrw_writes_short_of_r";
pub const WRITE_QUORUM_FAILURES: &str = "hrw_write_quorum_failures";
pub const CONFIG_GENERATION: &str = "hrw_config_generation";
pub const CONFIG_LAST_RELOAD_SUCCESS: &str = "hrw_config_last_reload_success";
pub const CONFIG_LAST_SUCCESS_TIME: &str = "hrw_config_last_success_timestamp_seconds";
pub const CONFIG_RELOAD_FAILURES: &str = "hrw_config_reload_failures";
pub const HANDOFF_HITS: &str = "hrw_handoff_hits";
pub const HANDOFF_COPIES: &str = "hrw_handoff_copies";
pub const READ_REPAIRS: &str = "hrw_read_repairs";
pub const NODE_HINTS: &str = "hrw_node_hints";
pub const HINTS_REPLAYED: &str = "hrw_hints_replayed";
pub const HINTS_DROPPED: &str = "hrw_hints_dropped";
pub const HINTS_HANDED_OFF: &str = "hrw_hints_handed_off";
pub const NODE_HINTS_ON_NODES: &str = "hrw_node_hints_on_nodes";
pub const NODE_OLDEST_HINT: &str = "hrw_node_oldest_hint_seconds";
pub const REBALANCE_KEYS: &str = "hrw_rebalance_keys";
pub const HOT_KEYS_SHARE: &str = "hrw_hot_keys_share";

/// Every metric family above; a family shows in a scrape once it has a sample.
pub const FAMILIES: &[&str] = &[
    REQUESTS,
    REQUEST_DURATION,
    NODE_ATTEMPTS,
    NODE_FAILURES,
    NODE_ATTEMPT_DURATION,
    NODE_EJECTED,
    NODE_SHARE,
    NODE_IN_FLIGHT,
    READ_FALLBACKS,
    READ_LOAD_SPILLS,
    HEDGES_SENT,
    HEDGES_WON,
    WRITES_SHORT_OF_R,
    WRITE_QUORUM_FAILURES,
    CONFIG_GENERATION,
    CONFIG_LAST_RELOAD_SUCCESS,
    CONFIG_LAST_SUCCESS_TIME,
    CONFIG_RELOAD_FAILURES,
    HANDOFF_HITS,
    HANDOFF_COPIES,
    READ_REPAIRS,
    NODE_HINTS,
    HINTS_REPLAYED,
    HINTS_DROPPED,
    REBALANCE_KEYS,
    HOT_KEYS_SHARE,
];

/// The client operations.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub(crate) enum Op {
    get,
    head,
    put,
    delete,
    /// Anything refused before it became one of the above.
    other,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub op: Op,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OpLabel {
    pub op: Op,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct NodeLabel {
    pub node: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct NodeOpLabels {
    pub node: String,
    pub op: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct NodeKindLabels {
    pub node: String,
    pub kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RankLabel {
    /// The rank (1 = first replica) of the replica that finally answered.
    pub rank: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TopLabel {
    /// How many of the hottest keys.
    pub top: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StageLabel {
    pub stage: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 100 us to ~6.5 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

/// Every metric of one proxy.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: HistogramFamily<OpLabel>,
    pub node_attempts: Family<NodeOpLabels, Counter>,
    pub node_failures: Family<NodeKindLabels, Counter>,
    pub node_attempt_duration: HistogramFamily<NodeLabel>,
    node_ejected: Family<NodeLabel, Gauge>,
    node_share: Family<NodeLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    node_in_flight: Family<NodeLabel, Gauge>,
    pub read_fallbacks: Family<RankLabel, Counter>,
    pub read_load_spills: Counter,
    pub hedges_sent: Counter,
    pub hedges_won: Counter,
    pub writes_short_of_r: Counter,
    pub write_quorum_failures: Counter,
    config_generation: Gauge,
    pub config_last_reload_success: Gauge,
    pub config_last_success_time: Gauge,
    pub config_reload_failures: Counter,
    pub handoff_hits: Counter,
    pub handoff_copies: Counter,
    pub read_repairs: Counter,
    node_hints: Family<NodeLabel, Gauge>,
    pub hints_replayed: Counter,
    pub hints_dropped: Counter,
    pub hints_handed_off: Counter,
    node_hints_on_nodes: Family<NodeLabel, Gauge>,
    node_oldest_hint: Family<NodeLabel, Gauge>,
    rebalance_keys: Family<StageLabel, Gauge>,
    hot_keys_share: Family<TopLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// The one [`NodeMetrics`] every node past `metrics_node_limit` shares.
    other_nodes: Mutex<Option<Arc<NodeMetrics>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            other_nodes: Mutex::default(),
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            node_attempts: Family::default(),
            node_failures: Family::default(),
            node_attempt_duration: Family::new_with_constructor(latency_histogram),
            node_ejected: Family::default(),
            node_share: Family::default(),
            node_in_flight: Family::default(),
            read_fallbacks: Family::default(),
            read_load_spills: Counter::default(),
            hedges_sent: Counter::default(),
            hedges_won: Counter::default(),
            writes_short_of_r: Counter::default(),
            write_quorum_failures: Counter::default(),
            config_generation: Gauge::default(),
            config_last_reload_success: Gauge::default(),
            config_last_success_time: Gauge::default(),
            config_reload_failures: Counter::default(),
            handoff_hits: Counter::default(),
            handoff_copies: Counter::default(),
            read_repairs: Counter::default(),
            node_hints: Family::default(),
            hints_replayed: Counter::default(),
            hints_dropped: Counter::default(),
            hints_handed_off: Counter::default(),
            node_hints_on_nodes: Family::default(),
            node_oldest_hint: Family::default(),
            rebalance_keys: Family::default(),
            hot_keys_share: Family::default(),
        };
        let r = &mut m.registry;
        r.register(
            REQUESTS,
            "Client requests by operation and status",
            m.requests.clone(),
        );
        r.register(
            REQUEST_DURATION,
            "Client request latency",
            m.request_duration.clone(),
        );
        r.register(
            NODE_ATTEMPTS,
            "Attempts on each node by operation",
            m.node_attempts.clone(),
        );
        r.register(
            NODE_FAILURES,
            "Failed attempts on each node by kind",
            m.node_failures.clone(),
        );
        r.register(
            NODE_ATTEMPT_DURATION,
            "Latency of attempts on each node",
            m.node_attempt_duration.clone(),
        );
        r.register(
            NODE_EJECTED,
            "1 while the node is ejected or probing",
            m.node_ejected.clone(),
        );
        r.register(
            NODE_SHARE,
            "The node's share of primaries: weight / sum of weights",
            m.node_share.clone(),
        );
        r.register(
            NODE_IN_FLIGHT,
            "Attempts on the node not yet answered",
            m.node_in_flight.clone(),
        );
        r.register(
            READ_FALLBACKS,
            "Reads answered by a replica below the first, by its rank",
            m.read_fallbacks.clone(),
        );
        r.register(
            READ_LOAD_SPILLS,
            "Reads sent past a first replica over the load bound (read_load_factor)",
            m.read_load_spills.clone(),
        );
        r.register(HEDGES_SENT, "Hedged reads sent", m.hedges_sent.clone());
        r.register(
            HEDGES_WON,
            "Hedged reads that answered first",
            m.hedges_won.clone(),
        );
        r.register(
            WRITES_SHORT_OF_R,
            "Writes answered with fewer than r acks",
            m.writes_short_of_r.clone(),
        );
        r.register(
            WRITE_QUORUM_FAILURES,
            "Writes that did not reach their ack level",
            m.write_quorum_failures.clone(),
        );
        r.register(
            CONFIG_GENERATION,
            "Generation of the config serving",
            m.config_generation.clone(),
        );
        r.register(
            CONFIG_LAST_RELOAD_SUCCESS,
            "1 if the last reload attempt applied or found no change",
            m.config_last_reload_success.clone(),
        );
        r.register(
            CONFIG_LAST_SUCCESS_TIME,
            "Unix time of the last applied config",
            m.config_last_success_time.clone(),
        );
        r.register(
            CONFIG_RELOAD_FAILURES,
            "Rejected config files",
            m.config_reload_failures.clone(),
        );
        r.register(
            HANDOFF_HITS,
            "Reads answered by a key's earlier replica",
            m.handoff_hits.clone(),
        );
        r.register(
            HANDOFF_COPIES,
            "Values copied forward to new replicas by handoff",
            m.handoff_copies.clone(),
        );
        r.register(
            READ_REPAIRS,
            "Stale replicas written back by read repair",
            m.read_repairs.clone(),
        );
        r.register(
            NODE_HINTS,
            "Writes the node missed, kept to replay before it serves again",
            m.node_hints.clone(),
        );
        r.register(
            HINTS_REPLAYED,
            "Missed writes replayed to their node",
            m.hints_replayed.clone(),
        );
        r.register(
            HINTS_DROPPED,
            "Missed writes not replayed: the node's hint queue was full, or it refused the write",
            m.hints_dropped.clone(),
        );
        r.register(
            HINTS_HANDED_OFF,
            "Hints held on stand-in nodes and handed over to their replica (or, for a removed replica, to the key's replicas)",
            m.hints_handed_off.clone(),
        );
        r.register(
            NODE_HINTS_ON_NODES,
            "Writes the node missed that stand-in nodes held at the end of the last hinted handoff pass",
            m.node_hints_on_nodes.clone(),
        );
        r.register(
            NODE_OLDEST_HINT,
            "Age of the oldest write the node missed and has not been handed (in memory or on a stand-in)",
            m.node_oldest_hint.clone(),
        );
        r.register(
            REBALANCE_KEYS,
            "Keys of the last repair (rebalance) by stage",
            m.rebalance_keys.clone(),
        );
        r.register(
            HOT_KEYS_SHARE,
            "The share of the last window's requests taken by the hottest key, and the ten hottest",
            m.hot_keys_share.clone(),
        );
        m.config_last_reload_success.set(1);
        m.config_last_success_time
            .set(unix_seconds(SystemTime::now()));
        m
    }
}

fn unix_seconds(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The operations attempts are counted by.
const NODE_OPS: [&str; 7] = ["get", "put", "delete", "copy", "list", "repair", "handoff"];

/// The `node` label of the nodes beyond the config's `metrics_node_limit`, summed.
pub const OTHER_NODES: &str = "_other";

/// The `node` label of a node's series.
pub(crate) fn node_label(id: &str, own_series: bool) -> &str {
    if own_series {
        id
    } else {
        OTHER_NODES
    }
}

/// One node's attempt counters and latency histogram.
#[derive(Debug)]
pub(crate) struct NodeMetrics {
    /// The node's id, or [`OTHER_NODES`].
    label: String,
    /// By operation, in the order of [`NODE_OPS`].
    attempts: [Counter; NODE_OPS.len()],
    duration: Histogram,
    /// The kinds of failure counted so far, whose series go with the node.
    failure_kinds: Mutex<Vec<&'static str>>,
}

impl NodeMetrics {
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    pub(crate) fn attempt(
        &self,
        metrics: &Metrics,
        op: &'static str,
        took: Duration,
        failure: Option<&'static str>,
    ) {
        if let Some(at) = NODE_OPS.iter().position(|o| *o == op) {
            self.attempts[at].inc();
        }
        self.duration.observe(took.as_secs_f64());
        if let Some(kind) = failure {
            {
                let mut kinds = crate::lock(&self.failure_kinds);
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
            }
            metrics
                .node_failures
                .get_or_create(&NodeKindLabels {
                    node: self.label.clone(),
                    kind,
                })
                .inc();
        }
    }
}

impl Metrics {
    pub(crate) fn request(&self, op: Op, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels { op, status })
            .inc();
        self.request_duration
            .get_or_create(&OpLabel { op })
            .observe(took.as_secs_f64());
    }

    /// The handles of one node's metrics, under its id if `own_series`, else under
    /// [`OTHER_NODES`]; made when the node joins so that the request path neither allocates
    /// label strings nor looks families up.
    pub(crate) fn node(&self, id: &str, own_series: bool) -> Arc<NodeMetrics> {
        if own_series {
            return Arc::new(self.new_node(id));
        }
        crate::lock(&self.other_nodes)
            .get_or_insert_with(|| Arc::new(self.new_node(OTHER_NODES)))
            .clone()
    }

    fn new_node(&self, label: &str) -> NodeMetrics {
        let attempts = |op| {
            self.node_attempts.get_or_create_owned(&NodeOpLabels {
                node: label.to_owned(),
                op,
            })
        };
        NodeMetrics {
            label: label.to_owned(),
            attempts: NODE_OPS.map(attempts),
            duration: self.node_attempt_duration.get_or_create_owned(&NodeLabel {
                node: label.to_owned(),
            }),
            failure_kinds: Mutex::default(),
        }
    }

    /// Drops the series of a node that left (or moved under [`OTHER_NODES`]), so that a
    /// membership that shrinks gives back their memory and its scrape shrinks with it.
    pub(crate) fn forget(&self, node: &NodeMetrics) {
        let label = &node.label;
        if label == OTHER_NODES {
            // Nodes that come under it later get series of their own again.
            *crate::lock(&self.other_nodes) = None;
        }
        for op in NODE_OPS {
            self.node_attempts.remove(&NodeOpLabels {
                node: label.clone(),
                op,
            });
        }
        self.node_attempt_duration.remove(&NodeLabel {
            node: label.clone(),
        });
        let kinds = crate::lock(&node.failure_kinds);
        for &kind in kinds.iter() {
            self.node_failures.remove(&NodeKindLabels {
                node: label.clone(),
                kind,
            });
        }
    }

    pub(crate) fn reload_applied(&self) {
        self.config_last_reload_success.set(1);
        self.config_last_success_time
            .set(unix_seconds(SystemTime::now()));
    }

    pub(crate) fn reload_rejected(&self) {
        self.config_last_reload_success.set(0);
        self.config_reload_failures.inc();
    }

    /// The Prometheus text of every metric, with the state-like ones set from `state` first.
    pub(crate) fn scrape(&self, state: &ScrapeState<'_>) -> String {
        self.config_generation.set(state.generation as i64);
        self.node_ejected.clear();
        self.node_share.clear();
        self.node_in_flight.clear();
        self.node_hints.clear();
        self.node_hints_on_nodes.clear();
        self.node_oldest_hint.clear();
        // Beyond the limit, nodes are summed: the number ejected, their share, and so on.
        for (at, node) in state.nodes.iter().enumerate() {
            let label = NodeLabel {
                node: node_label(node.id, at < state.node_limit).to_owned(),
            };
            self.node_ejected
                .get_or_create(&label)
                .inc_by(i64::from(node.ejected));
            self.node_share.get_or_create(&label).inc_by(node.share);
            self.node_in_flight
                .get_or_create(&label)
                .inc_by(node.in_flight as i64);
            self.node_hints
                .get_or_create(&label)
                .inc_by(node.hints as i64);
            self.node_hints_on_nodes
                .get_or_create(&label)
                .inc_by(node.hints_on_nodes as i64);
            // Summed nodes report their oldest.
            let oldest = self.node_oldest_hint.get_or_create(&label);
            let age = node.oldest_hint_s as i64;
            if age > oldest.get() {
                oldest.set(age);
            }
        }
        for (top, share) in state.hot_key_shares {
            self.hot_keys_share
                .get_or_create(&TopLabel { top })
                .set(share);
        }
        for (stage, value) in state.rebalance {
            self.rebalance_keys
                .get_or_create(&StageLabel { stage })
                .set(value as i64);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// What a scrape reports besides the counters: the state of the moment.
#[derive(Debug, Default)]
pub(crate) struct ScrapeState<'a> {
    pub generation: u64,
    /// In the config's order.
    pub nodes: Vec<NodeState<'a>>,
    /// Nodes reported each under its id; the rest under [`OTHER_NODES`].
    pub node_limit: usize,
    /// The last rebalance's keys by stage.
    pub rebalance: [(&'static str, u64); 4],
    /// The share of requests the hottest key took, and the ten hottest.
    pub hot_key_shares: [(u16, f64); 2],
}

/// One node's state for a scrape.
#[derive(Debug)]
pub(crate) struct NodeState<'a> {
    pub id: &'a str,
    pub ejected: bool,
    pub share: f64,
    pub in_flight: u64,
    /// Writes it missed: queued in memory, held on stand-ins, and the oldest's age.
    pub hints: usize,
    pub hints_on_nodes: u64,
    pub oldest_hint_s: u64,
}
