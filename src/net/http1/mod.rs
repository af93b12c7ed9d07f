//! The data listener's own HTTP/1.1 server. A connection holds no buffer while it waits for
//! its next request: it waits for the socket to be readable, reads into a per-thread scratch
//! buffer and parses the head there, keeping only what is left over (hyper keeps an 8 KiB read
//! and an 8 KiB write buffer for a connection's whole life). The body is read only when the
//! handler asks ([`Body::read`]); one that is not read, or a request that gave a length and a
//! transfer coding, ends the connection after its answer.

mod body;
mod chunked;
mod encode;
mod head;

use std::cell::RefCell;
use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use http::{Method, Request, Response, Version};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub(crate) use self::body::Body;
use self::encode::Persist;
use self::head::{Framing, Head, HeadLimits};
use super::respond::{self, Body as ResponseBody};
use super::server;
use super::workers::Workers;
use super::RequestError;
use crate::config::Limits;

/// Bytes a connection reads at once while waiting for a head; a head that is not complete in
/// them is kept in the connection's own buffer.
const SCRATCH: usize = 16 * 1024;
/// How long, and for how many bytes, a refused request's rest is read and dropped at close.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1 << 20;
/// Bodies up to this size go out in the same write as their head.
const INLINE_BODY: usize = 16 * 1024;

thread_local! {
    static SCRATCH_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH]);
}

/// What answers the requests of the data listener.
pub(crate) trait Service: Clone + Send + Sync + 'static {
    fn call<'c>(
        &'c self,
        req: Request<Body<'c>>,
    ) -> impl Future<Output = Response<ResponseBody>> + Send + 'c;
}

/// One client connection.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: TcpStream,
    /// Bytes received and not yet used: the rest of a head, a body, pipelined requests. Empty
    /// and unallocated while the connection is idle.
    buf: Vec<u8>,
    /// The body of the request being served, until it is read.
    unread: Option<Framing>,
    /// The client waits for a `100 Continue` before sending that body.
    expect_continue: bool,
}

/// Serves `service` on `listener` within `limits` until `shutdown` resolves; then stops
/// accepting, closes idle connections and lets the others finish their requests for up to
/// the shutdown grace.
pub(crate) async fn serve<S: Service>(
    listener: TcpListener,
    service: S,
    limits: Limits,
    workers: Option<&Workers>,
    shutdown: impl Future<Output = ()>,
) {
    let serve = move |stream, stopped| serve_connection(stream, service.clone(), limits, stopped);
    server::serve_until(listener, limits, workers, shutdown, serve).await
}

async fn serve_connection<S: Service>(
    stream: TcpStream,
    service: S,
    limits: Limits,
    mut stopped: watch::Receiver<bool>,
) {
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
        unread: None,
        expect_continue: false,
    };
    let head_limits = HeadLimits {
        max_headers: limits.max_headers,
        max_bytes: limits.max_header_bytes,
    };
    loop {
        let timeout = limits.header_read_timeout();
        let head = match conn.read_head(head_limits, timeout, &mut stopped).await {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(refused) => {
                let refusal = respond::rejection(&refused);
                if conn
                    .respond(refusal, false, Persist::Close, &limits)
                    .await
                    .is_ok()
                {
                    conn.linger().await;
                }
                return;
            }
        };
        let head_only = head.request.method() == Method::HEAD;
        let version = head.request.version();
        conn.unread = head.framing;
        conn.expect_continue = head.expect_continue;
        let (parts, ()) = head.request.into_parts();
        // Boxed so that an idle connection does not keep the space of a request's state.
        let resp = Box::pin(service.call(Request::from_parts(parts, Body(&mut conn)))).await;
        let persist = if !head.keep_alive || conn.unread.is_some() || *stopped.borrow() {
            Persist::Close
        } else if version == Version::HTTP_10 {
            Persist::StayForHttp10
        } else {
            Persist::Stay
        };
        if conn
            .respond(resp, head_only, persist, &limits)
            .await
            .is_err()
        {
            return;
        }
        if persist == Persist::Close {
            if conn.unread.is_some() {
                conn.linger().await;
            }
            return;
        }
        if conn.buf.is_empty() {
            conn.buf = Vec::new();
        }
    }
}

