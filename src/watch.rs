//! What triggers a reload: file events in the config's directory (debounced), a checksum poll
//! as the safety net for lost or coalesced events, and one retry after a rejected read in case
//! the file was caught half-written.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::reload::{Reloaded, Reloader};

/// Quiet time after the last file event before the file is read: editors write in steps.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// A directory to watch and the file name in it that is the config (or leads to it).
struct Target {
    dir: PathBuf,
    file_name: OsString,
}

/// The config path's directory, and for a symlinked config also the directory of the file it
/// points to, so edits of either are seen.
fn targets(path: &Path) -> Vec<Target> {
    let split = |p: &Path| {
        let dir = match p.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        Some(Target {
            dir,
            file_name: p.file_name()?.to_owned(),
        })
    };
    let mut targets: Vec<Target> = split(path).into_iter().collect();
    if let Some(real) = std::fs::canonicalize(path).ok().and_then(|r| split(&r)) {
        if std::fs::canonicalize(&targets[0].dir).ok().as_deref() != Some(real.dir.as_path()) {
            targets.push(real);
        }
    }
    targets
}

/// Whether a directory event may have changed the config. Reads are ignored (our own re-read
/// would trigger the next one), and so are unrelated files; names starting with `..` are the
/// Kubernetes ConfigMap machinery (`..data` swapped to a new `..<timestamp>` directory).
fn concerns(event: &notify::Event, names: &[OsString]) -> bool {
    if matches!(event.kind, EventKind::Access(_)) {
        return false;
    }
    let relevant = |name: &OsStr| {
        names.iter().any(|n| n == name) || name.as_encoded_bytes().starts_with(b"..")
    };
    event.need_rescan()
        || event.paths.is_empty()
        || event
            .paths
            .iter()
            .any(|p| p.file_name().is_some_and(relevant))
}

/// Why the watch task woke up.
enum Wake {
    FileEvent,
    Poll,
    Retry,
}

/// Starts following the config file. Stops when the returned task is aborted.
pub fn watch(reloader: &Arc<Reloader>) -> notify::Result<JoinHandle<()>> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let targets = targets(reloader.path());
    let names: Vec<OsString> = targets.iter().map(|t| t.file_name.clone()).collect();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        match &event {
            Ok(event) if !concerns(event, &names) => return,
            Ok(_) => {}
            // An overflowed queue or a watcher error: whatever was missed, a full re-read sees.
            Err(e) => tracing::warn!(error = %e, "config watcher error; re-reading the file"),
        }
        let _ = tx.send(());
    })?;
    for target in &targets {
        watcher.watch(&target.dir, RecursiveMode::NonRecursive)?;
    }
    let reloader = reloader.clone();
    Ok(tokio::spawn(async move {
        let _watcher = watcher;
        let mut retry_pending = false;
        loop {
            let poll = reloader.shared().load().config.reload_poll();
            let wake = tokio::select! {
                event = rx.recv() => match event {
                    Some(()) => Wake::FileEvent,
                    None => return,
                },
                _ = tokio::time::sleep(poll) => Wake::Poll,
                _ = tokio::time::sleep(DEBOUNCE * 3), if retry_pending => Wake::Retry,
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
            let this = reloader.clone();
            let outcome = match tokio::task::spawn_blocking(move || this.reload_logged()).await {
                Ok(outcome) => outcome,
                Err(e) => {
                    tracing::error!(error = %e, "reload failed unexpectedly; the previous config keeps serving");
                    Reloaded::Unchanged
                }
            };
            // A rejected file may have been caught mid-write with no event to follow: look once
            // more. A file rejected again is not logged twice.
            retry_pending =
                matches!(outcome, Reloaded::Rejected { .. }) && !matches!(wake, Wake::Retry);
        }
    }))
}
