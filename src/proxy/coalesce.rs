//! Coalesced reads: concurrent GETs of one key on this proxy share backend reads. A read that
//! was already sent must not answer a client that arrived after it (a write acknowledged in
//! between would be missed), so a client that finds a read of its key in flight joins the next
//! read of the key instead: that one is sent when the read in flight ends, and answers every
//! client that joined it. A burst of N GETs of one key costs two backend reads; a steady
//! stream, one per round trip. The first read of a key runs in its client's task (no one
//! waits on it); each shared one runs in a task of its own, so a client that goes away takes
//! nobody's answer with it.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;
use twox_hash::XxHash3_64;

use super::outcome::{Failure, ReadFailure, ReadOutcome};
use super::read::read;
use super::DataPath;
use crate::cluster::Snapshot;
use crate::net::context;

/// What makes two GETs the same read: the key, the answers they need (R), and the
/// generation of the membership they were placed with. Hashed once per GET (the key with a
/// seed of this process, so clients cannot aim keys at one bucket).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ReadId {
    hash: u64,
    key: Bytes,
    need: usize,
    generation: u64,
}

impl Hash for ReadId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// Hands the hash [`ReadId`] carries to the map as it is.
#[derive(Default)]
struct Carried(u64);

impl Hasher for Carried {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type Reads = HashMap<ReadId, Option<Round>, BuildHasherDefault<Carried>>;

/// Locks split by key, so that reads of different keys rarely meet.
const SHARDS: usize = 16;

/// The keys with a read in flight, and for each the read that follows it, once a client waits
/// for one.
#[derive(Debug)]
pub(crate) struct Coalescer {
    seed: u64,
    shards: [Mutex<Reads>; SHARDS],
}

impl Default for Coalescer {
    fn default() -> Self {
        Coalescer {
            seed: RandomState::new().hash_one(0u8),
            shards: Default::default(),
        }
    }
}

/// One shared read not sent yet: what to send it with, and where its answer goes.
#[derive(Debug)]
struct Round {
    snap: Arc<Snapshot>,
    deadline: Instant,
    answer: watch::Sender<Option<ReadOutcome>>,
}

impl Coalescer {
    fn shard(&self, id: &ReadId) -> &Mutex<Reads> {
        // The high bits: the map's buckets use the low ones.
        &self.shards[(id.hash >> 60) as usize % SHARDS]
    }

    /// Reads `key` as [`read`] does, sharing the backend read with concurrent GETs of it
    /// unless the config turns coalescing off.
    pub(crate) async fn read(
        path: &Arc<DataPath>,
        snap: &Arc<Snapshot>,
        key: &Bytes,
        need: usize,
        deadline: Instant,
    ) -> ReadOutcome {
        if !snap.config.coalesce_reads {
            return read(path, snap, key, need, deadline).await;
        }
        let id = ReadId {
            hash: XxHash3_64::oneshot_with_seed(path.coalescer.seed, key),
            key: key.clone(),
            need,
            generation: snap.generation,
        };
        // Some(answer): a read is in flight, wait for the next one; None: read now.
        let waiting = {
            let mut reads = crate::lock(path.coalescer.shard(&id));
            match reads.get_mut(&id) {
                None => {
                    reads.insert(id.clone(), None);
                    None
                }
                Some(Some(next)) => Some(next.answer.subscribe()),
                Some(next @ None) => {
                    let (sender, answer) = watch::channel(None);
                    *next = Some(Round {
                        snap: snap.clone(),
                        deadline,
                        answer: sender,
                    });
                    Some(answer)
                }
            }
        };
        let Some(mut answer) = waiting else {
            // Read in this client's task: no one waits on this read (later clients wait for
            // the next one).
            let mut finish = Finish {
                path,
                id,
                done: false,
            };
            let outcome = read(path, snap, key, need, deadline).await;
            finish.end();
            return outcome;
        };
        let answered = tokio::time::timeout_at(deadline, answer.wait_for(Option::is_some)).await;
        match answered {
            Ok(Ok(outcome)) => outcome.clone().expect("waited for an answer"),
            // The task reading went away without an answer (the runtime is stopping).
            Ok(Err(_)) => unheard(Failure::Unanswered, need),
            Err(_) => unheard(Failure::Deadline, need),
        }
    }
}

/// A waiting client's failure when the shared read gave it no answer.
fn unheard(why: Failure, needed: usize) -> ReadOutcome {
    ReadOutcome::Failed(ReadFailure {
        why,
        answers: 0,
        needed,
        nodes: Vec::new(),
    })
}

/// Sends a shared read in a task of its own, so that none of the clients waiting for it can
/// take it away by leaving; its answer goes to all of them.
fn send(path: Arc<DataPath>, id: ReadId, round: Round) {
    context::spawn(async move {
        let mut finish = Finish {
            path: &path,
            id: id.clone(),
            done: false,
        };
        let outcome = read(&path, &round.snap, &id.key, id.need, round.deadline).await;
        finish.end();
        round.answer.send_replace(Some(outcome));
    });
}

/// Ends a key's read in flight, however the read ends: the read waiting to be sent next, if a
/// client waits for one, is sent; otherwise the key has no read in flight. A read whose client
/// went away (its future dropped) ends the same way, so no one waits for it.
struct Finish<'a> {
    path: &'a Arc<DataPath>,
    id: ReadId,
    done: bool,
}

impl Finish<'_> {
    fn end(&mut self) {
        self.done = true;
        let next = {
            let mut reads = crate::lock(self.path.coalescer.shard(&self.id));
            let next = reads.get_mut(&self.id).and_then(Option::take);
            if next.is_none() {
                reads.remove(&self.id);
            }
            next
        };
        // Outside a runtime (it is stopping) the waiters' channel closes instead.
        if let Some(next) = next.filter(|_| tokio::runtime::Handle::try_current().is_ok()) {
            send(self.path.clone(), self.id.clone(), next);
        }
    }
}

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.end();
        }
    }
}
