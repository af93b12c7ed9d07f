//! Reading a request: its body within a size and a time, and a PUT's time to live.

use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::Request;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::error::RequestError;

/// A time to live in seconds, at least 1.
pub type Ttl = std::num::NonZeroU32;

/// Header carrying a PUT's time to live, as an alternative to `?ttl=`.
pub(crate) const HEADER_TTL: &str = "x-hrw-ttl";
pub use crate::config::MAX_TTL_SECONDS;

/// A request's body as the data path reads it: from hyper (over TLS), or from the data
/// listener's own server.
#[derive(Debug)]
pub(crate) enum RequestBody<'c> {
    Hyper(Incoming),
    Own(super::http1::Body<'c>),
}

/// Reads a request body of at most `max` bytes within `timeout`; a larger one is refused
/// before it is read when it declares its length.
pub(crate) async fn read_body(
    req: Request<RequestBody<'_>>,
    max: usize,
    timeout: Duration,
) -> Result<Bytes, RequestError> {
    let (parts, body) = req.into_parts();
    match body {
        RequestBody::Own(body) => body.read(max, timeout).await,
        RequestBody::Hyper(body) => {
            read_hyper_body(Request::from_parts(parts, body), max, timeout).await
        }
    }
}

async fn read_hyper_body(
    req: Request<Incoming>,
    max: usize,
    timeout: Duration,
) -> Result<Bytes, RequestError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared {
        if len > max as u64 {
            return Err(RequestError::ValueTooLarge { len, max });
        }
    }
    let collected = tokio::time::timeout(timeout, Limited::new(req.into_body(), max).collect())
        .await
        .map_err(|_| RequestError::BodyTimeout(timeout.as_millis() as u64))?;
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(RequestError::BodyTooLarge { max })
        }
        Err(e) => Err(RequestError::BodyRead(e.to_string())),
    }
}

/// The time to live of a PUT: `?ttl=SECONDS` or `x-hrw-ttl: SECONDS`, 1 to [`MAX_TTL_SECONDS`].
/// Any other query parameter is refused rather than ignored.
pub(crate) fn ttl_of<B>(req: &Request<B>) -> Result<Option<Ttl>, RequestError> {
    let mut raw: Option<&str> = None;
    for pair in req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some(("ttl", value)) => raw = Some(value),
            _ => {
                return Err(RequestError::BadQuery(format!(
                    "unknown parameter {pair:?}; only ttl=SECONDS is accepted"
                )))
            }
        }
    }
    let header = req.headers().get(HEADER_TTL);
    let raw = match (raw, header) {
        (Some(q), _) => q,
        (None, Some(h)) => h
            .to_str()
            .map_err(|_| RequestError::BadTtl(String::from_utf8_lossy(h.as_bytes()).into()))?,
        (None, None) => return Ok(None),
    };
    raw.parse::<u32>()
        .ok()
        .filter(|t| (1..=MAX_TTL_SECONDS).contains(t))
        .and_then(Ttl::new)
        .map(Some)
        .ok_or_else(|| RequestError::BadTtl(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ttl(uri: &str, header: Option<&str>) -> Result<Option<u32>, RequestError> {
        let mut req = Request::put(uri);
        if let Some(h) = header {
            req = req.header(HEADER_TTL, h);
        }
        ttl_of(&req.body(()).unwrap()).map(|t| t.map(|t| t.get()))
    }

    #[test]
    fn ttls_from_query_or_header_within_range() {
        assert_eq!(ttl("/kv/k", None), Ok(None));
        assert_eq!(ttl("/kv/k?ttl=5", None), Ok(Some(5)));
        assert_eq!(ttl("/kv/k", Some("7")), Ok(Some(7)));
        assert_eq!(ttl("/kv/k?ttl=5", Some("7")), Ok(Some(5)), "the query wins");
        assert_eq!(
            ttl(&format!("/kv/k?ttl={MAX_TTL_SECONDS}"), None),
            Ok(Some(MAX_TTL_SECONDS))
        );
        for bad in ["ttl=0", "ttl=-1", "ttl=1.5", "ttl=", "ttl=315360001"] {
            assert!(
                matches!(
                    ttl(&format!("/kv/k?{bad}"), None),
                    Err(RequestError::BadTtl(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            ttl("/kv/k?expire=1", None),
            Err(RequestError::BadQuery(_))
        ));
        let message = RequestError::BadTtl("0".into()).to_string();
        assert!(message.contains("from 1 to 315360000"), "{message}");
    }
}
