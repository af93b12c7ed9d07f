//! Following the config file: watch its directory, debounce, re-read, validate, build a new
//! snapshot and swap it in with one store. A config that fails keeps the old one serving.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use twox_hash::XxHash3_64;

use crate::config::Config;
use crate::error::ConfigError;
use crate::snapshot::{SharedSnapshot, Snapshot};

/// Quiet time after the last file event before the file is read: editors write in steps.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    /// The file's bytes are the ones already applied.
    Unchanged,
    /// A new snapshot with this generation is serving.
    Applied(u64),
}

type AppliedHook = Box<dyn Fn(&Snapshot) + Send + Sync>;

/// Owns the path and the live snapshot; every reload goes through [`Reloader::reload`].
pub struct Reloader {
    path: PathBuf,
    shared: SharedSnapshot,
    /// Hash of the file bytes last applied; also serialises reloads.
    applied_hash: Mutex<u64>,
    /// How many times the file was read for a reload.
    checks: AtomicU64,
    /// Whether the last reload was rejected, so that fixing it is logged too.
    rejected: AtomicBool,
    on_applied: Mutex<Option<AppliedHook>>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("path", &self.path)
            .finish()
    }
}

fn read(path: &Path) -> Result<(String, u64), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let hash = XxHash3_64::oneshot(text.as_bytes());
    Ok((text, hash))
}

impl Reloader {
    /// Loads the config as generation 1. Fails if the file cannot be read or is invalid.
    pub fn load(path: &Path) -> Result<Arc<Reloader>, ConfigError> {
        let (text, hash) = read(path)?;
        let config = Config::from_yaml(&text)?;
        let snapshot = Snapshot::build(config, 1, None);
        Ok(Arc::new(Reloader {
            path: path.to_owned(),
            shared: Arc::new(ArcSwap::from_pointee(snapshot)),
            applied_hash: Mutex::new(hash),
            checks: AtomicU64::new(0),
            rejected: AtomicBool::new(false),
            on_applied: Mutex::new(None),
        }))
    }

    /// The live snapshot, for the request handler.
    pub fn shared(&self) -> SharedSnapshot {
        self.shared.clone()
    }

    /// How many times the file has been read for a reload (by the watcher or [`Reloader::reload`]).
    pub fn checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Calls `hook` after each applied reload (the demo starts nodes for new loopback URLs).
    pub fn on_applied(&self, hook: impl Fn(&Snapshot) + Send + Sync + 'static) {
        *self.on_applied.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(hook));
    }

    /// Re-reads the file and, if its bytes changed and it is valid, swaps in a new snapshot.
    /// On error nothing changes.
    pub fn reload(&self) -> Result<Reloaded, ConfigError> {
        let mut applied_hash = self.applied_hash.lock().unwrap_or_else(|e| e.into_inner());
        self.checks.fetch_add(1, Ordering::Relaxed);
        let (text, hash) = read(&self.path)?;
        if hash == *applied_hash {
            return Ok(Reloaded::Unchanged);
        }
        let config = Config::from_yaml(&text)?;
        let old = self.shared.load_full();
        let generation = old.generation + 1;
        let new = Arc::new(Snapshot::build(config, generation, Some(&old)));
        self.shared.store(new.clone());
        *applied_hash = hash;
        drop(applied_hash);
        log_change(&old, &new);
        if let Some(hook) = &*self.on_applied.lock().unwrap_or_else(|e| e.into_inner()) {
            hook(&new);
        }
        Ok(Reloaded::Applied(generation))
    }

    /// Reloads and logs the outcome: one line per applied or rejected change.
    pub fn reload_logged(&self) -> Option<u64> {
        let result = self.reload();
        let was_rejected = self.rejected.swap(result.is_err(), Ordering::Relaxed);
        match result {
            Ok(Reloaded::Applied(generation)) => Some(generation),
            Ok(Reloaded::Unchanged) => {
                if was_rejected {
                    tracing::info!(
                        path = %self.path.display(),
                        generation = self.shared.load().generation,
                        "config valid again and unchanged from the one serving"
                    );
                }
                None
            }
            Err(e) => {
                tracing::error!(
                    path = %self.path.display(),
                    error = %e,
                    generation = self.shared.load().generation,
                    "config rejected; the previous config keeps serving"
                );
                None
            }
        }
    }

    /// Watches the config file's directory (so saves by rename are seen as well as in-place
    /// writes) and reloads after each burst of events. Stops when the returned task is aborted.
    pub fn watch(self: &Arc<Self>) -> notify::Result<JoinHandle<()>> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let file_name = self.path.file_name().map(|n| n.to_owned());
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                match &event {
                    Ok(event) if !concerns(event, file_name.as_deref()) => return,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "config watcher error; re-reading the file")
                    }
                }
                let _ = tx.send(());
            })?;
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        let this = self.clone();
        Ok(tokio::spawn(async move {
            let _watcher = watcher;
            while rx.recv().await.is_some() {
                loop {
                    match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                        Ok(Some(())) => continue,
                        Ok(None) => return,
                        Err(_quiet) => break,
                    }
                }
                this.reload_logged();
            }
        }))
    }
}

/// Whether a directory event may have changed the config file. Reads are ignored (our own
/// re-read would trigger the next one), and so are other files in the directory.
fn concerns(event: &notify::Event, file_name: Option<&std::ffi::OsStr>) -> bool {
    if matches!(event.kind, notify::EventKind::Access(_)) {
        return false;
    }
    event.need_rescan()
        || event.paths.is_empty()
        || event.paths.iter().any(|p| p.file_name() == file_name)
}

/// One line per applied reload: the generation and what changed in the membership.
fn log_change(old: &Snapshot, new: &Snapshot) {
    let (old_cfg, new_cfg) = (&old.config, &new.config);
    let find = |cfg: &Config, id: &str| cfg.nodes.iter().find(|n| n.id.as_str() == id).cloned();
    let added: Vec<&str> = new_cfg
        .nodes
        .iter()
        .filter(|n| find(old_cfg, n.id.as_str()).is_none())
        .map(|n| n.id.as_str())
        .collect();
    let removed: Vec<&str> = old_cfg
        .nodes
        .iter()
        .filter(|n| find(new_cfg, n.id.as_str()).is_none())
        .map(|n| n.id.as_str())
        .collect();
    let mut reweighted = Vec::new();
    let mut moved = Vec::new();
    for n in &new_cfg.nodes {
        if let Some(o) = find(old_cfg, n.id.as_str()) {
            if o.weight != n.weight {
                reweighted.push(format!("{}:{}->{}", n.id, o.weight.get(), n.weight.get()));
            }
            if o.url != n.url {
                moved.push(format!("{}:{}->{}", n.id, o.url, n.url));
            }
        }
    }
    tracing::info!(
        generation = new.generation,
        nodes = new_cfg.nodes.len(),
        replicas = new_cfg.replicas,
        write_quorum = new_cfg.write_quorum,
        added = ?added,
        removed = ?removed,
        reweighted = ?reweighted,
        moved = ?moved,
        "config reloaded"
    );
    if old_cfg.listen != new_cfg.listen {
        tracing::warn!(
            old = %old_cfg.listen,
            new = %new_cfg.listen,
            "listen changed; restart hrwproxy to apply it (still serving on the old address)"
        );
    }
}
