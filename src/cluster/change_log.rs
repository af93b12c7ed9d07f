//! The line logged for every applied reload: the generation, what changed in the membership,
//! and what the change does to placement (a sampled summary), plus a warning for settings that
//! need a restart. The last few are kept for the admin API's status page.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::reload::Trigger;
use super::Snapshot;
use crate::routing::change::ChangeSummary;

/// How many applied reloads [`Changes`] keeps.
const KEPT: usize = 10;

/// An applied reload: what changed and what it did to placement (in `GET /admin/config`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Change {
    pub generation: u64,
    /// RFC 3339, to the second.
    pub at: String,
    /// What triggered it, as in `applied_by`.
    pub trigger: String,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// `id:old->new` weights.
    pub reweighted: Vec<String>,
    /// `id:old->new` URLs.
    pub moved: Vec<String>,
    /// Shares of sampled keys whose replica set, or primary, changed.
    pub replica_sets_changed: f64,
    pub primaries_changed: f64,
}

/// The last applied reloads, newest first.
#[derive(Debug, Default)]
pub(crate) struct Changes(Mutex<VecDeque<Change>>);

impl Changes {
    pub(crate) fn recent(&self) -> Vec<Change> {
        crate::lock(&self.0).iter().cloned().collect()
    }

    fn push(&self, change: Change) {
        let mut kept = crate::lock(&self.0);
        // Summaries are worked out on threads of their own: keep generation order.
        let at = kept
            .iter()
            .position(|c| c.generation < change.generation)
            .unwrap_or(kept.len());
        kept.insert(at, change);
        kept.truncate(KEPT);
    }
}

/// Keys sampled for the change summary logged at each reload: 20,000, fewer for large
/// memberships so that the sampling costs about the same whatever the size (each key is
/// ranked on every node, twice); never fewer than 1,000 (a share within about 1.5%).
fn summary_keys(nodes: usize) -> usize {
    (20_000_000 / nodes.max(1)).clamp(1_000, 20_000)
}

/// One line per applied reload: the generation, what changed in the membership, and what the
/// change does to placement; kept in `changes`.
pub(super) fn log_change(old: &Snapshot, new: &Snapshot, trigger: Trigger, changes: &Changes) {
    let (old_cfg, new_cfg) = (&old.config, &new.config);
    let (old_p, new_p) = (&old.placement, &new.placement);
    let added: Vec<&str> = new_p
        .members
        .iter()
        .filter(|m| old_p.member(m.id()).is_none())
        .map(|m| m.id())
        .collect();
    let removed: Vec<&str> = old_p
        .members
        .iter()
        .filter(|m| new_p.member(m.id()).is_none())
        .map(|m| m.id())
        .collect();
    let mut reweighted = Vec::new();
    let mut moved = Vec::new();
    for n in new_p.members.iter() {
        if let Some(o) = old_p.member(n.id()) {
            let (ow, nw) = (o.spec.weight.get(), n.spec.weight.get());
            if ow != nw {
                reweighted.push(format!("{}:{ow}->{nw}", n.id()));
            }
            if o.spec.url != n.spec.url {
                moved.push(format!("{}:{}->{}", n.id(), o.spec.url, n.spec.url));
            }
        }
    }
    let started = std::time::Instant::now();
    let summary = ChangeSummary::sample(
        (&old_p.ring, old_p.replicas),
        (&new_p.ring, new_p.replicas),
        summary_keys(old_p.members.len().max(new_p.members.len())),
    );
    tracing::info!(
        generation = new.generation,
        trigger = trigger.name(),
        nodes = new_p.members.len(),
        replicas = new_cfg.replicas,
        write_quorum = new_cfg.write_quorum,
        added = ?added,
        removed = ?removed,
        reweighted = ?reweighted,
        moved = ?moved,
        replica_sets_changed = %format!("{:.2}%", summary.replica_sets_changed * 100.0),
        primaries_changed = %format!("{:.2}%", summary.primaries_changed * 100.0),
        handoff_window_s = if new.placement_changed() { new_cfg.handoff_window_s } else { 0 },
        summary_ms = started.elapsed().as_millis() as u64,
        "config reloaded"
    );
    if old_cfg.listen != new_cfg.listen
        || old_cfg.admin != new_cfg.admin
        || old_cfg.resp_listen != new_cfg.resp_listen
        || old_cfg.memcache_listen != new_cfg.memcache_listen
        || old_cfg.log_format != new_cfg.log_format
        || old_cfg.tls.serves_https() != new_cfg.tls.serves_https()
        || old_cfg.limits != new_cfg.limits
    {
        tracing::warn!(
            old_listen = %old_cfg.listen,
            new_listen = %new_cfg.listen,
            old_admin = %old_cfg.admin,
            new_admin = %new_cfg.admin,
            "listen, admin, resp_listen, memcache_listen, log_format, HTTPS on or off, or limits changed; restart hrwproxy to apply them (the listeners keep their old settings)"
        );
    }
    let owned = |ids: Vec<&str>| ids.into_iter().map(str::to_owned).collect();
    changes.push(Change {
        generation: new.generation,
        at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        trigger: trigger.name().to_owned(),
        added: owned(added),
        removed: owned(removed),
        reweighted,
        moved,
        replica_sets_changed: summary.replica_sets_changed,
        primaries_changed: summary.primaries_changed,
    });
}