impl Conn {
    /// The next request's head; `None` when the client closed, the connection stayed idle for
    /// `timeout`, or the server is stopping while it idles.
    async fn read_head(
        &mut self,
        limits: HeadLimits,
        timeout: Duration,
        stopped: &mut watch::Receiver<bool>,
    ) -> Result<Option<Head>, RequestError> {
        // A pipelined request may be in already.
        if !self.buf.is_empty() {
            if let Some(head) = self.take_head(limits)? {
                return Ok(Some(head));
            }
        }
        let mut expired = pin!(tokio::time::sleep(timeout));
        loop {
            tokio::select! {
                ready = self.stream.readable() => if ready.is_err() {
                    return Ok(None);
                },
                () = &mut expired => {
                    return if self.buf.is_empty() {
                        Ok(None)
                    } else {
                        Err(RequestError::HeadTimeout(timeout.as_millis() as u64))
                    };
                }
                _ = stopped.changed(), if self.buf.is_empty() => return Ok(None),
            }
            match self.read_into_scratch(limits)? {
                Scratch::Head(head) => return Ok(Some(head)),
                Scratch::Closed => return Ok(None),
                Scratch::More => {}
            }
        }
    }

    /// Reads what the socket has into the thread's scratch buffer and parses a head straight
    /// from it when nothing is buffered; keeps only what is left over.
    fn read_into_scratch(&mut self, limits: HeadLimits) -> Result<Scratch, RequestError> {
        SCRATCH_BUF.with_borrow_mut(|scratch| {
            let n = match server::try_read_drained(&self.stream, scratch) {
                Ok(0) => return Ok(Scratch::Closed),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(Scratch::More),
                Err(_) => return Ok(Scratch::Closed),
            };
            let read = &scratch[..n];
            if self.buf.is_empty() {
                if let Some(head) = head::parse(read, limits)? {
                    self.buf.extend_from_slice(&read[head.len..]);
                    return Ok(Scratch::Head(head));
                }
            }
            self.buf.extend_from_slice(read);
            if self.buf.len() > n {
                if let Some(head) = self.take_head(limits)? {
                    return Ok(Scratch::Head(head));
                }
            }
            Ok(Scratch::More)
        })
    }

    /// A complete head at the start of the connection's buffer, taken out of it.
    fn take_head(&mut self, limits: HeadLimits) -> Result<Option<Head>, RequestError> {
        let head = head::parse(&self.buf, limits)?;
        if let Some(head) = &head {
            self.buf.drain(..head.len);
        }
        Ok(head)
    }

    /// Closes after a refusal with bytes of the request possibly still coming: the write side
    /// first, then what arrives is read and dropped for a moment, so that the kernel does not
    /// answer those bytes with a reset that can destroy the answer before the client reads it
    /// (RFC 9112, section 9.6).
    async fn linger(&mut self) {
        use tokio::io::AsyncReadExt;
        if self.stream.shutdown().await.is_err() {
            return;
        }
        let drain = async {
            // On the heap: an array here would grow every connection's task, idle or not.
            let mut dropped = vec![0u8; 4096];
            let mut total = 0;
            while total < LINGER_BYTES {
                match self.stream.read(&mut dropped).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, drain).await;
    }

    /// Writes a response, within the body timeout (a client that does not read its answers
    /// loses the connection); a small body goes in the same write as the head. Written at once
    /// when the socket takes it all, as it nearly always does: the timer and the state of a
    /// waiting write are only for the rest.
    async fn respond(
        &mut self,
        resp: Response<ResponseBody>,
        head_only: bool,
        persist: Persist,
        limits: &Limits,
    ) -> std::io::Result<()> {
        let (parts, body) = resp.into_parts();
        let body = encode::body_bytes(body);
        let send_body = !head_only && encode::has_body(parts.status) && !body.is_empty();
        let inline = send_body && body.len() <= INLINE_BODY;
        let mut out = Vec::with_capacity(256 + if inline { body.len() } else { 0 });
        encode::head(&parts, body.len(), persist, &mut out);
        if inline {
            out.extend_from_slice(&body);
        }
        let written = match self.stream.try_write(&out) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        let rest_of_body = if send_body && !inline { &body[..] } else { &[] };
        if written == out.len() && rest_of_body.is_empty() {
            return Ok(());
        }
        let stream = &mut self.stream;
        let rest = Box::pin(async move {
            stream.write_all(&out[written..]).await?;
            stream.write_all(rest_of_body).await
        });
        tokio::time::timeout(limits.body_read_timeout(), rest)
            .await
            .map_err(|_| std::io::ErrorKind::TimedOut)?
    }
}

/// What one read of the socket gave. Moved once per request, never stored: its size is moot.
#[allow(clippy::large_enum_variant)]
enum Scratch {
    Head(Head),
    More,
    Closed,
}

#[cfg(test)]
mod tests;
