//! What the HTTP and memcached backends share: a TCP connect that fails in the shared error
//! classes and how an exchange fails; and the HTTP backend's small pool of idle keep-alive
//! connections (memcached nodes have one shared connection per worker instead). A connection
//! goes back to the
//! pool only after a complete exchange; one dropped mid-exchange (an error, a timeout, a
//! cancelled hedge) is closed, since its stream position is unknown. A pooled connection found
//! closed or reset before any answer means the node dropped its idle connections (it
//! restarted, or timed them out): all idle ones are dropped and the exchange is retried once
//! on a new connection, so a node restart costs no failed request.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::net::TcpStream;

use super::BackendError;
use crate::net::workers;

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

/// How one exchange on one connection failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The connection was found closed or reset before any answer: retry on a new one.
    Stale,
    /// Written on a shared connection behind an answer that failed: the node may have run
    /// it, so only a request that is safe to repeat is sent again.
    Orphaned,
    Failed(BackendError),
}

impl From<BackendError> for Failure {
    fn from(e: BackendError) -> Failure {
        Failure::Failed(e)
    }
}

impl From<Failure> for BackendError {
    fn from(f: Failure) -> BackendError {
        match f {
            Failure::Stale => BackendError::Io("connection closed before an answer".into()),
            Failure::Orphaned => {
                BackendError::Io("an earlier answer on the shared connection failed".into())
            }
            Failure::Failed(e) => e,
        }
    }
}

/// An I/O error in the shared classes.
pub(crate) fn io_error(e: std::io::Error) -> BackendError {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => BackendError::Refused,
        _ => BackendError::Io(e.to_string()),
    }
}

/// Whether an I/O error is the peer having dropped the connection.
pub(crate) fn is_reset(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe)
}

/// Idle connections, at most `capacity` kept per thread slot: a connection is registered
/// with the reactor of the runtime that opened it, so each worker (see [`workers`]) reuses
/// its own, and the threads outside the workers share slot 0.
#[derive(Debug)]
pub(crate) struct Pool<C> {
    slots: Box<[Mutex<Vec<C>>]>,
    capacity: usize,
}

impl<C> Pool<C> {
    pub(crate) fn new(capacity: usize) -> Pool<C> {
        Pool {
            slots: (0..=workers::count()).map(|_| Mutex::default()).collect(),
            capacity,
        }
    }

    fn idle(&self) -> &Mutex<Vec<C>> {
        &self.slots[workers::slot() % self.slots.len()]
    }

    fn take(&self) -> Option<C> {
        crate::lock(self.idle()).pop()
    }

    /// Drops every idle connection: one was found closed, so the node dropped them all.
    fn clear(&self) {
        for idle in &self.slots {
            let dropped = std::mem::take(&mut *crate::lock(idle));
            drop(dropped);
        }
    }

    /// Runs `exchange` on an idle connection, or on a new one from `connect`; retried once on
    /// a new connection when the idle one turns out stale (see the module's doc).
    pub(crate) async fn exchange<T, F>(
        &self,
        connect: impl Future<Output = Result<C, BackendError>>,
        exchange: impl Fn(C) -> F,
    ) -> Result<T, BackendError>
    where
        F: Future<Output = Result<T, Failure>>,
    {
        if let Some(conn) = self.take() {
            match exchange(conn).await {
                Err(Failure::Stale) => self.clear(),
                Err(failure @ (Failure::Failed(_) | Failure::Orphaned)) => {
                    return Err(failure.into())
                }
                Ok(answer) => return Ok(answer),
            }
        }
        Ok(exchange(connect.await?).await?)
    }

    /// Keeps a connection whose exchange completed, unless the pool is full.
    pub(crate) fn give_back(&self, conn: C) {
        let mut idle = crate::lock(self.idle());
        if idle.len() < self.capacity {
            idle.push(conn);
        }
    }
}
