//! The YAML configuration: parse with unknown fields rejected, validate, and say where it is wrong.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::auth::AuthConfig;
use crate::error::ConfigError;
use crate::routing::{Ring, MAX_REPLICAS};
use crate::tls::TlsConfig;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_REPLICAS: usize = 2;
pub const DEFAULT_CONNECT_MS: u64 = 250;
pub const DEFAULT_REQUEST_MS: u64 = 2000;
pub const DEFAULT_DEADLINE_MS: u64 = 5000;
pub const DEFAULT_MAX_KEY_BYTES: usize = 1024;
pub const DEFAULT_MAX_VALUE_BYTES: usize = 8 * 1024 * 1024;
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9090";
pub const DEFAULT_HANDOFF_WINDOW_S: u64 = 300;
pub const DEFAULT_RELOAD_POLL_S: u64 = 5;
pub const MAX_RELOAD_POLL_S: u64 = 24 * 3600;
pub const MAX_HANDOFF_WINDOW_S: u64 = 7 * 24 * 3600;

/// A validated configuration: every field has its value and every rule holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    /// The admin listener (reload, config, rebalance); loopback by default.
    pub admin: SocketAddr,
    /// r: each key lives on its top-r nodes.
    pub replicas: usize,
    /// Acks a PUT or DELETE needs before it is answered 2xx.
    pub write_quorum: usize,
    pub timeouts: Timeouts,
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    /// How long after a placement change reads that miss ask the previous replicas.
    pub handoff_window_s: u64,
    /// How often the file's checksum is compared, in case file events were lost.
    pub reload_poll_s: u64,
    pub resilience: Resilience,
    pub limits: Limits,
    pub auth: AuthConfig,
    pub tls: TlsConfig,
    pub nodes: Vec<NodeSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Per connection attempt.
    #[serde(default = "default_connect_ms")]
    pub connect_ms: u64,
    /// Per attempt on one node.
    #[serde(default = "default_request_ms")]
    pub request_ms: u64,
    /// For a whole client request, fallbacks included; `x-hrw-deadline-ms` can shorten it.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
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

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect_ms: DEFAULT_CONNECT_MS,
            request_ms: DEFAULT_REQUEST_MS,
            deadline_ms: DEFAULT_DEADLINE_MS,
        }
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

/// One backend node. Its `id` alone decides placement; its `url` only says where it is.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub id: NodeId,
    pub url: NodeUrl,
    #[serde(default = "default_weight")]
    pub weight: Weight,
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

/// A finite weight greater than zero.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "f64")]
pub struct Weight(f64);

impl TryFrom<f64> for Weight {
    type Error = String;
    fn try_from(w: f64) -> Result<Self, String> {
        if w.is_finite() && w > 0.0 {
            Ok(Weight(w))
        } else {
            Err(format!("weight: {w} must be finite and greater than 0"))
        }
    }
}

impl Weight {
    pub fn get(self) -> f64 {
        self.0
    }
}

/// The protocols a node can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `PUT / GET / DELETE <url>/kv/<key>`: the built-in node or any such store.
    Http,
    /// The same over TLS.
    Https,
    /// Redis GET / SET / DEL.
    Redis,
    /// memcached get / set / delete (text protocol).
    Memcache,
}

impl Scheme {
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Redis => "redis",
            Scheme::Memcache => "memcache",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
            Scheme::Redis => 6379,
            Scheme::Memcache => 11211,
        }
    }
}

/// A node address: `http://host[:port]`, `redis://[[user]:password@]host[:port][/db]` or
/// `memcache://host[:port]`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct NodeUrl {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    /// Redis only: `(user, password)` from the URL.
    pub credentials: Option<(String, String)>,
    /// Redis only: the database number.
    pub db: u32,
    /// `scheme://host:port` (plus `/db` for Redis), never the password: the prefix of every
    /// HTTP request URL, and how the node is named in logs.
    pub base: String,
}

/// Never prints the password.
impl fmt::Debug for NodeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

