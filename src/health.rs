//! One node's health as a small state machine: consecutive failures, ejection with a doubling
//! backoff, a probe before the node serves again, its recent latencies (for hedging) and how
//! often its troubles are logged. Ejection changes who is asked, never where keys live. The
//! probes themselves run in one driver (`cluster::probes`); the cap on how many nodes may be
//! ejected at once is kept by `cluster::Runtime`.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::backend::BackendError;
use crate::config::Resilience;
use crate::lock;

/// Where a node stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Serving.
    Up,
    /// Skipped until `until`, then probed.
    Ejected { until: Instant },
    /// Its ejection ran out; it serves again once a health probe passes.
    Probing,
}

impl Phase {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Phase::Up => "up",
            Phase::Ejected { .. } => "ejected",
            Phase::Probing => "probing",
        }
    }
}

/// Latency samples kept per node.
const SAMPLES: usize = 128;
/// Samples needed before a p95 is trusted.
const MIN_SAMPLES: usize = 16;
/// The p95 is worked out again after this many new samples, not on every read that asks.
const P95_EVERY: usize = 8;
/// The most doublings of the ejection backoff (far beyond any sane maximum backoff).
const MAX_DOUBLINGS: u32 = 20;

#[derive(Debug)]
struct State {
    phase: Phase,
    consecutive_failures: u32,
    /// Ejections since the node last stayed up for a full maximum backoff.
    ejections: u32,
    up_since: Instant,
    last_error: Option<(String, SystemTime)>,
    /// Recent successful attempt latencies in microseconds, a ring.
    latencies: Vec<u32>,
    next_sample: usize,
    /// Their 95th percentile, as of the last multiple of [`P95_EVERY`] samples.
    p95_micros: Option<u32>,
    /// When a repeated trouble of this node was last logged, and how many went unlogged since.
    last_logged: Option<Instant>,
    unlogged: u32,
}

/// One node's health; kept by node id across every reload, whatever else changes.
#[derive(Debug)]
pub(crate) struct Health {
    state: Mutex<State>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            state: Mutex::new(State {
                phase: Phase::Up,
                consecutive_failures: 0,
                ejections: 0,
                up_since: Instant::now(),
                last_error: None,
                // Grown by the first samples: a node never asked holds none (a million
                // configured nodes would otherwise hold 512 MB of empty rings).
                latencies: Vec::new(),
                next_sample: 0,
                p95_micros: None,
                last_logged: None,
                unlogged: 0,
            }),
        }
    }
}

/// Whether ejecting one more of `total` nodes, `ejected` of which are out already, keeps the
/// ejected share within `max_percent`.
pub(crate) fn may_eject(ejected: usize, total: usize, max_percent: u32) -> bool {
    (ejected as u64 + 1) * 100 <= u64::from(max_percent) * total as u64
}

impl Health {
    pub(crate) fn phase(&self) -> Phase {
        lock(&self.state).phase
    }

    pub(crate) fn is_up(&self) -> bool {
        self.phase() == Phase::Up
    }

    pub(crate) fn last_error(&self) -> Option<(String, SystemTime)> {
        lock(&self.state).last_error.clone()
    }

    pub(crate) fn consecutive_failures(&self) -> u32 {
        lock(&self.state).consecutive_failures
    }

    /// An active check passed: the failure streak ends (latency is not sampled; probes are
    /// not reads).
    pub(crate) fn on_check_passed(&self) {
        lock(&self.state).consecutive_failures = 0;
    }

