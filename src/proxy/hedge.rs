//! When a read is hedged: after a fixed delay, or after the first replica's recent p95 read
//! latency, never below a floor; the budget is [`super::budget::Budget`].

use std::time::Duration;

use crate::config::Resilience;
use crate::health::Health;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
