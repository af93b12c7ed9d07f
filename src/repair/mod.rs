//! Repair (also called rebalance): page through the keys of every node that can list them and
//! bring each key to its current top-r nodes: read what each owner and the listing node hold,
//! write the newest version where it is older or missing (put-if-newer, so no copy overwrites
//! or resurrects anything, whoever makes it), and with `prune` remove it from nodes that no
//! longer own it once its owners have it. After one pass every listed key has the same
//! version on all its replicas. Without versions (`versioning: off`) a copy lands only where
//! the key is absent. [`BackgroundRepair`] runs one in the background for the admin API; the CLI
//! runs [`run`] itself.

mod background;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

pub(crate) use self::background::BackgroundRepair;
use crate::backend::{BackendError, Written};
use crate::cluster::{hinted_handoff, Cluster, Member, Op, Snapshot};
use crate::lock;
use crate::version::{newest, Stored};

/// Keys asked for per listing page.
pub(crate) const PAGE: usize = 500;
/// Keys moved at the same time.
pub(crate) const CONCURRENCY: usize = 16;
/// The accepted range of `rate`, in keys per second.
pub(crate) const MIN_RATE: f64 = 0.01;
pub(crate) const MAX_RATE: f64 = 1e7;

#[derive(Debug, Clone, Default)]
pub(crate) struct Options {
    /// Delete keys from nodes that are not among their top-r (after they are safe there).
    pub prune: bool,
    /// Keys per second at most; `None` for no limit.
    pub rate: Option<f64>,
    /// Where to start: resume an interrupted run.
    pub resume: Option<Cursor>,
}

/// A rate given by a user, in keys per second: 0 for no limit (`None`), else from
/// [`MIN_RATE`] to [`MAX_RATE`].
pub(crate) fn rate_limit(rate: f64) -> Result<Option<f64>, String> {
    if rate == 0.0 {
        Ok(None)
    } else if rate.is_finite() && (MIN_RATE..=MAX_RATE).contains(&rate) {
        Ok(Some(rate))
    } else {
        Err(format!(
            "rate {rate} must be 0 (no limit) or from {MIN_RATE} to {MAX_RATE} keys per second"
        ))
    }
}

/// How far a run got: the node being listed (nodes go in id order) and where its listing goes
/// on (the node's own cursor: for the built-in node the last key done, percent-encoded);
/// `None` once the node is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cursor {
    pub node: String,
    pub after: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RunState {
    #[default]
    Idle,
    Running,
    Done,
    /// The run stopped unexpectedly (a bug); see the log.
    Aborted,
}

/// Counters of a run, as `GET /admin/repair` and the CLI show them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Progress {
    pub state: RunState,
    pub generation: u64,
    pub prune: bool,
    #[serde(serialize_with = "rfc3339", skip_deserializing)]
    pub started_at: Option<SystemTime>,
    pub nodes_total: usize,
    pub nodes_done: usize,
    pub cursor: Option<Cursor>,
    /// Keys listed.
    pub scanned: u64,
    /// Copies stored on an owner that lacked the key.
    pub copied: u64,
    /// Copies not needed: the owner had a value already.
    pub present: u64,
    pub pruned: u64,
    /// Keys that could not be read, copied or pruned, and listings that broke off.
    pub failed: u64,
    /// Nodes that cannot list their keys, or whose listing failed.
    pub skipped_nodes: Vec<String>,
    /// Hints stand-ins held, handed over by the pass that runs first, and left held (their
    /// replica is out of service, or a copy failed).
    #[serde(default)]
    pub hints_handed_off: u64,
    #[serde(default)]
    pub hints_left: u64,
    pub elapsed_ms: u64,
}

fn rfc3339<S: serde::Serializer>(at: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => s.serialize_str(&humantime::format_rfc3339_seconds(*at).to_string()),
        None => s.serialize_none(),
    }
}

impl Progress {
    fn add(&mut self, step: &Step) {
        self.scanned += 1;
        self.copied += step.copied;
        self.present += step.present;
        self.pruned += step.pruned;
        self.failed += step.failed;
    }
}

/// One listed node: a member of the current placement or, while a handoff window is open, a
/// node that left (never an owner, so `prune` drains it).
struct ListedNode {
    member: Arc<Member>,
    /// Whether it is in the current placement.
    current: bool,
}

/// Every node to list, once per id, in id order.
fn listed_nodes(snap: &Snapshot) -> Vec<Arc<ListedNode>> {
    let mut sources: Vec<ListedNode> = snap
        .placement
        .members
        .iter()
        .map(|member| ListedNode {
            member: member.clone(),
            current: true,
        })
        .collect();
    let mut departed = HashSet::new();
    for window in snap.open_windows() {
        for member in window.placement.members.iter() {
            if snap.placement.member(member.id()).is_none() && departed.insert(member.id()) {
                sources.push(ListedNode {
                    member: member.clone(),
                    current: false,
                });
            }
        }
    }
    sources.sort_by(|a, b| a.member.id().cmp(b.member.id()));
    sources.into_iter().map(Arc::new).collect()
}

/// What a run works on and with.
#[derive(Clone)]
pub(crate) struct Scope {
    pub cluster: Arc<Cluster>,
    pub snap: Arc<Snapshot>,
}

