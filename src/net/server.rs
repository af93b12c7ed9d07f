//! HTTP/1.1 serving shared by the proxy, the admin API and the built-in node: an already-bound
//! listener, a handler, limits, a shutdown future.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use super::error::RequestError;
use super::respond::{rejection, Body};
use super::workers::Workers;
use crate::config::Limits;

/// Connections the kernel queues before they are accepted (capped by `net.core.somaxconn`).
/// Tokio's default of 1024 drops SYNs in a burst of new clients, which then wait a second for
/// their retry.
const BACKLOG: u32 = 4096;

/// Reads what `stream` has into `buf` without waiting, as `try_read` does; when the read
/// drained the socket (it gave less than `buf` holds) the stream's readiness is cleared, so
/// the next `readable()` waits for new bytes instead of costing a read that finds none.
/// Tokio's `AsyncRead` does the same after a short read; its `try_read` does not.
pub(crate) fn try_read_drained(stream: &TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::io::{ErrorKind, Read};
    let mut read = 0;
    let result = stream.try_io(tokio::io::Interest::READABLE, || {
        read = (&*socket2::SockRef::from(stream)).read(buf)?;
        if read > 0 && read < buf.len() {
            // Tokio clears the readiness it saw before this read, not any newer.
            Err(ErrorKind::WouldBlock.into())
        } else {
            Ok(())
        }
    });
    match result {
        Err(e) if e.kind() == ErrorKind::WouldBlock && read > 0 => Ok(read),
        Err(e) => Err(e),
        Ok(()) => Ok(read),
    }
}

/// Binds a listener with a backlog for bursts of new connections.
pub(crate) fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Accepts connections on `listener` until `shutdown` resolves. Each holds one of
/// `max_connections` slots while the future `serve` makes of it runs (on `workers` when given,
/// else on the calling runtime); a client over the limit is told so and closed. Returns the
/// slots: all of them free again means every connection has ended.
async fn accept_until<F, Fut>(
    listener: TcpListener,
    max_connections: usize,
    workers: Option<&Workers>,
    shutdown: impl Future<Output = ()>,
    mut serve: F,
) -> Arc<Semaphore>
where
    F: FnMut(std::net::TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(max_connections));
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
        // Taken off this runtime's reactor, to join the one of the runtime that serves it.
        let served = match stream.into_std() {
            Ok(stream) => serve(stream),
            Err(e) => {
                tracing::debug!(error = %e, "cannot hand a connection over");
                continue;
            }
        };
        let task = async move {
            served.await;
            drop(slot);
        };
        match workers {
            Some(workers) => workers.spawn(task),
            None => drop(tokio::spawn(task)),
        }
    }
    slots
}

/// Serves each accepted connection with `serve(stream, stopped)`, on the runtime that runs it,
/// until `shutdown` resolves; then `stopped` turns true (idle connections close on it) and the
/// others get up to the shutdown grace to finish.
pub(crate) async fn serve_until<F, Fut>(
    listener: TcpListener,
    limits: Limits,
    workers: Option<&Workers>,
    shutdown: impl Future<Output = ()>,
    serve: F,
) where
    F: Fn(TcpStream, watch::Receiver<bool>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let (stop, stopped) = watch::channel(false);
    let slots = accept_until(listener, limits.max_connections, workers, shutdown, |std| {
        let (serve, stopped) = (serve.clone(), stopped.clone());
        async move {
            match TcpStream::from_std(std) {
                Ok(stream) => serve(stream, stopped).await,
                Err(e) => tracing::debug!(error = %e, "cannot take a connection over"),
            }
        }
    })
    .await;
    let _ = stop.send(true);
    drained(&slots, limits).await;
}

/// Waits for every connection to end (all `slots` free again), for up to the shutdown grace.
async fn drained(slots: &Arc<Semaphore>, limits: Limits) {
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.shutdown_grace(), slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period; closing them");
    }
}

/// Serves `handler` with hyper on `listener` within `limits`, over TLS when `tls` is given,
/// until `shutdown` resolves; then stops accepting and lets open connections finish their
/// requests for up to the shutdown grace.
pub(crate) async fn serve_http<H, Fut>(
    listener: TcpListener,
    handler: H,
    limits: Limits,
    tls: Option<TlsAcceptor>,
    workers: Option<&Workers>,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    accept_until(
        listener,
        limits.max_connections,
        workers,
        shutdown,
        |stream| {
            let handler = handler.clone();
            let service = service_fn(move |req: Request<Incoming>| {
                // RFC 9112: an HTTP/1.1 request without Host is a 400.
                let response = if req.version() == Version::HTTP_11
                    && !req.headers().contains_key(http::header::HOST)
                {
                    Err(rejection(&RequestError::MissingHost))
                } else {
                    Ok(handler(req))
                };
                async move {
                    Ok::<_, Infallible>(match response {
                        Ok(response) => response.await,
                        Err(refused) => refused,
                    })
                }
            });
            // The timer must be set for the header read timeout, or hyper panics.
            let mut http = http1::Builder::new();
            // Pipelined requests (the proxy's shared connections to built-in nodes) get their
            // answers in one write.
            http.timer(TokioTimer::new())
                .keep_alive(true)
                .pipeline_flush(true)
                .header_read_timeout(limits.header_read_timeout())
                .max_headers(limits.max_headers)
                .max_buf_size(limits.max_header_bytes);
            let watcher = graceful.watcher();
            let tls = tls.clone();
            async move {
                let stream = match TcpStream::from_std(stream) {
                    Ok(stream) => stream,
                    Err(e) => return tracing::debug!(error = %e, "cannot take a connection over"),
                };
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
            }
        },
    )
    .await;
    if tokio::time::timeout(limits.shutdown_grace(), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period; closing them");
    }
}

/// Over the connection limit: one 503 saying so, then close.
async fn refuse_busy(mut stream: TcpStream) {
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
