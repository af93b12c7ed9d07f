//! One connection to a node shared by every request of a worker, for protocols whose replies
//! come back in request order (memcached's text protocol; HTTP/1.1 keep-alive, pipelined):
//! requests queue in order, are written together (what queued while the last write was going
//! out goes in one `write`), and their replies are read back in the same order, as twemproxy
//! does. Many requests in flight then cost one send and one wakeup of the node, not one each.
//!
//! A request whose caller gives up before its reply (a timeout, a hedge that lost) marks the
//! connection retired, as dropping a pooled connection mid-exchange closed it: the requests
//! already on it still get their replies, new ones go to a new connection, and the old one
//! closes once it has nothing left to answer (or a reply is 10 s late). A caller that gave up
//! within [`RETIRE_AFTER`] (a hedge that lost) does not retire it. A reply saying the node
//! closes the connection, or the connection closing before an answer, ends it, and what was
//! written after is stale: the node never ran it, and [`Shared::call`] sends it again once on a
//! new connection (so does what was queued and never written). Any other failure (an I/O or
//! protocol error, an answer too large) ends it too, and what was written after is orphaned:
//! the node may have run it, so only the caller can say whether to send it again.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Notify};

use super::pool::{connect_tcp, Failure};
use super::BackendError;
use crate::net::workers;

/// The most requests, and about the most bytes, written in one `write`.
const MAX_BATCH: usize = 64;
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// A caller that gives up sooner than this (a hedge that lost) leaves the connection in
/// service: its answer is read and dropped. One that waited longer (a timeout: the node may be
/// cut off or paused) retires it.
const RETIRE_AFTER: Duration = Duration::from_millis(100);
/// How long a retired connection waits for each reply still owed before it closes: a node
/// that was cut off must not keep connections open for good.
const RETIRED_GRACE: Duration = Duration::from_secs(10);

/// How replies of one protocol are read off a shared connection.
pub(crate) trait Protocol: Send + Sync + 'static {
    /// What a request expects back (how to read its reply).
    type Expect: Copy + Send + 'static;
    type Reply: Send + 'static;
    /// The read half with whatever it buffers between replies.
    type Reader: Send + 'static;
    fn reader(read: OwnedReadHalf) -> Self::Reader;
    /// Reads one reply; with it, whether the connection carries more (false when the node
    /// said it closes).
    fn read(
        reader: &mut Self::Reader,
        expect: Self::Expect,
    ) -> impl Future<Output = Result<(Self::Reply, bool), Failure>> + Send;
}

type Answer<P> = oneshot::Sender<Result<<P as Protocol>::Reply, Failure>>;

struct Job<P: Protocol> {
    request: Bytes,
    expect: P::Expect,
    answer: Answer<P>,
}

/// A shared connection's handle; its I/O runs on two tasks of the runtime that opened it.
pub(crate) struct Mux<P: Protocol> {
    jobs: mpsc::UnboundedSender<Job<P>>,
    retired: Arc<Retired>,
}

impl<P: Protocol> Mux<P> {
    pub(crate) fn start(stream: TcpStream) -> Mux<P> {
        let (read, write) = stream.into_split();
        let (jobs, queued) = mpsc::unbounded_channel();
        let (sent, pending) = mpsc::unbounded_channel();
        let retired = Arc::new(Retired::default());
        tokio::spawn(write_requests::<P>(write, queued, sent));
        tokio::spawn(read_replies::<P>(P::reader(read), pending, retired.clone()));
        Mux { jobs, retired }
    }

    /// Whether new requests may go on this connection.
    pub(crate) fn usable(&self) -> bool {
        !self.retired.is() && !self.jobs.is_closed()
    }

    /// Sends `request` and waits for its reply. [`Failure::Stale`] when the connection
    /// ended before answering.
    pub(crate) async fn call(
        &self,
        request: Bytes,
        expect: P::Expect,
    ) -> Result<P::Reply, Failure> {
        let (answer, reply) = oneshot::channel();
        let job = Job {
            request,
            expect,
            answer,
        };
        if self.jobs.send(job).is_err() {
            return Err(Failure::Stale);
        }
        let mut waiting = Waiting(Some((&self.retired, tokio::time::Instant::now())));
        let reply = reply.await.unwrap_or(Err(Failure::Stale));
        waiting.0 = None;
        reply
    }
}

