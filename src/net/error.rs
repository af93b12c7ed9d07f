//! A client request refused before any backend is touched, and its HTTP status.

use http::StatusCode;

use super::request::MAX_TTL_SECONDS;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("no such path; use /kv/<key>")]
    NotFound,
    #[error("method {method} not allowed; allowed: {allow}")]
    MethodNotAllowed { method: String, allow: &'static str },
    #[error("empty key; use /kv/<key> with 1 to {max} bytes")]
    EmptyKey { max: usize },
    #[error("key is {len} bytes; the limit is {max}")]
    KeyTooLong { len: usize, max: usize },
    #[error("bad percent-encoding in key at byte {at}: '%' must be followed by two hex digits")]
    BadPercentEncoding { at: usize },
    #[error("value is {len} bytes; the limit is {max}")]
    ValueTooLarge { len: u64, max: usize },
    #[error("value exceeds the limit of {max} bytes")]
    BodyTooLarge { max: usize },
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    #[error("bad query: {0}")]
    BadQuery(String),
    #[error("bad ttl {0:?}: must be a whole number of seconds from 1 to {MAX_TTL_SECONDS}")]
    BadTtl(String),
    #[error("bad header: {0}")]
    BadHeader(String),
    #[error("the request body did not arrive within {0} ms")]
    BodyTimeout(u64),
    #[error("an HTTP/1.1 request needs a Host header")]
    MissingHost,
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("the request head is over the limit of {0} bytes")]
    HeadTooLarge(usize),
    #[error("the request has more than the limit of {0} headers")]
    TooManyHeaders(usize),
    #[error("transfer coding {0:?} is not supported; send the body as is or chunked")]
    UnsupportedCoding(String),
    #[error("the request head did not arrive within {0} ms")]
    HeadTimeout(u64),
    /// The request came back to a proxy it already passed (a node's URL leads to a proxy
    /// that routes to it again).
    #[error("loop detected: this request already passed through this proxy ({via}); check that no node URL leads back to a proxy")]
    Loop { via: String },
}

impl RequestError {
    pub fn status(&self) -> StatusCode {
        match self {
            RequestError::NotFound => StatusCode::NOT_FOUND,
            RequestError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            RequestError::KeyTooLong { .. } => StatusCode::URI_TOO_LONG,
            RequestError::BodyTimeout(_) | RequestError::HeadTimeout(_) => {
                StatusCode::REQUEST_TIMEOUT
            }
            RequestError::HeadTooLarge(_) | RequestError::TooManyHeaders(_) => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            RequestError::UnsupportedCoding(_) => StatusCode::NOT_IMPLEMENTED,
            RequestError::ValueTooLarge { .. } | RequestError::BodyTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            RequestError::Loop { .. } => StatusCode::LOOP_DETECTED,
            RequestError::EmptyKey { .. }
            | RequestError::BadPercentEncoding { .. }
            | RequestError::BodyRead(_)
            | RequestError::BadQuery(_)
            | RequestError::BadTtl(_)
            | RequestError::BadHeader(_)
            | RequestError::MissingHost
            | RequestError::Malformed(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The value of the `Allow` header a 405 carries.
    pub fn allow(&self) -> Option<&'static str> {
        match self {
            RequestError::MethodNotAllowed { allow, .. } => Some(allow),
            _ => None,
        }
    }
}
