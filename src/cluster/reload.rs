//! Applying the config file, through one function whatever asked for it (a file event, the
//! checksum poll, a retry, SIGHUP, `POST /admin/reload`): read within bounds, validate, read
//! the files it names, build a new snapshot and swap it in with one store. A file that fails
//! keeps the old snapshot serving. The work runs on a blocking thread, one reload at a time;
//! the status the admin API shows is never held up by a reload in progress.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use twox_hash::XxHash3_64;

use super::change_log::{log_change, Change, Changes};
use super::files::{self, Files};
use super::{Cluster, Snapshot};
use crate::config::{Config, ConfigError};
use crate::lock;
use crate::metrics::Metrics;

/// What made the proxy read its config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The first read, at startup.
    Start,
    /// An event in a watched directory.
    FileEvent,
    /// The checksum poll.
    Poll,
    /// A second look after a rejected read, in case the file was caught half-written.
    Retry,
    /// SIGHUP.
    Signal,
    /// `POST /admin/reload`.
    Admin,
}

impl Trigger {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Trigger::Start => "start",
            Trigger::FileEvent => "file event",
            Trigger::Poll => "poll",
            Trigger::Retry => "retry",
            Trigger::Signal => "signal",
            Trigger::Admin => "admin",
        }
    }
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq)]
pub enum Reloaded {
    /// The file and the files it names are the ones already serving.
    Unchanged,
    /// A new snapshot with this generation is serving.
    Applied(u64),
    /// The file cannot be used; the previous snapshot keeps serving. `repeated` is true when
    /// these same inputs were already rejected (and logged) before.
    Rejected { error: ConfigError, repeated: bool },
}

/// The serving config as `GET /admin/config` shows it.
#[derive(Debug, Clone)]
pub struct ReloadStatus {
    /// sha256 of the file bytes serving, lowercase hex.
    pub sha256: String,
    pub loaded_at: SystemTime,
    /// What triggered the reload that applied the config serving.
    pub applied_by: Trigger,
    /// The last rejection, cleared when the inputs serving are read again or new ones apply.
    pub last_error: Option<(ConfigError, SystemTime)>,
    /// How many times the file has been read for a reload.
    pub checks: u64,
}

/// The inputs of one reload: the YAML's digest and the digest of each file it names.
#[derive(Debug, Clone, PartialEq)]
struct Inputs {
    yaml: u64,
    files: Vec<(PathBuf, u64)>,
}

impl Inputs {
    /// Whether the YAML digest is `yaml` and every file named still has its digest.
    fn still(&self, yaml: u64) -> bool {
        self.yaml == yaml && self.files.iter().all(|(p, d)| files::digest_of(p) == *d)
    }
}

/// What the reloads so far have seen; held for a whole reload, so reloads run one at a time.
struct Seen {
    applied: Inputs,
    rejected: Option<(Inputs, ConfigError)>,
}

type AppliedHook = Box<dyn Fn(&Snapshot) + Send + Sync>;

