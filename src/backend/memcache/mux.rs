//! One connection to a memcached node shared by every request of a worker: requests queue in
//! order, are written together (what queued while the last write was going out goes in one
//! `write`), and their replies are read back in the same order, as twemproxy does. Many
//! requests in flight then cost one send and one wakeup of the node, not one each.
//!
//! A request whose caller gives up before its reply (a timeout, a hedge that lost) marks the
//! connection retired, as dropping a pooled connection mid-exchange closed it: the requests
//! already on it still get their replies, new ones go to a new connection, and the old one
//! closes once it has nothing left to answer (or a reply is 10 s late). Any I/O error ends
//! the connection and fails what is pending on it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Notify};

use super::reply::{read_line, read_value};
use crate::backend::pool::Failure;

/// The most requests written in one `write`.
const MAX_BATCH: usize = 64;
/// How long a retired connection waits for each reply still owed before it closes: a node
/// that was cut off must not keep connections open for good.
const RETIRED_GRACE: Duration = Duration::from_secs(10);

/// What a request reads back.
#[derive(Debug, Clone, Copy)]
pub(super) enum Expect {
    /// One line (`STORED`, `DELETED`, `VERSION ...`).
    Line,
    /// A `get`/`gets` reply: a value of at most this many bytes (and its cas unique), or none.
    Value { max: usize },
}

#[derive(Debug)]
pub(super) enum Reply {
    Line(String),
    Value(Option<(Bytes, Option<u64>)>),
}

type Answer = oneshot::Sender<Result<Reply, Failure>>;

struct Job {
    request: Bytes,
    expect: Expect,
    answer: Answer,
}

/// A shared connection's handle; its I/O runs on two tasks of the runtime that opened it.
#[derive(Debug)]
pub(super) struct Mux {
    jobs: mpsc::UnboundedSender<Job>,
    retired: Arc<Retired>,
}

impl Mux {
    pub(super) fn start(stream: TcpStream) -> Mux {
        let (read, write) = stream.into_split();
        let (jobs, queued) = mpsc::unbounded_channel();
        let (sent, pending) = mpsc::unbounded_channel();
        let retired = Arc::new(Retired::default());
        tokio::spawn(write_requests(write, queued, sent));
        tokio::spawn(read_replies(BufReader::new(read), pending, retired.clone()));
        Mux { jobs, retired }
    }

    /// Whether new requests may go on this connection.
    pub(super) fn usable(&self) -> bool {
        !self.retired.is() && !self.jobs.is_closed()
    }

    /// Sends `request` and waits for its reply. [`Failure::Stale`] when the connection
    /// ended before answering.
    pub(super) async fn call(&self, request: Bytes, expect: Expect) -> Result<Reply, Failure> {
        let (answer, reply) = oneshot::channel();
        let job = Job {
            request,
            expect,
            answer,
        };
        if self.jobs.send(job).is_err() {
            return Err(Failure::Stale);
        }
        let mut waiting = Waiting(Some(&self.retired));
        let reply = reply.await.unwrap_or(Err(Failure::Stale));
        waiting.0 = None;
        reply
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
struct Waiting<'a>(Option<&'a Retired>);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(retired) = self.0 {
            retired.retire();
        }
    }
}

/// Writes what is queued, many requests at a time, after handing each request's reply slot
/// to the reader in the same order.
async fn write_requests(
    mut write: OwnedWriteHalf,
    mut queued: mpsc::UnboundedReceiver<Job>,
    sent: mpsc::UnboundedSender<(Expect, Answer)>,
) {
    let mut batch = Vec::new();
    while let Some(job) = queued.recv().await {
        let mut next = Some(job);
        let mut count = 0;
        while let Some(job) = next.take() {
            batch.extend_from_slice(&job.request);
            if sent.send((job.expect, job.answer)).is_err() {
                return; // the reader ended: the connection is gone
            }
            count += 1;
            if count < MAX_BATCH {
                next = queued.try_recv().ok();
            }
        }
        if write.write_all(&batch).await.is_err() {
            return; // the reader finds the connection closed and fails what is pending
        }
        batch.clear();
    }
}

/// Reads replies in order, each to the request it answers; ends on an I/O or protocol error,
/// or once the connection is retired and nothing is pending.
async fn read_replies(
    mut read: BufReader<OwnedReadHalf>,
    mut pending: mpsc::UnboundedReceiver<(Expect, Answer)>,
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
            reply = read_reply(&mut read, expect) => reply,
            () = late => Err(Failure::Stale),
        };
        let failed = reply.is_err();
        let _ = answer.send(reply);
        if failed {
            // The stream's position is lost: fail what is pending (dropping its answers).
            retired.retire();
            return;
        }
    }
}

async fn read_reply(read: &mut BufReader<OwnedReadHalf>, expect: Expect) -> Result<Reply, Failure> {
    let line = match read_line(read).await {
        Ok(Some(line)) => line,
        Ok(None) => return Err(Failure::Stale),
        Err(e) => return Err(Failure::Failed(e)),
    };
    match expect {
        Expect::Line => Ok(Reply::Line(line)),
        Expect::Value { max } => read_value(read, &line, max)
            .await
            .map(Reply::Value)
            .map_err(Failure::Failed),
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

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
        let mux = Mux::start(node(Duration::ZERO).await);
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
        let mux = Mux::start(node(Duration::from_millis(200)).await);
        let slow = mux.call(Bytes::from_static(b"version 1\r\n"), Expect::Line);
        assert!(tokio::time::timeout(Duration::from_millis(50), slow)
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
        let mux = Mux::start(TcpStream::connect(addr).await.unwrap());
        let reply = mux
            .call(Bytes::from_static(b"version\r\n"), Expect::Line)
            .await;
        assert!(matches!(reply, Err(Failure::Stale)), "{reply:?}");
        assert!(!mux.usable());
    }
}
