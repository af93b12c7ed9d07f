//! Each node's health: consecutive failures, ejection with a doubling backoff, a probe before a
//! node serves again, and its recent latencies (for hedging). Ejection changes who is asked,
//! never where keys live.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::backend::{with_timeout, Backend, BackendError};
use crate::config::Resilience;
use crate::lock;
use crate::snapshot::SharedSnapshot;

/// Where a node stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Serving.
    Up,
    /// Skipped until `until`, then probed.
    Ejected { until: Instant },
    /// Its ejection ran out; it serves again once a health probe passes.
    Probing,
}

impl Phase {
    pub fn name(self) -> &'static str {
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
}

/// One node's health; shared by every snapshot in which the node has the same client.
#[derive(Debug)]
pub struct Health {
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
                latencies: Vec::with_capacity(SAMPLES),
                next_sample: 0,
            }),
        }
    }
}

/// What [`Health::on_failure`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    Counted,
    /// The node was ejected for this long; its probe must be scheduled.
    Ejected(Duration),
}

/// Whether a failure says something about the node itself (not about the request).
pub fn counts_against_node(error: &BackendError) -> bool {
    !matches!(error, BackendError::Rejected(_) | BackendError::Unsupported)
}

impl Health {
    pub fn phase(&self) -> Phase {
        lock(&self.state).phase
    }

    pub fn is_up(&self) -> bool {
        self.phase() == Phase::Up
    }

    pub fn last_error(&self) -> Option<(String, SystemTime)> {
        lock(&self.state).last_error.clone()
    }

    /// An active check passed: the failure streak ends (latency is not sampled; probes are
    /// not reads).
    pub fn on_check_passed(&self) {
        lock(&self.state).consecutive_failures = 0;
    }

    pub fn consecutive_failures(&self) -> u32 {
        lock(&self.state).consecutive_failures
    }

    pub fn on_success(&self, latency: Duration, policy: &Resilience) {
        let mut s = lock(&self.state);
        s.consecutive_failures = 0;
        if s.phase == Phase::Up
            && s.ejections > 0
            && s.up_since.elapsed() >= Duration::from_millis(policy.eject_backoff_max_ms)
        {
            s.ejections = 0;
        }
        let micros = latency.as_micros().min(u128::from(u32::MAX)) as u32;
        if s.latencies.len() < SAMPLES {
            s.latencies.push(micros);
        } else {
            let at = s.next_sample;
            s.latencies[at] = micros;
        }
        s.next_sample = (s.next_sample + 1) % SAMPLES;
    }

    /// Counts a failure; ejects the node once `eject_after` failures in a row are reached and
    /// `may_eject` allows it (the cap on ejected nodes).
    pub fn on_failure(
        &self,
        error: &BackendError,
        policy: &Resilience,
        may_eject: bool,
    ) -> AfterFailure {
        let mut s = lock(&self.state);
        s.last_error = Some((error.to_string(), SystemTime::now()));
        s.consecutive_failures = s.consecutive_failures.saturating_add(1);
        let due = policy.eject_after > 0 && s.consecutive_failures >= policy.eject_after;
        if s.phase == Phase::Up && due && may_eject {
            AfterFailure::Ejected(s.eject(policy))
        } else {
            AfterFailure::Counted
        }
    }

    /// Ends an ejection: the node waits for its probe.
    pub fn start_probing(&self) {
        let mut s = lock(&self.state);
        if matches!(s.phase, Phase::Ejected { .. }) {
            s.phase = Phase::Probing;
        }
    }

    /// The probe's verdict: back in service, or ejected again for a longer backoff.
    pub fn on_probe(
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
                None
            }
            Err(e) => {
                s.last_error = Some((e.to_string(), SystemTime::now()));
                Some(s.eject(policy))
            }
        }
    }

    /// The 95th percentile of recent latencies, once there are enough of them.
    pub fn p95(&self) -> Option<Duration> {
        let s = lock(&self.state);
        if s.latencies.len() < MIN_SAMPLES {
            return None;
        }
        let mut sorted = s.latencies.clone();
        drop(s);
        let at = (sorted.len() * 95).div_ceil(100) - 1;
        let (_, p95, _) = sorted.select_nth_unstable(at);
        Some(Duration::from_micros(u64::from(*p95)))
    }
}

