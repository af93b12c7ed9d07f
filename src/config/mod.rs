//! The config pipeline: file -> bounded text ([`yaml`]) -> the file schema ([`schema`], where
//! every default is) -> a validated [`Config`]. Every rejection names the field and, where it
//! can be found, the line and column.

mod error;
mod pieces;
mod schema;
mod url;
mod yaml;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use self::error::ConfigError;
pub use self::schema::{
    AuthConfig, HintLimits, Limits, LogFormat, NodeId, NodeSpec, Quorum, Resilience, Store,
    Timeouts, TlsConfig, Versioning, Weight, Zone,
};
pub use self::url::{NodeUrl, Scheme};
pub use self::yaml::{max_config_bytes, MAX_CONFIG_BYTES, MAX_CONFIG_BYTES_VAR, MAX_DEPTH};

use crate::routing::{
    point_counts, Placement, Ring, RingError, MAX_GROUP_SIZE, MAX_POINTS, MAX_REPLICAS,
    MIN_GROUP_SIZE,
};

/// The longest `reload_poll_s` and `handoff_window_s` accepted.
pub const MAX_RELOAD_POLL_S: u64 = 24 * 3600;
pub const MAX_HANDOFF_WINDOW_S: u64 = 7 * 24 * 3600;
/// The longest time to live accepted, for values (`?ttl=`) and tombstones: ten years.
pub const MAX_TTL_SECONDS: u32 = 10 * 365 * 24 * 3600;
const MAX_TOMBSTONE_TTL_S: u64 = MAX_TTL_SECONDS as u64;

/// A validated configuration: every field has its value and every rule holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    /// The admin listener (reload, config, repair); loopback by default.
    pub admin: SocketAddr,
    /// The Redis (RESP) listener, when set.
    pub resp_listen: Option<SocketAddr>,
    /// The memcached (text protocol) listener, when set.
    pub memcache_listen: Option<SocketAddr>,
    /// r: each key lives on its top-r nodes; by default 2, or 1 with a single node.
    pub replicas: usize,
    /// Acks a PUT or DELETE needs before it is answered 2xx; by default a majority of r.
    pub write_quorum: usize,
    pub timeouts: Timeouts,
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    /// How long after a placement change reads that miss ask the previous replicas.
    pub handoff_window_s: u64,
    /// How often the file's checksum is compared, in case file events were lost.
    pub reload_poll_s: u64,
    /// Whether values carry versions.
    pub versioning: Versioning,
    /// How long a delete is remembered (its tombstone kept), at least the handoff window.
    pub tombstone_ttl_s: u64,
    /// R: replicas a read waits for; by default `replicas - write_quorum + 1`, so R + W > r.
    pub read_quorum: usize,
    /// Whether nodes outside a key's replicas stand in for replicas out of service (with
    /// versions only: without, the quorum is strict).
    pub quorum: Quorum,
    /// Read repairs (stale replicas written back) as a percentage of reads at most.
    pub repair_budget_percent: u32,
    /// Nodes (the first, in the file's order) with metric series of their own; the rest are
    /// summed under `node="_other"`, so a scrape stays small for any membership.
    pub metrics_node_limit: usize,
    /// Whether concurrent GETs of one key share backend reads.
    pub coalesce_reads: bool,
    /// Bounded load for reads: a GET whose first replica has more attempts in flight than
    /// this many times the mean over nodes in service, plus one, goes to the next replica
    /// under that bound. `None`: off.
    pub read_load_factor: Option<f64>,
    /// The placement function (`placement:` and `points_per_weight:`).
    pub placement: Placement,
    /// How log lines are written (read once, at start).
    pub log_format: LogFormat,
    pub hints: HintLimits,
    pub resilience: Resilience,
    pub limits: Limits,
    pub auth: AuthConfig,
    pub tls: TlsConfig,
    /// Shared with the members built from them: a million nodes are held once.
    pub nodes: Vec<Arc<NodeSpec>>,
}

/// The text of a config file, refused if larger than [`max_config_bytes`] or not UTF-8.
pub fn read_file(path: &Path) -> Result<String, ConfigError> {
    yaml::read_bounded(path)
}

