//! Writes: stamped with a version (the proxy's hybrid clock, or the client's `x-hrw-version`)
//! and sent to every replica in parallel as put-if-newer, so that whatever order they land
//! in, the newest stays; a DELETE writes a tombstone that lives `tombstone_ttl_s`. A replica
//! that already holds something as new or newer acknowledges the write. The answer goes out
//! once the ack level is reached; replicas still working then finish in the background. A
//! replica that misses the write (it failed, or is ejected and gets the write only best
//! effort) gets a hint, replayed before it serves again. A write that misses its ack level
//! waits for every replica (each bounded by the attempt timeout and the deadline), so the
//! 503 reports what really happened, including the replicas that did store it.
//!
//! Without versions (`versioning: off`) a PUT overwrites and a DELETE removes, as they are
//! (during a handoff window from the earlier replicas too, which reads still ask).

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::outcome::{Attempted, WriteOutcome, ACKNOWLEDGED};
use super::DataPath;
use crate::backend::{BackendError, Condition};
use crate::cluster::{Cluster, Hint, Member, Op, Snapshot};
use crate::handoff;
use crate::net::{context, Ttl};
use crate::routing::key_hash;
use crate::version::{expiry_after, Stored, Version};

#[derive(Debug, Clone)]
pub(crate) enum WriteOp {
    /// The value and its time to live.
    Put(Bytes, Option<Ttl>),
    Delete,
}

pub(crate) async fn write(
    path: &Arc<DataPath>,
    snap: &Arc<Snapshot>,
    key: Bytes,
    op: WriteOp,
    required: usize,
    version: Option<Version>,
    deadline: Instant,
) -> WriteOutcome {
    let cluster = &path.cluster;
    let config = &snap.config;
    let versioned = config.versioned();
    let version = versioned.then(|| match version {
        Some(given) => {
            cluster.clock.observe(given);
            given
        }
        None => cluster.clock.next(),
    });
    // Expiry is a point in time, so that copies and replays made later expire with it.
    let (value, ttl) = match op {
        WriteOp::Put(value, ttl) => (Some(value), ttl.map(|t| u64::from(t.get()))),
        WriteOp::Delete => (None, Some(config.tombstone_ttl_s)),
    };
    let stored = Stored {
        version: version.unwrap_or(Version::ZERO),
        value,
        expires: ttl.map(expiry_after),
    };
    let condition = if versioned {
        Condition::IfNewer
    } else {
        Condition::Always
    };
    let replicas = snap.placement.replicas(&key);
    let mut outcome = WriteOutcome {
        version,
        acks: 0,
        replicas: replicas.len(),
        required,
        stand_in_acks: 0,
        nodes: Vec::new(),
        deadline_exceeded: false,
    };
    let (tx, mut rx) = mpsc::channel(2 * outcome.replicas.max(1));
    let write = Arc::new(Write {
        cluster: cluster.clone(),
        snap: snap.clone(),
        key: key.clone(),
        stored: stored.clone(),
        condition,
        deadline,
        stand_ins: Mutex::new(StandIns::default()),
    });
    let replica_deadline = Instant::now() + config.timeouts.request();
    for member in replicas.iter() {
        let (write, member, tx) = (write.clone(), member.clone(), tx.clone());
        context::spawn(async move { write.fill(member, replica_deadline, tx).await });
    }
    drop(tx);
    let mut pending = outcome.replicas;
    while pending > 0 && outcome.acks < required {
        let received = tokio::select! {
            received = rx.recv() => received,
            _ = tokio::time::sleep_until(deadline) => {
                outcome.deadline_exceeded = true;
                break;
            }
        };
        let Some(heard) = received else {
            break;
        };
        if heard.last {
            pending -= 1;
        }
        if heard.attempted.result.is_ok() {
            outcome.acks += 1;
            if heard.attempted.standing_in_for.is_some() {
                outcome.stand_in_acks += 1;
            }
        }
        outcome.nodes.push(heard.attempted);
    }
    if pending > 0 {
        context::spawn(log_late_failures(key.clone(), rx));
    }
    if !versioned && stored.is_tombstone() && snap.handoff_open() {
        remove_from_earlier_replicas(cluster, snap, &key, deadline.min(replica_deadline)).await;
    }
    if outcome.failure().is_some() {
        cluster.metrics.write_quorum_failures.inc();
    } else if outcome.acks < outcome.replicas {
        cluster.metrics.writes_short_of_r.inc();
    }
    outcome
}

/// Without versions nothing tells a delete from an older value: during a handoff window a
/// DELETE also removes the key from the replicas it had before, which reads still ask.
async fn remove_from_earlier_replicas(
    cluster: &Cluster,
    snap: &Snapshot,
    key: &Bytes,
    deadline: Instant,
) {
    let removals = handoff::earlier_replicas(snap, key)
        .into_iter()
        .map(|earlier| async move {
            let call = earlier.member.backend.remove(key);
            let _ = cluster
                .attempt(snap, &earlier.member, Op::Handoff, key, deadline, call)
                .await;
        });
    futures_util::future::join_all(removals).await;
}

/// One write's replicas and stand-ins, shared by the tasks that fill its slots.
struct Write {
    cluster: Arc<Cluster>,
    snap: Arc<Snapshot>,
    key: Bytes,
    stored: Stored,
    condition: Condition,
    /// The request's deadline: no stand-in is asked after it.
    deadline: Instant,
    stand_ins: Mutex<StandIns>,
}

