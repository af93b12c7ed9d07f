//! Small response builders shared by the proxy, the admin API and the built-in node.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

use super::error::RequestError;

pub(crate) type Body = Full<Bytes>;

/// 401 for a missing or wrong bearer token.
pub(crate) fn unauthorized() -> Response<Body> {
    let mut resp = text(
        StatusCode::UNAUTHORIZED,
        "a valid Authorization: Bearer <token> header is required",
    );
    resp.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer"),
    );
    resp
}

/// A plain-text response of one line.
pub(crate) fn text(status: StatusCode, line: &str) -> Response<Body> {
    let mut body = String::with_capacity(line.len() + 1);
    body.push_str(line);
    body.push('\n');
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// A JSON response of any serialisable value.
pub(crate) fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// An empty response.
pub(crate) fn empty(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

/// A value, as `application/octet-stream`.
pub(crate) fn value(value: Bytes) -> Response<Body> {
    let mut resp = Response::new(Full::new(value));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    resp
}

/// The response to a refused request: its status, the one-line reason, and `Allow` on a 405.
pub(crate) fn rejection(err: &RequestError) -> Response<Body> {
    let mut resp = text(err.status(), &err.to_string());
    if let Some(allow) = err.allow() {
        resp.headers_mut()
            .insert(http::header::ALLOW, HeaderValue::from_static(allow));
    }
    resp
}