impl TryFrom<String> for NodeUrl {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        let bad = |why: &str| format!("url: bad URL {:?}: {why}", redact(&raw));
        let (scheme_name, rest) = raw
            .split_once("://")
            .ok_or_else(|| bad("expected scheme://host:port"))?;
        let scheme = match scheme_name {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "redis" => Scheme::Redis,
            "memcache" => Scheme::Memcache,
            other => {
                return Err(format!(
                    "url: unsupported scheme {other:?} in {:?} (supported: http, https, redis, memcache)",
                    redact(&raw)
                ))
            }
        };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let (credentials, host_port) = match authority.rsplit_once('@') {
            Some(_) if scheme != Scheme::Redis => {
                return Err(bad("credentials are only supported for redis"))
            }
            Some((userinfo, host_port)) => {
                let (user, password) = userinfo.split_once(':').unwrap_or(("", userinfo));
                (Some((user.to_owned(), password.to_owned())), host_port)
            }
            None => (None, authority),
        };
        let authority: http::uri::Authority =
            host_port.parse().map_err(|e| bad(&format!("{e}")))?;
        let host = authority.host().to_owned();
        if host.is_empty() {
            return Err(bad("no host"));
        }
        // `http::uri::Authority` reads an unparsable port as none; refuse it instead.
        let after_host = &host_port[host_port.rfind(']').map_or(0, |i| i + 1)..];
        let port = match after_host.rsplit_once(':') {
            Some((_, port)) => port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad(&format!("bad port {port:?}")))?,
            None => scheme.default_port(),
        };
        let db = match (scheme, path) {
            (_, "" | "/") => 0,
            (Scheme::Redis, path) => path[1..].parse().map_err(|_| {
                bad("the path must be a database number, as in redis://host:6379/0")
            })?,
            (Scheme::Http | Scheme::Https, _) => {
                return Err(bad(
                    "must have no path or query (requests go to <url>/kv/<key>)",
                ))
            }
            (Scheme::Memcache, _) => return Err(bad("must have no path or query")),
        };
        let base = match scheme {
            Scheme::Redis => format!("redis://{host}:{port}/{db}"),
            _ => format!("{}://{host}:{port}", scheme.name()),
        };
        Ok(NodeUrl {
            scheme,
            host,
            port,
            credentials,
            db,
            base,
        })
    }
}

/// The URL with any password replaced, for error messages.
fn redact(raw: &str) -> String {
    match (raw.find("://"), raw.rfind('@')) {
        (Some(start), Some(at)) if at > start => {
            format!("{}://***@{}", &raw[..start], &raw[at + 1..])
        }
        _ => raw.to_owned(),
    }
}

impl NodeUrl {
    /// The socket address when the host is a loopback IP literal or `localhost`: a node the
    /// demo can run itself.
    pub fn loopback_addr(&self) -> Option<SocketAddr> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
            IpAddr::from([127, 0, 0, 1])
        } else {
            host.parse().ok()?
        };
        ip.is_loopback().then_some(SocketAddr::new(ip, self.port))
    }
}

impl fmt::Display for NodeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

fn default_connect_ms() -> u64 {
    DEFAULT_CONNECT_MS
}
fn default_request_ms() -> u64 {
    DEFAULT_REQUEST_MS
}
fn default_deadline_ms() -> u64 {
    DEFAULT_DEADLINE_MS
}
fn default_weight() -> Weight {
    Weight(1.0)
}
fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN.parse().expect("default listen address")
}
fn default_admin() -> SocketAddr {
    DEFAULT_ADMIN.parse().expect("default admin address")
}
fn default_handoff_window_s() -> u64 {
    DEFAULT_HANDOFF_WINDOW_S
}
fn default_reload_poll_s() -> u64 {
    DEFAULT_RELOAD_POLL_S
}
fn default_max_key_bytes() -> usize {
    DEFAULT_MAX_KEY_BYTES
}
fn default_max_value_bytes() -> usize {
    DEFAULT_MAX_VALUE_BYTES
}

