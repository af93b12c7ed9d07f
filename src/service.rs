//! The proxy's request handler: parse the operation and key, plan on the current snapshot,
//! execute, and answer with the `x-hrw-*` headers.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use crate::error::RequestError;
use crate::execute::{self, Attempt, ReadOutcome, Source, WriteOp};
use crate::key;
use crate::server::{self, Body};
use crate::snapshot::SharedSnapshot;

pub const ALLOWED_METHODS: &str = "GET, HEAD, PUT, DELETE";
pub const HEADER_NODE: &str = "x-hrw-node";
pub const HEADER_ACKS: &str = "x-hrw-acks";
/// On a read answered by a key's earlier replica: the generation it was a replica in.
pub const HEADER_HANDOFF: &str = "x-hrw-handoff-from";

/// Answers one client request against the snapshot current when it arrived.
pub async fn handle(shared: SharedSnapshot, req: Request<Incoming>) -> Response<Body> {
    match route(shared, req).await {
        Ok(resp) => resp,
        Err(err) => server::rejection(&err),
    }
}

async fn route(
    shared: SharedSnapshot,
    req: Request<Incoming>,
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
    // One load per request: everything below sees this membership, even if a reload lands.
    let snap = shared.load_full();
    let key = Bytes::from(key::decode(raw_key, snap.config.max_key_bytes)?.into_owned());
    match method {
        Method::GET | Method::HEAD => Ok(match execute::read(&snap, &key).await {
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
            ReadOutcome::Failed { attempts } => {
                let all_timed_out = attempts
                    .iter()
                    .all(|a| matches!(a.result, Err(crate::backend::BackendError::Timeout(_))));
                let status = if all_timed_out {
                    StatusCode::GATEWAY_TIMEOUT
                } else {
                    StatusCode::BAD_GATEWAY
                };
                server::json(
                    status,
                    &json!({
                        "error": "no replica could answer the read",
                        "nodes": attempts_json(&attempts),
                    }),
                )
            }
        }),
        _ => {
            let op = if method == Method::PUT {
                let ttl = server::ttl_of(&req)?;
                WriteOp::Put(
                    server::read_body(req, snap.config.max_value_bytes).await?,
                    ttl,
                )
            } else {
                WriteOp::Delete
            };
            let outcome = execute::write(snap, key, op).await;
            let acks = format!("{}/{}", outcome.acks, outcome.replicas);
            let mut resp = if outcome.reached_quorum() {
                server::empty(StatusCode::NO_CONTENT)
            } else {
                server::json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({
                        "error": format!(
                            "write quorum not reached: {} of {} replicas acknowledged, {} needed",
                            outcome.acks, outcome.replicas, outcome.quorum
                        ),
                        "acks": acks,
                        "nodes": attempts_json(&outcome.failures),
                    }),
                )
            };
            resp.headers_mut().insert(
                HEADER_ACKS,
                HeaderValue::from_str(&acks).expect("digits and a slash"),
            );
            Ok(resp)
        }
    }
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

/// Serves the proxy on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: SharedSnapshot,
    shutdown: impl std::future::Future<Output = ()>,
) {
    server::serve(listener, move |req| handle(shared.clone(), req), shutdown).await
}
