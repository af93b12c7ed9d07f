//! The built-in in-memory storage node: the same `/kv/<key>` API as the proxy, plus
//! `PUT` with `If-None-Match: *` (store only if absent), `GET /kv?after=<key>&limit=N` (keys
//! in byte order, one percent-encoded key per line) and `GET /health`. The default backend of
//! the demo and the tests.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, IF_NONE_MATCH};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::backend::Ttl;
use crate::config::Limits;
use crate::error::RequestError;
use crate::key;
use crate::server::{self, Body};

/// Keys a node accepts: generous, since the proxy enforces the configured limit.
pub const NODE_MAX_KEY_BYTES: usize = 64 * 1024;
pub const DEFAULT_NODE_MAX_VALUE_BYTES: usize = 64 * 1024 * 1024;
/// Keys per listing page unless `limit` says otherwise, and the most a page holds.
pub const DEFAULT_LIST_LIMIT: usize = 1000;
pub const MAX_LIST_LIMIT: usize = 10_000;

/// A value and when it expires, if it does.
#[derive(Debug, Clone)]
struct Entry {
    value: Bytes,
    expires: Option<Instant>,
}

impl Entry {
    fn new(value: Bytes, ttl: Option<Ttl>) -> Entry {
        Entry {
            value,
            expires: ttl.map(|t| Instant::now() + Duration::from_secs(u64::from(t.get()))),
        }
    }

    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| now < at)
    }
}

/// The node's data: ordered, so that it can be listed page by page. Expired entries are
/// invisible at once and swept out by [`Store::sweep`].
#[derive(Debug, Default)]
pub struct Store {
    map: RwLock<BTreeMap<Vec<u8>, Entry>>,
}

impl Store {
    pub fn get(&self, key: &[u8]) -> Option<Bytes> {
        let now = Instant::now();
        self.read()
            .get(key)
            .filter(|e| e.live(now))
            .map(|e| e.value.clone())
    }

    pub fn put(&self, key: Vec<u8>, value: Bytes, ttl: Option<Ttl>) {
        self.write().insert(key, Entry::new(value, ttl));
    }

    /// Stores only if the key is absent (or expired); true if it stored.
    pub fn put_if_absent(&self, key: Vec<u8>, value: Bytes, ttl: Option<Ttl>) -> bool {
        let now = Instant::now();
        let mut map = self.write();
        if map.get(&key).is_some_and(|e| e.live(now)) {
            return false;
        }
        map.insert(key, Entry::new(value, ttl));
        true
    }

