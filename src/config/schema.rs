//! The config file as written: every field, its default (each default is written once, in a
//! `Default` impl here), unknown fields refused. [`super::Config::from_yaml`] validates it.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::url::NodeUrl;
use crate::routing::{MAX_WEIGHT, MIN_WEIGHT};

/// The top level of the file. `replicas` and `write_quorum` default to values derived from
/// the nodes (see [`super::Config`]); `nodes` is required.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct File {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub resp_listen: Option<SocketAddr>,
    pub memcache_listen: Option<SocketAddr>,
    pub replicas: Option<usize>,
    pub write_quorum: Option<usize>,
    pub timeouts: Timeouts,
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    pub handoff_window_s: u64,
    pub reload_poll_s: u64,
    pub versioning: Versioning,
    pub tombstone_ttl_s: u64,
    pub read_quorum: Option<usize>,
    pub quorum: Quorum,
    pub repair_budget_percent: u32,
    pub metrics_node_limit: usize,
    pub coalesce_reads: bool,
    pub read_load_factor: Option<f64>,
    pub placement: PlacementKind,
    pub points_per_weight: f64,
    pub group_size: u32,
    pub hints: HintLimits,
    pub log_format: LogFormat,
    // The resilience settings sit at the top level of the file.
    pub eject_after: u32,
    pub eject_backoff_ms: u64,
    pub eject_backoff_max_ms: u64,
    pub max_ejected_percent: u32,
    pub health_check_interval_ms: u64,
    pub hedge_after_ms: Option<u64>,
    pub hedge_floor_ms: u64,
    pub hedge_budget_percent: u32,
    pub limits: Limits,
    pub auth: AuthConfig,
    pub tls: TlsConfig,
    pub nodes: Option<Vec<NodeSpec>>,
}

impl Default for File {
    fn default() -> File {
        let r = Resilience::default();
        File {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin: SocketAddr::from(([127, 0, 0, 1], 9090)),
            resp_listen: None,
            memcache_listen: None,
            replicas: None,
            write_quorum: None,
            timeouts: Timeouts::default(),
            max_key_bytes: 1024,
            max_value_bytes: 8 * 1024 * 1024,
            handoff_window_s: 300,
            reload_poll_s: 5,
            versioning: Versioning::On,
            tombstone_ttl_s: 86_400,
            read_quorum: None,
            quorum: Quorum::Sloppy,
            repair_budget_percent: 10,
            metrics_node_limit: 100,
            coalesce_reads: true,
            read_load_factor: None,
            placement: PlacementKind::Rendezvous,
            points_per_weight: 100.0,
            group_size: crate::routing::DEFAULT_GROUP_SIZE,
            hints: HintLimits::default(),
            log_format: LogFormat::Text,
            eject_after: r.eject_after,
            eject_backoff_ms: r.eject_backoff_ms,
            eject_backoff_max_ms: r.eject_backoff_max_ms,
            max_ejected_percent: r.max_ejected_percent,
            health_check_interval_ms: r.health_check_interval_ms,
            hedge_after_ms: r.hedge_after_ms,
            hedge_floor_ms: r.hedge_floor_ms,
            hedge_budget_percent: r.hedge_budget_percent,
            limits: Limits::default(),
            auth: AuthConfig::default(),
            tls: TlsConfig::default(),
            nodes: None,
        }
    }
}

impl File {
    pub fn resilience(&self) -> Resilience {
        Resilience {
            eject_after: self.eject_after,
            eject_backoff_ms: self.eject_backoff_ms,
            eject_backoff_max_ms: self.eject_backoff_max_ms,
            max_ejected_percent: self.max_ejected_percent,
            health_check_interval_ms: self.health_check_interval_ms,
            hedge_after_ms: self.hedge_after_ms,
            hedge_floor_ms: self.hedge_floor_ms,
            hedge_budget_percent: self.hedge_budget_percent,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// Per connection attempt.
    pub connect_ms: u64,
    /// Per attempt on one node.
    pub request_ms: u64,
    /// For a whole client request once its body is in, fallbacks included;
    /// `x-hrw-deadline-ms` can shorten it.
    pub deadline_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect_ms: 250,
            request_ms: 2000,
            deadline_ms: 5000,
        }
    }
}

impl Timeouts {
    pub fn connect(&self) -> Duration {
        Duration::from_millis(self.connect_ms)
    }
    pub fn request(&self) -> Duration {
        Duration::from_millis(self.request_ms)
    }
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }
}

/// What one client may hold of the data listener, and how long shutdown waits. Listener
/// settings: a change needs a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Open client connections at most; the next ones get a 503 and are closed.
    pub max_connections: usize,
    /// Time to send a request's headers (also how long an idle keep-alive connection waits
    /// for its next request).
    pub header_read_timeout_ms: u64,
    /// Time to send a request's body.
    pub body_read_timeout_ms: u64,
    /// Request headers at most, and their bytes at most (at least 8192).
    pub max_headers: usize,
    pub max_header_bytes: usize,
    /// How long requests in flight may take to finish after SIGTERM or SIGINT.
    pub shutdown_grace_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            max_headers: 64,
            max_header_bytes: 16 * 1024,
            shutdown_grace_ms: 10_000,
        }
    }
}

