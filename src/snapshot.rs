//! One immutable view of the membership (config, placement table, backend clients), swapped
//! whole, so a request sees one consistent membership from start to end.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

use std::path::Path;

use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::TlsConnector;

use crate::auth::Tokens;
use crate::backend::{self, Backend};
use crate::config::{Config, Scheme};
use crate::error::ConfigError;
use crate::handoff::RecentWrites;
use crate::health::Health;
use crate::hedge::HedgeBudget;
use crate::metrics::{Metrics, NodeMetrics};
use crate::routing::{key_hash, ReadPlan, Ring, TopR, WritePlan};
use crate::tls::{self, ServerCert};

#[derive(Debug)]
pub struct Snapshot {
    /// Counts applied configs, starting at 1.
    pub generation: u64,
    pub config: Arc<Config>,
    pub ring: Ring,
    /// One client per node, in the ring's order.
    pub backends: Box<[Arc<dyn Backend>]>,
    /// Each node's health, beside its client (and kept with it across reloads).
    pub health: Box<[Arc<Health>]>,
    /// Whether some key has other replicas than in the snapshot before it.
    pub placement_changed: bool,
    /// Earlier snapshots whose handoff window is still open, newest first: a read that misses
    /// on this snapshot's replicas asks theirs.
    pub previous: Box<[Retired]>,
    /// Client writes during open handoff windows; the same map in every snapshot.
    pub recent_writes: Arc<RecentWrites>,
    /// Hedged reads allowed; the same budget in every snapshot.
    pub hedge_budget: Arc<HedgeBudget>,
    /// The proxy's metrics; the same in every snapshot.
    pub metrics: Arc<Metrics>,
    /// Each node's metric handles, in the ring's order.
    pub node_metrics: Box<[NodeMetrics]>,
    /// Bearer tokens the listeners require, read from the files the config names.
    pub tokens: Tokens,
    /// The data listener's certificate when it serves HTTPS; the same resolver in every
    /// snapshot, its certificate replaced by each reload.
    pub server_cert: Option<Arc<ServerCert>>,
}

/// What a config names outside itself, read when it is applied: token files, the listener's
/// certificate, the trust for `https://` nodes.
#[derive(Default)]
pub struct Files {
    pub tokens: Tokens,
    pub server_key: Option<Arc<CertifiedKey>>,
    pub connector: Option<TlsConnector>,
}

impl Files {
    /// Reads the files `config` names, relative to `dir` (the config file's directory).
    pub fn load(config: &Config, dir: &Path) -> Result<Files, ConfigError> {
        let needs_connector = config.tls.backend_ca_file.is_some()
            || config.nodes.iter().any(|n| n.url.scheme == Scheme::Https);
        Ok(Files {
            tokens: Tokens::load(&config.auth, dir)?,
            server_key: tls::load_certified_key(&config.tls, dir)?,
            connector: if needs_connector {
                Some(tls::connector(&config.tls, dir)?)
            } else {
                None
            },
        })
    }
}

/// A snapshot replaced by a placement change, consulted by reads until `until`. It keeps no
/// history of its own, so a burst of reloads holds each membership once.
#[derive(Debug, Clone)]
pub struct Retired {
    pub snapshot: Arc<Snapshot>,
    pub until: Instant,
}

impl Retired {
    pub fn is_open(&self, now: Instant) -> bool {
        now < self.until
    }
}

/// The live snapshot: one atomic load per request, one store per reload.
pub type SharedSnapshot = Arc<ArcSwap<Snapshot>>;

impl Snapshot {
    /// [`Snapshot::build_with`] a config that names no files.
    pub fn build(config: Config, generation: u64, previous: Option<&Arc<Snapshot>>) -> Snapshot {
        Snapshot::build_with(config, Files::default(), generation, previous)
    }