impl State {
    fn eject(&mut self, policy: &Resilience) -> Duration {
        let doublings = self.ejections.min(32);
        self.ejections = self.ejections.saturating_add(1);
        let backoff = policy
            .eject_backoff_ms
            .saturating_mul(1u64 << doublings.min(20))
            .min(policy.eject_backoff_max_ms);
        let backoff = Duration::from_millis(backoff);
        self.phase = Phase::Ejected {
            until: Instant::now() + backoff,
        };
        backoff
    }
}

/// Waits out an ejection, then probes the node until a probe passes, ejecting it again with a
/// longer backoff after each failed probe.
pub fn probe_after(
    node: String,
    backend: Arc<dyn Backend>,
    health: Arc<Health>,
    policy: Resilience,
    timeout: Duration,
    backoff: Duration,
) {
    tokio::spawn(async move {
        let mut wait = backoff;
        loop {
            tokio::time::sleep(wait).await;
            health.start_probing();
            let result = with_timeout(timeout, backend.health()).await;
            match health.on_probe(&result, &policy) {
                None => {
                    tracing::info!(node, "node readmitted: its health probe passed");
                    return;
                }
                Some(next) => {
                    let error = result.err().map(|e| e.to_string()).unwrap_or_default();
                    tracing::warn!(
                        node,
                        error,
                        backoff_ms = next.as_millis() as u64,
                        "node failed its health probe; ejected again"
                    );
                    wait = next;
                }
            }
        }
    });
}

/// Probes every node in service every `health_check_interval_ms`, with the same state machine
/// as request failures. Runs until the task is aborted.
pub async fn check_actively(shared: SharedSnapshot) {
    loop {
        let interval = shared.load().config.resilience.health_check_interval_ms;
        if interval == 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        tokio::time::sleep(Duration::from_millis(interval)).await;
        let snap = shared.load_full();
        for index in 0..snap.ring.len() {
            if !snap.health[index].is_up() {
                continue;
            }
            let snap = snap.clone();
            tokio::spawn(async move {
                let timeout = snap.config.timeouts.request();
                let health = &snap.health[index];
                let policy = snap.config.resilience;
                match with_timeout(timeout, snap.backends[index].health()).await {
                    Ok(()) => health.on_check_passed(),
                    Err(e) => {
                        let node = snap.node_id(index).to_owned();
                        tracing::warn!(node, error = %e, "health check failed");
                        if let AfterFailure::Ejected(backoff) =
                            health.on_failure(&e, &policy, snap.may_eject())
                        {
                            tracing::warn!(
                                node,
                                backoff_ms = backoff.as_millis() as u64,
                                "node ejected"
                            );
                            let backend = snap.backends[index].clone();
                            probe_after(node, backend, health.clone(), policy, timeout, backoff);
                        }
                    }
                }
            });
        }
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
        assert_eq!(h.on_failure(&e, &p, true), AfterFailure::Counted);
        h.on_success(Duration::from_millis(1), &p);
        assert_eq!(h.on_failure(&e, &p, true), AfterFailure::Counted);
        assert_eq!(h.on_failure(&e, &p, true), AfterFailure::Counted);
        assert_eq!(
            h.on_failure(&e, &p, false),
            AfterFailure::Counted,
            "cap on ejections"
        );
        assert_eq!(
            h.on_failure(&e, &p, true),
            AfterFailure::Ejected(Duration::from_millis(100))
        );
        assert_eq!(h.phase().name(), "ejected");
        h.start_probing();
        assert_eq!(h.phase(), Phase::Probing);
        assert_eq!(
            h.on_probe(&Err(e.clone()), &p),
            Some(Duration::from_millis(200))
        );
        h.start_probing();
        assert_eq!(
            h.on_probe(&Err(e.clone()), &p),
            Some(Duration::from_millis(350))
        );
        h.start_probing();
        assert_eq!(h.on_probe(&Ok(()), &p), None);
        assert!(h.is_up());
        assert!(!counts_against_node(&BackendError::Rejected(
            "status 413".into()
        )));
    }

    #[test]
    fn p95_needs_enough_samples() {
        let h = Health::default();
        let p = policy();
        for ms in 1..=15 {
            h.on_success(Duration::from_millis(ms), &p);
        }
        assert_eq!(h.p95(), None);
        for ms in 16..=100 {
            h.on_success(Duration::from_millis(ms), &p);
        }
        assert_eq!(h.p95(), Some(Duration::from_millis(95)));
    }
}
