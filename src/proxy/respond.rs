//! The one place where an outcome becomes an HTTP response: statuses, `x-hrw-*` headers and
//! the JSON bodies that say what each replica did.

use http::header::RETRY_AFTER;
use http::{HeaderValue, Response, StatusCode};
use serde_json::json;

use super::outcome::{Attempted, Failure, ReadOutcome, WriteOutcome};
use crate::net::respond::{self, Body};
use crate::net::RequestError;

/// The node that answered a read.
pub(crate) const HEADER_NODE: &str = "x-hrw-node";
/// `<acked>/<r>` on every write answer.
pub(crate) const HEADER_ACKS: &str = "x-hrw-acks";
/// On a read answered by a key's earlier replica: the generation it was a replica in.
pub(crate) const HEADER_HANDOFF: &str = "x-hrw-handoff-from";
/// Seconds a client should wait before retrying a 503.
const RETRY_AFTER_SECONDS: u32 = 1;

impl Failure {
    fn status(self) -> StatusCode {
        match self {
            Failure::Deadline | Failure::AllTimedOut => StatusCode::GATEWAY_TIMEOUT,
            Failure::AllEjected | Failure::AckLevelMissed => StatusCode::SERVICE_UNAVAILABLE,
            Failure::Unanswered => StatusCode::BAD_GATEWAY,
        }
    }
}

pub(crate) fn rejection(err: &RequestError) -> Response<Body> {
    respond::rejection(err)
}

pub(crate) fn read(outcome: ReadOutcome) -> Response<Body> {
    match outcome {
        ReadOutcome::Found {
            value,
            node,
            handoff_from,
        } => {
            let mut resp = respond::value(value);
            if let Some(generation) = handoff_from {
                resp.headers_mut()
                    .insert(HEADER_HANDOFF, HeaderValue::from(generation));
            }
            if let Ok(id) = HeaderValue::from_str(node.id()) {
                resp.headers_mut().insert(HEADER_NODE, id);
            }
            resp
        }
        ReadOutcome::Missing => respond::text(StatusCode::NOT_FOUND, "key not found"),
        ReadOutcome::Failed { why, attempts } => {
            let error = match why {
                Failure::Deadline => "the request's deadline ran out",
                Failure::AllEjected => "every replica is ejected",
                Failure::AllTimedOut => "every replica timed out",
                _ => "no replica could answer the read",
            };
            failed(why, json!({ "error": error, "nodes": nodes(&attempts) }))
        }
    }
}

pub(crate) fn write(outcome: &WriteOutcome) -> Response<Body> {
    let acks = format!("{}/{}", outcome.acks, outcome.replicas);
    let mut resp = match outcome.failure() {
        None => respond::empty(StatusCode::NO_CONTENT),
        Some(why) => {
            let error = match why {
                Failure::Deadline => format!(
                    "the request's deadline ran out with {} of {} acks needed; the outcome is unknown",
                    outcome.acks, outcome.required
                ),
                _ => format!(
                    "write quorum not reached: {} of {} replicas acknowledged, {} needed",
                    outcome.acks, outcome.replicas, outcome.required
                ),
            };
            failed(
                why,
                json!({ "error": error, "acks": acks, "nodes": nodes(&outcome.failures) }),
            )
        }
    };
    resp.headers_mut().insert(
        HEADER_ACKS,
        HeaderValue::from_str(&acks).expect("digits and a slash"),
    );
    resp
}

/// A failure's status and JSON body; a 503 says when to retry.
fn failed(why: Failure, body: serde_json::Value) -> Response<Body> {
    let status = why.status();
    let mut resp = respond::json(status, &body);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    }
    resp
}

fn nodes(attempts: &[Attempted]) -> serde_json::Value {
    attempts
        .iter()
        .map(|a| match &a.result {
            Ok(what) => json!({ "node": a.node, "result": what }),
            Err(e) => json!({ "node": a.node, "result": e.kind(), "error": e.to_string() }),
        })
        .collect()
}