/// The `log_format:` of a config file, read before logging starts: `Text` when the file
/// cannot be read or says nothing valid (loading it then reports why).
pub fn log_format_of(path: &Path) -> LogFormat {
    let Ok(text) = read_file(path) else {
        return LogFormat::Text;
    };
    // Its own line is read alone, not the whole file (which may hold a million nodes); a
    // file in flow style, with no such line, is parsed whole.
    let line = yaml::top_level_key_line(&text, "log_format");
    let yaml = match line.and_then(|line| text.lines().nth(line - 1)) {
        Some(line) => serde_yaml::from_str::<serde_yaml::Value>(line),
        None if text.contains("log_format") => serde_yaml::from_str(&text),
        None => return LogFormat::Text,
    };
    yaml.ok()
        .and_then(|yaml| serde_yaml::from_value(yaml.get("log_format")?.clone()).ok())
        .unwrap_or(LogFormat::Text)
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::from_yaml(&read_file(path)?)
    }

    /// Parses and validates YAML text.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        yaml::check_bounds(text)?;
        let parse = |text: &str| -> Result<schema::File, ConfigError> {
            serde_yaml::from_str(text).map_err(|e| parse_error(text, &e))
        };
        let file = match pieces::cut(text) {
            Some(cut) => {
                let mut file = parse(&cut.head)?;
                file.nodes = Some(cut.nodes(text)?);
                file
            }
            None => parse(text)?,
        };
        validate(text, file)
    }

    pub fn handoff_window(&self) -> Duration {
        Duration::from_secs(self.handoff_window_s)
    }

    pub fn reload_poll(&self) -> Duration {
        Duration::from_secs(self.reload_poll_s)
    }

    pub fn versioned(&self) -> bool {
        self.versioning == Versioning::On
    }

    /// Whether fallback nodes stand in for replicas out of service: `quorum: sloppy`, with
    /// versions (without them a stand-in's copy could not be handed back safely).
    pub fn sloppy(&self) -> bool {
        self.quorum == Quorum::Sloppy && self.versioned()
    }

    /// The placement table for these nodes.
    pub fn ring(&self) -> Ring {
        let nodes = self.nodes.iter().map(|n| {
            let zone = n.zone.as_ref().map(|z| z.as_str());
            (n.id.as_str(), n.weight.get(), zone)
        });
        Ring::with_placement(nodes, self.placement)
            .expect("a validated config has unique ids, valid weights and points")
    }
}

/// A parser error with its position; a repeated key is reported where it repeats (the parser
/// itself points at the mapping that holds it).
fn parse_error(text: &str, e: &serde_yaml::Error) -> ConfigError {
    parse_error_with(text, e.to_string(), e.location(), 0)
}

/// [`parse_error`] for a `message` found by parsing a part of `text` that starts after
/// `lines_before` lines.
fn parse_error_with(
    text: &str,
    message: String,
    loc: Option<serde_yaml::Location>,
    lines_before: usize,
) -> ConfigError {
    // serde_yaml appends " at line L column C"; the position is reported separately.
    let message = match message.rfind(" at line ") {
        Some(at) if loc.is_some() => message[..at].to_owned(),
        _ => message,
    };
    let mut position = loc.map(|l| (l.line() + lines_before, l.column()));
    let duplicate = message
        .split("duplicate field `")
        .nth(1)
        .or_else(|| message.split("duplicate entry with key \"").nth(1))
        .and_then(|rest| rest.split(['`', '"']).next());
    if let (Some(key), Some((line, column))) = (duplicate, position) {
        if let Some(found) = yaml::duplicate_key_position(text, key, line, column) {
            position = Some(found);
        }
    }
    ConfigError::at(message, position.map(|p| p.0), position.map(|p| p.1))
}

/// The most headers a request may be allowed (`limits.max_headers`); more is no real client.
const MAX_HEADERS: usize = 1000;

