//! The proxy's request handler: parse the operation, key and per-request options, plan on the
//! current snapshot, execute, and answer with the `x-hrw-*` headers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use crate::auth;
use crate::backend::BackendError;
use crate::error::RequestError;
use crate::execute::{self, Attempt, ReadOutcome, Source, WriteOp, WriteOutcome};
use crate::key;
use crate::metrics::Op;
use crate::request_id;
use crate::server::{self, Body};
use crate::snapshot::{SharedSnapshot, Snapshot};

pub const ALLOWED_METHODS: &str = "GET, HEAD, PUT, DELETE";
pub const HEADER_NODE: &str = "x-hrw-node";
pub const HEADER_ACKS: &str = "x-hrw-acks";
/// On a read answered by a key's earlier replica: the generation it was a replica in.
pub const HEADER_HANDOFF: &str = "x-hrw-handoff-from";
/// A client's deadline in milliseconds; it can only shorten the configured one.
pub const HEADER_DEADLINE: &str = "x-hrw-deadline-ms";
/// A write's ack level: `one`, `quorum`, `all` or a number of replicas.
pub const HEADER_ACK_LEVEL: &str = "x-hrw-w";
/// Seconds a client should wait before retrying a 503.
const RETRY_AFTER_SECONDS: u32 = 1;

/// Answers one client request against the snapshot current when it arrived, under its
/// request id (returned in `x-request-id`, on every log line, sent to HTTP backends).
pub async fn handle(shared: SharedSnapshot, req: Request<Incoming>) -> Response<Body> {
    let received = Instant::now();
    let op = match *req.method() {
        Method::GET => Op::get,
        Method::HEAD => Op::head,
        Method::PUT => Op::put,
        Method::DELETE => Op::delete,
        _ => Op::other,
    };
    let id = request_id::of(req.headers());
    // One load per request: everything below sees this membership, even if a reload lands.
    let snap = shared.load_full();
    if !auth::allows(snap.tokens.data.as_ref(), req.headers()) {
        let resp = server::unauthorized();
        snap.metrics
            .request(op, resp.status().as_u16(), received.elapsed());
        return resp;
    }
    let routed = request_id::CURRENT.scope(id.clone(), route(&snap, req, received));
    let mut resp = routed.await.unwrap_or_else(|err| server::rejection(&err));
    if let Ok(id) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(request_id::HEADER, id);
    }
    snap.metrics
        .request(op, resp.status().as_u16(), received.elapsed());
    resp
}

async fn route(
    snap: &Arc<Snapshot>,
    req: Request<Incoming>,
    received: Instant,
) -> Result<Response<Body>, RequestError> {
    let raw_key = req
        .uri()
        .path()
        .strip_prefix(key::KV_PREFIX)
        .ok_or(RequestError::NotFound)?;
    let method = req.method().clone();
    if !matches!(
        method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE
    ) {
        return Err(RequestError::MethodNotAllowed {
            method: method.to_string(),
            allow: ALLOWED_METHODS,
        });
    }
    if method != Method::PUT && req.uri().query().is_some() {
        return Err(RequestError::BadQuery(format!(
            "{method} takes no query parameters (a '?' in a key must be sent as %3F)"
        )));
    }
    let key = Bytes::from(key::decode(raw_key, snap.config.max_key_bytes)?.into_owned());
    let deadline = received + deadline_of(req.headers(), snap)?;
    if matches!(method, Method::GET | Method::HEAD) {
        return Ok(read_response(
            snap,
            execute::read(snap, &key, deadline).await,
        ));
    }
    let required = ack_level_of(req.headers(), snap)?;
    let op = if method == Method::PUT {
        let ttl = server::ttl_of(&req)?;
        WriteOp::Put(
            server::read_body(
                req,
                snap.config.max_value_bytes,
                snap.config.limits.body_read_timeout(),
            )
            .await?,
            ttl,
        )
    } else {
        WriteOp::Delete
    };
    let outcome = execute::write(snap.clone(), key, op, required, deadline).await;
    Ok(write_response(&outcome))
}

/// The request's deadline: the configured one, shortened by `x-hrw-deadline-ms`.
fn deadline_of(headers: &HeaderMap, snap: &Snapshot) -> Result<Duration, RequestError> {
    let configured = snap.config.timeouts.deadline();
    let Some(raw) = headers.get(HEADER_DEADLINE) else {
        return Ok(configured);
    };
    let ms = raw
        .to_str()
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .ok_or_else(|| {
            RequestError::BadHeader(format!(
                "{HEADER_DEADLINE} must be a whole number of milliseconds above 0"
            ))
        })?;
    Ok(configured.min(Duration::from_millis(ms)))
}

