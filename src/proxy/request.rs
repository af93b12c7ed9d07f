//! A client request as the data path sees it: the operation, the decoded key, and the options
//! its headers and query give (deadline, ack level or read quorum, version, time to live).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};

use crate::config::Config;
use crate::metrics::Op as RequestOp;
use crate::net::key;
use crate::net::request::ttl_of;
use crate::net::{RequestError, Ttl};
use crate::version::{Version, HEADER as VERSION_HEADER};

/// A client's deadline in milliseconds; it can only shorten the configured one.
pub(crate) const HEADER_DEADLINE: &str = "x-hrw-deadline-ms";
/// A write's ack level: `one`, `quorum`, `all` or a number of replicas.
pub(crate) const HEADER_ACK_LEVEL: &str = "x-hrw-w";
/// A read's quorum: `one`, `quorum`, `all` or a number of replicas.
pub(crate) const HEADER_READ_QUORUM: &str = "x-hrw-r";

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
    /// Acks a write needs, or answers a read waits for.
    pub quorum: usize,
    /// The version a client gave its write (`x-hrw-version`).
    pub version: Option<Version>,
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
    let headers = req.headers();
    let deadline = deadline_of(headers, config)?;
    let (what, quorum) = match *method {
        Method::GET | Method::HEAD => (
            Parsed::Read,
            quorum_of(headers, HEADER_READ_QUORUM, config.read_quorum, config)?,
        ),
        Method::PUT => (
            Parsed::Put(ttl_of(req)?),
            quorum_of(headers, HEADER_ACK_LEVEL, config.write_quorum, config)?,
        ),
        _ => (
            Parsed::Delete,
            quorum_of(headers, HEADER_ACK_LEVEL, config.write_quorum, config)?,
        ),
    };
    Ok(ParsedRequest {
        what,
        key,
        deadline,
        quorum,
        version: version_of(headers, config)?,
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

/// Acks a write needs (`x-hrw-w`) or answers a read waits for (`x-hrw-r`): the configured
/// quorum unless the header says `one`, `quorum`, `all` or a number from 1 to r.
fn quorum_of(
    headers: &HeaderMap,
    header: &str,
    configured: usize,
    config: &Config,
) -> Result<usize, RequestError> {
    let r = config.replicas;
    let Some(raw) = headers.get(header) else {
        return Ok(configured);
    };
    let level = match raw.to_str().unwrap_or("") {
        "one" => Some(1),
        "quorum" => Some(configured),
        "all" => Some(r),
        n => n.parse::<usize>().ok().filter(|n| (1..=r).contains(n)),
    };
    level.ok_or_else(|| {
        RequestError::BadHeader(format!(
            "{header} must be one, quorum, all or a number from 1 to {r}"
        ))
    })
}

/// The version a client gives its write (for replays, or its own ordering).
fn version_of(headers: &HeaderMap, config: &Config) -> Result<Option<Version>, RequestError> {
    let Some(raw) = headers.get(VERSION_HEADER) else {
        return Ok(None);
    };
    if !config.versioned() {
        return Err(RequestError::BadHeader(format!(
            "{VERSION_HEADER} needs versioning: on"
        )));
    }
    Version::from_header(raw)
        .filter(|v| *v != Version::ZERO)
        .map(Some)
        .ok_or_else(|| {
            RequestError::BadHeader(format!(
                "{VERSION_HEADER} must be a whole number from 1 to 2^128 - 1"
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
            parse_one("PUT", "/kv/k", Some((HEADER_ACK_LEVEL, value))).map(|p| p.quorum)
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
