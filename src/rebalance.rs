//! Rebalance: page through the keys of every node that can list them, copy each key to its
//! current top-r nodes where absent, and with `prune` delete it from nodes that no longer own
//! it. Copies use put-if-absent, so a copy never overwrites a value a client wrote meanwhile.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, BackendError};
use crate::key;
use crate::routing::key_hash;
use crate::snapshot::{SharedSnapshot, Snapshot};

/// Keys asked for per listing page.
pub const PAGE: usize = 500;
/// Keys moved at the same time.
pub const CONCURRENCY: usize = 16;

#[derive(Debug, Clone)]
pub struct Options {
    /// Delete keys from nodes that are not among their top-r (after they are safe there).
    pub prune: bool,
    /// Keys per second at most; `None` for no limit.
    pub rate: Option<f64>,
    /// Where to start: resume an interrupted run.
    pub resume: Option<Cursor>,
}

/// How far a run got: the node being listed and the last key done on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub node: String,
    /// Percent-encoded.
    pub after: String,
}

/// Counters of a run, as `GET /admin/rebalance` and the CLI show them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Progress {
    /// "running", "done" or "idle".
    pub state: &'static str,
    pub generation: u64,
    pub prune: bool,
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
    pub failed: u64,
    /// Nodes that cannot list their keys, or whose listing failed.
    pub skipped_nodes: Vec<String>,
    pub elapsed_ms: u64,
}

/// One listed node: the current replicas or, while a handoff window is open, a node that
/// left (never an owner, so `prune` drains it).
struct Source {
    id: String,
    /// Id and URL: the same storage across snapshots.
    identity: (String, String),
    backend: Arc<dyn Backend>,
    /// Its index in the current ring, if it is in it.
    index: Option<usize>,
}

fn identity(snap: &Snapshot, index: usize) -> (String, String) {
    let (id, url) = snap.node_identity(index);
    (id.to_owned(), url.to_owned())
}

fn sources(snap: &Snapshot) -> Vec<Arc<Source>> {
    let mut sources: Vec<Source> = (0..snap.ring.len())
        .map(|i| Source {
            identity: identity(snap, i),
            id: snap.node_id(i).to_owned(),
            backend: snap.backends[i].clone(),
            index: Some(i),
        })
        .collect();
    let now = Instant::now();
    for retired in snap.previous.iter().filter(|r| r.is_open(now)) {
        let old = &retired.snapshot;
        for i in 0..old.ring.len() {
            if !sources.iter().any(|s| s.identity == identity(old, i)) {
                sources.push(Source {
                    identity: identity(old, i),
                    id: old.node_id(i).to_owned(),
                    backend: old.backends[i].clone(),
                    index: None,
                });
            }
        }
    }
    sources.sort_by(|a, b| {
        a.id.cmp(&b.id)
            .then(a.index.is_none().cmp(&b.index.is_none()))
    });
    sources.into_iter().map(Arc::new).collect()
}

/// Runs one rebalance over `snap`, updating `progress` as it goes; `on_page` sees the cursor
/// after each page (the CLI saves it to resume).
pub async fn run(
    snap: Arc<Snapshot>,
    options: Options,
    progress: &Mutex<Progress>,
    mut on_page: impl FnMut(&Progress),
) -> Progress {
    let started = Instant::now();
    let sources = sources(&snap);
    let update = |f: &mut dyn FnMut(&mut Progress)| {
        let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut p);
        p.elapsed_ms = started.elapsed().as_millis() as u64;
        p.clone()
    };
    update(&mut |p| {
        *p = Progress {
            state: "running",
            generation: snap.generation,
            prune: options.prune,
            nodes_total: sources.len(),
            ..Progress::default()
        }
    });
    let timeout = snap.config.timeouts.request();
    let mut resume = options.resume.clone();
    let mut done_keys = 0u64;
    for source in &sources {
        let mut after: Option<Bytes> = None;
        if let Some(cursor) = &resume {
            if cursor.node != source.id {
                update(&mut |p| p.nodes_done += 1);
                continue;
            }
            after = key::decode(&cursor.after, usize::MAX)
                .ok()
                .map(|k| Bytes::from(k.into_owned()))
                .filter(|k| !k.is_empty());
            resume = None;
        }
        loop {
            let page = match with_timeout(timeout, source.backend.list(after.as_deref(), PAGE))
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    if e != BackendError::Unsupported {
                        tracing::warn!(node = %source.id, error = %e, "rebalance: cannot list keys; skipping the node");
                    }
                    update(&mut |p| p.skipped_nodes.push(format!("{}: {e}", source.id)));
                    break;
                }
            };
            // Keys of a page move concurrently; the cursor only passes a page once all of it
            // is done, so a resumed run skips nothing.
            let mut in_flight = tokio::task::JoinSet::new();
            for key in &page {
                if let Some(rate) = options.rate {
                    let due = started + Duration::from_secs_f64(done_keys as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                done_keys += 1;
                if in_flight.len() >= CONCURRENCY {
                    if let Some(Ok(step)) = in_flight.join_next().await {
                        update(&mut |p| p.add(&step));
                    }
                }
                let (snap, source, key) = (snap.clone(), source.clone(), key.clone());
                in_flight.spawn(async move {
                    move_key(&snap, &source, &key, options.prune, timeout).await
                });
            }
            while let Some(joined) = in_flight.join_next().await {
                if let Ok(step) = joined {
                    update(&mut |p| p.add(&step));
                }
            }
            let complete = page.len() < PAGE;
            after = page.last().cloned().or(after);
            let snapshot = update(&mut |p| {
                p.cursor = Some(Cursor {
                    node: source.id.clone(),
                    after: after.as_deref().map(key::encode).unwrap_or_default(),
                })
            });
            on_page(&snapshot);
            if complete {
                break;
            }
        }
        update(&mut |p| p.nodes_done += 1);
    }
    update(&mut |p| {
        p.state = "done";
        p.cursor = None;
    })
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