fn validate(text: &str, file: schema::File) -> Result<Config, ConfigError> {
    let at_key = |key: &str, message: String| {
        let line = yaml::top_level_key_line(text, key);
        ConfigError::at(message, line, line.map(|_| 1))
    };
    let resilience = file.resilience();
    let Some(nodes) = file.nodes else {
        return Err(ConfigError::at(
            "missing field `nodes`".into(),
            Some(1),
            Some(1),
        ));
    };
    let n = nodes.len();
    if n == 0 {
        return Err(at_key(
            "nodes",
            "nodes: at least one node is required".into(),
        ));
    }
    let mut seen = crate::routing::IdSet::with_capacity_and_hasher(n, Default::default());
    for (i, node) in nodes.iter().enumerate() {
        if !seen.insert(node.id.as_str()) {
            let line = yaml::id_line(text, node.id.as_str(), 2);
            return Err(ConfigError::at(
                format!("nodes[{i}].id: duplicate node id {:?}", node.id.as_str()),
                line,
                None,
            ));
        }
    }
    let replicas = file.replicas.unwrap_or(2.min(n));
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
    let write_quorum = file.write_quorum.unwrap_or(replicas / 2 + 1);
    if write_quorum == 0 || write_quorum > replicas {
        return Err(at_key(
            "write_quorum",
            format!("write_quorum: {write_quorum} must be between 1 and replicas ({replicas})"),
        ));
    }
    let read_quorum = file.read_quorum.unwrap_or(replicas + 1 - write_quorum);
    if read_quorum == 0 || read_quorum > replicas {
        return Err(at_key(
            "read_quorum",
            format!("read_quorum: {read_quorum} must be between 1 and replicas ({replicas})"),
        ));
    }
    let tombstone_bounds = file.handoff_window_s.max(1)..=MAX_TOMBSTONE_TTL_S;
    if !tombstone_bounds.contains(&file.tombstone_ttl_s) {
        return Err(at_key(
            "tombstone_ttl_s",
            format!(
                "tombstone_ttl_s: {} must be at least handoff_window_s ({}) and 1, and at most {MAX_TOMBSTONE_TTL_S}",
                file.tombstone_ttl_s, file.handoff_window_s
            ),
        ));
    }
    if file.repair_budget_percent > 100 {
        return Err(at_key(
            "repair_budget_percent",
            "repair_budget_percent: must be from 0 to 100".into(),
        ));
    }
    if let Some((i, node)) = nodes.iter().enumerate().find(|(_, n)| {
        n.store == Store::Plain && !matches!(n.url.scheme, Scheme::Http | Scheme::Https)
    }) {
        let line = yaml::id_line(text, node.id.as_str(), 1);
        return Err(ConfigError::at(
            format!("nodes[{i}].store: plain applies to http and https nodes only"),
            line,
            None,
        ));
    }
    let t = file.timeouts;
    if [t.connect_ms, t.request_ms, t.deadline_ms].contains(&0) {
        return Err(at_key(
            "timeouts",
            "timeouts: connect_ms, request_ms and deadline_ms must be greater than 0".into(),
        ));
    }
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
    if file
        .read_load_factor
        .is_some_and(|c| !(1.0..=1000.0).contains(&c))
    {
        return Err(at_key(
            "read_load_factor",
            "read_load_factor: must be from 1 to 1000 (1.25: a node takes at most 25% more than the mean)".into(),
        ));
    }
    if file.max_key_bytes == 0 {
        return Err(at_key(
            "max_key_bytes",
            "max_key_bytes: must be at least 1".into(),
        ));
    }
    if !(1..=MAX_RELOAD_POLL_S).contains(&file.reload_poll_s) {
        return Err(at_key(
            "reload_poll_s",
            format!("reload_poll_s: must be from 1 to {MAX_RELOAD_POLL_S} seconds"),
        ));
    }
    if file.hints.scan_interval_s > MAX_RELOAD_POLL_S {
        return Err(at_key(
            "hints",
            format!("hints: scan_interval_s must be from 0 (only repair) to {MAX_RELOAD_POLL_S} seconds"),
        ));
    }
    if file.handoff_window_s > MAX_HANDOFF_WINDOW_S {
        return Err(at_key(
            "handoff_window_s",
            format!(
                "handoff_window_s: must be from 0 (no handoff) to {MAX_HANDOFF_WINDOW_S} seconds"
            ),
        ));
    }
    let l = file.limits;
    if l.max_connections == 0
        || !(1..=MAX_HEADERS).contains(&l.max_headers)
        || l.max_header_bytes < 8192
        || l.header_read_timeout_ms == 0
        || l.body_read_timeout_ms == 0
    {
        return Err(at_key(
            "limits",
            format!("limits: max_connections and the timeouts must be above 0, max_headers from 1 to {MAX_HEADERS}, max_header_bytes at least 8192"),
        ));
    }
    if file.tls.cert_file.is_some() != file.tls.key_file.is_some() {
        return Err(at_key(
            "tls",
            "tls: cert_file and key_file go together".into(),
        ));
    }
    let placement = placement_of(
        file.placement,
        file.points_per_weight,
        file.group_size,
        &nodes,
    )
    .map_err(|message| at_key("placement", message))?;
    Ok(Config {
        listen: file.listen,
        admin: file.admin,
        resp_listen: file.resp_listen,
        memcache_listen: file.memcache_listen,
        log_format: file.log_format,
        replicas,
        write_quorum,
        timeouts: file.timeouts,
        max_key_bytes: file.max_key_bytes,
        max_value_bytes: file.max_value_bytes,
        handoff_window_s: file.handoff_window_s,
        reload_poll_s: file.reload_poll_s,
        versioning: file.versioning,
        tombstone_ttl_s: file.tombstone_ttl_s,
        read_quorum,
        quorum: file.quorum,
        repair_budget_percent: file.repair_budget_percent,
        metrics_node_limit: file.metrics_node_limit,
        coalesce_reads: file.coalesce_reads,
        read_load_factor: file.read_load_factor,
        placement,
        hints: file.hints,
        resilience,
        limits: file.limits,
        auth: file.auth,
        tls: file.tls,
        nodes: nodes.into_iter().map(Arc::new).collect(),
    })
}

