//! Nodes that take `GET / PUT / DELETE <url>/kv/<key>` over HTTP/1.1, through a pool of
//! keep-alive connections that the requesting task drives itself: no connection task and no
//! channel between them, so a backend request costs no extra task wakeups.

mod response;

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use self::response::{Answer, ReadError};
use super::pool::{connect_tcp, io_error, is_reset, Failure, Pool};
use super::{Backend, BackendError, BoxFuture, Ttl};
use crate::config::NodeUrl;
use crate::net::context::{RequestContext, REQUEST_ID, VIA};
use crate::net::key;

/// The largest key listing page accepted.
const MAX_LISTING_BYTES: usize = 64 * 1024 * 1024;
/// The body of an answer to anything but a GET is read and dropped (a health page, an error).
const MAX_OTHER_BYTES: usize = 1024 * 1024;
/// Idle connections kept per node.
const POOL_SIZE: usize = 64;

/// A connection's byte stream: plain TCP, or TLS over it for `https://` nodes.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Stream for T {}

type Conn = BufReader<Box<dyn Stream>>;

pub(crate) struct HttpBackend {
    /// `host:port`, to connect to and for the Host header.
    authority: String,
    host: String,
    /// For `https://` nodes.
    tls: Option<TlsConnector>,
    connect_timeout: Duration,
    /// The largest value a GET accepts.
    max_value_bytes: usize,
    idle: Pool<Conn>,
}

impl std::fmt::Debug for HttpBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpBackend")
            .field("authority", &self.authority)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// One request to send: the method, the path (with query), a conditional header, the body,
/// and the largest answer body accepted.
struct Call<'a> {
    method: &'static str,
    path: String,
    if_none_match: bool,
    body: &'a [u8],
    max_answer: usize,
}

impl From<ReadError> for Failure {
    fn from(e: ReadError) -> Failure {
        match e {
            ReadError::Closed => Failure::Stale,
            ReadError::Io(e) => Failure::Failed(io_error(e)),
            ReadError::Protocol(why) => Failure::Failed(BackendError::Protocol(why)),
            ReadError::TooLarge(max) => Failure::Failed(BackendError::Rejected(format!(
                "the node's answer is larger than {max} bytes"
            ))),
        }
    }
}

impl HttpBackend {
    pub(crate) fn new(
        url: &NodeUrl,
        connect_timeout: Duration,
        max_value_bytes: usize,
        tls: Option<TlsConnector>,
    ) -> HttpBackend {
        HttpBackend {
            authority: format!("{}:{}", url.host, url.port),
            host: url
                .host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            tls,
            connect_timeout,
            max_value_bytes,
            idle: Pool::new(POOL_SIZE),
        }
    }

    fn kv_path(key: &[u8], ttl: Option<Ttl>) -> String {
        let mut path = String::with_capacity(4 + key.len() * 3 + 16);
        path.push_str(key::KV_PREFIX);
        key::encode_into(key, &mut path);
        if let Some(ttl) = ttl {
            // The built-in node honours `?ttl=`.
            path.push_str(&format!("?ttl={ttl}"));
        }
        path
    }

    async fn connect(&self) -> Result<Conn, BackendError> {
        let stream = connect_tcp(&self.authority, self.connect_timeout).await?;
        let stream: Box<dyn Stream> = match &self.tls {
            None => Box::new(stream),
            Some(tls) => {
                let name = ServerName::try_from(self.host.clone())
                    .map_err(|e| BackendError::Connect(format!("bad TLS server name: {e}")))?;
                let handshake =
                    tokio::time::timeout(self.connect_timeout, tls.connect(name, stream));
                Box::new(
                    handshake
                        .await
                        .map_err(|_| BackendError::Connect("TLS handshake timed out".into()))?
                        .map_err(|e| BackendError::Connect(format!("TLS: {e}")))?,
                )
            }
        };
        Ok(BufReader::with_capacity(4096, stream))
    }

    /// Sends `call` on a pooled connection (or a new one) and reads the whole answer.
    async fn send(&self, call: Call<'_>) -> Result<(StatusCode, Bytes), BackendError> {
        self.idle
            .exchange(self.connect(), |conn| self.exchange(conn, &call))
            .await
    }

    async fn exchange(
        &self,
        mut conn: Conn,
        call: &Call<'_>,
    ) -> Result<(StatusCode, Bytes), Failure> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nhost: {}\r\ncontent-length: {}\r\n",
            call.method,
            call.path,
            self.authority,
            call.body.len()
        );
        if call.if_none_match {
            head.push_str("if-none-match: *\r\n");
        }
        if let Some(context) = RequestContext::current() {
            for (name, value) in [(REQUEST_ID, &context.id), (VIA, &context.via)] {
                head.push_str(name);
                head.push_str(": ");
                head.push_str(value);
                head.push_str("\r\n");
            }
        }
        head.push_str("\r\n");
        let stream = conn.get_mut();
        let written = if call.body.len() <= 16 * 1024 {
            // One write, one packet, for the usual small request.
            let mut request = head.into_bytes();
            request.extend_from_slice(call.body);
            stream.write_all(&request).await
        } else {
            match stream.write_all(head.as_bytes()).await {
                Ok(()) => stream.write_all(call.body).await,
                Err(e) => Err(e),
            }
        };
        match written {
            Err(e) if is_reset(&e) => return Err(Failure::Stale),
            Err(e) => return Err(Failure::Failed(io_error(e))),
            Ok(()) => {}
        }
        let Answer {
            status,
            body,
            keep_alive,
        } = response::read(&mut conn, call.max_answer).await?;
        if keep_alive {
            self.idle.give_back(conn);
        }
        Ok((status, body))
    }

    fn call<'a>(&self, method: &'static str, path: String, body: &'a [u8]) -> Call<'a> {
        Call {
            method,
            path,
            if_none_match: false,
            body,
            max_answer: MAX_OTHER_BYTES,
        }
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
    if status == StatusCode::LOOP_DETECTED {
        BackendError::Loop
    } else if status.is_server_error() {
        BackendError::Server(format!("status {}", status.as_u16()))
    } else {
        BackendError::Rejected(format!("status {}", status.as_u16()))
    }
}

impl Backend for HttpBackend {
    fn get<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<Option<Bytes>, BackendError>> {
        Box::pin(async move {
            let call = Call {
                max_answer: self.max_value_bytes,
                ..self.call("GET", Self::kv_path(key, None), &[])
            };
            match self.send(call).await? {
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
            let call = self.call("PUT", Self::kv_path(key, ttl), &value);
            match self.send(call).await? {
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
            let call = Call {
                if_none_match: true,
                ..self.call("PUT", Self::kv_path(key, ttl), &value)
            };
            match self.send(call).await? {
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
            let mut path = format!("/kv?limit={limit}");
            if let Some(after) = after {
                path.push_str("&after=");
                key::encode_into(after, &mut path);
            }
            let call = Call {
                max_answer: MAX_LISTING_BYTES,
                ..self.call("GET", path, &[])
            };
            match self.send(call).await? {
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
            let call = self.call("DELETE", Self::kv_path(key, None), &[]);
            match self.send(call).await? {
                (status, _) if status.is_success() || status == StatusCode::NOT_FOUND => Ok(()),
                (status, _) => Err(unexpected(status)),
            }
        })
    }

    fn health(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            // A store without a /health route (404) still answered: it is up.
            match self.send(self.call("GET", "/health".into(), &[])).await? {
                (status, _) if status.is_server_error() => Err(unexpected(status)),
                _ => Ok(()),
            }
        })
    }
}