/// The key's stand-ins, worked out when a slot first needs one, and how many are taken.
#[derive(Default)]
struct StandIns {
    ranked: Option<Vec<Arc<Member>>>,
    taken: usize,
}

/// What one node did for a slot; `last` when the slot is done (acknowledged, or nothing
/// more will be tried for it).
struct Heard {
    attempted: Attempted,
    last: bool,
}

impl Write {
    /// Fills the slot of one replica: the replica itself when it is in service; in sloppy
    /// mode, when it is out of service or fails, the next free stand-in (and the one after,
    /// while the request's deadline allows), which stores the write with a hint for the
    /// replica. Every attempt is reported; the last report ends the slot.
    async fn fill(
        self: Arc<Self>,
        replica: Arc<Member>,
        replica_deadline: Instant,
        tx: mpsc::Sender<Heard>,
    ) {
        let (cluster, snap) = (&self.cluster, &*self.snap);
        let hint = || Hint {
            key: self.key.clone(),
            stored: self.stored.clone(),
        };
        let sloppy = snap.config.sloppy();
        let mut failed = None;
        let mut target = if replica.health.is_up() {
            Some(replica.clone())
        } else {
            // The memory hint replays the write when the replica is readmitted, and the
            // best-effort write may land already: an ejected node is often only slow.
            cluster.missed(snap, &replica, hint());
            self.best_effort(replica.clone());
            failed = Some(Attempted::failed(&replica, BackendError::Ejected));
            sloppy.then(|| self.next_stand_in()).flatten()
        };
        while let Some(node) = target.take() {
            if let Some(attempted) = failed.take() {
                let _ = tx
                    .send(Heard {
                        attempted,
                        last: false,
                    })
                    .await;
            }
            let standing_in = !Arc::ptr_eq(&node, &replica);
            let result = if standing_in {
                let deadline = Instant::now() + snap.config.timeouts.request();
                self.store(&node, Some(&replica), deadline).await
            } else {
                self.store(&node, None, replica_deadline).await
            };
            let standing_in_for = standing_in.then_some(&*replica);
            let error = match result {
                Ok(()) => {
                    let attempted =
                        Attempted::said(&node, ACKNOWLEDGED).standing_in_for(standing_in_for);
                    let _ = tx
                        .send(Heard {
                            attempted,
                            last: true,
                        })
                        .await;
                    return;
                }
                Err(e) => e,
            };
            // Only the node's trouble is worth a replay or a stand-in: a write it refused
            // (too large, say) would be refused again.
            let trouble = error.counts_against_node();
            if trouble && !standing_in {
                cluster.missed(snap, &replica, hint());
            }
            failed = Some(Attempted::failed(&node, error).standing_in_for(standing_in_for));
            if sloppy && trouble && Instant::now() < self.deadline {
                target = self.next_stand_in();
            }
        }
        if let Some(attempted) = failed {
            let _ = tx
                .send(Heard {
                    attempted,
                    last: true,
                })
                .await;
        }
    }

    /// The next stand-in in service that no other slot of this write took.
    fn next_stand_in(&self) -> Option<Arc<Member>> {
        let mut stand_ins = self
            .stand_ins
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let StandIns { ranked, taken } = &mut *stand_ins;
        let ranked = ranked.get_or_insert_with(|| {
            let placement = &self.snap.placement;
            placement.stand_ins(&self.key, &placement.replicas(&self.key))
        });
        let next = ranked.iter().skip(*taken).position(|m| m.health.is_up())?;
        *taken += next + 1;
        Some(ranked[*taken - 1].clone())
    }

    /// Stores the write on `node`, for itself or, with a hint, standing in for `owner`.
    async fn store(
        &self,
        node: &Member,
        owner: Option<&Member>,
        deadline: Instant,
    ) -> Result<(), BackendError> {
        let (key, stored) = (&self.key, self.stored.clone());
        let versioned = self.snap.config.versioned();
        let op = if stored.is_tombstone() {
            Op::Delete
        } else {
            Op::Put
        };
        // Without versions a delete is a removal; there are tombstones only with them.
        let call = async {
            match owner {
                Some(owner) if node.backend.keeps_hints() => node
                    .backend
                    .put_hinted(key, stored, owner.id())
                    .await
                    .map(drop),
                _ if versioned || !stored.is_tombstone() => node
                    .backend
                    .put(key, stored, self.condition)
                    .await
                    .map(drop),
                _ => node.backend.remove(key).await,
            }
        };
        self.cluster
            .attempt(&self.snap, node, op, key, deadline, call)
            .await
    }

    /// The write to an ejected replica, not counted: if it lands, the replica is up to date
    /// before its hint is replayed.
    fn best_effort(self: &Arc<Self>, replica: Arc<Member>) {
        let (write, deadline) = (
            self.clone(),
            Instant::now() + self.snap.config.timeouts.request(),
        );
        context::spawn(async move {
            let _ = write.store(&replica, None, deadline).await;
        });
    }
}

/// Slots that fail after the answer went out: the write missed them (and they have a hint).
/// Logged, never silent.
async fn log_late_failures(key: Bytes, mut rx: mpsc::Receiver<Heard>) {
    while let Some(heard) = rx.recv().await {
        if let Err(e) = &heard.attempted.result {
            tracing::warn!(
                request_id = %context::id_for_log(),
                node = heard.attempted.node,
                standing_in_for = heard.attempted.standing_in_for.as_deref(),
                key_hash = format_args!("{:016x}", key_hash(&key)),
                error = %e,
                "a write attempt failed after its ack level was reached"
            );
        }
    }
}
