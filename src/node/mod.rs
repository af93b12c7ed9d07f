//! The built-in in-memory storage node: the same `/kv/<key>` API as the proxy, plus
//! `PUT` with `If-None-Match: *` (store only if absent), `GET /kv?after=<key>&limit=N` (keys
//! in byte order, one percent-encoded key per line) and `GET /health`. The default backend of
//! the demo and the tests; [`demo`] runs one for each loopback node of a config.

pub(crate) mod demo;
mod store;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, IF_NONE_MATCH};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;

pub(crate) use self::store::Store;
use crate::config::Limits;
use crate::net::key;
use crate::net::request::{read_body, ttl_of};
use crate::net::respond::{self, Body};
use crate::net::{server, RequestError};

/// Keys a node accepts: generous, since the proxy enforces the configured limit.
pub(crate) const NODE_MAX_KEY_BYTES: usize = 64 * 1024;
pub const DEFAULT_NODE_MAX_VALUE_BYTES: usize = 64 * 1024 * 1024;
/// Keys per listing page unless `limit` says otherwise, and the most a page holds.
pub(crate) const DEFAULT_LIST_LIMIT: usize = 1000;
pub(crate) const MAX_LIST_LIMIT: usize = 10_000;

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
pub(crate) async fn serve(
    listener: TcpListener,
    store: Arc<Store>,
    max_value_bytes: usize,
    shutdown: impl Future<Output = ()>,
) {
    let sweeper = tokio::spawn(sweep_every(SWEEP_EVERY, Arc::downgrade(&store)));
    let handler = move |req| handle(store.clone(), max_value_bytes, req);
    server::serve_http(listener, handler, Limits::default(), None, shutdown).await;
    sweeper.abort();
}

async fn handle(
    store: Arc<Store>,
    max_value_bytes: usize,
    req: Request<Incoming>,
) -> Response<Body> {
    match route(&store, max_value_bytes, req).await {
        Ok(resp) => resp,
        Err(err) => respond::rejection(&err),
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
            Method::GET | Method::HEAD => Ok(respond::text(StatusCode::OK, "ok")),
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
            Some(value) => respond::value(value),
            None => respond::text(StatusCode::NOT_FOUND, "key not found"),
        }),
        Method::PUT => {
            let only_if_absent = req
                .headers()
                .get(IF_NONE_MATCH)
                .is_some_and(|v| v.as_bytes() == b"*");
            let ttl = ttl_of(&req)?;
            let limits = Limits::default();
            let value = read_body(req, max_value_bytes, limits.body_read_timeout()).await?;
            if only_if_absent {
                if !store.put_if_absent(key, value, ttl) {
                    return Ok(respond::text(
                        StatusCode::PRECONDITION_FAILED,
                        "key exists; If-None-Match: * stores only absent keys",
                    ));
                }
            } else {
                store.put(key, value, ttl);
            }
            Ok(respond::empty(StatusCode::NO_CONTENT))
        }
        Method::DELETE => {
            store.delete(&key);
            Ok(respond::empty(StatusCode::NO_CONTENT))
        }
        _ => Err(RequestError::MethodNotAllowed {
            method: req.method().to_string(),
            allow: key::ALLOWED_METHODS,
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