/// A node's shared connections, one per worker (see [`workers`]), each opened when its worker
/// first needs it and again when it stops taking requests.
pub(crate) struct Shared<P: Protocol> {
    addr: String,
    connect_timeout: Duration,
    slots: Box<[Slot<P>]>,
}

/// A worker's shared connection, once opened.
type Slot<P> = Mutex<Option<Arc<Mux<P>>>>;

impl<P: Protocol> Shared<P> {
    pub(crate) fn new(addr: String, connect_timeout: Duration) -> Shared<P> {
        Shared {
            addr,
            connect_timeout,
            slots: (0..=workers::count()).map(|_| Mutex::default()).collect(),
        }
    }

    /// This worker's shared connection, opened if it has none that takes requests; true if
    /// it was just opened.
    async fn connection(&self) -> Result<(Arc<Mux<P>>, bool), BackendError> {
        let slot = &self.slots[workers::slot() % self.slots.len()];
        if let Some(mux) = crate::lock(slot).as_ref().filter(|m| m.usable()) {
            return Ok((mux.clone(), false));
        }
        let mux = Arc::new(Mux::start(
            connect_tcp(&self.addr, self.connect_timeout).await?,
        ));
        *crate::lock(slot) = Some(mux.clone());
        Ok((mux, true))
    }

    /// Sends `request` and reads its reply. A connection found closed before answering (the
    /// node restarted, or dropped idle connections) is replaced and the request sent again
    /// once, so a node restart costs no failed request.
    pub(crate) async fn call(
        &self,
        request: Bytes,
        expect: P::Expect,
    ) -> Result<P::Reply, BackendError> {
        let (mux, fresh) = self.connection().await?;
        match mux.call(request.clone(), expect).await {
            Err(Failure::Stale) if !fresh => {
                let (mux, _) = self.connection().await?;
                Ok(mux.call(request, expect).await?)
            }
            reply => Ok(reply?),
        }
    }

    /// Sends `request` once; [`Failure::Stale`] when the connection ended before its reply,
    /// for the caller to send it again its own way.
    pub(crate) async fn call_once(
        &self,
        request: Bytes,
        expect: P::Expect,
    ) -> Result<P::Reply, Failure> {
        let (mux, _) = self.connection().await?;
        mux.call(request, expect).await
    }
}

/// Whether a connection takes no new requests, and a wakeup for its reader when it stops.
#[derive(Debug, Default)]
struct Retired {
    set: AtomicBool,
    notify: Notify,
}

impl Retired {
    fn is(&self) -> bool {
        self.set.load(Ordering::Relaxed)
    }

    fn retire(&self) {
        self.set.store(true, Ordering::Relaxed);
        self.notify.notify_one();
    }

    /// Returns once the connection is retired.
    async fn wait(&self) {
        while !self.is() {
            self.notify.notified().await;
        }
    }
}

/// Retires the connection if dropped while its reply is still coming.
struct Waiting<'a>(Option<(&'a Retired, tokio::time::Instant)>);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some((retired, since)) = self.0 {
            if since.elapsed() >= RETIRE_AFTER {
                retired.retire();
            }
        }
    }
}

/// Writes what is queued, many requests at a time, after handing each request's reply slot
/// to the reader in the same order.
async fn write_requests<P: Protocol>(
    mut write: OwnedWriteHalf,
    mut queued: mpsc::UnboundedReceiver<Job<P>>,
    sent: mpsc::UnboundedSender<(P::Expect, Answer<P>)>,
) {
    let mut batch = Vec::new();
    // Once the reader ends, so does the writer, and the connection closes: a node streaming
    // an answer that is never read must not keep it open.
    while let Some(job) = tokio::select! {
        job = queued.recv() => job,
        () = sent.closed() => None,
    } {
        let mut next = Some(job);
        let mut count = 0;
        while let Some(job) = next.take() {
            batch.extend_from_slice(&job.request);
            if sent.send((job.expect, job.answer)).is_err() {
                return; // the reader ended: the connection is gone
            }
            count += 1;
            if count < MAX_BATCH && batch.len() < MAX_BATCH_BYTES {
                next = queued.try_recv().ok();
            }
        }
        let written = tokio::select! {
            written = write.write_all(&batch) => written.is_ok(),
            // A reader that stopped reads nothing more: a node blocked on sending to it
            // would block this write for good.
            () = sent.closed() => false,
        };
        if !written {
            return; // the reader finds the connection closed and fails what is pending
        }
        batch.clear();
        batch.shrink_to(MAX_BATCH_BYTES);
    }
}

