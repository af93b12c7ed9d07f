//! The built-in in-memory storage node: the same `/kv/<key>` API as the proxy, with versions
//! kept natively (`x-hrw-version` on a PUT or DELETE: put-if-newer, a DELETE leaving a
//! tombstone; on a GET: the version held), `PUT` with `If-None-Match: *` (store only if
//! absent), `GET /kv?after=<key>&limit=N` (keys in byte order with their versions), hints
//! (a versioned write with `x-hrw-hint: <replica id>` stands in for that replica; `GET
//! /hints?after=<key>&limit=N` lists them, `DELETE /hints/<key>?owner=<id>&up_to=<version>`
//! drops one, `&release=true` with the copy) and `GET /health`. The default backend of the demo and the tests; [`demo`] runs one for each
//! loopback node of a config.

pub(crate) mod demo;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, IF_NONE_MATCH};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;

pub(crate) use crate::backend::memory::Store;
use crate::backend::{Condition, Written};
use crate::config::Limits;
use crate::net::key;
use crate::net::request::{read_body, ttl_of, RequestBody};
use crate::net::respond::{self, Body};
use crate::net::{server, RequestError};
use crate::version::{
    expiry_after, Stored, Version, EXPIRES_HEADER, HEADER as VERSION_HEADER, HINT_HEADER,
    TOMBSTONE_HEADER,
};

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
    server::serve_http(listener, handler, Limits::default(), None, None, shutdown).await;
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
    if path == "/hints" {
        return match *req.method() {
            Method::GET => list_hints(store, req.uri().query().unwrap_or("")),
            _ => Err(RequestError::MethodNotAllowed {
                method: req.method().to_string(),
                allow: "GET",
            }),
        };
    }
    if let Some(raw_key) = path.strip_prefix(HINTS_PREFIX) {
        return match *req.method() {
            Method::DELETE => drop_hint(store, raw_key, req.uri().query().unwrap_or("")),
            _ => Err(RequestError::MethodNotAllowed {
                method: req.method().to_string(),
                allow: "DELETE",
            }),
        };
    }
    let raw_key = path
        .strip_prefix(key::KV_PREFIX)
        .ok_or(RequestError::NotFound)?;
    let key = key::decode(raw_key, NODE_MAX_KEY_BYTES)?.into_owned();
    let version = version_of(req.headers())?;
    let hint = hint_of(req.headers(), version)?;
    match *req.method() {
        Method::GET | Method::HEAD => Ok(match store.get(&key) {
            Some(held) => {
                let (version, expires) = (held.version, held.expires);
                let mut resp = match held.value {
                    Some(value) => respond::value(value),
                    None => {
                        let mut resp =
                            respond::text(StatusCode::NOT_FOUND, "key not found (deleted)");
                        resp.headers_mut()
                            .insert(TOMBSTONE_HEADER, HeaderValue::from_static("true"));
                        resp
                    }
                };
                if let Some(at) = expires {
                    resp.headers_mut()
                        .insert(EXPIRES_HEADER, HeaderValue::from(at));
                }
                with_version(resp, version)
            }
            None => respond::text(StatusCode::NOT_FOUND, "key not found"),
        }),
        Method::PUT => {
            let only_if_absent = req
                .headers()
                .get(IF_NONE_MATCH)
                .is_some_and(|v| v.as_bytes() == b"*");
            let expires = expires_of(&req)?;
            let limits = Limits::default();
            let value = read_body(
                req.map(RequestBody::Hyper),
                max_value_bytes,
                limits.body_read_timeout(),
            )
            .await?;
            let condition = match (version, only_if_absent) {
                (Some(_), _) => Condition::IfNewer,
                (None, true) => Condition::IfAbsent,
                (None, false) => Condition::Always,
            };
            let stored = Stored {
                version: version.unwrap_or(Version::ZERO),
                value: Some(value),
                expires,
            };
            Ok(written(match hint {
                Some(owner) => store.put_hinted(key, stored, &owner),
                None => store.put(key, stored, condition),
            }))
        }
        // With a version: a tombstone, if newer, kept for its TTL. Without: removed.
        Method::DELETE => match version {
            Some(version) => {
                let tombstone = Stored {
                    version,
                    value: None,
                    expires: expires_of(&req)?,
                };
                Ok(written(match hint {
                    Some(owner) => store.put_hinted(key, tombstone, &owner),
                    None => store.put(key, tombstone, Condition::IfNewer),
                }))
            }
            None => {
                store.remove(&key);
                Ok(respond::empty(StatusCode::NO_CONTENT))
            }
        },
        _ => Err(RequestError::MethodNotAllowed {
            method: req.method().to_string(),
            allow: key::ALLOWED_METHODS,
        }),
    }
}

/// When a write expires: at the `x-hrw-expires` time if given (a copy expiring with its
/// original), else `?ttl=` / `x-hrw-ttl` seconds from now, else never.
fn expires_of<B>(req: &Request<B>) -> Result<Option<u64>, RequestError> {
    if let Some(at) = req.headers().get(EXPIRES_HEADER) {
        let at = at.to_str().ok().and_then(|v| v.parse().ok());
        return at.map(Some).ok_or_else(|| {
            RequestError::BadHeader(format!("{EXPIRES_HEADER} must be a whole number"))
        });
    }
    Ok(ttl_of(req)?.map(|ttl| expiry_after(u64::from(ttl.get()))))
}

