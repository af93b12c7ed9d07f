//! The storage a node speaks, behind one trait, and how its failures are classified.

#[cfg(test)]
pub(crate) mod fake;
mod http;
mod memcache;
pub(crate) mod memory;
mod mux;
mod pool;
mod redis;

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::TlsConnector;

use bytes::Bytes;

use crate::config::{Config, NodeSpec, Scheme, Store};

pub use self::memcache::memcache_key;
pub use crate::net::Ttl;
pub use crate::version::{Stored, Version};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How a write may land on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Whatever the node holds (with versioning off: a client's write).
    Always,
    /// Only if the node holds nothing for the key (with versioning off: a copy).
    IfAbsent,
    /// Only if the node holds nothing newer: put-if-newer, atomically where the node allows
    /// (with versioning on: every write and every copy).
    IfNewer,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Stored,
    /// The node keeps what it holds: a version as new or newer (`IfNewer`), or any value
    /// (`IfAbsent`). For `IfNewer` the node is at or past the write: it counts as an ack.
    Kept,
}

/// The most bytes one page of a key listing may take, as the node sends it.
pub(crate) const MAX_LISTING_BYTES: usize = 64 * 1024 * 1024;

/// A page of a node's keys, and where the next page starts (`None`: this was the last).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub keys: Vec<Bytes>,
    pub next: Option<String>,
}

/// A hint a node holds: it stood in for `owner`, a replica of `key` that missed the key's
/// writes up to `version` (the newest of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldHint {
    pub key: Bytes,
    pub owner: String,
    pub version: Version,
}

/// A page of the hints a node holds, and where the next page starts (`None`: the last).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HintPage {
    pub hints: Vec<HeldHint>,
    pub next: Option<String>,
}

/// The time to live to give a node for what is stored: what is left of it now.
pub(crate) fn ttl_of(stored: &Stored) -> Option<Ttl> {
    stored
        .seconds_left(crate::version::unix_now())
        .and_then(Ttl::new)
}

/// One node's storage. Implementations keep their own connection pools and reconnect by
/// themselves; the proxy applies the per-attempt timeout around each call.
pub trait Backend: Send + Sync + fmt::Debug {
    /// What the node holds for the key: a value or a tombstone with its version (version 0
    /// for a value without one) and expiry time, or `None` when it holds nothing (or only
    /// something expired).
    fn get<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<Option<Stored>, BackendError>>;
    /// Writes a value or a tombstone under `condition`, to expire when it says. There are
    /// tombstones only with versions: `stored` is one only with `IfNewer` (without versions a
    /// delete is a [`Backend::remove`]).
    fn put<'a>(
        &'a self,
        key: &'a [u8],
        stored: Stored,
        condition: Condition,
    ) -> BoxFuture<'a, Result<Written, BackendError>>;
    /// Removes the key, whatever the node holds (pruning a copy that no longer belongs
    /// there); succeeds whether or not the key existed.
    fn remove<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<(), BackendError>>;
    /// A page of up to about `limit` keys (tombstones included), from the start or from
    /// where `cursor` (a [`Listing::next`]) says. Nodes that cannot list their keys keep this
    /// default, [`BackendError::Unsupported`], and repair skips them.
    fn list<'a>(
        &'a self,
        _cursor: Option<&'a str>,
        _limit: usize,
    ) -> BoxFuture<'a, Result<Listing, BackendError>> {
        Box::pin(async { Err(BackendError::Unsupported) })
    }
    /// A cheap liveness probe.
    fn health(&self) -> BoxFuture<'_, Result<(), BackendError>>;
    /// Whether the node keeps hints beside what it stores ([`Backend::put_hinted`]). Nodes
    /// that keep none (plain HTTP stores, which cannot list) still take a stand-in's write as
    /// a plain put-if-newer; its hint then lives only in the proxy's memory.
    fn keeps_hints(&self) -> bool {
        false
    }
    /// A write standing in for the replica `owner`: put-if-newer, as [`Backend::put`] with
    /// [`Condition::IfNewer`], and a hint that `owner` missed the key up to `stored.version`
    /// (kept even when the node keeps something newer: the owner missed this write all the
    /// same).
    fn put_hinted<'a>(
        &'a self,
        _key: &'a [u8],
        _stored: Stored,
        _owner: &'a str,
    ) -> BoxFuture<'a, Result<Written, BackendError>> {
        Box::pin(async { Err(BackendError::Unsupported) })
    }
    /// A page of the hints the node holds, from the start or from where `cursor` (a
    /// [`HintPage::next`]) says.
    fn hints<'a>(
        &'a self,
        _cursor: Option<&'a str>,
        _limit: usize,
    ) -> BoxFuture<'a, Result<HintPage, BackendError>> {
        Box::pin(async { Err(BackendError::Unsupported) })
    }
    /// Drops the hint that `owner` missed `key`, unless a newer hinted write renewed it past
    /// `up_to`; with `release`, also removes what the node holds for the key if that is no
    /// newer than `up_to` (a stand-in's copy, handed over).
    fn drop_hint<'a>(
        &'a self,
        _key: &'a [u8],
        _owner: &'a str,
        _up_to: Version,
        _release: bool,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async { Err(BackendError::Unsupported) })
    }
}