/// Reads replies in order, each to the request it answers; ends on an I/O or protocol error,
/// a reply saying the node closes, or once the connection is retired and nothing is pending.
async fn read_replies<P: Protocol>(
    mut reader: P::Reader,
    mut pending: mpsc::UnboundedReceiver<(P::Expect, Answer<P>)>,
    retired: Arc<Retired>,
) {
    loop {
        let next = match pending.try_recv() {
            Ok(next) => Some(next),
            Err(_) if retired.is() => None,
            Err(_) => pending.recv().await,
        };
        let Some((expect, answer)) = next else { return };
        let late = async {
            retired.wait().await;
            tokio::time::sleep(RETIRED_GRACE).await;
        };
        let reply = tokio::select! {
            reply = P::read(&mut reader, expect) => reply,
            () = late => Err(Failure::Failed(BackendError::Timeout(RETIRED_GRACE.as_millis() as u64))),
        };
        // The requests written after this one, when the connection ends here: the node closed
        // it before answering (it never ran them: they may be sent again), or an answer
        // failed (it may have run them: orphaned, for their callers to judge).
        let (reply, after) = match reply {
            Ok((reply, true)) => (Ok(reply), None),
            Ok((reply, false)) => (Ok(reply), Some(true)),
            Err(Failure::Stale) => (Err(Failure::Stale), Some(true)),
            Err(e) => (Err(e), Some(false)),
        };
        let _ = answer.send(reply);
        if let Some(stale) = after {
            retired.retire();
            pending.close();
            while let Ok((_, answer)) = pending.try_recv() {
                let _ = answer.send(Err(if stale {
                    Failure::Stale
                } else {
                    Failure::Orphaned
                }));
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    use super::*;
    use crate::backend::memcache::{Expect, Memcached, Reply};

    /// A node that answers `version <n>` lines with `VERSION <n>`, in order, after `delay`.
    async fn node(delay: Duration) -> TcpStream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tokio::time::sleep(delay).await;
                let n = line.trim_start_matches("version ");
                let _ = write.write_all(format!("VERSION {n}\r\n").as_bytes()).await;
            }
        });
        TcpStream::connect(addr).await.unwrap()
    }

    fn line(reply: Result<Reply, Failure>) -> String {
        match reply {
            Ok(Reply::Line(line)) => line,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn concurrent_requests_each_get_their_own_reply() {
        let mux = Mux::<Memcached>::start(node(Duration::ZERO).await);
        let calls = (0..200).map(|n| {
            let request = Bytes::from(format!("version {n}\r\n"));
            let mux = &mux;
            async move { line(mux.call(request, Expect::Line).await) }
        });
        let replies = futures_util::future::join_all(calls).await;
        for (n, reply) in replies.iter().enumerate() {
            assert_eq!(reply, &format!("VERSION {n}"));
        }
        assert!(mux.usable());
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_retires_the_connection_but_not_the_replies_owed() {
        let mux = Mux::<Memcached>::start(node(Duration::from_millis(300)).await);
        // A hedge that lost: given up at once, the connection stays.
        let lost = mux.call(Bytes::from_static(b"version 0\r\n"), Expect::Line);
        assert!(tokio::time::timeout(Duration::from_millis(10), lost)
            .await
            .is_err());
        assert!(mux.usable(), "a lost hedge retired the connection");
        let slow = mux.call(Bytes::from_static(b"version 1\r\n"), Expect::Line);
        assert!(tokio::time::timeout(Duration::from_millis(150), slow)
            .await
            .is_err());
        assert!(!mux.usable(), "retired");
        // What reaches it before it closes is still answered.
        let owed = mux.call(Bytes::from_static(b"version 2\r\n"), Expect::Line);
        assert_eq!(line(owed.await), "VERSION 2");
    }

    #[tokio::test]
    async fn a_closed_connection_fails_what_is_pending_as_stale() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            drop(stream);
        });
        let mux = Mux::<Memcached>::start(TcpStream::connect(addr).await.unwrap());
        let reply = mux
            .call(Bytes::from_static(b"version\r\n"), Expect::Line)
            .await;
        assert!(matches!(reply, Err(Failure::Stale)), "{reply:?}");
        assert!(!mux.usable());
    }
}
