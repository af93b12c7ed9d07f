//! What makes the proxy read its config, besides `POST /admin/reload`: events in the
//! directories that lead to the file (debounced), a checksum poll as the safety net for lost
//! events, one retry after a rejected read in case the file was caught half-written, and
//! SIGHUP. All of them go through [`Reloader::reload`].
//!
//! The directories watched are re-resolved after every look at the file: the config's own
//! directory, the directory holding each symlink met on the way to the file (so re-pointing
//! `current -> releases/N`, or Kubernetes' `..data` swap, is an event), and the directory the
//! file really is in (so edits after a re-pointing are seen too).

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::reload::{Reloaded, Reloader, Trigger};

/// Quiet time after the last file event before the file is read: editors write in steps.
pub(crate) const DEBOUNCE: Duration = Duration::from_millis(100);
/// Symlinks followed at most on the way to the config file.
const MAX_LINKS: usize = 40;

/// The directories to watch, and the names in them that lead to the config file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Targets {
    dirs: BTreeSet<PathBuf>,
    names: BTreeSet<OsString>,
}

impl Targets {
    fn add(&mut self, path: &Path) {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        if let Some(name) = path.file_name() {
            self.names.insert(name.to_owned());
        }
        self.dirs.insert(dir);
    }
}

/// Every place whose change can change what `path` reads: the path's own directory, each
/// symlink met while resolving it (in the directory that holds it), and the file it resolves
/// to.
fn targets(path: &Path) -> Targets {
    let mut targets = Targets::default();
    targets.add(path);
    let mut current = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    'resolve: for _ in 0..MAX_LINKS {
        let mut prefix = PathBuf::new();
        let mut components = current.components();
        while let Some(component) = components.next() {
            prefix.push(component);
            if !matches!(component, Component::Normal(_)) {
                continue;
            }
            let Ok(link) = std::fs::read_link(&prefix) else {
                continue;
            };
            targets.add(&prefix);
            let base = prefix.parent().map(Path::to_path_buf).unwrap_or_default();
            let mut next = base.join(link);
            next.extend(components);
            current = normalize(&next);
            continue 'resolve;
        }
        break;
    }
    targets.add(&current);
    targets
}

/// `a/b/../c` as `a/c`, without touching the file system (symlinks were resolved already).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Whether a directory event may have changed the config. Reads are ignored (our own re-read
/// would trigger the next one), and so are unrelated files; names starting with `..` are the
/// Kubernetes ConfigMap machinery (`..data` swapped to a new `..<timestamp>` directory).
fn concerns(event: &notify::Event, names: &BTreeSet<OsString>) -> bool {
    if matches!(event.kind, EventKind::Access(_)) {
        return false;
    }
    let relevant =
        |name: &OsStr| names.contains(name) || name.as_encoded_bytes().starts_with(b"..");
    event.need_rescan()
        || event.paths.is_empty()
        || event
            .paths
            .iter()
            .any(|p| p.file_name().is_some_and(relevant))
}

/// A watcher and what it watches, re-aimed when the way to the file changes.
struct Watch {
    watcher: RecommendedWatcher,
    watching: Targets,
    names: Arc<std::sync::Mutex<BTreeSet<OsString>>>,
}

impl Watch {
    fn new(path: &Path, tx: mpsc::UnboundedSender<()>) -> notify::Result<Watch> {
        let names: Arc<std::sync::Mutex<BTreeSet<OsString>>> = Arc::default();
        let filter = names.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            match &event {
                Ok(event) if !concerns(event, &crate::lock(&filter)) => return,
                Ok(_) => {}
                // An overflowed queue or a watcher error: whatever was missed, a full re-read
                // sees.
                Err(e) => tracing::warn!(error = %e, "config watcher error; re-reading the file"),
            }
            let _ = tx.send(());
        })?;
        let mut watch = Watch {
            watcher,
            watching: Targets::default(),
            names,
        };
        watch.aim(path)?;
        Ok(watch)
    }

    /// Watches what leads to `path` now, and stops watching what no longer does.
    /// Only directories actually watched are recorded, so one that could not be watched
    /// (not there yet, or out of inotify watches) is tried again at the next look.
    fn aim(&mut self, path: &Path) -> notify::Result<()> {
        let wanted = targets(path);
        if wanted == self.watching {
            return Ok(());
        }
        let stale: Vec<PathBuf> = self
            .watching
            .dirs
            .difference(&wanted.dirs)
            .cloned()
            .collect();
        for dir in stale {
            let _ = self.watcher.unwatch(&dir);
            self.watching.dirs.remove(&dir);
        }
        let mut result = Ok(());
        for dir in wanted
            .dirs
            .difference(&self.watching.dirs)
            .cloned()
            .collect::<Vec<_>>()
        {
            match self.watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watching.dirs.insert(dir);
                }
                // A directory that does not exist (yet) is watched once it leads to the file.
                Err(e) if dir.exists() => result = Err(e),
                Err(_) => {}
            }
        }
        crate::lock(&self.names).clone_from(&wanted.names);
        self.watching.names = wanted.names;
        result
    }
}

