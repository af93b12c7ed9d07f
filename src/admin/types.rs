//! What the admin API answers, as types: the server serialises them and `hrwproxy status`
//! deserialises the same ones, so the two cannot drift apart.

use serde::{Deserialize, Serialize};

use crate::cluster::change_log::Change;

/// `GET /admin/config`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ConfigView {
    pub path: String,
    pub generation: u64,
    /// sha256 of the file serving.
    pub sha256: String,
    pub loaded_at: String,
    /// What triggered the reload that applied it: start, file event, poll, retry, signal,
    /// admin.
    pub applied_by: String,
    /// File reads so far.
    pub checks: u64,
    pub last_error: Option<ErrorView>,
    pub replicas: usize,
    pub write_quorum: usize,
    /// The first [`super::nodes::NODES_PAGE`] nodes; the rest through `/admin/nodes?offset=`.
    pub nodes: Vec<NodeView>,
    /// Every node, and those in service.
    #[serde(default)]
    pub nodes_total: usize,
    #[serde(default)]
    pub nodes_up: usize,
    /// The handoff windows open, newest first.
    pub handoff_from: Vec<WindowView>,
    /// The last applied reloads (up to 10), newest first.
    #[serde(default)]
    pub recent_reloads: Vec<Change>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ErrorView {
    pub message: String,
    pub at: String,
}

/// One node, in `GET /admin/nodes` and `GET /admin/config`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NodeView {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub zone: Option<String>,
    pub url: String,
    pub weight: f64,
    /// Its share of primaries: weight over the sum of weights.
    pub share: f64,
    /// up, ejected or probing.
    pub health: String,
    /// While ejected: how long until it is probed again.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ejected_for_ms: Option<u64>,
    pub consecutive_failures: u32,
    /// Attempts on it not yet answered.
    pub in_flight: u64,
    /// Writes it missed, kept to replay before it serves again.
    pub hints: usize,
    /// Writes it missed that were not kept (the queue was full) since it last caught up:
    /// reads with R and repair bring it up to date.
    pub hints_dropped: u64,
    /// Writes it missed that stand-in nodes held at the end of the last hinted handoff
    /// pass, and those handed over to it since the proxy started.
    #[serde(default)]
    pub hints_on_nodes: u64,
    #[serde(default)]
    pub hints_handed_off: u64,
    /// How long the oldest write it missed has waited, in memory or on a stand-in.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub oldest_hint_age_s: Option<u64>,
    pub last_error: Option<ErrorView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WindowView {
    pub generation: u64,
    pub closes_in_s: u64,
}

/// `GET /admin/locate/<key>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LocateView {
    pub key_hash: String,
    pub generation: u64,
    /// The key's replicas first, then the other nodes by rank.
    pub nodes: Vec<RankedView>,
    /// The key's replicas in each generation whose handoff window is open.
    pub previous: Vec<PreviousView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RankedView {
    pub node: String,
    pub weight: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub zone: Option<String>,
    pub score: f64,
    pub replica: bool,
    pub health: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PreviousView {
    pub generation: u64,
    pub replicas: Vec<String>,
}

/// `GET /admin/hotkeys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct HotKeysView {
    /// How long the window reported lasted.
    pub window_s: f64,
    /// Requests counted in it.
    pub requests: u64,
    /// The share of those the hottest key took, and the ten hottest.
    pub top1_share: f64,
    pub top10_share: f64,
    /// Hottest first.
    pub keys: Vec<HotKeyView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct HotKeyView {
    /// Percent-encoded, as in `/kv/<key>`.
    pub key: String,
    /// Estimated requests in the window (at most over, never under).
    pub requests: u64,
    pub per_second: f64,
    pub share: f64,
    pub replicas: Vec<String>,
}

/// `POST /admin/reload`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ReloadView {
    pub generation: u64,
    pub changed: bool,
    /// Set when the file was rejected (with a 422).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}
