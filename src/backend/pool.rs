//! What the HTTP and memcached backends share: a TCP connect that fails in the shared error
//! classes, and a small pool of idle keep-alive connections. A connection goes back to the
//! pool only after a complete exchange; one dropped mid-exchange (an error, a timeout, a
//! cancelled hedge) is closed, since its stream position is unknown.

use std::sync::Mutex;
use std::time::Duration;

use tokio::net::TcpStream;

use super::BackendError;

/// Connects with a deadline: refused, timed out and other failures as [`BackendError`]s.
pub(crate) async fn connect_tcp(addr: &str, timeout: Duration) -> Result<TcpStream, BackendError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| BackendError::Connect("connect timed out".into()))?
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => BackendError::Refused,
            _ => BackendError::Connect(e.to_string()),
        })?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Idle connections, at most `capacity` kept.
#[derive(Debug)]
pub(crate) struct Pool<C> {
    idle: Mutex<Vec<C>>,
    capacity: usize,
}

impl<C> Pool<C> {
    pub(crate) fn new(capacity: usize) -> Pool<C> {
        Pool {
            idle: Mutex::new(Vec::new()),
            capacity,
        }
    }

    pub(crate) fn take(&self) -> Option<C> {
        crate::lock(&self.idle).pop()
    }

    /// Drops every idle connection: one was found closed, so the node dropped them all.
    pub(crate) fn clear(&self) {
        let dropped = std::mem::take(&mut *crate::lock(&self.idle));
        drop(dropped);
    }

    /// Keeps a connection whose exchange completed, unless the pool is full.
    pub(crate) fn give_back(&self, conn: C) {
        let mut idle = crate::lock(&self.idle);
        if idle.len() < self.capacity {
            idle.push(conn);
        }
    }
}
