//! How much the proxy says about its nodes: a node's repeated trouble is logged once per
//! period (with how many went unlogged), and all lines about nodes together are capped per
//! second, so ten thousand unreachable nodes cost a few lines, not a flood. What was left
//! out is counted in the next line that is written, and always visible in `/admin/nodes` and
//! the metrics.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::lock;

/// How often at most one node's repeated trouble (failed attempts, checks, probes) is logged.
pub(crate) const REPEAT_EVERY: Duration = Duration::from_secs(30);
/// Lines about nodes per second at most, all nodes together.
pub(crate) const LINES_PER_SECOND: u32 = 20;

#[derive(Debug)]
pub(crate) struct LogBudget {
    state: Mutex<Window>,
}

#[derive(Debug)]
pub(crate) struct Window {
    started: Instant,
    used: u32,
    /// Lines left out since the last summary.
    suppressed: u64,
}

impl Default for LogBudget {
    fn default() -> Self {
        LogBudget {
            state: Mutex::new(Window {
                started: Instant::now(),
                used: 0,
                suppressed: 0,
            }),
        }
    }
}

impl LogBudget {
    /// Whether one more line about a node may be written now.
    pub(crate) fn allow(&self) -> bool {
        let mut w = self.roll();
        if w.used < LINES_PER_SECOND {
            w.used += 1;
            true
        } else {
            w.suppressed += 1;
            false
        }
    }

    /// Starts a new second if the last one is over, first saying how many lines it left out.
    /// Called now and then (by the probe driver) so the count is never held back for long.
    pub(crate) fn roll(&self) -> std::sync::MutexGuard<'_, Window> {
        let now = Instant::now();
        let mut w = lock(&self.state);
        if now.saturating_duration_since(w.started) >= Duration::from_secs(1) {
            if w.suppressed > 0 {
                tracing::warn!(
                    suppressed = w.suppressed,
                    "lines about nodes left out: too many at once; see /admin/nodes and the metrics"
                );
            }
            *w = Window {
                started: now,
                used: 0,
                suppressed: 0,
            };
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn lines_are_capped_per_second_whatever_the_number_of_nodes() {
        let budget = LogBudget::default();
        let allowed = (0..10_000).filter(|_| budget.allow()).count();
        assert_eq!(allowed, LINES_PER_SECOND as usize);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(budget.allow(), "a new second, a new budget");
    }
}