/// The placement function, checked: with `consistent`, every node gets at least one point and
/// all of them fit in [`MAX_POINTS`]; with `hierarchical`, a group size in range.
fn placement_of(
    kind: schema::PlacementKind,
    per_weight: f64,
    group_size: u32,
    nodes: &[NodeSpec],
) -> Result<Placement, String> {
    match kind {
        schema::PlacementKind::Rendezvous => return Ok(Placement::Rendezvous),
        schema::PlacementKind::Hierarchical => {
            if !(MIN_GROUP_SIZE..=MAX_GROUP_SIZE).contains(&group_size) {
                return Err(format!(
                    "group_size: {group_size} must be from {MIN_GROUP_SIZE} to {MAX_GROUP_SIZE}"
                ));
            }
            return Ok(Placement::Hierarchical { group_size });
        }
        schema::PlacementKind::Consistent => {}
    }
    if !(per_weight.is_finite() && per_weight >= 1.0) {
        return Err(format!(
            "points_per_weight: {per_weight} must be a number of at least 1"
        ));
    }
    let weights = nodes.iter().map(|n| (n.id.as_str(), n.weight.get()));
    match point_counts(weights, per_weight) {
        Ok(_) => {}
        Err(RingError::NoPoints { id, weight, .. }) => {
            return Err(format!(
                "placement: consistent gives node {id:?} (weight {weight}) no point at points_per_weight {per_weight}; raise its weight or points_per_weight"
            ))
        }
        Err(RingError::TooManyPoints(total)) => {
            return Err(format!(
                "placement: consistent needs {total} points for these nodes, more than {MAX_POINTS}; lower points_per_weight or the weights"
            ))
        }
        Err(other) => return Err(other.to_string()),
    }
    Ok(Placement::Consistent {
        points_per_weight: per_weight,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::from_yaml(text).unwrap_err().to_string()
    }

    const TWO: &str = "nodes:\n  - { id: a, url: \"http://127.0.0.1:7001\" }\n  - { id: b, url: \"http://127.0.0.1:7002\" }\n";

    #[test]
    fn the_log_format_is_read_from_its_own_line_or_the_whole_flow_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        for (text, format) in [
            (
                format!("log_format: json   # one object a line\n{TWO}"),
                LogFormat::Json,
            ),
            (
                "{ log_format: json, nodes: [{ id: a, url: \"http://h:1\" }] }".to_string(),
                LogFormat::Json,
            ),
            (TWO.to_string(), LogFormat::Text),
            (format!("log_format: sideways\n{TWO}"), LogFormat::Text),
        ] {
            std::fs::write(&path, &text).unwrap();
            assert_eq!(log_format_of(&path), format, "{text}");
        }
    }

    #[test]
    fn defaults() {
        let c = Config::from_yaml(TWO).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.admin, "127.0.0.1:9090".parse().unwrap());
        assert_eq!((c.replicas, c.write_quorum), (2, 2));
        assert_eq!(c.timeouts, Timeouts::default());
        assert_eq!(c.timeouts.deadline_ms, 5000);
        assert_eq!(c.max_key_bytes, 1024);
        assert_eq!(c.max_value_bytes, 8388608);
        assert_eq!((c.handoff_window_s, c.reload_poll_s), (300, 5));
        assert_eq!(c.resilience, Resilience::default());
        assert_eq!(c.limits, Limits::default());
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
        let text = "listen: 127.0.0.1:9000\nreplicas: 2\nwrite_quorum: 1\ntimeouts: { connect_ms: 100, request_ms: 500 }\nmax_key_bytes: 64\nmax_value_bytes: 10\neject_after: 2\nhedge_after_ms: 7\nnodes:\n  - { id: a, url: \"http://127.0.0.1:7001\", weight: 1.0 }\n  - { id: b, url: \"http://127.0.0.1:7002\", weight: 2.5 }\n";
        let c = Config::from_yaml(text).unwrap();
        assert_eq!(c.write_quorum, 1);
        assert_eq!(c.timeouts.request_ms, 500);
        assert_eq!(
            c.timeouts.deadline_ms, 5000,
            "unset fields keep their default"
        );
        assert_eq!(c.resilience.eject_after, 2);
        assert_eq!(c.resilience.hedge_after_ms, Some(7));
        assert_eq!(c.resilience.eject_backoff_ms, 1000);
        assert_eq!(c.nodes[1].weight.get(), 2.5);
    }

    #[test]
    fn rejections_name_field_and_line() {
        let cases: &[(&str, &str)] = &[
            ("nodes: []\n", "line 1 column 1: nodes: at least one node"),
            (
                "placement: consistent\nnodes:\n  - { id: a, url: \"http://h:1\" }\n  - { id: tiny, url: \"http://h:2\", weight: 0.001 }\n",
                "line 1 column 1: placement: consistent gives node \"tiny\" (weight 0.001) no point at points_per_weight 100",
            ),
            (
                "placement: consistent\npoints_per_weight: 0.5\nnodes:\n  - { id: a, url: \"http://h:1\" }\n",
                "points_per_weight: 0.5 must be a number of at least 1",
            ),
            (
                "placement: consistent\nnodes:\n  - { id: a, url: \"http://h:1\", weight: 1e6 }\n",
                "needs 100000000 points for these nodes, more than 16777216",
            ),
            (
                "placement: sideways\nnodes:\n  - { id: a, url: \"http://h:1\" }\n",
                "unknown variant `sideways`, expected one of `rendezvous`, `consistent`, `hierarchical`",
            ),
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
                "read_load_factor: 0.5\nnodes:\n  - { id: a, url: \"http://h:1\" }\n",
                "line 1 column 1: read_load_factor: must be from 1 to 1000",
            ),
            (
                "nodes:\n  - { id: a, url: \"http://h:1\", zone: \"\" }\n",
                "line 2 column 5: nodes[0]: zone: must not be empty (leave it out for no zone)",
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
                "nodes:\n  - { id: a, url: \"http://h:1\", weight: 1e300 }\n",
                "weight: 1e300 is outside the supported range 1e-12 to 1e12",
            ),
            (
                "nodes:\n  - { id: a, url: \"http://h:1\", weight: 1e-300 }\n",
                "outside the supported range",
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
            (
                "replicas: 1\nnodes:\n  - { id: a, url: \"http://h:1\" }\n\n\n\n\n\n\n\n\n\nreplicas: 1\n",
                "line 13 column 1: duplicate field `replicas`",
            ),
            (
                "nodes:\n  - id: a\n    url: \"http://h:1\"\n    weight: 1\n    weight: 2\n",
                "line 5 column 5: nodes[0]: duplicate field `weight`",
            ),
            (
                "timeouts: { request_ms: 10, connect_ms: 5, request_ms: 20 }\nnodes:\n  - { id: a, url: \"http://h:1\" }\n",
                "line 1 column 44: timeouts: duplicate field `request_ms`",
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
}
