//! Rebalance: page through the keys of every node that can list them, copy each key to its
//! current top-r nodes where absent, and with `prune` delete it from nodes that no longer own
//! it. Copies use put-if-absent and respect client writes made meanwhile (see
//! [`handoff::copy_where_absent`]), so a copy never overwrites or resurrects anything.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::backend::{with_timeout, Backend, BackendError};
use crate::handoff;
use crate::key;
use crate::lock;
use crate::snapshot::{SharedSnapshot, Snapshot};

/// Keys asked for per listing page.
pub const PAGE: usize = 500;
/// Keys moved at the same time.
pub const CONCURRENCY: usize = 16;
/// The accepted range of `rate`, in keys per second.
pub const MIN_RATE: f64 = 0.01;
pub const MAX_RATE: f64 = 1e7;

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Delete keys from nodes that are not among their top-r (after they are safe there).
    pub prune: bool,
    /// Keys per second at most; `None` for no limit.
    pub rate: Option<f64>,
    /// Where to start: resume an interrupted run.
    pub resume: Option<Cursor>,
}

/// Checks a rate given by a user.
pub fn valid_rate(rate: f64) -> Result<f64, String> {
    if rate.is_finite() && (MIN_RATE..=MAX_RATE).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!(
            "rate {rate} must be from {MIN_RATE} to {MAX_RATE} keys per second"
        ))
    }
}

/// How far a run got: the node being listed (nodes go in id order) and the last key done on
/// it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub node: String,
    /// Percent-encoded.
    pub after: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    #[default]
    Idle,
    Running,
    Done,
    /// The run stopped unexpectedly (a bug); see the log.
    Aborted,
}

/// Counters of a run, as `GET /admin/rebalance` and the CLI show them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Progress {
    pub state: State,
    pub generation: u64,
    pub prune: bool,
    #[serde(serialize_with = "rfc3339")]
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

/// One listed node: a node of the current ring or, while a handoff window is open, a node
/// that left (never an owner, so `prune` drains it).
struct Source {
    id: String,
    backend: Arc<dyn Backend>,
    /// Its index in the current ring, if it is in it.
    index: Option<usize>,
}

/// Every node to list, once per id, in id order.
fn sources(snap: &Snapshot) -> Vec<Arc<Source>> {
    let mut sources: Vec<Source> = (0..snap.ring.len())
        .map(|i| Source {
            id: snap.node_id(i).to_owned(),
            backend: snap.backends[i].clone(),
            index: Some(i),
        })
        .collect();
    for retired in snap.open_windows() {
        let old = &retired.snapshot;
        for i in 0..old.ring.len() {
            if !sources.iter().any(|s| s.id == old.node_id(i)) {
                sources.push(Source {
                    id: old.node_id(i).to_owned(),
                    backend: old.backends[i].clone(),
                    index: None,
                });
            }
        }
    }
    sources.sort_by(|a, b| a.id.cmp(&b.id));
    sources.into_iter().map(Arc::new).collect()
}

