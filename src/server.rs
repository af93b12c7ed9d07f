//! HTTP/1.1 serving shared by the proxy and the built-in node: an already-bound listener, a
//! handler, a shutdown future; plus the small response and body helpers both use.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::backend::Ttl;
use crate::config::Limits;
use crate::error::RequestError;

pub type Body = Full<Bytes>;

/// Serves `handler` on `listener` within `limits`, over TLS when `tls` is given, until
/// `shutdown` resolves; then stops accepting and lets open connections finish their requests
/// for up to the shutdown grace.
pub async fn serve<H, Fut>(
    listener: TcpListener,
    handler: H,
    limits: Limits,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Typically EMFILE: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tokio::spawn(refuse_busy(stream));
            continue;
        };
        let handler = handler.clone();
        let service = service_fn(move |req| {
            let response = handler(req);
            async move { Ok::<_, Infallible>(response.await) }
        });
        // The timer must be set for the header read timeout, or hyper panics.
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .keep_alive(true)
            .header_read_timeout(limits.header_read_timeout())
            .max_headers(limits.max_headers)
            .max_buf_size(limits.max_header_bytes);
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let ended = match tls {
                None => {
                    watcher
                        .watch(http.serve_connection(TokioIo::new(stream), service))
                        .await
                }
                Some(tls) => {
                    // The handshake gets the same time as the headers that follow it.
                    let handshake =
                        tokio::time::timeout(limits.header_read_timeout(), tls.accept(stream));
                    match handshake.await {
                        Ok(Ok(stream)) => {
                            watcher
                                .watch(http.serve_connection(TokioIo::new(stream), service))
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            Ok(())
                        }
                        Err(_) => Ok(()),
                    }
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace(), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period; closing them");
    }
}

/// Over the connection limit: one 503 saying so, then close.
async fn refuse_busy(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let body = "too many connections; try again shortly\n";
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        stream.write_all(response.as_bytes()),
    )
    .await;
}

/// Reads a request body of at most `max` bytes; a larger one is refused before it is read
/// whole when it declares its length.
pub async fn read_body(
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

/// 401 for a missing or wrong bearer token.
pub fn unauthorized() -> Response<Body> {
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
pub fn text(status: StatusCode, line: &str) -> Response<Body> {
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

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(value.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// An empty response.
pub fn empty(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

/// The response to a refused request: its status, the one-line reason, and `Allow` on a 405.
pub fn rejection(err: &RequestError) -> Response<Body> {
    let mut resp = text(err.status(), &err.to_string());
    if let Some(allow) = err.allow() {
        resp.headers_mut()
            .insert(http::header::ALLOW, HeaderValue::from_static(allow));
    }
    resp
}

/// Header carrying a PUT's time to live, as an alternative to `?ttl=`.
pub const HEADER_TTL: &str = "x-hrw-ttl";
/// The longest time to live accepted: ten years.
pub const MAX_TTL_SECONDS: u32 = 10 * 365 * 24 * 3600;

/// The time to live of a PUT: `?ttl=SECONDS` or `x-hrw-ttl: SECONDS`, 1 to [`MAX_TTL_SECONDS`].
/// Any other query parameter is refused rather than ignored.
pub fn ttl_of<B>(req: &Request<B>) -> Result<Option<Ttl>, RequestError> {
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