    /// An attempt succeeded; `latency` is sampled (reads give one, for hedging).
    pub(crate) fn on_success(&self, latency: Option<Duration>, policy: &Resilience) {
        let mut s = lock(&self.state);
        s.consecutive_failures = 0;
        s.last_logged = None;
        if s.phase == Phase::Up
            && s.ejections > 0
            && s.up_since.elapsed() >= Duration::from_millis(policy.eject_backoff_max_ms)
        {
            s.ejections = 0;
        }
        let Some(latency) = latency else { return };
        let micros = latency.as_micros().min(u128::from(u32::MAX)) as u32;
        if s.latencies.len() < SAMPLES {
            if s.latencies.capacity() == 0 {
                s.latencies.reserve_exact(SAMPLES);
            }
            s.latencies.push(micros);
        } else {
            let at = s.next_sample;
            s.latencies[at] = micros;
        }
        s.next_sample = (s.next_sample + 1) % SAMPLES;
        if s.latencies.len() >= MIN_SAMPLES && s.next_sample.is_multiple_of(P95_EVERY) {
            let mut sorted = [0; SAMPLES];
            let sorted = &mut sorted[..s.latencies.len()];
            sorted.copy_from_slice(&s.latencies);
            let at = (sorted.len() * 95).div_ceil(100) - 1;
            s.p95_micros = Some(*sorted.select_nth_unstable(at).1);
        }
    }

    /// Counts a failure; true when the node is in service and its streak reached
    /// `eject_after`, so it should be ejected if the cap allows.
    pub(crate) fn on_failure(&self, error: &BackendError, policy: &Resilience) -> bool {
        let mut s = lock(&self.state);
        s.last_error = Some((error.to_string(), SystemTime::now()));
        s.consecutive_failures = s.consecutive_failures.saturating_add(1);
        s.phase == Phase::Up
            && policy.eject_after > 0
            && s.consecutive_failures >= policy.eject_after
    }

    /// Ejects the node if it is in service; the backoff it got.
    pub(crate) fn eject(&self, policy: &Resilience) -> Option<Duration> {
        let mut s = lock(&self.state);
        (s.phase == Phase::Up).then(|| s.eject(policy))
    }

    /// Whether its readmission probe is due: its ejection ran out (it is now probing), or it
    /// was probing already.
    pub(crate) fn start_probing(&self, now: Instant) -> bool {
        let mut s = lock(&self.state);
        match s.phase {
            Phase::Ejected { until } if until <= now => {
                s.phase = Phase::Probing;
                true
            }
            Phase::Probing => true,
            _ => false,
        }
    }

    /// The readmission probe's verdict: back in service (`None`), or ejected again for a
    /// longer backoff.
    pub(crate) fn on_probe(
        &self,
        result: &Result<(), BackendError>,
        policy: &Resilience,
    ) -> Option<Duration> {
        let mut s = lock(&self.state);
        match result {
            Ok(()) => {
                s.phase = Phase::Up;
                s.consecutive_failures = 0;
                s.up_since = Instant::now();
                s.last_logged = None;
                None
            }
            Err(e) => {
                s.last_error = Some((e.to_string(), SystemTime::now()));
                Some(s.eject(policy))
            }
        }
    }

    /// The 95th percentile of recent latencies, once there are enough of them.
    pub(crate) fn p95(&self) -> Option<Duration> {
        let micros = lock(&self.state).p95_micros?;
        Some(Duration::from_micros(u64::from(micros)))
    }

    /// Whether a trouble of this node is due to be logged: none was logged in the last
    /// `every` (a success ends the streak, so the next failure is logged at once).
    pub(crate) fn log_due(&self, now: Instant, every: Duration) -> bool {
        lock(&self.state)
            .last_logged
            .is_none_or(|at| now.saturating_duration_since(at) >= every)
    }

    /// A trouble of this node went unlogged.
    pub(crate) fn log_skipped(&self) {
        let mut s = lock(&self.state);
        s.unlogged = s.unlogged.saturating_add(1);
    }

    /// A trouble of this node is logged now: how many went unlogged before it.
    pub(crate) fn log_written(&self, now: Instant) -> u32 {
        let mut s = lock(&self.state);
        s.last_logged = Some(now);
        std::mem::take(&mut s.unlogged)
    }
}