/// Owns the config path and swaps the cluster's snapshot.
pub(crate) struct Reloader {
    path: PathBuf,
    cluster: Arc<Cluster>,
    seen: Mutex<Seen>,
    status: Mutex<ReloadStatus>,
    on_applied: Mutex<Option<AppliedHook>>,
    changes: Arc<Changes>,
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

/// The directory the files a config names are relative to.
fn config_dir(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The config at `path`, validated, and the files it names, read; with the digests of what
/// was read either way.
fn load(path: &Path, text: &str) -> (Result<(Config, Files), ConfigError>, files::Digests) {
    let config = match Config::from_yaml(text) {
        Ok(config) => config,
        Err(e) => return (Err(e), Vec::new()),
    };
    let (files, digests) = Files::load(&config, &config_dir(path));
    (files.map(|files| (config, files)), digests)
}

impl Reloader {
    /// Loads the config as generation 1 and puts it in service in a new cluster. Fails if the
    /// file cannot be read, is invalid, or names files that cannot be used.
    pub(crate) fn load(path: &Path) -> Result<Arc<Reloader>, ConfigError> {
        let text = crate::config::read_file(path)?;
        let (loaded, digests) = load(path, &text);
        let (config, files) = loaded?;
        let metrics = Metrics::default();
        let snapshot = Snapshot::build(config, &files, 1, None, &metrics, &files::connect);
        Ok(Arc::new(Reloader {
            path: path.to_owned(),
            cluster: Cluster::new(snapshot, &files, metrics),
            seen: Mutex::new(Seen {
                applied: Inputs {
                    yaml: XxHash3_64::oneshot(text.as_bytes()),
                    files: digests,
                },
                rejected: None,
            }),
            status: Mutex::new(ReloadStatus {
                sha256: sha256_hex(&text),
                loaded_at: SystemTime::now(),
                applied_by: Trigger::Start,
                last_error: None,
                checks: 0,
            }),
            on_applied: Mutex::new(None),
            changes: Arc::default(),
        }))
    }

    pub(crate) fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn status(&self) -> ReloadStatus {
        lock(&self.status).clone()
    }

    /// The last applied reloads, newest first, once their summaries are worked out.
    pub(crate) fn recent_changes(&self) -> Vec<Change> {
        self.changes.recent()
    }

    /// Calls `hook` after each applied reload (the demo starts nodes for new loopback URLs).
    pub(crate) fn on_applied(&self, hook: impl Fn(&Snapshot) + Send + Sync + 'static) {
        *lock(&self.on_applied) = Some(Box::new(hook));
    }

    /// Reloads on a blocking thread, then logs and counts the outcome: one line per applied
    /// change or new rejection. Every trigger goes through here.
    pub(crate) async fn reload(self: &Arc<Self>, trigger: Trigger) -> Reloaded {
        let this = self.clone();
        match tokio::task::spawn_blocking(move || this.reload_now(trigger)).await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::error!(error = %e, "reload failed unexpectedly; the previous config keeps serving");
                Reloaded::Unchanged
            }
        }
    }

