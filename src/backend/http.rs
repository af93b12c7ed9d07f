//! Nodes that take `GET / PUT / DELETE <url>/kv/<key>` over HTTP/1.1, through a pool of
//! keep-alive connections that the requesting task drives itself: no connection task and no
//! channel between them, so a backend request costs no extra task wakeups.

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};

use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::pool::{connect_tcp, Pool};
use super::{Backend, BackendError, BoxFuture, Ttl};
use crate::config::NodeUrl;
use crate::key;

/// The largest key listing page accepted.
const MAX_LISTING_BYTES: usize = 64 * 1024 * 1024;
/// Idle connections kept per node.
const POOL_SIZE: usize = 64;
/// Response headers read at most.
const MAX_HEADERS: usize = 64;
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// A connection's byte stream: plain TCP, or TLS over it for `https://` nodes.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Stream for T {}

type Conn = BufReader<Box<dyn Stream>>;

pub struct HttpBackend {
    /// `host:port`, to connect to and for the Host header.
    authority: String,
    host: String,
    /// For `https://` nodes.
    tls: Option<TlsConnector>,
    connect_timeout: Duration,
    /// With [`MAX_LISTING_BYTES`], the largest response body accepted from the node.
    max_body: usize,
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

/// One request to send: the method, the path (with query) and optional headers.
struct Call<'a> {
    method: &'static str,
    path: String,
    if_none_match: bool,
    body: &'a [u8],
}

impl HttpBackend {
    pub fn new(
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
            max_body: max_value_bytes.max(MAX_LISTING_BYTES),
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

    /// Sends `call` on a pooled connection (or a new one) and reads the whole response. A
    /// pooled connection the node had closed while idle is retried once on a new one.
    async fn send(&self, call: Call<'_>) -> Result<(StatusCode, Bytes), BackendError> {
        if let Some(conn) = self.idle.take() {
            match self.exchange(conn, &call).await {
                Err(Exchange::ClosedBeforeAnswer) => {}
                other => return other.map_err(Exchange::into_error),
            }
        }
        let conn = self.connect().await?;
        self.exchange(conn, &call)
            .await
            .map_err(Exchange::into_error)
    }

    async fn exchange(
        &self,
        mut conn: Conn,
        call: &Call<'_>,
    ) -> Result<(StatusCode, Bytes), Exchange> {
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
        if let Some(id) = crate::request_id::current() {
            head.push_str(crate::request_id::HEADER);
            head.push_str(": ");
            head.push_str(&id);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let stream = conn.get_mut();
        if call.body.len() <= 16 * 1024 {
            // One write, one packet, for the usual small request.
            let mut request = head.into_bytes();
            request.extend_from_slice(call.body);
            stream.write_all(&request).await.map_err(Exchange::Io)?;
        } else {
            stream
                .write_all(head.as_bytes())
                .await
                .map_err(Exchange::Io)?;
            stream.write_all(call.body).await.map_err(Exchange::Io)?;
        }
        let (status, body, keep_alive) = read_response(&mut conn, self.max_body).await?;
        if keep_alive {
            self.idle.give_back(conn);
        }
        Ok((status, body))
    }
}

/// How an exchange failed; a connection closed before any answer may be retried.
enum Exchange {
    ClosedBeforeAnswer,
    Io(io::Error),
    Protocol(String),
}

impl Exchange {
    fn into_error(self) -> BackendError {
        match self {
            Exchange::ClosedBeforeAnswer => {
                BackendError::Io("connection closed before an answer".into())
            }
            Exchange::Io(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                BackendError::Refused
            }
            Exchange::Io(e) => BackendError::Io(e.to_string()),
            Exchange::Protocol(why) => BackendError::Protocol(why),
        }
    }
}

/// Reads one response: status, body (by content-length or chunked), and whether the
/// connection can be reused.
async fn read_response(
    conn: &mut Conn,
    max_body: usize,
) -> Result<(StatusCode, Bytes, bool), Exchange> {
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        let n = conn.read_buf(&mut buf).await.map_err(Exchange::Io)?;
        if n == 0 {
            return Err(if buf.is_empty() {
                Exchange::ClosedBeforeAnswer
            } else {
                Exchange::Protocol("connection closed mid-response".into())
            });
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let head_len = match response.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD_BYTES => continue,
            Ok(httparse::Status::Partial) => {
                return Err(Exchange::Protocol("response head too large".into()))
            }
            Err(e) => return Err(Exchange::Protocol(format!("bad response: {e}"))),
        };
        let status = StatusCode::from_u16(response.code.unwrap_or(0))
            .map_err(|_| Exchange::Protocol("bad status code".into()))?;
        let mut length = None;
        let mut chunked = false;
        let mut keep_alive = response.version == Some(1);
        for h in response.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let parsed = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok());
                length =
                    Some(parsed.ok_or_else(|| Exchange::Protocol("bad content-length".into()))?);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = h.value.eq_ignore_ascii_case(b"chunked");
            } else if h.name.eq_ignore_ascii_case("connection") {
                keep_alive = !h.value.eq_ignore_ascii_case(b"close");
            }
        }
        let _ = buf.split_to(head_len);
        let no_body = status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        let body = if no_body {
            Bytes::new()
        } else if chunked {
            read_chunked(conn, buf, max_body).await?
        } else if let Some(length) = length {
            if length > max_body {
                return Err(Exchange::Protocol(format!(
                    "response larger than {max_body} bytes"
                )));
            }
            while buf.len() < length {
                buf.reserve(length - buf.len());
                if conn.read_buf(&mut buf).await.map_err(Exchange::Io)? == 0 {
                    return Err(Exchange::Protocol("connection closed mid-body".into()));
                }
            }
            buf.split_to(length).freeze()
        } else {
            // Delimited by the connection closing.
            keep_alive = false;
            loop {
                if buf.len() > max_body {
                    return Err(Exchange::Protocol(format!(
                        "response larger than {max_body} bytes"
                    )));
                }
                if conn.read_buf(&mut buf).await.map_err(Exchange::Io)? == 0 {
                    break buf.freeze();
                }
            }
        };
        return Ok((status, body, keep_alive));
    }
}

