//! The one place where an outcome becomes an HTTP response: statuses, `x-hrw-*` headers and
//! the JSON bodies that say what each replica did.

use http::header::{ETAG, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};
use serde_json::json;

use super::outcome::{Attempted, Failure, ReadOutcome, WriteOutcome};
use crate::net::respond::{self, Body};
use crate::net::RequestError;
use crate::version::{Version, HEADER as VERSION_HEADER};

/// The node that answered a read.
pub(crate) const HEADER_NODE: &str = "x-hrw-node";
/// `<acked>/<r>` on every write answer.
pub(crate) const HEADER_ACKS: &str = "x-hrw-acks";
/// On a read answered by a key's earlier replica: the generation it was a replica in.
pub(crate) const HEADER_HANDOFF: &str = "x-hrw-handoff-from";
/// On a write answer: how many of its acks came from stand-ins for replicas out of service
/// (each carrying a hint), when any did.
pub(crate) const HEADER_STAND_INS: &str = "x-hrw-stand-ins";
/// Seconds a client should wait before retrying a 503.
const RETRY_AFTER_SECONDS: u32 = 1;

impl Failure {
    /// The status HTTP answers it with (and the cache-protocol doors count it under).
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Failure::Deadline | Failure::AllTimedOut => StatusCode::GATEWAY_TIMEOUT,
            Failure::AllEjected | Failure::AckLevelMissed => StatusCode::SERVICE_UNAVAILABLE,
            Failure::Unanswered => StatusCode::BAD_GATEWAY,
            Failure::Loop => StatusCode::LOOP_DETECTED,
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
            version,
            node,
            handoff_from,
            ..
        } => {
            let mut resp = with_version(respond::value(value), Some(version));
            if let Some(generation) = handoff_from {
                resp.headers_mut()
                    .insert(HEADER_HANDOFF, HeaderValue::from(generation));
            }
            if let Ok(id) = HeaderValue::from_str(node.id()) {
                resp.headers_mut().insert(HEADER_NODE, id);
            }
            resp
        }
        ReadOutcome::Missing { deleted } => with_version(
            respond::text(StatusCode::NOT_FOUND, "key not found"),
            deleted,
        ),
        ReadOutcome::Failed(failure) => failed(
            failure.why,
            json!({
                "error": failure.message(),
                "answers": failure.answers,
                "needed": failure.needed,
                "nodes": nodes(&failure.nodes),
            }),
        ),
    }
}

pub(crate) fn write(outcome: &WriteOutcome) -> Response<Body> {
    let acks = format!("{}/{}", outcome.acks, outcome.replicas);
    let mut resp = match outcome.failure() {
        None => respond::empty(StatusCode::NO_CONTENT),
        Some(why) => failed(
            why,
            json!({ "error": outcome.message(), "acks": acks, "nodes": nodes(&outcome.nodes) }),
        ),
    };
    let headers = resp.headers_mut();
    headers.insert(
        HEADER_ACKS,
        HeaderValue::from_str(&acks).expect("digits and a slash"),
    );
    if outcome.stand_in_acks > 0 {
        headers.insert(HEADER_STAND_INS, HeaderValue::from(outcome.stand_in_acks));
    }
    with_version(resp, outcome.version)
}

/// `x-hrw-version` and an `ETag` made from it, for a version other than 0.
fn with_version(mut resp: Response<Body>, version: Option<Version>) -> Response<Body> {
    if let Some(version) = version.filter(|v| *v != Version::ZERO) {
        let headers = resp.headers_mut();
        headers.insert(VERSION_HEADER, version.header_value());
        let etag = format!("\"{:032x}\"", version.0);
        headers.insert(ETAG, HeaderValue::from_str(&etag).expect("hex digits"));
    }
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
        .map(|a| {
            let mut node = match &a.result {
                Ok(what) => json!({ "node": a.node, "result": what }),
                Err(e) => json!({ "node": a.node, "result": e.kind(), "error": e.to_string() }),
            };
            if let Some(replica) = &a.standing_in_for {
                node["for"] = json!(replica);
            }
            node
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendError;

    #[test]
    fn each_failure_has_its_status_and_a_503_says_when_to_retry() {
        let attempts = vec![Attempted {
            node: "a".into(),
            result: Err(BackendError::Timeout(100)),
            standing_in_for: None,
        }];
        for (why, status) in [
            (Failure::Deadline, 504),
            (Failure::AllTimedOut, 504),
            (Failure::AllEjected, 503),
            (Failure::Unanswered, 502),
            (Failure::Loop, 508),
        ] {
            let resp = read(ReadOutcome::Failed(super::super::outcome::ReadFailure {
                why,
                answers: 0,
                needed: 1,
                nodes: attempts.clone(),
            }));
            assert_eq!(resp.status().as_u16(), status, "{why:?}");
            assert_eq!(resp.headers().contains_key(RETRY_AFTER), status == 503);
        }
        let write_outcome = |acks, deadline_exceeded| WriteOutcome {
            version: Some(Version(255)),
            acks,
            replicas: 3,
            required: 2,
            stand_in_acks: 0,
            nodes: attempts.clone(),
            deadline_exceeded,
        };
        for (outcome, status, acks) in [
            (write_outcome(2, false), 204, "2/3"),
            (write_outcome(1, false), 503, "1/3"),
            (write_outcome(1, true), 504, "1/3"),
            (write_outcome(2, true), 204, "2/3"),
        ] {
            let resp = write(&outcome);
            assert_eq!(resp.status().as_u16(), status);
            assert_eq!(resp.headers()[HEADER_ACKS], acks);
            assert_eq!(resp.headers()[VERSION_HEADER], "255");
            assert_eq!(resp.headers()[ETAG], "\"000000000000000000000000000000ff\"");
        }
        assert_eq!(
            rejection(&RequestError::Loop { via: "x".into() })
                .status()
                .as_u16(),
            508
        );
    }
}