/// The request's `x-hrw-version`, if it has one.
fn version_of(headers: &http::HeaderMap) -> Result<Option<Version>, RequestError> {
    headers
        .get(VERSION_HEADER)
        .map(|v| {
            Version::from_header(v).ok_or_else(|| {
                RequestError::BadHeader(format!("{VERSION_HEADER} must be a whole number"))
            })
        })
        .transpose()
}

/// The replica a versioned write stands in for (`x-hrw-hint`, percent-encoded), if any.
fn hint_of(
    headers: &http::HeaderMap,
    version: Option<Version>,
) -> Result<Option<String>, RequestError> {
    let Some(raw) = headers.get(HINT_HEADER) else {
        return Ok(None);
    };
    let bad = || {
        RequestError::BadHeader(format!(
            "{HINT_HEADER} must be a percent-encoded UTF-8 node id, with {VERSION_HEADER}"
        ))
    };
    let owner = raw.to_str().map_err(|_| bad())?;
    let owner = key::decode(owner, NODE_MAX_KEY_BYTES).map_err(|_| bad())?;
    let owner = String::from_utf8(owner.into_owned()).map_err(|_| bad())?;
    version.ok_or_else(bad)?;
    Ok(Some(owner))
}

fn with_version(mut resp: Response<Body>, version: Version) -> Response<Body> {
    if version != Version::ZERO {
        resp.headers_mut()
            .insert(VERSION_HEADER, version.header_value());
    }
    resp
}

/// 204 when the write landed; 412 with the version held when the node kept what it holds.
fn written((written, held): (Written, Option<Version>)) -> Response<Body> {
    match written {
        Written::Stored => respond::empty(StatusCode::NO_CONTENT),
        Written::Kept => with_version(
            respond::text(
                StatusCode::PRECONDITION_FAILED,
                "kept: the node holds a value (If-None-Match: *) or a version as new or newer",
            ),
            held.unwrap_or(Version::ZERO),
        ),
    }
}

/// A listing's `after=<percent-encoded key>&limit=N`.
fn page_of(query: &str) -> Result<(Option<Vec<u8>>, usize), RequestError> {
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
    Ok((after, limit))
}

fn text_lines(body: String) -> Response<Body> {
    let mut resp = Response::new(Body::new(Bytes::from(body)));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// `GET /kv?after=<percent-encoded key>&limit=N`.
fn list(store: &Store, query: &str) -> Result<Response<Body>, RequestError> {
    let (after, limit) = page_of(query)?;
    // One entry per line: the percent-encoded key, its version, and `tombstone` for one.
    let mut body = String::new();
    for (k, stored) in store.entries_after(after.as_deref(), limit) {
        key::encode_into(&k, &mut body);
        body.push(' ');
        body.push_str(&stored.version.to_string());
        if stored.is_tombstone() {
            body.push_str(" tombstone");
        }
        body.push('\n');
    }
    Ok(text_lines(body))
}

/// Where a hint is dropped: `DELETE /hints/<percent-encoded key>`.
const HINTS_PREFIX: &str = "/hints/";

/// `GET /hints?after=<percent-encoded key>&limit=N`: one hint per line, the percent-encoded
/// key, the percent-encoded replica id and the newest version it missed; a key's hints are
/// never split between pages.
fn list_hints(store: &Store, query: &str) -> Result<Response<Body>, RequestError> {
    let (after, limit) = page_of(query)?;
    let mut body = String::new();
    for hint in store.hints_after(after.as_deref(), limit) {
        key::encode_into(&hint.key, &mut body);
        body.push(' ');
        key::encode_into(hint.owner.as_bytes(), &mut body);
        body.push(' ');
        body.push_str(&hint.version.to_string());
        body.push('\n');
    }
    Ok(text_lines(body))
}

/// `DELETE /hints/<key>?owner=<id>&up_to=<version>[&release=true]`: the hint was handed over.
fn drop_hint(store: &Store, raw_key: &str, query: &str) -> Result<Response<Body>, RequestError> {
    let key = key::decode(raw_key, NODE_MAX_KEY_BYTES)?;
    let (mut owner, mut up_to, mut release) = (None, None, false);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "owner" => owner = Some(key::decode(value, NODE_MAX_KEY_BYTES)?.into_owned()),
            "up_to" => up_to = value.parse::<Version>().ok(),
            "release" => release = value == "true",
            other => {
                return Err(RequestError::BadQuery(format!(
                    "unknown parameter {other:?}; use owner, up_to and release"
                )))
            }
        }
    }
    let (Some(owner), Some(up_to)) = (owner.and_then(|o| String::from_utf8(o).ok()), up_to) else {
        return Err(RequestError::BadQuery(
            "owner (a percent-encoded UTF-8 node id) and up_to (a version) are required".into(),
        ));
    };
    store.drop_hint(&key, &owner, up_to, release);
    Ok(respond::empty(StatusCode::NO_CONTENT))
}