impl State {
    fn eject(&mut self, policy: &Resilience) -> Duration {
        let doublings = self.ejections.min(MAX_DOUBLINGS);
        self.ejections = self.ejections.saturating_add(1);
        let backoff = policy
            .eject_backoff_ms
            .saturating_mul(1u64 << doublings)
            .min(policy.eject_backoff_max_ms);
        let backoff = Duration::from_millis(backoff);
        self.phase = Phase::Ejected {
            until: Instant::now() + backoff,
        };
        backoff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Resilience {
        Resilience {
            eject_after: 3,
            eject_backoff_ms: 100,
            eject_backoff_max_ms: 350,
            ..Resilience::default()
        }
    }

    #[test]
    fn ejects_after_consecutive_failures_with_doubling_capped_backoff() {
        let h = Health::default();
        let p = policy();
        let e = BackendError::Refused;
        assert!(!h.on_failure(&e, &p));
        h.on_success(Some(Duration::from_millis(1)), &p);
        assert!(!h.on_failure(&e, &p));
        assert!(!h.on_failure(&e, &p));
        assert!(h.on_failure(&e, &p), "the third in a row is due");
        assert_eq!(h.eject(&p), Some(Duration::from_millis(100)));
        assert_eq!(h.phase().name(), "ejected");
        assert_eq!(h.eject(&p), None, "ejected once");
        assert!(!h.on_failure(&e, &p), "an ejected node is not due again");
        assert!(
            !h.start_probing(Instant::now()),
            "not before its backoff ran out"
        );
        assert!(h.start_probing(Instant::now() + Duration::from_millis(100)));
        assert_eq!(h.phase(), Phase::Probing);
        assert_eq!(
            h.on_probe(&Err(e.clone()), &p),
            Some(Duration::from_millis(200))
        );
        assert!(h.start_probing(Instant::now() + Duration::from_secs(1)));
        assert_eq!(
            h.on_probe(&Err(e.clone()), &p),
            Some(Duration::from_millis(350))
        );
        assert!(h.start_probing(Instant::now() + Duration::from_secs(1)));
        assert_eq!(h.on_probe(&Ok(()), &p), None);
        assert!(h.is_up());
        assert_eq!(h.consecutive_failures(), 0);
        let off = Resilience {
            eject_after: 0,
            ..p
        };
        for _ in 0..100 {
            assert!(!h.on_failure(&e, &off), "eject_after 0 never ejects");
        }
    }

    #[test]
    fn the_ejection_cap_is_a_share_of_the_nodes() {
        // 50% of 2 nodes: one may go, not both.
        assert!(may_eject(0, 2, 50));
        assert!(!may_eject(1, 2, 50));
        // 50% of 5: two (40%), not three (60%).
        assert!(may_eject(1, 5, 50));
        assert!(!may_eject(2, 5, 50));
        // 0% ejects nothing; 100% everything.
        assert!(!may_eject(0, 3, 0));
        assert!(may_eject(2, 3, 100));
        // 33% of 3: none (one would be 33.3%).
        assert!(!may_eject(0, 3, 33));
        assert!(may_eject(0, 3, 34));
    }

    #[test]
    fn p95_needs_enough_samples() {
        let h = Health::default();
        let p = policy();
        for ms in 1..=15 {
            h.on_success(Some(Duration::from_millis(ms)), &p);
        }
        assert_eq!(h.p95(), None);
        for ms in 16..=100 {
            h.on_success(Some(Duration::from_millis(ms)), &p);
        }
        // Worked out at the 96th sample: the 92nd smallest of 1..=96 ms.
        assert_eq!(h.p95(), Some(Duration::from_millis(92)));
        // The ring keeps the latest 128 samples only.
        for _ in 0..128 {
            h.on_success(Some(Duration::from_millis(3)), &p);
        }
        assert_eq!(h.p95(), Some(Duration::from_millis(3)));
    }

    #[test]
    fn repeated_troubles_are_logged_once_per_period_and_a_new_streak_at_once() {
        let h = Health::default();
        let start = Instant::now();
        let every = Duration::from_secs(30);
        assert!(h.log_due(start, every));
        assert_eq!(h.log_written(start), 0);
        for i in 1..=5 {
            assert!(!h.log_due(start + Duration::from_secs(i), every));
            h.log_skipped();
        }
        assert!(h.log_due(start + every, every));
        assert_eq!(h.log_written(start + every), 5);
        // A success ends the streak: the next failure is logged at once.
        h.on_success(None, &policy());
        assert!(h.log_due(start + every, every));
    }
}