/// Why an attempt on a node failed, the same classes whatever the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("connection refused")]
    Refused,
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("timed out after {0} ms")]
    Timeout(u64),
    #[error("connection failed: {0}")]
    Io(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The node answered that it failed (HTTP 5xx, a Redis or memcached server error).
    #[error("server error: {0}")]
    Server(String),
    /// The node refused the request itself (HTTP 4xx, a memcached client error, a value too
    /// large for it): says nothing about the node's health.
    #[error("rejected: {0}")]
    Rejected(String),
    #[error("not supported by this node")]
    Unsupported,
    /// Slower than its recent p95: a hedged read to another replica answered first.
    #[error("slower than usual; a hedged read answered first")]
    Slow,
    /// The node answered 508: its URL leads back to a proxy this request already passed.
    #[error("the node leads back to a proxy this request already passed (508 Loop Detected); check the node URLs")]
    Loop,
    /// Not asked: the node is ejected after failing (see `crate::health`).
    #[error("node is ejected after repeated failures; not asked")]
    Ejected,
}

impl BackendError {
    /// Whether the failure says something about the node itself (not about the request).
    pub fn counts_against_node(&self) -> bool {
        !matches!(
            self,
            BackendError::Rejected(_) | BackendError::Unsupported | BackendError::Loop
        )
    }

    /// A short stable name for logs and error bodies.
    pub fn kind(&self) -> &'static str {
        match self {
            BackendError::Refused => "refused",
            BackendError::Connect(_) => "connect",
            BackendError::Timeout(_) => "timeout",
            BackendError::Io(_) => "io",
            BackendError::Protocol(_) => "protocol",
            BackendError::Server(_) => "server",
            BackendError::Rejected(_) => "rejected",
            BackendError::Unsupported => "unsupported",
            BackendError::Ejected => "ejected",
            BackendError::Slow => "slow",
            BackendError::Loop => "loop",
        }
    }
}

/// Opens a client for a node (connections are made lazily, on first use). `https://` nodes
/// use `tls`, or the public web roots alone when it is `None`.
pub fn connect(spec: &NodeSpec, config: &Config, tls: Option<&TlsConnector>) -> Arc<dyn Backend> {
    let timeouts = &config.timeouts;
    let versioned = config.versioned();
    let keeping = match (versioned, spec.store) {
        (false, _) => http::Keeping::Raw,
        (true, Store::Hrw) => http::Keeping::Native,
        (true, Store::Plain) => http::Keeping::Envelope,
    };
    let http = |tls: Option<TlsConnector>| {
        Arc::new(http::HttpBackend::new(
            &spec.url,
            timeouts.connect(),
            config.max_value_bytes,
            tls,
            keeping,
            spec.store == Store::Hrw,
        ))
    };
    match spec.url.scheme {
        Scheme::Http => http(None),
        Scheme::Https => http(Some(tls.cloned().unwrap_or_else(|| {
            crate::net::tls::connector(&Default::default(), Path::new(""), &|p| std::fs::read(p))
                .expect("the public roots need no file")
        }))),
        Scheme::Redis => Arc::new(redis::RedisBackend::new(&spec.url, timeouts, versioned)),
        Scheme::Memcache => Arc::new(memcache::MemcacheBackend::new(
            &spec.url,
            timeouts.connect(),
            config.max_value_bytes,
            versioned,
        )),
    }
}

/// Runs a backend call under a deadline; running out of time is [`BackendError::Timeout`].
pub(crate) async fn with_timeout<T>(
    timeout: Duration,
    call: impl Future<Output = Result<T, BackendError>>,
) -> Result<T, BackendError> {
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or(Err(BackendError::Timeout(timeout.as_millis() as u64)))
}
