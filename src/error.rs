//! Errors of the library, and the one place where a rejected request becomes an HTTP status.

use http::StatusCode;

/// A config that cannot be used, with where it is wrong when that is known.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{}{message}", location(*.line, *.column))]
    Invalid {
        message: String,
        line: Option<usize>,
        column: Option<usize>,
    },
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!("line {l} column {c}: "),
        (Some(l), None) => format!("line {l}: "),
        _ => String::new(),
    }
}

/// A client request the proxy or node refuses before touching any backend.
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
    #[error("bad ttl {0:?}: must be a whole number of seconds from 1 to 315360000")]
    BadTtl(String),
    #[error("bad header: {0}")]
    BadHeader(String),
    #[error("the request body did not arrive within {0} ms")]
    BodyTimeout(u64),
}

impl RequestError {
    pub fn status(&self) -> StatusCode {
        match self {
            RequestError::NotFound => StatusCode::NOT_FOUND,
            RequestError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            RequestError::EmptyKey { .. } | RequestError::BadPercentEncoding { .. } => {
                StatusCode::BAD_REQUEST
            }
            RequestError::KeyTooLong { .. } => StatusCode::URI_TOO_LONG,
            RequestError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            RequestError::ValueTooLarge { .. } | RequestError::BodyTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            RequestError::BodyRead(_)
            | RequestError::BadQuery(_)
            | RequestError::BadTtl(_)
            | RequestError::BadHeader(_) => StatusCode::BAD_REQUEST,
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
