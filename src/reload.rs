//! Applying the config file: re-read, validate, build a new snapshot and swap it in with one
//! store. A file that fails keeps the old snapshot serving. Every trigger (file watcher, poll,
//! SIGHUP, `POST /admin/reload`) goes through [`Reloader::reload`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::lock;
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use twox_hash::XxHash3_64;

use crate::config::{read_file, Config};
use crate::error::ConfigError;
use crate::routing::change::ChangeSummary;
use crate::snapshot::{Files, SharedSnapshot, Snapshot};

/// Keys sampled for the change summary logged at each reload.
pub const RELOAD_SUMMARY_KEYS: usize = 20_000;

/// What a reload did.
#[derive(Debug, Clone, PartialEq)]
pub enum Reloaded {
    /// The file's bytes are the ones already serving.
    Unchanged,
    /// A new snapshot with this generation is serving.
    Applied(u64),
    /// The file cannot be used; the previous snapshot keeps serving. `repeated` is true when
    /// these same bytes were already rejected (and logged) before.
    Rejected { error: ConfigError, repeated: bool },
}

/// The serving config as `GET /admin/config` shows it.
#[derive(Debug, Clone)]
pub struct Status {
    /// sha256 of the file bytes serving, lowercase hex.
    pub sha256: String,
    pub loaded_at: SystemTime,
    /// The last rejection, cleared when the file serving is read again or a new one applies.
    pub last_error: Option<(ConfigError, SystemTime)>,
    /// How many times the file has been read for a reload.
    pub checks: u64,
}

type AppliedHook = Box<dyn Fn(&Snapshot) + Send + Sync>;

struct State {
    /// xxh3 of the bytes serving, to skip rereads that change nothing.
    applied_hash: u64,
    /// xxh3 of the bytes last rejected, so the poll does not log the same error every time.
    rejected_hash: Option<u64>,
    status: Status,
}