/// The file as written: optional fields still optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_listen")]
    listen: SocketAddr,
    #[serde(default = "default_admin")]
    admin: SocketAddr,
    replicas: Option<usize>,
    write_quorum: Option<usize>,
    #[serde(default)]
    timeouts: Timeouts,
    #[serde(default = "default_max_key_bytes")]
    max_key_bytes: usize,
    #[serde(default = "default_max_value_bytes")]
    max_value_bytes: usize,
    #[serde(default = "default_handoff_window_s")]
    handoff_window_s: u64,
    #[serde(default = "default_reload_poll_s")]
    reload_poll_s: u64,
    eject_after: Option<u32>,
    eject_backoff_ms: Option<u64>,
    eject_backoff_max_ms: Option<u64>,
    max_ejected_percent: Option<u32>,
    health_check_interval_ms: Option<u64>,
    hedge_after_ms: Option<u64>,
    hedge_floor_ms: Option<u64>,
    hedge_budget_percent: Option<u32>,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    auth: AuthConfig,
    #[serde(default)]
    tls: TlsConfig,
    nodes: Vec<NodeSpec>,
}

/// The text of a config file.
pub fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::from_yaml(&read_file(path)?)
    }

    /// Parses and validates YAML text. Errors name the field and, where known, line and column.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = serde_yaml::from_str(text).map_err(|e| {
            let loc = e.location();
            // serde_yaml appends " at line L column C"; we report the position separately.
            let msg = e.to_string();
            let msg = match msg.rfind(" at line ") {
                Some(at) if loc.is_some() => msg[..at].to_owned(),
                _ => msg,
            };
            ConfigError::Invalid {
                message: msg,
                line: loc.as_ref().map(|l| l.line()),
                column: loc.as_ref().map(|l| l.column()),
            }
        })?;
        let at_key = |key: &str, message: String| {
            let line = top_level_key_line(text, key);
            ConfigError::Invalid {
                message,
                line,
                column: line.map(|_| 1),
            }
        };
        let n = raw.nodes.len();
        if n == 0 {
            return Err(at_key(
                "nodes",
                "nodes: at least one node is required".into(),
            ));
        }
        for (i, node) in raw.nodes.iter().enumerate() {
            if raw.nodes[..i].iter().any(|n| n.id == node.id) {
                let line = id_line(text, node.id.as_str(), 2);
                return Err(ConfigError::Invalid {
                    message: format!("nodes[{i}].id: duplicate node id {:?}", node.id.as_str()),
                    line,
                    column: None,
                });
            }
        }
        let replicas = raw.replicas.unwrap_or(DEFAULT_REPLICAS.min(n));
        if replicas == 0 || replicas > n {
            return Err(at_key(
                "replicas",
                format!("replicas: {replicas} must be between 1 and the number of nodes ({n})"),
            ));
        }
        if replicas > MAX_REPLICAS {
            return Err(at_key(
                "replicas",
                format!("replicas: {replicas} is more than the supported maximum {MAX_REPLICAS}"),
            ));
        }
        let write_quorum = raw.write_quorum.unwrap_or(replicas / 2 + 1);
        if write_quorum == 0 || write_quorum > replicas {
            return Err(at_key(
                "write_quorum",
                format!("write_quorum: {write_quorum} must be between 1 and replicas ({replicas})"),
            ));
        }
        let t = raw.timeouts;
        if [t.connect_ms, t.request_ms, t.deadline_ms].contains(&0) {
            return Err(at_key(
                "timeouts",
                "timeouts: connect_ms, request_ms and deadline_ms must be greater than 0".into(),
            ));
        }
        let d = Resilience::default();
        let resilience = Resilience {
            eject_after: raw.eject_after.unwrap_or(d.eject_after),
            eject_backoff_ms: raw.eject_backoff_ms.unwrap_or(d.eject_backoff_ms),
            eject_backoff_max_ms: raw.eject_backoff_max_ms.unwrap_or(d.eject_backoff_max_ms),
            max_ejected_percent: raw.max_ejected_percent.unwrap_or(d.max_ejected_percent),
            health_check_interval_ms: raw
                .health_check_interval_ms
                .unwrap_or(d.health_check_interval_ms),
            hedge_after_ms: raw.hedge_after_ms,
            hedge_floor_ms: raw.hedge_floor_ms.unwrap_or(d.hedge_floor_ms),
            hedge_budget_percent: raw.hedge_budget_percent.unwrap_or(d.hedge_budget_percent),
        };
        if resilience.eject_backoff_ms == 0
            || resilience.eject_backoff_max_ms < resilience.eject_backoff_ms
        {
            return Err(at_key(
                "eject_backoff_ms",
                "eject_backoff_ms: must be at least 1 and at most eject_backoff_max_ms".into(),
            ));
        }
        if resilience.max_ejected_percent > 100 {
            return Err(at_key(
                "max_ejected_percent",
                "max_ejected_percent: must be from 0 to 100".into(),
            ));
        }
        if resilience.hedge_budget_percent > 100 {
            return Err(at_key(
                "hedge_budget_percent",
                "hedge_budget_percent: must be from 0 to 100".into(),
            ));
        }
        if raw.max_key_bytes == 0 {
            return Err(at_key(
                "max_key_bytes",
                "max_key_bytes: must be at least 1".into(),
            ));
        }
        if !(1..=MAX_RELOAD_POLL_S).contains(&raw.reload_poll_s) {
            return Err(at_key(
                "reload_poll_s",
                format!("reload_poll_s: must be from 1 to {MAX_RELOAD_POLL_S} seconds"),
            ));
        }
        if raw.handoff_window_s > MAX_HANDOFF_WINDOW_S {
            return Err(at_key(
                "handoff_window_s",
                format!(
                    "handoff_window_s: must be from 0 (no handoff) to {MAX_HANDOFF_WINDOW_S} seconds"
                ),
            ));
        }
        let l = raw.limits;
        if l.max_connections == 0
            || l.max_headers == 0
            || l.max_header_bytes < 8192
            || l.header_read_timeout_ms == 0
            || l.body_read_timeout_ms == 0
        {
            return Err(at_key(
                "limits",
                "limits: max_connections, max_headers and the timeouts must be above 0, max_header_bytes at least 8192".into(),
            ));
        }
        if raw.tls.cert_file.is_some() != raw.tls.key_file.is_some() {
            return Err(at_key(
                "tls",
                "tls: cert_file and key_file go together".into(),
            ));
        }
        Ok(Config {
            listen: raw.listen,
            admin: raw.admin,
            replicas,
            write_quorum,
            timeouts: raw.timeouts,
            max_key_bytes: raw.max_key_bytes,
            max_value_bytes: raw.max_value_bytes,
            handoff_window_s: raw.handoff_window_s,
            reload_poll_s: raw.reload_poll_s,
            resilience,
            limits: raw.limits,
            auth: raw.auth,
            tls: raw.tls,
            nodes: raw.nodes,
        })
    }

    /// The placement table for these nodes.
    pub fn handoff_window(&self) -> Duration {
        Duration::from_secs(self.handoff_window_s)
    }

    pub fn reload_poll(&self) -> Duration {
        Duration::from_secs(self.reload_poll_s)
    }

    pub fn ring(&self) -> Ring {
        Ring::new(self.nodes.iter().map(|n| (n.id.as_str(), n.weight.get())))
            .expect("a validated config has unique ids and valid weights")
    }
}

