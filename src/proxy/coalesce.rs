//! Coalesced reads: concurrent GETs of one key on this proxy share backend reads. A read that
//! was already sent must not answer a client that arrived after it (a write acknowledged in
//! between would be missed), so a client that finds a read of its key in flight joins the next
//! read of the key instead: that one is sent when the read in flight ends, and answers every
//! client that joined it. A burst of N GETs of one key costs two backend reads; a steady
//! stream, one per round trip. Each shared read runs in a task of its own, so a client that
//! goes away takes nobody's answer with it.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

use super::outcome::{Failure, ReadOutcome};
use super::read::read;
use super::DataPath;
use crate::cluster::Snapshot;
use crate::net::context;

/// What makes two GETs the same read: the key, the answers they need (R), and the
/// generation of the membership they were placed with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ReadId {
    key: Bytes,
    need: usize,
    generation: u64,
}

/// Locks split by key, so that reads of different keys rarely meet.
const SHARDS: usize = 16;

/// The keys with a read in flight, and for each the read that follows it, once a client waits
/// for one.
#[derive(Debug, Default)]
pub(crate) struct Coalescer {
    hasher: RandomState,
    shards: [Mutex<HashMap<ReadId, Option<Round>>>; SHARDS],
}

/// One shared read not sent yet: what to send it with, and where its answer goes.
#[derive(Debug)]
struct Round {
    snap: Arc<Snapshot>,
    deadline: Instant,
    answer: watch::Sender<Option<ReadOutcome>>,
}

impl Coalescer {
    fn shard(&self, id: &ReadId) -> &Mutex<HashMap<ReadId, Option<Round>>> {
        &self.shards[self.hasher.hash_one(&id.key) as usize % SHARDS]
    }

    /// Reads `key` as [`read`] does, sharing the backend read with concurrent GETs of it.
    pub(crate) async fn read(
        path: &Arc<DataPath>,
        snap: &Arc<Snapshot>,
        key: &Bytes,
        need: usize,
        deadline: Instant,
    ) -> ReadOutcome {
        let id = ReadId {
            key: key.clone(),
            need,
            generation: snap.generation,
        };
        let mut answer = {
            let mut reads = crate::lock(path.coalescer.shard(&id));
            match reads.get_mut(&id) {
                // Nothing in flight: this client's read is sent now.
                None => {
                    reads.insert(id.clone(), None);
                    drop(reads);
                    let (sender, answer) = watch::channel(None);
                    let round = Round {
                        snap: snap.clone(),
                        deadline,
                        answer: sender,
                    };
                    send(path.clone(), id, round);
                    answer
                }
                Some(Some(next)) => next.answer.subscribe(),
                Some(next @ None) => {
                    let (sender, answer) = watch::channel(None);
                    *next = Some(Round {
                        snap: snap.clone(),
                        deadline,
                        answer: sender,
                    });
                    answer
                }
            }
        };
        let answered = tokio::time::timeout_at(deadline, answer.wait_for(Option::is_some)).await;
        match answered {
            Ok(Ok(outcome)) => outcome.clone().expect("waited for an answer"),
            // The task reading went away without an answer (the runtime is stopping).
            Ok(Err(_)) => ReadOutcome::Failed {
                why: Failure::Unanswered,
                attempts: Vec::new(),
            },
            Err(_) => ReadOutcome::Failed {
                why: Failure::Deadline,
                attempts: Vec::new(),
            },
        }
    }
}

/// Sends one shared read in a task of its own; when it ends, sends the next one if a client
/// waits for it, or leaves the key with no read in flight.
fn send(path: Arc<DataPath>, id: ReadId, round: Round) {
    context::spawn(async move {
        let mut finish = Finish {
            path: path.clone(),
            id: id.clone(),
            done: false,
        };
        let outcome = read(&path, &round.snap, &id.key, id.need, round.deadline).await;
        let next = finish.next_round();
        if let Some(next) = next {
            send(path, id, next);
        }
        round.answer.send_replace(Some(outcome));
    });
}

/// Ends a key's read in flight however its task ends: a read that never finishes (a panic,
/// a runtime stopping) must not keep the key's later reads waiting.
struct Finish {
    path: Arc<DataPath>,
    id: ReadId,
    done: bool,
}

impl Finish {
    /// The read waiting to be sent next, if any; otherwise the key has no read in flight.
    fn next_round(&mut self) -> Option<Round> {
        let mut reads = crate::lock(self.path.coalescer.shard(&self.id));
        let next = match reads.get_mut(&self.id) {
            Some(next) if next.is_some() => next.take(),
            _ => {
                reads.remove(&self.id);
                None
            }
        };
        self.done = true;
        next
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        // Waiters for the next read get no answer (their channel closes) rather than none ever.
        if !self.done {
            crate::lock(self.path.coalescer.shard(&self.id)).remove(&self.id);
        }
    }
}