/// Acks a write needs: `write_quorum`, or the request's `x-hrw-w`.
fn ack_level_of(headers: &HeaderMap, snap: &Snapshot) -> Result<usize, RequestError> {
    let r = snap.config.replicas;
    let Some(raw) = headers.get(HEADER_ACK_LEVEL) else {
        return Ok(snap.config.write_quorum);
    };
    let level = match raw.to_str().unwrap_or("") {
        "one" => Some(1),
        "quorum" => Some(snap.config.write_quorum),
        "all" => Some(r),
        n => n.parse::<usize>().ok().filter(|n| (1..=r).contains(n)),
    };
    level.ok_or_else(|| {
        RequestError::BadHeader(format!(
            "{HEADER_ACK_LEVEL} must be one, quorum, all or a number from 1 to {r}"
        ))
    })
}

fn read_response(snap: &Snapshot, outcome: ReadOutcome) -> Response<Body> {
    match outcome {
        ReadOutcome::Found { source, value } => {
            let mut resp = Response::new(Body::new(value));
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            let node = match &source {
                Source::Current(index) => snap.node_id(*index),
                Source::Previous { node, generation } => {
                    resp.headers_mut()
                        .insert(HEADER_HANDOFF, HeaderValue::from(*generation));
                    node.as_str()
                }
            };
            if let Ok(id) = HeaderValue::from_str(node) {
                resp.headers_mut().insert(HEADER_NODE, id);
            }
            resp
        }
        ReadOutcome::Missing => server::text(StatusCode::NOT_FOUND, "key not found"),
        ReadOutcome::Failed {
            attempts,
            deadline_exceeded,
        } => {
            let all = |f: fn(&BackendError) -> bool| {
                attempts
                    .iter()
                    .all(|a| a.result.as_ref().err().is_some_and(f))
            };
            let (status, error) = if deadline_exceeded {
                (
                    StatusCode::GATEWAY_TIMEOUT,
                    "the request's deadline ran out",
                )
            } else if all(|e| matches!(e, BackendError::Ejected)) {
                (StatusCode::SERVICE_UNAVAILABLE, "every replica is ejected")
            } else if all(|e| matches!(e, BackendError::Timeout(_))) {
                (StatusCode::GATEWAY_TIMEOUT, "every replica timed out")
            } else {
                (StatusCode::BAD_GATEWAY, "no replica could answer the read")
            };
            let mut resp = server::json(
                status,
                &json!({ "error": error, "nodes": attempts_json(&attempts) }),
            );
            if status == StatusCode::SERVICE_UNAVAILABLE {
                resp.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
            }
            resp
        }
    }
}

fn write_response(outcome: &WriteOutcome) -> Response<Body> {
    let acks = format!("{}/{}", outcome.acks, outcome.replicas);
    let mut resp = if outcome.succeeded() {
        server::empty(StatusCode::NO_CONTENT)
    } else {
        let (status, error) = if outcome.deadline_exceeded {
            (
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "the request's deadline ran out with {} of {} acks needed; the outcome is unknown",
                    outcome.acks, outcome.required
                ),
            )
        } else {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "write quorum not reached: {} of {} replicas acknowledged, {} needed",
                    outcome.acks, outcome.replicas, outcome.required
                ),
            )
        };
        let mut resp = server::json(
            status,
            &json!({ "error": error, "acks": acks, "nodes": attempts_json(&outcome.failures) }),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        resp
    };
    resp.headers_mut().insert(
        HEADER_ACKS,
        HeaderValue::from_str(&acks).expect("digits and a slash"),
    );
    resp
}

fn attempts_json(attempts: &[Attempt]) -> serde_json::Value {
    attempts
        .iter()
        .map(|a| match &a.result {
            Ok(what) => json!({ "node": a.node, "result": what }),
            Err(e) => json!({ "node": a.node, "result": e.kind(), "error": e.to_string() }),
        })
        .collect()
}

/// Serves the proxy on `listener` (over TLS when the snapshot has a certificate) until
/// `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: SharedSnapshot,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let snap = shared.load_full();
    let tls = snap.server_cert.clone().map(crate::tls::acceptor);
    let limits = snap.config.limits;
    server::serve(
        listener,
        move |req| handle(shared.clone(), req),
        limits,
        tls,
        shutdown,
    )
    .await
}