/// Why the trigger task woke up.
enum Wake {
    FileEvent,
    Poll,
    Retry,
    Signal,
}

/// Starts following the config file; also on SIGHUP when `sighup`. The watch is in place when
/// this returns. Stops when the returned task is aborted.
pub(crate) fn start(reloader: &Arc<Reloader>, sighup: bool) -> notify::Result<JoinHandle<()>> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watch = Watch::new(reloader.path(), tx)?;
    let mut hangups = if sighup { hangups() } else { None };
    let reloader = reloader.clone();
    Ok(tokio::spawn(async move {
        let mut retry_pending = false;
        loop {
            let poll = reloader.cluster().snapshot().config.reload_poll();
            let wake = tokio::select! {
                event = rx.recv() => match event {
                    Some(()) => Wake::FileEvent,
                    None => return,
                },
                _ = tokio::time::sleep(poll) => Wake::Poll,
                _ = tokio::time::sleep(DEBOUNCE * 3), if retry_pending => Wake::Retry,
                Some(()) = next_hangup(&mut hangups) => Wake::Signal,
            };
            if let Wake::FileEvent = wake {
                // Debounce: wait for a quiet period so a save in several steps is read once.
                loop {
                    match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                        Ok(Some(())) => continue,
                        Ok(None) => return,
                        Err(_quiet) => break,
                    }
                }
            }
            let trigger = match wake {
                Wake::FileEvent => Trigger::FileEvent,
                Wake::Poll => Trigger::Poll,
                Wake::Retry => Trigger::Retry,
                Wake::Signal => {
                    tracing::info!("SIGHUP: re-reading the config");
                    Trigger::Signal
                }
            };
            // Aimed before the file is read: once a re-pointed config is in force, edits in
            // its new directory are already watched.
            if let Err(e) = watch.aim(reloader.path()) {
                tracing::warn!(error = %e, "cannot watch the config's directories; the poll still sees changes");
            }
            let outcome = reloader.reload(trigger).await;
            // A rejected file may have been caught mid-write with no event to follow: look once
            // more. A file rejected again is not logged twice.
            retry_pending =
                matches!(outcome, Reloaded::Rejected { .. }) && !matches!(wake, Wake::Retry);
        }
    }))
}

#[cfg(unix)]
type Hangups = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangups = ();

#[cfg(unix)]
fn hangups() -> Option<Hangups> {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(stream) => Some(stream),
        Err(e) => {
            tracing::warn!(error = %e, "cannot install the SIGHUP handler; reload by editing the file or POST /admin/reload");
            None
        }
    }
}

#[cfg(not(unix))]
fn hangups() -> Option<Hangups> {
    None
}

/// The next SIGHUP; never, without a handler.
async fn next_hangup(hangups: &mut Option<Hangups>) -> Option<()> {
    match hangups {
        #[cfg(unix)]
        Some(stream) => stream.recv().await,
        _ => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_follow_every_symlink_to_the_file() {
        let root = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(root.path()).unwrap();
        let release = root.join("releases/2");
        std::fs::create_dir_all(&release).unwrap();
        std::fs::write(release.join("hrwproxy.yaml"), "x").unwrap();
        std::os::unix::fs::symlink("releases/2", root.join("current")).unwrap();
        let path = root.join("current/hrwproxy.yaml");
        let found = targets(&path);
        assert!(
            found.dirs.contains(&root),
            "the link's directory: {found:?}"
        );
        assert!(
            found.dirs.contains(&release),
            "the real directory: {found:?}"
        );
        assert!(found.dirs.contains(&root.join("current")), "{found:?}");
        for name in ["current", "hrwproxy.yaml"] {
            assert!(found.names.contains(OsStr::new(name)), "{name}: {found:?}");
        }
        // Re-pointed: the new release's directory replaces the old one.
        let next = root.join("releases/3");
        std::fs::create_dir_all(&next).unwrap();
        std::fs::remove_file(root.join("current")).unwrap();
        std::os::unix::fs::symlink(&next, root.join("current")).unwrap();
        let found = targets(&path);
        assert!(
            found.dirs.contains(&next) && !found.dirs.contains(&release),
            "{found:?}"
        );
        // A chain of links, one relative with `..` in it.
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink("../current/hrwproxy.yaml", root.join("etc/link.yaml")).unwrap();
        let found = targets(&root.join("etc/link.yaml"));
        assert!(
            found.dirs.contains(&next) && found.dirs.contains(&root.join("etc")),
            "{found:?}"
        );
        assert!(found.names.contains(OsStr::new("link.yaml")));
    }

    #[test]
    fn a_symlink_loop_ends() {
        let root = tempfile::tempdir().unwrap();
        let a = root.path().join("a");
        std::os::unix::fs::symlink("b", &a).unwrap();
        std::os::unix::fs::symlink("a", root.path().join("b")).unwrap();
        let found = targets(&a);
        assert!(found.names.contains(OsStr::new("a")));
    }
}