    /// Up to `limit` live keys strictly after `after`, in byte order.
    pub fn keys_after(&self, after: Option<&[u8]>, limit: usize) -> Vec<Vec<u8>> {
        use std::ops::Bound;
        let start = match after {
            Some(after) => Bound::Excluded(after),
            None => Bound::Unbounded,
        };
        let now = Instant::now();
        self.read()
            .range::<[u8], _>((start, Bound::Unbounded))
            .filter(|(_, e)| e.live(now))
            .take(limit)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Drops expired entries.
    pub fn sweep(&self) {
        let now = Instant::now();
        self.write().retain(|_, e| e.live(now));
    }

    pub fn delete(&self, key: &[u8]) -> bool {
        let now = Instant::now();
        self.write().remove(key).is_some_and(|e| e.live(now))
    }

    // A panic while holding the lock cannot leave the map half-changed (every operation is a
    // single call), so a poisoned lock is still safe to use.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Vec<u8>, Entry>> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<Vec<u8>, Entry>> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// How often expired entries are dropped from memory.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

async fn sweep_every(period: Duration, store: std::sync::Weak<Store>) {
    let mut tick = tokio::time::interval(period);
    tick.tick().await;
    loop {
        tick.tick().await;
        match store.upgrade() {
            Some(store) => store.sweep(),
            None => return,
        }
    }
}

/// Serves a node on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    store: Arc<Store>,
    max_value_bytes: usize,
    shutdown: impl Future<Output = ()>,
) {
    let sweeper = tokio::spawn(sweep_every(SWEEP_EVERY, Arc::downgrade(&store)));
    let handler = move |req| handle(store.clone(), max_value_bytes, req);
    server::serve(listener, handler, Limits::default(), None, shutdown).await;
    sweeper.abort();
}

async fn handle(
    store: Arc<Store>,
    max_value_bytes: usize,
    req: Request<Incoming>,
) -> Response<Body> {
    match route(&store, max_value_bytes, req).await {
        Ok(resp) => resp,
        Err(err) => server::rejection(&err),
    }
}

async fn route(
    store: &Store,
    max_value_bytes: usize,
    req: Request<Incoming>,
) -> Result<Response<Body>, RequestError> {
    let path = req.uri().path();
    if path == "/health" {
        return match *req.method() {
            Method::GET | Method::HEAD => Ok(server::text(StatusCode::OK, "ok")),
            _ => Err(RequestError::MethodNotAllowed {
                method: req.method().to_string(),
                allow: "GET, HEAD",
            }),
        };
    }
    if path == "/kv" {
        return match *req.method() {
            Method::GET => list(store, req.uri().query().unwrap_or("")),
            _ => Err(RequestError::MethodNotAllowed {
                method: req.method().to_string(),
                allow: "GET",
            }),
        };
    }
    let raw_key = path
        .strip_prefix(key::KV_PREFIX)
        .ok_or(RequestError::NotFound)?;
    let key = key::decode(raw_key, NODE_MAX_KEY_BYTES)?.into_owned();
    match *req.method() {
        Method::GET | Method::HEAD => Ok(match store.get(&key) {
            Some(value) => {
                let mut resp = Response::new(Body::new(value));
                resp.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                resp
            }
            None => server::text(StatusCode::NOT_FOUND, "key not found"),
        }),
        Method::PUT => {
            let only_if_absent = req
                .headers()
                .get(IF_NONE_MATCH)
                .is_some_and(|v| v.as_bytes() == b"*");
            let ttl = server::ttl_of(&req)?;
            let limits = Limits::default();
            let value = server::read_body(req, max_value_bytes, limits.body_read_timeout()).await?;
            if only_if_absent {
                if !store.put_if_absent(key, value, ttl) {
                    return Ok(server::text(
                        StatusCode::PRECONDITION_FAILED,
                        "key exists; If-None-Match: * stores only absent keys",
                    ));
                }
            } else {
                store.put(key, value, ttl);
            }
            Ok(server::empty(StatusCode::NO_CONTENT))
        }
        Method::DELETE => {
            store.delete(&key);
            Ok(server::empty(StatusCode::NO_CONTENT))
        }
        _ => Err(RequestError::MethodNotAllowed {
            method: req.method().to_string(),
            allow: crate::service::ALLOWED_METHODS,
        }),
    }
}

/// `GET /kv?after=<percent-encoded key>&limit=N`.
fn list(store: &Store, query: &str) -> Result<Response<Body>, RequestError> {
    let mut after = None;
    let mut limit = DEFAULT_LIST_LIMIT;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "after" if value.is_empty() => after = None,
            "after" => after = Some(key::decode(value, NODE_MAX_KEY_BYTES)?.into_owned()),
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|l| (1..=MAX_LIST_LIMIT).contains(l))
                    .ok_or(RequestError::BadQuery(format!(
                        "limit must be a number from 1 to {MAX_LIST_LIMIT}"
                    )))?
            }
            other => {
                return Err(RequestError::BadQuery(format!(
                    "unknown parameter {other:?}; use after and limit"
                )))
            }
        }
    }
    let mut body = String::new();
    for k in store.keys_after(after.as_deref(), limit) {
        key::encode_into(&k, &mut body);
        body.push('\n');
    }
    let mut resp = Response::new(Body::new(Bytes::from(body)));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(resp)
}