#[derive(Default)]
struct Step {
    copied: u64,
    present: u64,
    pruned: u64,
    failed: u64,
}

/// Puts one key of `source` where it belongs.
async fn move_key(
    snap: &Snapshot,
    source: &Source,
    key: &Bytes,
    prune: bool,
    timeout: Duration,
) -> Step {
    let mut step = Step::default();
    let owners = snap.ring.top(key_hash(key), snap.config.replicas);
    let is_owner = source.index.is_some_and(|i| owners.iter().any(|o| o == i));
    let targets: Vec<usize> = owners.iter().filter(|&o| Some(o) != source.index).collect();
    let value = match with_timeout(timeout, source.backend.get(key)).await {
        Ok(Some(value)) => value,
        Ok(None) => return step, // deleted since it was listed
        Err(e) => {
            tracing::warn!(node = %source.id, error = %e, "rebalance: cannot read a key");
            step.failed += 1;
            return step;
        }
    };
    let mut safe = true;
    for index in targets {
        match with_timeout(
            timeout,
            snap.backends[index].put_if_absent(key, value.clone(), None),
        )
        .await
        {
            Ok(true) => step.copied += 1,
            Ok(false) => step.present += 1,
            Err(e) => {
                tracing::warn!(node = snap.node_id(index), error = %e, "rebalance: copy failed");
                step.failed += 1;
                safe = false;
            }
        }
    }
    if prune && !is_owner && safe {
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

async fn with_timeout<T>(
    timeout: Duration,
    call: impl std::future::Future<Output = Result<T, BackendError>>,
) -> Result<T, BackendError> {
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or(Err(BackendError::Timeout(timeout.as_millis() as u64)))
}

/// The proxy's rebalance: one run at a time, in the background, progress kept for
/// `GET /admin/rebalance`.
#[derive(Debug, Default)]
pub struct Rebalancer {
    progress: Arc<Mutex<Progress>>,
    started_at: Mutex<Option<SystemTime>>,
}

impl Rebalancer {
    /// Starts a run on the snapshot serving now; refuses while one is running.
    pub fn start(&self, shared: SharedSnapshot, options: Options) -> Result<(), String> {
        let snap = shared.load_full();
        {
            let mut p = self.progress.lock().unwrap_or_else(|e| e.into_inner());
            if p.state == "running" {
                return Err(
                    "a rebalance is already running; follow it with GET /admin/rebalance".into(),
                );
            }
            *p = Progress {
                state: "running",
                generation: snap.generation,
                prune: options.prune,
                ..Progress::default()
            };
        }
        *self.started_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(SystemTime::now());
        let progress = self.progress.clone();
        tokio::spawn(async move {
            let report = run(snap, options, &progress, |_| {}).await;
            tracing::info!(
                scanned = report.scanned,
                copied = report.copied,
                present = report.present,
                pruned = report.pruned,
                failed = report.failed,
                skipped = ?report.skipped_nodes,
                elapsed_ms = report.elapsed_ms,
                "rebalance finished"
            );
        });
        Ok(())
    }

    pub fn progress_json(&self) -> serde_json::Value {
        let mut p = self
            .progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if p.state.is_empty() {
            p.state = "idle";
        }
        let mut value = serde_json::to_value(&p).unwrap_or_default();
        if let Some(at) = *self.started_at.lock().unwrap_or_else(|e| e.into_inner()) {
            value["started_at"] = humantime::format_rfc3339_seconds(at).to_string().into();
        }
        value
    }
}
