//! One client request, top to bottom: authenticate, take the request's context (id, via),
//! load the snapshot once, parse, read the body, read or write, respond.

use std::sync::Arc;

use http::{HeaderValue, Request, Response};
use tokio::time::Instant;

use super::coalesce::Coalescer;
use super::request::{self, Parsed};
use super::write::{write, WriteOp};
use super::{respond, DataPath};
use crate::net::auth;
use crate::net::context::{self, RequestContext, REQUEST_ID};
use crate::net::request::{read_body, RequestBody};
use crate::net::respond::Body;
use crate::net::RequestError;

/// Answers one client request against the snapshot current when it arrived, under its
/// request id (returned in `x-request-id`, on every log line, sent to HTTP backends).
pub(crate) async fn handle(path: &Arc<DataPath>, req: Request<RequestBody<'_>>) -> Response<Body> {
    let received = Instant::now();
    let op = request::op_of(req.method());
    // One load per request: everything below sees this membership, even if a reload lands.
    let snap = path.cluster.snapshot();
    let metrics = &path.cluster.metrics;
    let id = context::request_id(req.headers());
    // A loop is refused before anything else, whatever the request's credentials: the
    // proxy's own requests to a node carry none.
    let mut resp = match RequestContext::of(req.headers(), id.clone(), &path.cluster.instance) {
        Err(e) => {
            tracing::warn!(request_id = %id, error = %e, "request refused");
            respond::rejection(&e)
        }
        Ok(_) if !auth::allows(snap.tokens.data.as_ref(), req.headers()) => {
            crate::net::respond::unauthorized()
        }
        Ok(context) => {
            let answer = context.scope(route(path, &snap, req)).await;
            answer.unwrap_or_else(|e| respond::rejection(&e))
        }
    };
    if let Ok(id) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, id);
    }
    metrics.request(op, resp.status().as_u16(), received.elapsed());
    resp
}

async fn route(
    path: &Arc<DataPath>,
    snap: &Arc<crate::cluster::Snapshot>,
    req: Request<RequestBody<'_>>,
) -> Result<Response<Body>, RequestError> {
    let config = &snap.config;
    let parsed = request::parse(&req, config)?;
    path.hot_keys.offer(&parsed.key);
    let op = match parsed.what {
        Parsed::Read => {
            let deadline = Instant::now() + parsed.deadline;
            let outcome = Coalescer::read(path, snap, &parsed.key, parsed.quorum, deadline).await;
            return Ok(respond::read(outcome));
        }
        Parsed::Put(ttl) => {
            let timeout = config.limits.body_read_timeout();
            WriteOp::Put(read_body(req, config.max_value_bytes, timeout).await?, ttl)
        }
        Parsed::Delete => WriteOp::Delete,
    };
    // The deadline covers the work once the body is in: a slow upload is not a slow write.
    let deadline = Instant::now() + parsed.deadline;
    let (key, version) = (parsed.key, parsed.version);
    let outcome = write(path, snap, key, op, parsed.quorum, version, deadline).await;
    Ok(respond::write(&outcome))
}