    /// [`Reloader::reload`] on this thread, for callers that may block.
    pub(crate) fn reload_now(&self, trigger: Trigger) -> Reloaded {
        let outcome = self.apply(trigger);
        let metrics = &self.cluster.metrics;
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
                    trigger = trigger.name(),
                    generation = self.cluster.snapshot().generation,
                    "config rejected; the previous config keeps serving"
                );
            }
            Reloaded::Rejected { repeated: true, .. } => {}
        }
        outcome
    }

    /// Re-reads the file and the files it names; if anything changed and all of it is valid,
    /// swaps in a new snapshot. On error nothing serving changes.
    fn apply(&self, trigger: Trigger) -> Reloaded {
        let mut seen = lock(&self.seen);
        lock(&self.status).checks += 1;
        let text = match crate::config::read_file(&self.path) {
            Ok(text) => text,
            Err(error) => {
                let nothing = Inputs {
                    yaml: 0,
                    files: Vec::new(),
                };
                return self.reject(&mut seen, nothing, error);
            }
        };
        let yaml = XxHash3_64::oneshot(text.as_bytes());
        if seen.applied.still(yaml) {
            seen.rejected = None;
            lock(&self.status).last_error = None;
            return Reloaded::Unchanged;
        }
        if let Some((inputs, error)) = &seen.rejected {
            if inputs.still(yaml) {
                return Reloaded::Rejected {
                    error: error.clone(),
                    repeated: true,
                };
            }
        }
        let (loaded, digests) = load(&self.path, &text);
        let inputs = Inputs {
            yaml,
            files: digests,
        };
        let (config, files) = match loaded {
            Ok(loaded) => loaded,
            Err(error) => return self.reject(&mut seen, inputs, error),
        };
        let old = self.cluster.snapshot();
        let generation = old.generation + 1;
        let new = Arc::new(Snapshot::build(
            config,
            &files,
            generation,
            Some(&old),
            &self.cluster.metrics,
            &files::connect,
        ));
        // The status first: whoever sees the new generation sees what applied it.
        {
            let mut status = lock(&self.status);
            *status = ReloadStatus {
                sha256: sha256_hex(&text),
                loaded_at: SystemTime::now(),
                applied_by: trigger,
                last_error: None,
                checks: status.checks,
            };
        }
        self.cluster.store(new.clone(), &files);
        seen.applied = inputs;
        seen.rejected = None;
        drop(seen);
        // After the swap and on a thread of its own: requests already use the new membership,
        // and the reload is answered, while the summary (seconds at 10,000 nodes) is worked out.
        let (logged, changes) = (new.clone(), self.changes.clone());
        std::thread::spawn(move || log_change(&old, &logged, trigger, &changes));
        if let Some(hook) = &*lock(&self.on_applied) {
            hook(&new);
        }
        Reloaded::Applied(generation)
    }

    fn reject(&self, seen: &mut Seen, inputs: Inputs, error: ConfigError) -> Reloaded {
        let repeated = seen
            .rejected
            .as_ref()
            .is_some_and(|(i, e)| *i == inputs && *e == error);
        seen.rejected = Some((inputs, error.clone()));
        if !repeated {
            lock(&self.status).last_error = Some((error.clone(), SystemTime::now()));
        }
        Reloaded::Rejected { error, repeated }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "nodes:\n  - { id: a, url: \"http://127.0.0.1:1\" }\n";

    fn reloader(dir: &Path, yaml: &str) -> Arc<Reloader> {
        std::fs::write(dir.join("c.yaml"), yaml).unwrap();
        Reloader::load(&dir.join("c.yaml")).unwrap()
    }

    fn tokens(r: &Reloader) -> crate::net::auth::Tokens {
        r.cluster().snapshot().tokens.clone()
    }

    #[test]
    fn unchanged_files_change_nothing_and_a_rejection_is_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        let r = reloader(dir.path(), NODES);
        assert_eq!(r.reload_now(Trigger::Poll), Reloaded::Unchanged);
        std::fs::write(dir.path().join("c.yaml"), "nodes: [").unwrap();
        let first = r.reload_now(Trigger::FileEvent);
        assert!(
            matches!(
                first,
                Reloaded::Rejected {
                    repeated: false,
                    ..
                }
            ),
            "{first:?}"
        );
        let again = r.reload_now(Trigger::Poll);
        assert!(
            matches!(again, Reloaded::Rejected { repeated: true, .. }),
            "{again:?}"
        );
        assert!(r.status().last_error.is_some());
        std::fs::write(dir.path().join("c.yaml"), format!("replicas: 1\n{NODES}")).unwrap();
        assert_eq!(r.reload_now(Trigger::Signal), Reloaded::Applied(2));
        let status = r.status();
        assert!(status.last_error.is_none());
        assert_eq!((status.applied_by, status.checks), (Trigger::Signal, 4));
    }

    #[test]
    fn a_token_file_is_read_again_at_every_reload_even_when_the_yaml_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("data.token"), "one").unwrap();
        let yaml = format!("auth: {{ data_token_file: data.token }}\n{NODES}");
        let r = reloader(dir.path(), &yaml);
        let before = tokens(&r);
        std::fs::write(dir.path().join("data.token"), "two").unwrap();
        assert_eq!(r.reload_now(Trigger::Signal), Reloaded::Applied(2));
        assert_ne!(tokens(&r), before, "the new token is in force");
        assert_eq!(r.reload_now(Trigger::Signal), Reloaded::Unchanged);
    }

    #[test]
    fn a_config_rejected_for_a_missing_file_applies_once_the_file_appears() {
        let dir = tempfile::tempdir().unwrap();
        let r = reloader(dir.path(), NODES);
        let yaml = format!("auth: {{ admin_token_file: admin.token }}\n{NODES}");
        std::fs::write(dir.path().join("c.yaml"), &yaml).unwrap();
        let rejected = r.reload_now(Trigger::FileEvent);
        assert!(
            matches!(&rejected, Reloaded::Rejected { error, repeated: false } if error.to_string().contains("auth.admin_token_file")),
            "{rejected:?}"
        );
        assert!(matches!(
            r.reload_now(Trigger::Poll),
            Reloaded::Rejected { repeated: true, .. }
        ));
        std::fs::write(dir.path().join("admin.token"), "secret").unwrap();
        assert_eq!(r.reload_now(Trigger::Admin), Reloaded::Applied(2));
        assert!(tokens(&r).admin.is_some());
    }
}
