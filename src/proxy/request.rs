//! A client request as the data path sees it: the operation, the decoded key, and the options
//! its headers and query give (deadline, ack level, time to live).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};

use crate::config::Config;
use crate::metrics::Op as RequestOp;
use crate::net::key;
use crate::net::request::ttl_of;
use crate::net::{RequestError, Ttl};

/// A client's deadline in milliseconds; it can only shorten the configured one.
pub(crate) const HEADER_DEADLINE: &str = "x-hrw-deadline-ms";
/// A write's ack level: `one`, `quorum`, `all` or a number of replicas.
pub(crate) const HEADER_ACK_LEVEL: &str = "x-hrw-w";

/// The metric label of a request's method.
pub(crate) fn op_of(method: &Method) -> RequestOp {
    match *method {
        Method::GET => RequestOp::get,
        Method::HEAD => RequestOp::head,
        Method::PUT => RequestOp::put,
        Method::DELETE => RequestOp::delete,
        _ => RequestOp::other,
    }
}

#[derive(Debug)]
pub(crate) enum Parsed {
    Read,
    /// A PUT, whose body is read next, with its time to live.
    Put(Option<Ttl>),
    Delete,
}

/// What a request asks for, before its body is read.
#[derive(Debug)]
pub(crate) struct ParsedRequest {
    pub what: Parsed,
    pub key: Bytes,
    /// How long the request may take once its body is in.
    pub deadline: Duration,
    /// Acks a write needs.
    pub ack_level: usize,
}

/// Parses everything but the body; refuses what is malformed before any backend is asked.
pub(crate) fn parse<B>(req: &Request<B>, config: &Config) -> Result<ParsedRequest, RequestError> {
    let raw_key = req
        .uri()
        .path()
        .strip_prefix(key::KV_PREFIX)
        .ok_or(RequestError::NotFound)?;
    let method = req.method();
    if !matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE
    ) {
        return Err(RequestError::MethodNotAllowed {
            method: method.to_string(),
            allow: key::ALLOWED_METHODS,
        });
    }
    if *method != Method::PUT && req.uri().query().is_some() {
        return Err(RequestError::BadQuery(format!(
            "{method} takes no query parameters (a '?' in a key must be sent as %3F)"
        )));
    }
    let key = Bytes::from(key::decode(raw_key, config.max_key_bytes)?.into_owned());
    let deadline = deadline_of(req.headers(), config)?;
    let (what, ack_level) = match *method {
        Method::GET | Method::HEAD => (Parsed::Read, config.write_quorum),
        Method::PUT => (
            Parsed::Put(ttl_of(req)?),
            ack_level_of(req.headers(), config)?,
        ),
        _ => (Parsed::Delete, ack_level_of(req.headers(), config)?),
    };
    Ok(ParsedRequest {
        what,
        key,
        deadline,
        ack_level,
    })
}

/// The request's deadline: the configured one, shortened by `x-hrw-deadline-ms`.
fn deadline_of(headers: &HeaderMap, config: &Config) -> Result<Duration, RequestError> {
    let configured = config.timeouts.deadline();
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
fn ack_level_of(headers: &HeaderMap, config: &Config) -> Result<usize, RequestError> {
    let r = config.replicas;
    let Some(raw) = headers.get(HEADER_ACK_LEVEL) else {
        return Ok(config.write_quorum);
    };
    let level = match raw.to_str().unwrap_or("") {
        "one" => Some(1),
        "quorum" => Some(config.write_quorum),
        "all" => Some(r),
        n => n.parse::<usize>().ok().filter(|n| (1..=r).contains(n)),
    };
    level.ok_or_else(|| {
        RequestError::BadHeader(format!(
            "{HEADER_ACK_LEVEL} must be one, quorum, all or a number from 1 to {r}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::from_yaml("replicas: 3\ntimeouts: { deadline_ms: 1000 }\nmax_key_bytes: 8\nnodes:\n  - { id: a, url: \"http://h:1\" }\n  - { id: b, url: \"http://h:2\" }\n  - { id: c, url: \"http://h:3\" }\n").unwrap()
    }

    fn parse_one(
        method: &str,
        uri: &str,
        header: Option<(&str, &str)>,
    ) -> Result<ParsedRequest, RequestError> {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some((name, value)) = header {
            req = req.header(name, value);
        }
        parse(&req.body(()).unwrap(), &config())
    }

    #[test]
    fn options_come_from_headers_within_limits() {
        let level = |value: &str| {
            parse_one("PUT", "/kv/k", Some((HEADER_ACK_LEVEL, value))).map(|p| p.ack_level)
        };
        assert_eq!(level("one"), Ok(1));
        assert_eq!(level("quorum"), Ok(2));
        assert_eq!(level("all"), Ok(3));
        assert_eq!(level("3"), Ok(3));
        for bad in ["0", "4", "most", ""] {
            assert!(
                matches!(level(bad), Err(RequestError::BadHeader(_))),
                "{bad}"
            );
        }
        let deadline = |value: &str| {
            parse_one("GET", "/kv/k", Some((HEADER_DEADLINE, value))).map(|p| p.deadline)
        };
        assert_eq!(deadline("250"), Ok(Duration::from_millis(250)));
        assert_eq!(
            deadline("99999"),
            Ok(Duration::from_secs(1)),
            "only shortens"
        );
        assert!(deadline("0").is_err() && deadline("soon").is_err());
        assert_eq!(
            parse_one("GET", "/kv/k", None).unwrap().deadline,
            Duration::from_secs(1)
        );
    }

    #[test]
    fn malformed_requests_are_refused_before_any_backend() {
        assert_eq!(
            parse_one("GET", "/other", None).unwrap_err(),
            RequestError::NotFound
        );
        assert!(matches!(
            parse_one("POST", "/kv/k", None),
            Err(RequestError::MethodNotAllowed { .. })
        ));
        assert!(matches!(
            parse_one("GET", "/kv/k?ttl=1", None),
            Err(RequestError::BadQuery(_))
        ));
        assert!(matches!(
            parse_one("GET", "/kv/123456789", None),
            Err(RequestError::KeyTooLong { .. })
        ));
        assert!(matches!(
            parse_one("PUT", "/kv/k?ttl=0", None),
            Err(RequestError::BadTtl(_))
        ));
        let put = parse_one("PUT", "/kv/a%2Fb?ttl=9", None).unwrap();
        assert_eq!(&put.key[..], b"a/b");
        assert!(matches!(put.what, Parsed::Put(Some(t)) if t.get() == 9));
    }
}