/// Runs one repair over the scope's snapshot, updating `progress` as it goes; `on_page`
/// sees the progress after each page (the CLI saves the cursor to resume).
pub(crate) async fn run(
    scope: Scope,
    options: Options,
    progress: &Mutex<Progress>,
    mut on_page: impl FnMut(&Progress),
) -> Progress {
    let snap = &scope.snap;
    let started = Instant::now();
    let sources = listed_nodes(snap);
    let update = |f: &mut dyn FnMut(&mut Progress)| {
        let mut p = lock(progress);
        f(&mut p);
        p.elapsed_ms = started.elapsed().as_millis() as u64;
        p.clone()
    };
    update(&mut |p| {
        *p = Progress {
            state: RunState::Running,
            generation: snap.generation,
            prune: options.prune,
            started_at: Some(SystemTime::now()),
            nodes_total: sources.len(),
            ..Progress::default()
        }
    });
    // Writes held on stand-ins go to their replicas first, so the keys listed below are
    // brought up to date from where they belong.
    let handed = hinted_handoff::hand_over(&scope.cluster, snap, None).await;
    update(&mut |p| {
        p.hints_handed_off = handed.handed_off;
        p.hints_left = handed.left;
    });
    let mut moved = 0u64;
    for source in &sources {
        let id = source.member.id();
        let mut after: Option<String> = None;
        if let Some(cursor) = &options.resume {
            // Nodes before the cursor's were done; on its node, go on where it says.
            let done = cursor.after.is_none();
            if id < cursor.node.as_str() || (id == cursor.node && done) {
                update(&mut |p| p.nodes_done += 1);
                continue;
            }
            if id == cursor.node {
                after = cursor.after.clone();
            }
        }
        loop {
            let deadline = Instant::now() + snap.config.timeouts.request();
            let call = source.member.backend.list(after.as_deref(), PAGE);
            let listing = scope
                .cluster
                .attempt(snap, &source.member, Op::List, b"", deadline, call)
                .await;
            let listing = match listing {
                Ok(listing) => listing,
                Err(e) => {
                    if e != BackendError::Unsupported {
                        tracing::warn!(node = id, error = %e, "repair: cannot list keys; skipping the rest of the node");
                    }
                    update(&mut |p| {
                        p.skipped_nodes.push(format!("{id}: {e}"));
                        p.failed += u64::from(e != BackendError::Unsupported);
                    });
                    break;
                }
            };
            // Keys of a page move concurrently; the cursor only passes a page once all of it
            // is done, so a resumed run skips nothing.
            let mut in_flight = tokio::task::JoinSet::new();
            for key in &listing.keys {
                if let Some(rate) = options.rate {
                    let due = started + Duration::from_secs_f64(moved as f64 / rate);
                    tokio::time::sleep_until(due).await;
                }
                moved += 1;
                if in_flight.len() >= CONCURRENCY {
                    if let Some(Ok(step)) = in_flight.join_next().await {
                        update(&mut |p| p.add(&step));
                    }
                }
                let (scope, source, key) = (scope.clone(), source.clone(), key.clone());
                let prune = options.prune;
                in_flight.spawn(async move { repair_key(&scope, &source, &key, prune).await });
            }
            while let Some(joined) = in_flight.join_next().await {
                if let Ok(step) = joined {
                    update(&mut |p| p.add(&step));
                }
            }
            after = listing.next;
            let now = update(&mut |p| {
                p.cursor = Some(Cursor {
                    node: id.to_owned(),
                    after: after.clone(),
                })
            });
            on_page(&now);
            if after.is_none() {
                break;
            }
        }
        update(&mut |p| p.nodes_done += 1);
    }
    update(&mut |p| {
        p.state = RunState::Done;
        p.cursor = None;
    })
}

#[derive(Default)]
struct Step {
    copied: u64,
    present: u64,
    pruned: u64,
    failed: u64,
}

/// Brings one key of `source` to its owners: the newest of what they and the source hold
/// goes where it is older or missing.
async fn repair_key(scope: &Scope, source: &ListedNode, key: &Bytes, prune: bool) -> Step {
    let (cluster, snap) = (&scope.cluster, &scope.snap);
    let mut step = Step::default();
    let owners = snap.placement.replicas(key);
    let id = source.member.id();
    let is_owner = source.current && owners.contains(id);
    let mut held: Vec<(&Arc<Member>, Option<Stored>)> = Vec::with_capacity(owners.len() + 1);
    let mut unreadable = false;
    for member in owners.iter().chain((!is_owner).then_some(&source.member)) {
        let deadline = Instant::now() + snap.config.timeouts.request();
        let call = member.backend.get(key);
        match cluster
            .attempt(snap, member, Op::Repair, key, deadline, call)
            .await
        {
            Ok(stored) => held.push((member, stored)),
            Err(_) => unreadable = true,
        }
    }
    // The newest; without versions (all 0) the first value found, in rank order.
    let newest = newest(held.iter().map(|(_, h)| h.as_ref())).and_then(|i| held[i].1.clone());
    // None: gone everywhere since it was listed.
    if let Some(newest) = &newest {
        for (member, stored) in held.iter().filter(|(m, _)| owners.contains(m.id())) {
            if stored.as_ref().is_some_and(|s| {
                s.version >= newest.version && (snap.config.versioned() || s.value.is_some())
            }) {
                step.present += 1;
                continue;
            }
            match cluster.copy_to(snap, member, key, newest).await {
                Ok(Written::Stored) => step.copied += 1,
                Ok(Written::Kept) => step.present += 1,
                Err(_) => step.failed += 1,
            }
        }
    }
    step.failed += u64::from(unreadable);
    if prune && !is_owner && newest.is_some() && step.failed == 0 {
        let deadline = Instant::now() + snap.config.timeouts.request();
        let call = source.member.backend.remove(key);
        match cluster
            .attempt(snap, &source.member, Op::Repair, key, deadline, call)
            .await
        {
            Ok(()) => step.pruned += 1,
            Err(_) => step.failed += 1,
        }
    }
    step
}