/// Owns the path and the live snapshot.
pub struct Reloader {
    path: PathBuf,
    shared: SharedSnapshot,
    /// Also serialises reloads.
    state: Mutex<State>,
    on_applied: Mutex<Option<AppliedHook>>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("path", &self.path)
            .finish()
    }
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Reloader {
    /// Loads the config as generation 1. Fails if the file cannot be read or is invalid.
    pub fn load(path: &Path) -> Result<Arc<Reloader>, ConfigError> {
        let text = read_file(path)?;
        let config = Config::from_yaml(&text)?;
        let files = Files::load(&config, &config_dir(path))?;
        let snapshot = Snapshot::build_with(config, files, 1, None);
        Ok(Arc::new(Reloader {
            path: path.to_owned(),
            shared: Arc::new(ArcSwap::from_pointee(snapshot)),
            state: Mutex::new(State {
                applied_hash: XxHash3_64::oneshot(text.as_bytes()),
                rejected_hash: None,
                status: Status {
                    sha256: sha256_hex(&text),
                    loaded_at: SystemTime::now(),
                    last_error: None,
                    checks: 0,
                },
            }),
            on_applied: Mutex::new(None),
        }))
    }

    /// The live snapshot, for the request handler.
    pub fn shared(&self) -> SharedSnapshot {
        self.shared.clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn status(&self) -> Status {
        lock(&self.state).status.clone()
    }

    /// Calls `hook` after each applied reload (the demo starts nodes for new loopback URLs).
    pub fn on_applied(&self, hook: impl Fn(&Snapshot) + Send + Sync + 'static) {
        *lock(&self.on_applied) = Some(Box::new(hook));
    }

    /// Re-reads the file and, if its bytes changed and it is valid, swaps in a new snapshot.
    /// On error nothing serving changes.
    pub fn reload(&self) -> Reloaded {
        let mut state = lock(&self.state);
        state.status.checks += 1;
        let text = match read_file(&self.path) {
            Ok(text) => text,
            Err(error) => return state.reject(None, error),
        };
        let hash = XxHash3_64::oneshot(text.as_bytes());
        if hash == state.applied_hash {
            state.rejected_hash = None;
            state.status.last_error = None;
            return Reloaded::Unchanged;
        }
        if state.rejected_hash == Some(hash) {
            if let Some((error, _)) = &state.status.last_error {
                return Reloaded::Rejected {
                    error: error.clone(),
                    repeated: true,
                };
            }
        }
        let loaded = Config::from_yaml(&text).and_then(|config| {
            let files = Files::load(&config, &config_dir(&self.path))?;
            Ok((config, files))
        });
        let (config, files) = match loaded {
            Ok(loaded) => loaded,
            Err(error) => return state.reject(Some(hash), error),
        };
        let old = self.shared.load_full();
        let generation = old.generation + 1;
        let new = Arc::new(Snapshot::build_with(config, files, generation, Some(&old)));
        self.shared.store(new.clone());
        state.applied_hash = hash;
        state.rejected_hash = None;
        state.status = Status {
            sha256: sha256_hex(&text),
            loaded_at: SystemTime::now(),
            last_error: None,
            checks: state.status.checks,
        };
        drop(state);
        log_change(&old, &new);
        if let Some(hook) = &*lock(&self.on_applied) {
            hook(&new);
        }
        Reloaded::Applied(generation)
    }

    /// Reloads and logs the outcome: one line per applied change or new rejection.
    pub fn reload_logged(&self) -> Reloaded {
        let outcome = self.reload();
        let metrics = self.shared.load().metrics.clone();
        match &outcome {
            Reloaded::Applied(_) => metrics.reload_applied(),
            Reloaded::Unchanged => {
                metrics.config_last_reload_success.set(1);
            }
            Reloaded::Rejected {
                error,
                repeated: false,
            } => {
                metrics.reload_rejected();
                tracing::error!(
                    path = %self.path.display(),
                    error = %error,
                    generation = self.shared.load().generation,
                    "config rejected; the previous config keeps serving"
                );
            }
            Reloaded::Rejected { repeated: true, .. } => {}
        }
        outcome
    }
}

/// The directory token file paths are relative to.
fn config_dir(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

impl State {
    fn reject(&mut self, hash: Option<u64>, error: ConfigError) -> Reloaded {
        let repeated = self.rejected_hash == hash
            && self.status.last_error.as_ref().map(|(e, _)| e) == Some(&error);
        self.rejected_hash = hash;
        if !repeated {
            self.status.last_error = Some((error.clone(), SystemTime::now()));
        }
        Reloaded::Rejected { error, repeated }
    }
}

/// One line per applied reload: the generation, what changed in the membership, and what the
/// change does to placement.
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
    let started = Instant::now();
    let summary = ChangeSummary::sample(
        (&old.ring, old_cfg.replicas),
        (&new.ring, new_cfg.replicas),
        RELOAD_SUMMARY_KEYS,
    );
    tracing::info!(
        generation = new.generation,
        nodes = new_cfg.nodes.len(),
        replicas = new_cfg.replicas,
        write_quorum = new_cfg.write_quorum,
        added = ?added,
        removed = ?removed,
        reweighted = ?reweighted,
        moved = ?moved,
        replica_sets_changed = %format!("{:.2}%", summary.replica_sets_changed * 100.0),
        primaries_changed = %format!("{:.2}%", summary.primaries_changed * 100.0),
        handoff_window_s = if new.placement_changed { new_cfg.handoff_window_s } else { 0 },
        summary_ms = started.elapsed().as_millis() as u64,
        "config reloaded"
    );
    if old_cfg.listen != new_cfg.listen
        || old_cfg.admin != new_cfg.admin
        || old_cfg.tls.serves_https() != new_cfg.tls.serves_https()
        || old_cfg.limits != new_cfg.limits
    {
        tracing::warn!(
            old_listen = %old_cfg.listen,
            new_listen = %new_cfg.listen,
            old_admin = %old_cfg.admin,
            new_admin = %new_cfg.admin,
            "listen, admin, HTTPS on or off, or limits changed; restart hrwproxy to apply them (the listeners keep their old settings)"
        );
    }
}