/// A chunked body: hex size line, data, CRLF, until a zero-size chunk and the trailers.
async fn read_chunked(
    conn: &mut Conn,
    mut buf: BytesMut,
    max_body: usize,
) -> Result<Bytes, Exchange> {
    let mut body = BytesMut::new();
    loop {
        let line_end = loop {
            if let Some(at) = buf.windows(2).position(|w| w == b"\r\n") {
                break at;
            }
            if buf.len() > 1024 || conn.read_buf(&mut buf).await.map_err(Exchange::Io)? == 0 {
                return Err(Exchange::Protocol("bad chunk size line".into()));
            }
        };
        let line = buf.split_to(line_end + 2);
        let size_text = std::str::from_utf8(&line[..line_end])
            .ok()
            .map(|l| l.split(';').next().unwrap_or("").trim().to_owned())
            .ok_or_else(|| Exchange::Protocol("bad chunk size".into()))?;
        let size = usize::from_str_radix(&size_text, 16)
            .map_err(|_| Exchange::Protocol("bad chunk size".into()))?;
        if size == 0 {
            // Trailers (usually none) end with an empty line.
            loop {
                if let Some(at) = buf.windows(2).position(|w| w == b"\r\n") {
                    let trailer = buf.split_to(at + 2);
                    if trailer.len() == 2 {
                        return Ok(body.freeze());
                    }
                    continue;
                }
                if conn.read_buf(&mut buf).await.map_err(Exchange::Io)? == 0 {
                    return Err(Exchange::Protocol("connection closed in trailers".into()));
                }
            }
        }
        if body.len() + size > max_body {
            return Err(Exchange::Protocol(format!(
                "response larger than {max_body} bytes"
            )));
        }
        while buf.len() < size + 2 {
            if conn.read_buf(&mut buf).await.map_err(Exchange::Io)? == 0 {
                return Err(Exchange::Protocol("connection closed mid-chunk".into()));
            }
        }
        body.extend_from_slice(&buf[..size]);
        let _ = buf.split_to(size + 2);
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
            let call = Call {
                method: "GET",
                path: Self::kv_path(key, None),
                if_none_match: false,
                body: &[],
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
            let call = Call {
                method: "PUT",
                path: Self::kv_path(key, ttl),
                if_none_match: false,
                body: &value,
            };
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
                method: "PUT",
                path: Self::kv_path(key, ttl),
                if_none_match: true,
                body: &value,
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
                method: "GET",
                path,
                if_none_match: false,
                body: &[],
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
            let call = Call {
                method: "DELETE",
                path: Self::kv_path(key, None),
                if_none_match: false,
                body: &[],
            };
            match self.send(call).await? {
                (status, _) if status.is_success() || status == StatusCode::NOT_FOUND => Ok(()),
                (status, _) => Err(unexpected(status)),
            }
        })
    }

    fn health(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            let call = Call {
                method: "GET",
                path: "/health".into(),
                if_none_match: false,
                body: &[],
            };
            // A store without a /health route (404) still answered: it is up.
            match self.send(call).await? {
                (status, _) if status.is_server_error() => Err(unexpected(status)),
                _ => Ok(()),
            }
        })
    }
}
