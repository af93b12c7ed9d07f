//! Nodes that take `GET / PUT / DELETE <url>/kv/<key>` over HTTP/1.1 with pooled keep-alive.

use std::error::Error as _;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use http::header::IF_NONE_MATCH;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::{Backend, BackendError, BoxFuture, Ttl};
use crate::key;

/// The largest key listing page accepted.
const MAX_LISTING_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug)]
pub struct HttpBackend {
    base: String,
    /// With [`MAX_LISTING_BYTES`], the largest response body accepted from the node.
    max_value_bytes: usize,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl HttpBackend {
    pub fn new(base: &str, connect_timeout: Duration, max_value_bytes: usize) -> HttpBackend {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        HttpBackend {
            base: base.to_owned(),
            max_value_bytes,
            client,
        }
    }

    fn kv_uri(&self, key: &[u8]) -> String {
        let mut uri = String::with_capacity(self.base.len() + 4 + key.len() * 3);
        uri.push_str(&self.base);
        uri.push_str(key::KV_PREFIX);
        key::encode_into(key, &mut uri);
        uri
    }

    /// A PUT carries its time to live as `?ttl=`, which the built-in node honours.
    fn put_uri(&self, key: &[u8], ttl: Option<Ttl>) -> String {
        let mut uri = self.kv_uri(key);
        if let Some(ttl) = ttl {
            uri.push_str(&format!("?ttl={ttl}"));
        }
        uri
    }

    async fn send(
        &self,
        method: Method,
        uri: String,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), BackendError> {
        self.send_with(Request::builder().method(method).uri(uri), body)
            .await
    }

    async fn send_with(
        &self,
        request: http::request::Builder,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), BackendError> {
        let request = match crate::request_id::current() {
            Some(id) => request.header(crate::request_id::HEADER, &*id),
            None => request,
        };
        let request = request
            .body(Full::new(body))
            .map_err(|e| BackendError::Protocol(e.to_string()))?;
        let response = self.client.request(request).await.map_err(classify)?;
        let status = response.status();
        // Bounded, so a misbehaving node cannot make the proxy buffer without limit.
        let limit = self.max_value_bytes.max(MAX_LISTING_BYTES);
        let body = Limited::new(response.into_body(), limit)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<LengthLimitError>() {
                    BackendError::Protocol(format!("response larger than {limit} bytes"))
                } else {
                    BackendError::Io(e.to_string())
                }
            })?
            .to_bytes();
        Ok((status, body))
    }
}

/// Sorts a client error into the shared classes: refused, other connect failure, or a
/// connection that broke mid-request.
fn classify(err: hyper_util::client::legacy::Error) -> BackendError {
    let mut source = err.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::ConnectionRefused {
                return BackendError::Refused;
            }
            if io.kind() == io::ErrorKind::TimedOut && err.is_connect() {
                return BackendError::Connect("connect timed out".into());
            }
        }
        source = cause.source();
    }
    let reason = match err.source() {
        Some(cause) => cause.to_string(),
        None => err.to_string(),
    };
    if err.is_connect() {
        BackendError::Connect(reason)
    } else {
        BackendError::Io(reason)
    }
}

/// A key listing: one percent-encoded key per line.
fn parse_listing(body: &[u8]) -> Result<Vec<Bytes>, BackendError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| BackendError::Protocol("key listing is not UTF-8".into()))?;
    text.lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            key::decode(line, usize::MAX)
                .map(|k| Bytes::from(k.into_owned()))
                .map_err(|e| BackendError::Protocol(format!("key listing: {e}")))
        })
        .collect()
}

fn unexpected(status: StatusCode) -> BackendError {
    if status.is_server_error() {
        BackendError::Server(format!("status {}", status.as_u16()))
    } else {
        BackendError::Rejected(format!("status {}", status.as_u16()))
    }
}

impl Backend for HttpBackend {
    fn get<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<Option<Bytes>, BackendError>> {
        Box::pin(async move {
            match self
                .send(Method::GET, self.kv_uri(key), Bytes::new())
                .await?
            {
                (StatusCode::OK, body) => Ok(Some(body)),
                (StatusCode::NOT_FOUND, _) => Ok(None),
                (status, _) => Err(unexpected(status)),
            }
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a [u8],
        value: Bytes,
        ttl: Option<Ttl>,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            match self
                .send(Method::PUT, self.put_uri(key, ttl), value)
                .await?
            {
                (status, _) if status.is_success() => Ok(()),
                (status, _) => Err(unexpected(status)),
            }
        })
    }

    fn put_if_absent<'a>(
        &'a self,
        key: &'a [u8],
        value: Bytes,
        ttl: Option<Ttl>,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        Box::pin(async move {
            let request = Request::builder()
                .method(Method::PUT)
                .uri(self.put_uri(key, ttl))
                .header(IF_NONE_MATCH, "*");
            match self.send_with(request, value).await? {
                (StatusCode::PRECONDITION_FAILED, _) => Ok(false),
                (status, _) if status.is_success() => Ok(true),
                (status, _) => Err(unexpected(status)),
            }
        })
    }

    fn list<'a>(
        &'a self,
        after: Option<&'a [u8]>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Bytes>, BackendError>> {
        Box::pin(async move {
            let mut uri = format!("{}/kv?limit={limit}", self.base);
            if let Some(after) = after {
                uri.push_str("&after=");
                key::encode_into(after, &mut uri);
            }
            match self.send(Method::GET, uri, Bytes::new()).await? {
                (StatusCode::OK, body) => parse_listing(&body),
                (StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED, _) => {
                    Err(BackendError::Unsupported)
                }
                (status, _) => Err(unexpected(status)),
            }
        })
    }

    fn delete<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            match self
                .send(Method::DELETE, self.kv_uri(key), Bytes::new())
                .await?
            {
                (status, _) if status.is_success() || status == StatusCode::NOT_FOUND => Ok(()),
                (status, _) => Err(unexpected(status)),
            }
        })
    }

    fn health(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            // A store without a /health route (404) still answered: it is up.
            let uri = format!("{}/health", self.base);
            match self.send(Method::GET, uri, Bytes::new()).await? {
                (status, _) if status.is_server_error() => Err(unexpected(status)),
                _ => Ok(()),
            }
        })
    }
}
