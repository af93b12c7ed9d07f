//! The proxy's process-wide state and its control path: the membership serving now (one
//! [`Snapshot`] behind an atomic swap), what outlives every snapshot (metrics, the instance id,
//! the listener's certificate, the ejection cap), the one function through which every attempt
//! on a node feeds the node's health and metrics, the reload of the config and everything
//! that triggers one, and the driver that owns every health probe.

pub(crate) mod change_log;
mod files;
pub(crate) mod hinted_handoff;
mod hints;
mod log_budget;
mod member;
pub(crate) mod probes;
pub(crate) mod reload;
mod snapshot;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
pub(crate) mod triggers;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::sync::Notify;
use tokio::time::Instant;

pub(crate) use self::files::Files;
pub(crate) use self::hints::{Hint, OnNodes};
use self::log_budget::{LogBudget, REPEAT_EVERY};
pub(crate) use self::member::Member;
pub(crate) use self::snapshot::{Replicas, Snapshot};
use crate::backend::{BackendError, Condition, Written};
use crate::health;
use crate::lock;
use crate::metrics::Metrics;
use crate::net::context;
use crate::net::tls::ServerCert;
use crate::routing::key_hash;
use crate::version::{unix_now, Clock, Stored};

/// The operations an attempt can be, as metrics and logs name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Get,
    Put,
    Delete,
    Copy,
    List,
    /// A repair's reads and prunes.
    Repair,
    /// Reads and removals on a key's earlier replicas during a handoff window.
    Handoff,
}

impl Op {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Put => "put",
            Op::Delete => "delete",
            Op::Copy => "copy",
            Op::List => "list",
            Op::Repair => "repair",
            Op::Handoff => "handoff",
        }
    }
}

#[derive(Debug)]
pub(crate) struct Cluster {
    live: ArcSwap<Snapshot>,
    pub metrics: Metrics,
    /// This process's id in `x-hrw-via`, to refuse requests that loop back to it, and in the
    /// low bits of the versions it stamps.
    pub instance: Arc<str>,
    pub clock: Clock,
    /// The data listener's certificate when it serves HTTPS; a reload swaps the key in it.
    pub server_cert: Option<Arc<ServerCert>>,
    /// Held while deciding an ejection, so concurrent failures cannot pass the cap together.
    ejections: Mutex<()>,
    /// Wakes the probe driver: a node was ejected, or the membership changed.
    pub probes: Notify,
    /// Wakes the hinted handoff driver: the membership changed.
    pub hints_due: Notify,
    /// Where the hinted handoff passes over a large membership are.
    pub hint_round: Mutex<hinted_handoff::Round>,
    pub log_budget: LogBudget,
}

impl Cluster {
    pub(crate) fn new(snapshot: Snapshot, files: &Files, metrics: Metrics) -> Arc<Cluster> {
        let instance = context::instance_id();
        Arc::new(Cluster {
            live: ArcSwap::from_pointee(snapshot),
            metrics,
            clock: Clock::new(u64::from_str_radix(&instance, 16).unwrap_or_default()),
            instance,
            server_cert: files.server_key.clone().map(ServerCert::new),
            ejections: Mutex::new(()),
            probes: Notify::new(),
            hints_due: Notify::new(),
            hint_round: Mutex::default(),
            log_budget: LogBudget::default(),
        })
    }