    /// Builds the snapshot for `config` and the files it names, reusing the clients (and
    /// their pooled connections) of nodes whose id, URL and timeouts did not change. After a
    /// placement change, `previous` joins the handoff list for `handoff_window_s`.
    pub fn build_with(
        config: Config,
        files: Files,
        generation: u64,
        previous: Option<&Arc<Snapshot>>,
    ) -> Snapshot {
        let ring = config.ring();
        let metrics: Arc<Metrics> = previous
            .map(|prev| prev.metrics.clone())
            .unwrap_or_default();
        let node_metrics = config
            .nodes
            .iter()
            .map(|n| metrics.node(n.id.as_str()))
            .collect();
        let (backends, health): (Vec<_>, Vec<_>) = config
            .nodes
            .iter()
            .map(|spec| {
                previous
                    .and_then(|prev| {
                        let i = prev.ring.index_of(spec.id.as_str())?;
                        // https clients are rebuilt: the trusted CAs may have changed.
                        let same = prev.config.nodes[i].url == spec.url
                            && spec.url.scheme != Scheme::Https
                            && prev.config.timeouts == config.timeouts
                            && prev.config.max_value_bytes == config.max_value_bytes;
                        same.then(|| (prev.backends[i].clone(), prev.health[i].clone()))
                    })
                    .unwrap_or_else(|| {
                        let client = backend::connect(spec, &config, files.connector.as_ref());
                        (client, Arc::default())
                    })
            })
            .unzip();
        // The listener keeps its resolver; a reload only swaps the certificate in it.
        let server_cert = match (
            previous.and_then(|p| p.server_cert.clone()),
            files.server_key.clone(),
        ) {
            (Some(cert), Some(key)) => {
                cert.replace(key);
                Some(cert)
            }
            (None, Some(key)) => Some(ServerCert::new(key)),
            (kept, None) => kept,
        };
        let placement_changed = previous.is_some_and(|prev| {
            prev.config.replicas != config.replicas || !same_placement(&prev.ring, &ring)
        });
        let now = Instant::now();
        let mut handoff: Vec<Retired> = Vec::new();
        if let Some(prev) = previous {
            if placement_changed {
                if let Some(until) = now.checked_add(config.handoff_window()) {
                    handoff.push(Retired {
                        snapshot: Arc::new(prev.without_history()),
                        until,
                    });
                }
            }
            // Windows already open stay open, whatever this change is.
            handoff.extend(prev.previous.iter().filter(|r| r.is_open(now)).cloned());
        }
        Snapshot {
            generation,
            config: Arc::new(config),
            ring,
            backends: backends.into(),
            health: health.into(),
            placement_changed,
            previous: handoff.into(),
            recent_writes: previous
                .map(|prev| prev.recent_writes.clone())
                .unwrap_or_default(),
            hedge_budget: previous
                .map(|prev| prev.hedge_budget.clone())
                .unwrap_or_default(),
            metrics,
            node_metrics,
            tokens: files.tokens,
            server_cert,
        }
    }

    fn without_history(&self) -> Snapshot {
        Snapshot {
            generation: self.generation,
            config: self.config.clone(),
            ring: self.ring.clone(),
            backends: self.backends.clone(),
            health: self.health.clone(),
            placement_changed: self.placement_changed,
            previous: Box::default(),
            recent_writes: self.recent_writes.clone(),
            hedge_budget: self.hedge_budget.clone(),
            metrics: self.metrics.clone(),
            node_metrics: self.node_metrics.clone(),
            tokens: self.tokens.clone(),
            server_cert: self.server_cert.clone(),
        }
    }

    /// The key's replicas, best first, as ring indices.
    pub fn replicas(&self, key: &[u8]) -> TopR {
        self.ring.top(key_hash(key), self.config.replicas)
    }

    pub fn write_plan(&self, key: &[u8]) -> WritePlan {
        WritePlan::new(self.replicas(key), self.config.write_quorum)
    }

    pub fn read_plan(&self, key: &[u8]) -> ReadPlan {
        ReadPlan::new(self.replicas(key), self.config.write_quorum)
    }

    /// The handoff windows open now, newest first.
    pub fn open_windows(&self) -> impl Iterator<Item = &Retired> {
        let now = Instant::now();
        self.previous.iter().filter(move |r| r.is_open(now))
    }

    /// Whether reads that miss still ask earlier replicas.
    pub fn handoff_open(&self) -> bool {
        self.open_windows().next().is_some()
    }

    /// Whether ejecting one more node keeps the ejected share within `max_ejected_percent`.
    pub fn may_eject(&self) -> bool {
        let ejected = self.health.iter().filter(|h| !h.is_up()).count();
        let cap = u64::from(self.config.resilience.max_ejected_percent);
        (ejected as u64 + 1) * 100 <= cap * self.health.len() as u64
    }

    pub fn node_id(&self, index: usize) -> &str {
        self.ring.id(index)
    }
}

/// Whether two rings place every key the same: the same ids with the same weights.
fn same_placement(a: &Ring, b: &Ring) -> bool {
    a.len() == b.len()
        && (0..a.len()).all(|i| {
            b.index_of(a.id(i))
                .is_some_and(|j| b.weight(j).to_bits() == a.weight(i).to_bits())
        })
}