impl Limits {
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

/// How failing nodes are ejected and probed, and when reads are hedged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resilience {
    /// Consecutive failures that eject a node; 0 never ejects.
    pub eject_after: u32,
    /// The first ejection's length; each repeat doubles it up to `eject_backoff_max_ms`.
    pub eject_backoff_ms: u64,
    pub eject_backoff_max_ms: u64,
    /// At most this share of the nodes is ejected at once.
    pub max_ejected_percent: u32,
    /// Active health probes of every node in service; 0 turns them off.
    pub health_check_interval_ms: u64,
    /// Send a GET to the next replica when the first has not answered after this long;
    /// `None` uses the first node's recent p95 latency (not below `hedge_floor_ms`).
    pub hedge_after_ms: Option<u64>,
    pub hedge_floor_ms: u64,
    /// Hedged reads as a percentage of reads at most; 0 turns hedging off.
    pub hedge_budget_percent: u32,
}

impl Default for Resilience {
    fn default() -> Self {
        Resilience {
            eject_after: 5,
            eject_backoff_ms: 1000,
            eject_backoff_max_ms: 60_000,
            max_ejected_percent: 50,
            health_check_interval_ms: 2000,
            hedge_after_ms: None,
            hedge_floor_ms: 5,
            hedge_budget_percent: 10,
        }
    }
}

/// Whether values carry versions (`on`, the default) or are stored as they are (`off`, for
/// nodes shared with other clients that read the raw values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Versioning {
    On,
    Off,
}

/// Which nodes count toward a read's R and a write's W: with `sloppy` (the default), when a
/// replica is out of service or fails, the next node of the key's ranking in service stands
/// in for it (a write there carries a hint naming the replica); with `strict`, only the key's
/// replicas count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quorum {
    Sloppy,
    Strict,
}

/// The placement function: weighted rendezvous (the default), or for memberships so large that
/// scoring every node per key costs too much, rendezvous within groups found by a tree
/// (hierarchical) or consistent hashing on points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlacementKind {
    Rendezvous,
    Consistent,
    Hierarchical,
}

/// How log lines are written to stderr: for people, or one JSON object per line for log
/// pipelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Writes kept in memory for a node that missed them, replayed before it serves again (per
/// node), and how often the hints that nodes hold for one another are looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HintLimits {
    /// Writes kept at most (0: no hints in memory).
    pub max_writes: usize,
    /// Bytes of keys and values kept at most.
    pub max_bytes: usize,
    /// Seconds between passes over the hints stored on nodes (handed to their replicas once
    /// those are in service), which also run when the membership changes; 0: only at a
    /// node's readmission and in repair.
    pub scan_interval_s: u64,
}

impl Default for HintLimits {
    fn default() -> Self {
        HintLimits {
            max_writes: 10_000,
            max_bytes: 64 * 1024 * 1024,
            scan_interval_s: 10,
        }
    }
}

impl HintLimits {
    /// The pause between passes over the hints nodes hold; `None` for none.
    pub fn scan_interval(&self) -> Option<Duration> {
        (self.scan_interval_s > 0).then(|| Duration::from_secs(self.scan_interval_s))
    }
}

/// `auth:`: bearer tokens, read from files relative to the config file's directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub data_token_file: Option<PathBuf>,
    pub admin_token_file: Option<PathBuf>,
}

/// `tls:`; paths relative to the config file's directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain and private key: with both, the data listener speaks HTTPS.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// A PEM CA bundle trusted for `https://` nodes, besides the public web roots.
    pub backend_ca_file: Option<PathBuf>,
}

impl TlsConfig {
    pub fn serves_https(&self) -> bool {
        self.cert_file.is_some()
    }
}

/// One backend node. Its `id` alone decides placement; its `url` only says where it is.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub id: NodeId,
    pub url: NodeUrl,
    #[serde(default)]
    pub weight: Weight,
    /// What an `http(s)://` node is.
    #[serde(default)]
    pub store: Store,
    /// Its failure domain (rack, zone): a key's replicas go to different zones first.
    #[serde(default)]
    pub zone: Option<Zone>,
}

/// A non-empty zone name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Zone(String);

impl TryFrom<String> for Zone {
    type Error = String;
    fn try_from(zone: String) -> Result<Self, String> {
        if zone.is_empty() {
            Err("zone: must not be empty (leave it out for no zone)".into())
        } else {
            Ok(Zone(zone))
        }
    }
}

impl Zone {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What an HTTP node is: the built-in node (or anything speaking its protocol: versions in
/// `x-hrw-version` headers, compared on the node), or any other store taking PUT, GET and
/// DELETE (versions in an envelope around the value, compared by reading first).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Store {
    #[default]
    Hrw,
    Plain,
}

/// A non-empty node id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct NodeId(String);

impl TryFrom<String> for NodeId {
    type Error = String;
    fn try_from(id: String) -> Result<Self, String> {
        if id.is_empty() {
            Err("id: node id must not be empty".into())
        } else {
            Ok(NodeId(id))
        }
    }
}

impl NodeId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A weight from [`MIN_WEIGHT`] to [`MAX_WEIGHT`]; 1 unless given.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "f64")]
pub struct Weight(f64);

impl Default for Weight {
    fn default() -> Self {
        Weight(1.0)
    }
}

impl TryFrom<f64> for Weight {
    type Error = String;
    fn try_from(w: f64) -> Result<Self, String> {
        if !(w.is_finite() && w > 0.0) {
            Err(format!("weight: {w} must be finite and greater than 0"))
        } else if !(MIN_WEIGHT..=MAX_WEIGHT).contains(&w) {
            Err(format!(
                "weight: {w:e} is outside the supported range {MIN_WEIGHT:e} to {MAX_WEIGHT:e}"
            ))
        } else {
            Ok(Weight(w))
        }
    }
}

impl Weight {
    pub fn get(self) -> f64 {
        self.0
    }
}