/// Runs one rebalance over `snap`, updating `progress` as it goes; `on_page` sees the progress
/// after each page (the CLI saves the cursor to resume).
pub async fn run(
    snap: Arc<Snapshot>,
    options: Options,
    progress: &Mutex<Progress>,
    mut on_page: impl FnMut(&Progress),
) -> Progress {
    let _recording = snap.recent_writes.rebalancing();
    let started = Instant::now();
    let sources = sources(&snap);
    let update = |f: &mut dyn FnMut(&mut Progress)| {
        let mut p = lock(progress);
        f(&mut p);
        p.elapsed_ms = started.elapsed().as_millis() as u64;
        p.clone()
    };
    update(&mut |p| {
        *p = Progress {
            state: State::Running,
            generation: snap.generation,
            prune: options.prune,
            started_at: Some(SystemTime::now()),
            nodes_total: sources.len(),
            ..Progress::default()
        }
    });
    let timeout = snap.config.timeouts.request();
    let mut moved = 0u64;
    for source in &sources {
        let mut after: Option<Bytes> = None;
        if let Some(cursor) = &options.resume {
            // Nodes before the cursor's were done; on its node, resume after its key.
            if source.id < cursor.node {
                update(&mut |p| p.nodes_done += 1);
                continue;
            }
            if source.id == cursor.node {
                after = key::decode(&cursor.after, usize::MAX)
                    .ok()
                    .filter(|k| !k.is_empty())
                    .map(|k| Bytes::from(k.into_owned()));
            }
        }
        loop {
            let listing = with_timeout(timeout, source.backend.list(after.as_deref(), PAGE)).await;
            let page = match listing {
                Ok(page) => page,
                Err(e) => {
                    if e != BackendError::Unsupported {
                        tracing::warn!(node = %source.id, error = %e, "rebalance: cannot list keys; skipping the rest of the node");
                    }
                    update(&mut |p| {
                        p.skipped_nodes.push(format!("{}: {e}", source.id));
                        p.failed += u64::from(e != BackendError::Unsupported);
                    });
                    break;
                }
            };
            // Keys of a page move concurrently; the cursor only passes a page once all of it
            // is done, so a resumed run skips nothing.
            let mut in_flight = tokio::task::JoinSet::new();
            for key in &page {
                if let Some(rate) = options.rate {
                    let due = started + Duration::from_secs_f64(moved as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                moved += 1;
                if in_flight.len() >= CONCURRENCY {
                    if let Some(Ok(step)) = in_flight.join_next().await {
                        update(&mut |p| p.add(&step));
                    }
                }
                let (snap, source, key) = (snap.clone(), source.clone(), key.clone());
                let prune = options.prune;
                in_flight.spawn(async move { move_key(&snap, &source, &key, prune).await });
            }
            while let Some(joined) = in_flight.join_next().await {
                if let Ok(step) = joined {
                    update(&mut |p| p.add(&step));
                }
            }
            let complete = page.len() < PAGE;
            after = page.last().cloned().or(after);
            let now = update(&mut |p| {
                p.cursor = Some(Cursor {
                    node: source.id.clone(),
                    after: after.as_deref().map(key::encode).unwrap_or_default(),
                })
            });
            on_page(&now);
            if complete {
                break;
            }
        }
        update(&mut |p| p.nodes_done += 1);
    }
    update(&mut |p| {
        p.state = State::Done;
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

/// Puts one key of `source` where it belongs.
async fn move_key(snap: &Snapshot, source: &Source, key: &Bytes, prune: bool) -> Step {
    let timeout = snap.config.timeouts.request();
    let mut step = Step::default();
    let began = Instant::now();
    let owners = snap.replicas(key);
    let is_owner = source.index.is_some_and(|i| owners.iter().any(|o| o == i));
    let value = match with_timeout(timeout, source.backend.get(key)).await {
        Ok(Some(value)) => value,
        Ok(None) => return step, // deleted since it was listed
        Err(e) => {
            tracing::warn!(node = %source.id, error = %e, "rebalance: cannot read a key");
            step.failed += 1;
            return step;
        }
    };
    let targets = owners.iter().filter(|&o| Some(o) != source.index);
    let copy = handoff::copy_where_absent(snap, key, &value, targets, began).await;
    step.copied = copy.stored;
    step.present = copy.present;
    step.failed = copy.failed;
    if prune && !is_owner && copy.failed == 0 {
        match with_timeout(timeout, source.backend.delete(key)).await {
            Ok(()) => step.pruned += 1,
            Err(e) => {
                tracing::warn!(node = %source.id, error = %e, "rebalance: prune failed");
                step.failed += 1;
            }
        }
    }
    step
}

/// The proxy's rebalance: one run at a time, in the background, progress kept for
/// `GET /admin/rebalance`.
#[derive(Debug, Default)]
pub struct Rebalancer {
    progress: Arc<Mutex<Progress>>,
}

impl Rebalancer {
    /// Starts a run on the snapshot serving now; refuses while one is running.
    pub fn start(&self, shared: SharedSnapshot, options: Options) -> Result<(), String> {
        let snap = shared.load_full();
        {
            let mut p = lock(&self.progress);
            if p.state == State::Running {
                return Err(
                    "a rebalance is already running; follow it with GET /admin/rebalance".into(),
                );
            }
            *p = Progress {
                state: State::Running,
                generation: snap.generation,
                prune: options.prune,
                started_at: Some(SystemTime::now()),
                ..Progress::default()
            };
        }
        let progress = self.progress.clone();
        let task = tokio::spawn({
            let progress = progress.clone();
            async move { run(snap, options, &progress, |_| {}).await }
        });
        tokio::spawn(async move {
            match task.await {
                Ok(report) => tracing::info!(
                    scanned = report.scanned,
                    copied = report.copied,
                    present = report.present,
                    pruned = report.pruned,
                    failed = report.failed,
                    skipped = ?report.skipped_nodes,
                    elapsed_ms = report.elapsed_ms,
                    "rebalance finished"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "rebalance aborted");
                    lock(&progress).state = State::Aborted;
                }
            }
        });
        Ok(())
    }

    pub fn progress(&self) -> Progress {
        lock(&self.progress).clone()
    }
}
