//! The proxy's own repair: one run at a time, in the background, its progress kept for
//! `GET /admin/repair`.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::{run, Options, Progress, RunState, Scope};
use crate::lock;

#[derive(Debug, Default)]
pub(crate) struct BackgroundRepair {
    progress: Arc<Mutex<Progress>>,
}

impl BackgroundRepair {
    /// Starts a run on the scope's snapshot; refuses while one is running.
    pub(crate) fn start(&self, scope: Scope, options: Options) -> Result<(), String> {
        {
            let mut p = lock(&self.progress);
            if p.state == RunState::Running {
                return Err("a repair is already running; follow it with GET /admin/repair".into());
            }
            *p = Progress {
                state: RunState::Running,
                generation: scope.snap.generation,
                prune: options.prune,
                started_at: Some(SystemTime::now()),
                ..Progress::default()
            };
        }
        let progress = self.progress.clone();
        let task = tokio::spawn({
            let progress = progress.clone();
            async move { run(scope, options, &progress, |_| {}).await }
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
                    hints_handed_off = report.hints_handed_off,
                    hints_left = report.hints_left,
                    elapsed_ms = report.elapsed_ms,
                    "repair finished"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "repair aborted");
                    lock(&progress).state = RunState::Aborted;
                }
            }
        });
        Ok(())
    }

    pub(crate) fn progress(&self) -> Progress {
        lock(&self.progress).clone()
    }
}
