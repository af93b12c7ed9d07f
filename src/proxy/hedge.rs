//! Hedged reads: when the first replica is slow to answer, ask the next one too and take the
//! first good answer, within a budget so that a slow cluster is not flooded with double reads.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use crate::config::Resilience;
use crate::health::Health;
use crate::lock;

/// One hedge, in hundredths: every read earns `budget_percent` of them.
const HEDGE: u32 = 100;
/// Hedges saved up at most, so a quiet period does not allow a burst of them.
const MAX_SAVED: u32 = 10 * HEDGE;

/// A token bucket: every read adds `budget_percent / 100` of a hedge, every hedge spends one.
#[derive(Debug, Default)]
pub(crate) struct HedgeBudget {
    hundredths: Mutex<u32>,
}

impl HedgeBudget {
    /// Counts a read toward the budget.
    pub(crate) fn on_read(&self, budget_percent: u32) {
        let mut saved = lock(&self.hundredths);
        *saved = (*saved + budget_percent).min(MAX_SAVED);
    }

    /// Spends one hedge if the budget has it.
    pub(crate) fn try_spend(&self) -> bool {
        let mut saved = lock(&self.hundredths);
        if *saved >= HEDGE {
            *saved -= HEDGE;
            true
        } else {
            false
        }
    }
}

/// How long to wait for the first replica before hedging, if at all: the configured delay,
/// or the node's recent p95 latency (not below the floor) once it has enough samples.
pub(crate) fn delay(policy: &Resilience, first: &Health) -> Option<Duration> {
    if policy.hedge_budget_percent == 0 {
        return None;
    }
    let floor = Duration::from_millis(policy.hedge_floor_ms);
    match policy.hedge_after_ms {
        Some(ms) => Some(Duration::from_millis(ms).max(floor)),
        None => first.p95().map(|p95| p95.max(floor)),
    }
}

/// How a hedged pair of attempts ended.
#[derive(Debug)]
pub(crate) enum Raced<T> {
    /// No hedge was sent.
    Alone(T),
    /// A hedge was sent; this side answered well first and the other was cancelled.
    FirstWon(T),
    SecondWon(T),
    /// A hedge was sent and neither answer won: both, in rank order.
    Both(T, T),
}

/// Runs `first`; if it has not finished after `delay` and `budget` allows, runs `second` too.
/// Returns as soon as one side's result `wins`, dropping (cancelling) the other.
pub(crate) async fn race<T, A, B>(
    first: A,
    delay: Option<Duration>,
    budget: &HedgeBudget,
    second: impl FnOnce() -> B,
    wins: impl Fn(&T) -> bool,
) -> Raced<T>
where
    A: Future<Output = T>,
    B: Future<Output = T>,
{
    tokio::pin!(first);
    let Some(delay) = delay else {
        return Raced::Alone(first.await);
    };
    tokio::select! {
        result = &mut first => return Raced::Alone(result),
        _ = tokio::time::sleep(delay) => {}
    }
    if !budget.try_spend() {
        return Raced::Alone(first.await);
    }
    let second = second();
    tokio::pin!(second);
    tokio::select! {
        a = &mut first => {
            if wins(&a) {
                Raced::FirstWon(a)
            } else {
                Raced::Both(a, second.await)
            }
        }
        b = &mut second => {
            if wins(&b) {
                Raced::SecondWon(b)
            } else {
                Raced::Both(first.await, b)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_allows_its_share_of_reads() {
        let budget = HedgeBudget::default();
        let mut hedges = 0;
        for _ in 0..1000 {
            budget.on_read(10);
            hedges += usize::from(budget.try_spend());
        }
        assert_eq!(hedges, 100);
        assert!(!HedgeBudget::default().try_spend());
    }

    #[test]
    fn the_delay_is_fixed_or_the_p95_never_below_the_floor() {
        let policy = Resilience {
            hedge_after_ms: None,
            hedge_floor_ms: 5,
            hedge_budget_percent: 10,
            ..Resilience::default()
        };
        let health = Health::default();
        assert_eq!(delay(&policy, &health), None, "no p95 yet: no hedge");
        for _ in 0..20 {
            health.on_success(Some(Duration::from_millis(1)), &policy);
        }
        assert_eq!(
            delay(&policy, &health),
            Some(Duration::from_millis(5)),
            "the floor"
        );
        for _ in 0..128 {
            health.on_success(Some(Duration::from_millis(40)), &policy);
        }
        assert_eq!(
            delay(&policy, &health),
            Some(Duration::from_millis(40)),
            "the p95"
        );
        let fixed = Resilience {
            hedge_after_ms: Some(2),
            ..policy
        };
        assert_eq!(
            delay(&fixed, &health),
            Some(Duration::from_millis(5)),
            "fixed, floored"
        );
        let fixed = Resilience {
            hedge_after_ms: Some(20),
            ..policy
        };
        assert_eq!(delay(&fixed, &health), Some(Duration::from_millis(20)));
        let off = Resilience {
            hedge_budget_percent: 0,
            ..fixed
        };
        assert_eq!(
            delay(&off, &health),
            None,
            "a zero budget turns hedging off"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_first_replica_is_hedged_and_the_fast_second_wins() {
        let budget = HedgeBudget::default();
        budget.on_read(100);
        let slow = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            "first"
        };
        let fast = || async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            "second"
        };
        let raced = race(slow, Some(Duration::from_millis(10)), &budget, fast, |_| {
            true
        })
        .await;
        assert!(matches!(raced, Raced::SecondWon("second")), "{raced:?}");
        // Without budget the first answer is awaited.
        let raced = race(
            async { "first" },
            Some(Duration::from_millis(10)),
            &budget,
            || async { "second" },
            |_| true,
        )
        .await;
        assert!(matches!(raced, Raced::Alone("first")));
    }
}
