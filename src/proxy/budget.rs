//! A token bucket for extra work a read may cause (hedges, read repairs): every read earns a
//! share of one, so a slow or drifting cluster is not flooded with it.

use std::sync::atomic::{AtomicU32, Ordering};

/// One unit of work, in hundredths: every read earns `percent` of them.
const UNIT: u32 = 100;
/// Units saved up at most, so a quiet period does not allow a burst.
const MAX_SAVED: u32 = 10 * UNIT;

/// Lock-free: every read passes through two of these.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    hundredths: AtomicU32,
}

impl Budget {
    /// Counts a read toward the budget.
    pub(crate) fn on_read(&self, percent: u32) {
        let _ = self
            .hundredths
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |saved| {
                Some(saved.saturating_add(percent).min(MAX_SAVED))
            });
    }

    /// Spends one unit if the budget has it.
    pub(crate) fn try_spend(&self) -> bool {
        self.hundredths
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |saved| {
                saved.checked_sub(UNIT)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_allows_its_share_of_reads() {
        let budget = Budget::default();
        let mut spent = 0;
        for _ in 0..1000 {
            budget.on_read(10);
            spent += usize::from(budget.try_spend());
        }
        assert_eq!(spent, 100);
        assert!(!Budget::default().try_spend());
        let saver = Budget::default();
        for _ in 0..1000 {
            saver.on_read(100);
        }
        assert_eq!(
            (0..100).filter(|_| saver.try_spend()).count(),
            10,
            "at most 10 saved"
        );
    }
}
