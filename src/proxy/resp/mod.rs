//! The Redis front door (`resp_listen:`): Redis clients speak RESP2 or RESP3 to the proxy and
//! get the same data path as the HTTP API. The commands of a pipeline run together where they
//! touch different keys (see [`pipeline`]), their replies written together and in order.
//! Like the HTTP listener, a connection holds no buffer while it waits.

mod commands;
mod parse;
mod pipeline;
mod reply;

use std::future::Future;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use self::commands::{Flow, Session};
use self::parse::{Parsed, Parser};
use super::DataPath;
use crate::net::server;
use crate::net::workers::Workers;

/// A reply buffer larger than this is let go of after it is written.
const FLUSH_AT: usize = 64 * 1024;
/// The most commands run as one batch before their replies are written.
const MAX_BATCH: usize = 1024;
/// Bytes read at a time.
const READ_CHUNK: usize = 16 * 1024;

/// Serves Redis clients on `listener` until `shutdown` resolves; then closes idle connections
/// and lets the others finish their commands for up to the shutdown grace.
pub(crate) async fn serve(
    listener: TcpListener,
    path: Arc<DataPath>,
    workers: Option<&Workers>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = path.cluster.snapshot().config.limits;
    let (stop, stopped) = watch::channel(false);
    let slots = server::accept_until(listener, limits.max_connections, workers, shutdown, |std| {
        let (path, stopped) = (path.clone(), stopped.clone());
        async move {
            match TcpStream::from_std(std) {
                Ok(stream) => connection(stream, path, stopped).await,
                Err(e) => tracing::debug!(error = %e, "cannot take a connection over"),
            }
        }
    })
    .await;
    let _ = stop.send(true);
    server::drained(&slots, limits).await;
}

async fn connection(
    mut stream: TcpStream,
    path: Arc<DataPath>,
    mut stopped: watch::Receiver<bool>,
) {
    let config = path.cluster.snapshot().config.clone();
    // A value, its key and the command around it; multi-key commands up to two values.
    let mut parser = Parser::new(parse::Limits {
        max_arg: config.max_value_bytes.max(config.max_key_bytes),
        max_total: config
            .max_value_bytes
            .saturating_mul(2)
            .saturating_add(64 * 1024),
    });
    let mut session = Session::new(path);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    loop {
        // Every complete command buffered, in order; a parse error ends the batch and the
        // connection after the replies before it.
        let mut batch = Vec::new();
        let mut close = false;
        let mut full = false;
        while !full {
            match parser.next(&mut buf) {
                Ok(Some(parsed)) => {
                    batch.push(parsed);
                    full = batch.len() == MAX_BATCH;
                }
                Ok(None) => break,
                Err(e) => {
                    batch.push(Parsed::Refused(e.to_string()));
                    close = true;
                    break;
                }
            }
        }
        if pipeline::run(&mut session, batch, &mut out).await == Flow::Close {
            close = true;
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
            if out.capacity() > FLUSH_AT {
                out = Vec::new();
            }
        }
        if close {
            return;
        }
        if full {
            continue;
        }
        let idle = buf.is_empty() && !parser.in_command();
        if idle {
            buf = BytesMut::new();
        }
        tokio::select! {
            ready = stream.readable() => if ready.is_err() { return },
            _ = stopped.changed(), if idle => return,
        }
        buf.reserve(READ_CHUNK);
        match stream.try_read_buf(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}