/// The 1-based line of a top-level `key:` in block-style YAML, for errors found after parsing.
fn top_level_key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            line.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
        .map(|i| i + 1)
}

/// The 1-based line of the `nth` (1-based) `id: <id>` entry, for errors found after parsing.
fn id_line(text: &str, id: &str, nth: usize) -> Option<usize> {
    let is_id = |line: &str| {
        line.match_indices("id:").any(|(at, _)| {
            let before_ok = at == 0 || !line.as_bytes()[at - 1].is_ascii_alphanumeric();
            let value = line[at + 3..].trim_start();
            let value = value.trim_start_matches(['"', '\'']);
            before_ok
                && value.strip_prefix(id).is_some_and(|rest| {
                    rest.is_empty() || rest.starts_with(['"', '\'', ',', '}', ' ', '#'])
                })
        })
    };
    text.lines()
        .enumerate()
        .filter(|(_, line)| is_id(line))
        .nth(nth - 1)
        .map(|(i, _)| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::from_yaml(text).unwrap_err().to_string()
    }

    const TWO: &str = "nodes:\n  - { id: a, url: \"http://127.0.0.1:7001\" }\n  - { id: b, url: \"http://127.0.0.1:7002\" }\n";

    #[test]
    fn defaults() {
        let c = Config::from_yaml(TWO).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!((c.replicas, c.write_quorum), (2, 2));
        assert_eq!(c.timeouts, Timeouts::default());
        assert_eq!(c.max_key_bytes, 1024);
        assert_eq!(c.max_value_bytes, 8388608);
        assert_eq!(c.nodes[1].weight.get(), 1.0);
        assert_eq!(c.nodes[1].url.base, "http://127.0.0.1:7002");
    }

    #[test]
    fn majority_quorum_by_default() {
        let text = "replicas: 3\nnodes:\n  - { id: a, url: \"http://h:1\" }\n  - { id: b, url: \"http://h:2\" }\n  - { id: c, url: \"http://h:3\" }\n";
        assert_eq!(Config::from_yaml(text).unwrap().write_quorum, 2);
        let one = "nodes:\n  - { id: a, url: \"http://h:1\" }\n";
        let c = Config::from_yaml(one).unwrap();
        assert_eq!((c.replicas, c.write_quorum), (1, 1));
    }

    #[test]
    fn full_shape_from_the_docs() {
        let text = "listen: 127.0.0.1:9000\nreplicas: 2\nwrite_quorum: 1\ntimeouts: { connect_ms: 100, request_ms: 500 }\nmax_key_bytes: 64\nmax_value_bytes: 10\nnodes:\n  - { id: a, url: \"http://127.0.0.1:7001\", weight: 1.0 }\n  - { id: b, url: \"http://127.0.0.1:7002\", weight: 2.5 }\n";
        let c = Config::from_yaml(text).unwrap();
        assert_eq!(c.write_quorum, 1);
        assert_eq!(c.timeouts.request_ms, 500);
        assert_eq!(c.nodes[1].weight.get(), 2.5);
    }

    #[test]
    fn rejections_name_field_and_line() {
        let cases: &[(&str, &str)] = &[
            ("nodes: []\n", "line 1 column 1: nodes: at least one node"),
            ("replicas: 2\n", "missing field `nodes`"),
            (
                "nodes:\n  - { id: a, url: \"http://h:1\" }\n  - { id: a, url: \"http://h:2\" }\n",
                "line 3: nodes[1].id: duplicate node id \"a\"",
            ),
            (
                "nodes:\n  - { id: \"\", url: \"http://h:1\" }\n",
                "line 2 column 5: nodes[0]: id: node id must not be empty",
            ),
            (
                "nodes:\n  - { id: a, url: \"ftp://h:1\" }\n",
                "line 2 column 5: nodes[0]: url: unsupported scheme \"ftp\"",
            ),
            ("nodes:\n  - { id: a, url: \"not a url\" }\n", "nodes[0]: url: bad URL"),
            (
                "nodes:\n  - { id: a, url: \"http://h:1/path\" }\n",
                "must have no path",
            ),
            (
                "nodes:\n  - { id: a, url: \"http://h:1\", weight: 0 }\n",
                "line 2 column 5: nodes[0]: weight: 0 must be finite",
            ),
            (
                "nodes:\n  - { id: a, url: \"http://h:1\", weight: -1 }\n",
                "nodes[0]: weight: -1 must be finite",
            ),
            (
                "nodes:\n  - { id: a, url: \"http://h:1\", weight: .nan }\n",
                "nodes[0]: weight: NaN must be finite",
            ),
            (
                "nodes:\n  - { id: a, url: \"http://h:1\", weight: .inf }\n",
                "weight: inf must be finite",
            ),
            (
                "replicas: 0\nnodes:\n  - { id: a, url: \"http://h:1\" }\n",
                "line 1 column 1: replicas: 0 must be between 1",
            ),
            (
                "nodes:\n  - { id: a, url: \"http://h:1\" }\nreplicas: 2\n",
                "line 3 column 1: replicas: 2 must be between 1 and the number of nodes (1)",
            ),
            (
                "write_quorum: 0\nnodes:\n  - { id: a, url: \"http://h:1\" }\n",
                "line 1 column 1: write_quorum: 0 must be between 1 and replicas (1)",
            ),
            (
                "write_quorum: 2\nnodes:\n  - { id: a, url: \"http://h:1\" }\n",
                "write_quorum: 2 must be between 1 and replicas (1)",
            ),
            (
                "nodes:\n  - { id: a, url: \"http://h:1\" }\nreplica: 1\n",
                "line 3 column 1: unknown field `replica`",
            ),
            (
                "nodes:\n  - { id: a, url: \"http://h:1\", wieght: 1 }\n",
                "unknown field `wieght`",
            ),
            ("listen: nowhere\nnodes: []\n", "line 1 column 9: listen: invalid socket address"),
            ("nodes: [\n", "line 2"),
            (
                "nodes:\n  - id: a\n    url: \"http://h:1\"\n  - id: b\n    url: \"http://h:2\"\n  - id: 'a'\n    url: \"http://h:3\"\n",
                "line 6: nodes[2].id: duplicate node id \"a\"",
            ),
        ];
        for (text, want) in cases {
            let got = err(text);
            assert!(
                got.contains(want),
                "for {text:?}\n got: {got}\nwant: {want}"
            );
        }
    }

    #[test]
    fn node_urls_of_every_scheme() {
        let url = |raw: &str| NodeUrl::try_from(raw.to_string());
        let redis = url("redis://:s3cret@cache:6380/2").unwrap();
        assert_eq!(
            (redis.scheme, redis.port, redis.db),
            (Scheme::Redis, 6380, 2)
        );
        assert_eq!(redis.credentials, Some((String::new(), "s3cret".into())));
        assert_eq!(redis.base, "redis://cache:6380/2");
        assert!(!format!("{redis:?}").contains("s3cret"));
        assert_eq!(url("redis://h").unwrap().port, 6379);
        let mc = url("memcache://127.0.0.1").unwrap();
        assert_eq!(
            (mc.scheme, mc.port, mc.base.as_str()),
            (Scheme::Memcache, 11211, "memcache://127.0.0.1:11211")
        );
        for (raw, why) in [
            ("http://h:99999", "bad port"),
            ("http://h:abc", "bad port"),
            ("http://h:", "bad port"),
            ("http://u:p@h:1", "credentials are only supported for redis"),
            ("redis://h:1/x", "database number"),
            ("memcache://h:1/x", "no path"),
            ("ftp://h:1", "supported: http, https, redis, memcache"),
        ] {
            let err = url(raw).unwrap_err();
            assert!(err.contains(why), "{raw}: {err}");
        }
        let err = url("redis://:pw@h:99999").unwrap_err();
        assert!(!err.contains("pw"), "password leaked: {err}");
    }

    #[test]
    fn loopback_detection() {
        let url = |s: &str| NodeUrl::try_from(s.to_owned()).unwrap();
        assert!(url("http://127.0.0.1:7001").loopback_addr().is_some());
        assert!(url("http://localhost:7001").loopback_addr().is_some());
        assert!(url("http://[::1]:7001").loopback_addr().is_some());
        assert!(url("http://10.0.0.1:7001").loopback_addr().is_none());
        assert!(url("http://cache-1:7001").loopback_addr().is_none());
        assert_eq!(url("http://cache-1").port, 80);
    }
}
