//! The storage a node speaks, behind one trait, and how its failures are classified.

#[cfg(test)]
pub(crate) mod fake;
mod http;
mod memcache;
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

use crate::config::{Config, NodeSpec, Scheme};

pub use self::memcache::memcache_key;
pub use crate::net::Ttl;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One node's storage. Implementations keep their own connection pools and reconnect by
/// themselves; the proxy applies the per-attempt timeout around each call.
pub trait Backend: Send + Sync + fmt::Debug {
    /// The value, or `None` when the node does not have the key.
    fn get<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<Option<Bytes>, BackendError>>;
    /// Stores the value, to expire after `ttl` seconds if given.
    fn put<'a>(
        &'a self,
        key: &'a [u8],
        value: Bytes,
        ttl: Option<Ttl>,
    ) -> BoxFuture<'a, Result<(), BackendError>>;
    /// Stores the value only if the node has no value for the key: `Ok(true)` if stored,
    /// `Ok(false)` if a value was already there (it is left alone). Handoff and rebalance copy
    /// with this, so a copy never overwrites a newer client write.
    fn put_if_absent<'a>(
        &'a self,
        key: &'a [u8],
        value: Bytes,
        ttl: Option<Ttl>,
    ) -> BoxFuture<'a, Result<bool, BackendError>>;
    /// Succeeds whether or not the key existed.
    fn delete<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<(), BackendError>>;
    /// Up to `limit` keys in byte order, strictly after `after` (from the start when `None`).
    /// Fewer than `limit` means the listing is complete. Nodes that cannot list their keys
    /// (Redis's SCAN has no key order to resume from; memcached cannot list at all) keep this
    /// default, [`BackendError::Unsupported`], and rebalance skips them.
    fn list<'a>(
        &'a self,
        _after: Option<&'a [u8]>,
        _limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Bytes>, BackendError>> {
        Box::pin(async { Err(BackendError::Unsupported) })
    }
    /// A cheap liveness probe.
    fn health(&self) -> BoxFuture<'_, Result<(), BackendError>>;
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
    let http = |tls: Option<TlsConnector>| {
        Arc::new(http::HttpBackend::new(
            &spec.url,
            timeouts.connect(),
            config.max_value_bytes,
            tls,
        ))
    };
    match spec.url.scheme {
        Scheme::Http => http(None),
        Scheme::Https => http(Some(tls.cloned().unwrap_or_else(|| {
            crate::net::tls::connector(&Default::default(), Path::new(""), &|p| std::fs::read(p))
                .expect("the public roots need no file")
        }))),
        Scheme::Redis => Arc::new(redis::RedisBackend::new(&spec.url, timeouts)),
        Scheme::Memcache => Arc::new(memcache::MemcacheBackend::new(
            &spec.url,
            timeouts.connect(),
            config.max_value_bytes,
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