    /// The membership serving now: one atomic load.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.live.load_full()
    }

    /// Drops the handoff windows that have closed from the snapshot serving (unless a reload
    /// replaces it meanwhile).
    pub(crate) fn release_closed_windows(&self) {
        let now = tokio::time::Instant::now();
        let serving = self.live.load_full();
        if let Some(pruned) = serving.without_closed_windows(now) {
            // A reload in between wins: its snapshot dropped the closed windows already.
            self.live.compare_and_swap(&serving, Arc::new(pruned));
        }
    }

    /// Puts a new membership in service.
    pub(crate) fn store(&self, snapshot: Arc<Snapshot>, files: &Files) {
        if let (Some(cert), Some(key)) = (&self.server_cert, &files.server_key) {
            cert.replace(key.clone());
        }
        self.live.store(snapshot);
        self.probes.notify_one();
        // A node removed has its hints handed to the keys' replicas now.
        self.hints_due.notify_one();
    }

    /// Runs one call on `member` under the per-attempt timeout, cut short by `deadline`. The
    /// only place where attempts feed a node's health, metrics and in-flight count.
    pub(crate) async fn attempt<T>(
        &self,
        snap: &Snapshot,
        member: &Member,
        op: Op,
        key: &[u8],
        deadline: Instant,
        call: impl Future<Output = Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        let timeout = snap
            .config
            .timeouts
            .request()
            .min(deadline.saturating_duration_since(Instant::now()));
        member.in_flight.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let result = crate::backend::with_timeout(timeout, call).await;
        let took = started.elapsed();
        member.in_flight.fetch_sub(1, Ordering::Relaxed);
        let failure = result.as_ref().err();
        member.metrics.attempt(
            &self.metrics,
            op.name(),
            took,
            failure.map(BackendError::kind),
        );
        // Copies and listings (handoff, repair) say little about how the node serves
        // clients: they are counted in its metrics, not in its health.
        let serves_clients = matches!(op, Op::Get | Op::Put | Op::Delete);
        match failure {
            None if serves_clients => {
                // Only reads set the latency a hedge waits for.
                let sample = (op == Op::Get).then_some(took);
                member.health.on_success(sample, &snap.config.resilience);
            }
            None => {}
            Some(e) => {
                if let Some(unlogged) = self.may_log_repeat(member) {
                    tracing::warn!(
                        request_id = %context::id_for_log(),
                        node = member.id(),
                        op = op.name(),
                        key_hash = format_args!("{:016x}", key_hash(key)),
                        kind = e.kind(),
                        error = %e,
                        unlogged,
                        "backend attempt failed"
                    );
                }
                if serves_clients {
                    self.record_failure(snap, member, e);
                }
            }
        }
        result
    }

    /// Copies what a key holds to `member`, where it is older or missing: put-if-newer with
    /// versions, put-if-absent without, expiring when the original does (nothing is copied
    /// once it has expired). The copies of read repair, handoff and repair all go through here.
    pub(crate) async fn copy_to(
        &self,
        snap: &Snapshot,
        member: &Member,
        key: &[u8],
        stored: &Stored,
    ) -> Result<Written, BackendError> {
        if stored.expired(unix_now()) {
            return Ok(Written::Kept);
        }
        let condition = if snap.config.versioned() {
            Condition::IfNewer
        } else {
            Condition::IfAbsent
        };
        let deadline = Instant::now() + snap.config.timeouts.request();
        let call = member.backend.put(key, stored.clone(), condition);
        self.attempt(snap, member, Op::Copy, key, deadline, call)
            .await
    }

    /// Keeps a write `member` missed, to replay before it serves again (with versions only:
    /// without, a replay could overwrite a newer value).
    pub(crate) fn missed(&self, snap: &Snapshot, member: &Member, hint: Hint) {
        if !snap.config.versioned() || member.hints.push(hint, &snap.config.hints) {
            return;
        }
        self.metrics.hints_dropped.inc();
        if let Some(unlogged) = self.may_log_repeat(member) {
            tracing::warn!(
                node = member.id(),
                unlogged,
                "hint queue full: a write the node missed is dropped; reads with R and repair will bring it up to date"
            );
        }
    }

    /// Counts a failure against `member` (unless it is the request's fault) and ejects the
    /// node when its streak calls for it and the cap allows.
    pub(crate) fn record_failure(&self, snap: &Snapshot, member: &Member, error: &BackendError) {
        let policy = &snap.config.resilience;
        if !error.counts_against_node() || !member.health.on_failure(error, policy) {
            return;
        }
        let ejected = {
            let _deciding = lock(&self.ejections);
            let live = self.snapshot();
            let members = &live.placement.members;
            let out = members.iter().filter(|m| !m.health.is_up()).count();
            let cap = live.config.resilience.max_ejected_percent;
            if health::may_eject(out, members.len(), cap) {
                member.health.eject(policy)
            } else {
                None
            }
        };
        if let Some(backoff) = ejected.filter(|_| self.log_budget.allow()) {
            tracing::warn!(
                request_id = %context::id_for_log(),
                node = member.id(),
                backoff_ms = backoff.as_millis() as u64,
                error = %error,
                "node ejected"
            );
        }
        if ejected.is_some() {
            self.probes.notify_one();
        }
    }

    /// Whether a repeated trouble of `member` may be logged now, and how many of its lines
    /// went unlogged before it.
    pub(crate) fn may_log_repeat(&self, member: &Member) -> Option<u32> {
        let now = Instant::now();
        if member.health.log_due(now, REPEAT_EVERY) && self.log_budget.allow() {
            Some(member.health.log_written(now))
        } else {
            member.health.log_skipped();
            None
        }
    }

    /// Whether a line about a node's change of state (readmitted) may be logged now.
    pub(crate) fn may_log_change(&self) -> bool {
        self.log_budget.allow()
    }
}
