//! What the cache-protocol doors (Redis in [`super::resp`], memcached in [`super::memcache`])
//! share: the connection loop, which reads the commands a client pipelined, runs them in
//! [`waves`] and writes their replies together, holding no buffer while the client is idle;
//! and the reads and writes of the HTTP API with failures worded for a one-line error
//! ([`data`]).

pub(crate) mod data;
mod waves;

use std::future::Future;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::DataPath;
use crate::net::server;
use crate::net::workers::Workers;

/// A reply buffer larger than this is let go of after it is written.
const FLUSH_AT: usize = 64 * 1024;
/// The most commands run as one batch before their replies are written.
const MAX_BATCH: usize = 1024;
/// Bytes read at a time into an empty buffer: most commands are small, and a small buffer
/// is cheap to allocate and free (a 16 KiB one per command cost malloc a few percent).
const FIRST_READ: usize = 1024;
/// Bytes read at a time while a command is arriving in pieces.
const READ_CHUNK: usize = 16 * 1024;
/// Whether the connection goes on after a command.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Close,
}

/// What a command touches, for running the commands of a pipeline together.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Touches<'a> {
    /// It changes the connection (authentication, protocol version) or answers a bad
    /// request: it runs alone, after everything before it.
    Connection,
    Keys {
        keys: Vec<&'a [u8]>,
        writes: bool,
    },
}

/// One protocol on one connection: its parser and its session.
pub(crate) trait Protocol: Send + Sync + 'static {
    type Command: Send + Sync;

    /// The next whole command buffered in `buf`, its bytes taken. `Err` holds the reply
    /// that ends a connection that cannot go on.
    fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Command>, Vec<u8>>;

    /// Whether part of a command has been taken from the buffer.
    fn in_command(&self) -> bool;

    fn touches<'c>(&self, command: &'c Self::Command) -> Touches<'c>;

    /// Runs a command that touches keys; its reply.
    fn run<'a>(&'a self, command: &'a Self::Command) -> impl Future<Output = Vec<u8>> + Send + 'a;

    /// Runs a command that touches the connection, its reply to `out`.
    fn run_alone(&mut self, command: &Self::Command, out: &mut Vec<u8>) -> Flow;
}

/// Serves clients of a protocol on `listener` until `shutdown` resolves; then closes idle
/// connections and lets the others finish their commands for up to the shutdown grace.
pub(crate) async fn serve<P: Protocol>(
    listener: TcpListener,
    path: Arc<DataPath>,
    workers: Option<&Workers>,
    shutdown: impl Future<Output = ()>,
    start: fn(Arc<DataPath>) -> P,
) {
    let limits = path.cluster.snapshot().config.limits;
    let serve = move |stream, stopped| connection(stream, start(path.clone()), stopped);
    server::serve_until(listener, limits, workers, shutdown, serve).await
}

async fn connection<P: Protocol>(
    mut stream: TcpStream,
    mut protocol: P,
    mut stopped: watch::Receiver<bool>,
) {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    loop {
        // Every complete command buffered, in order; a fatal error ends the connection after
        // the replies before it and its own.
        let mut batch = Vec::new();
        let mut fatal = None;
        let full = loop {
            match protocol.next(&mut buf) {
                Ok(Some(command)) => {
                    batch.push(command);
                    if batch.len() == MAX_BATCH {
                        break true;
                    }
                }
                Ok(None) => break false,
                Err(reply) => {
                    fatal = Some(reply);
                    break false;
                }
            }
        };
        // Replies are written as they pile up, so that a pipeline of large values is never
        // held whole.
        let mut rest = &batch[..];
        let close = loop {
            let (flow, ran) = waves::run(&mut protocol, rest, &mut out).await;
            rest = &rest[ran..];
            if flow == Flow::Close || rest.is_empty() {
                break flow == Flow::Close;
            }
            if !flush(&mut stream, &mut out).await {
                return;
            }
        };
        if let Some(reply) = fatal.filter(|_| !close) {
            out.extend_from_slice(&reply);
            flush(&mut stream, &mut out).await;
            return;
        }
        if !flush(&mut stream, &mut out).await || close {
            return;
        }
        if full {
            continue;
        }
        let idle = buf.is_empty() && !protocol.in_command();
        if idle {
            buf = BytesMut::new();
        }
        tokio::select! {
            ready = stream.readable() => if ready.is_err() { return },
            _ = stopped.changed(), if idle => return,
        }
        let chunk = if buf.is_empty() {
            FIRST_READ
        } else {
            READ_CHUNK
        };
        // Into one chunk past what is buffered (zeroed first: a small, bounded cost), so that
        // a short read clears the socket's readiness.
        let filled = buf.len();
        buf.resize(filled + chunk, 0);
        let read = server::try_read_drained(&stream, &mut buf[filled..]);
        buf.truncate(filled + *read.as_ref().unwrap_or(&0));
        match read {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

/// Writes `out` and empties it, letting go of a large buffer; false if the client is gone.
async fn flush(stream: &mut TcpStream, out: &mut Vec<u8>) -> bool {
    if out.is_empty() {
        return true;
    }
    if stream.write_all(out).await.is_err() {
        return false;
    }
    out.clear();
    if out.capacity() > FLUSH_AT {
        *out = Vec::new();
    }
    true
}
