//! Zero-miss handoff after a placement change: for a window after the change, reads also ask
//! the replicas a key had in earlier placements, and the newest version wins wherever it is;
//! read repair then copies it to the current replicas (put-if-newer), so an older copy never
//! overwrites or resurrects anything, whichever proxy makes it.

use std::sync::Arc;

use crate::cluster::{Member, Snapshot};

/// A replica a key had in an earlier placement, and not in the current one.
#[derive(Debug, Clone)]
pub(crate) struct Earlier {
    pub member: Arc<Member>,
    pub generation: u64,
}

/// The key's replicas in the placements whose window is open, newest first, without the
/// current replicas and repeats. A node is its id: the id decides placement, and a node whose
/// URL changed is the same storage reached another way.
pub(crate) fn earlier_replicas(snap: &Snapshot, key: &[u8]) -> Vec<Earlier> {
    let current = snap.placement.replicas(key);
    let mut found: Vec<Earlier> = Vec::new();
    for window in snap.open_windows() {
        let old = &window.placement;
        for member in old.replicas(key).iter() {
            let id = member.id();
            if current.contains(id) || found.iter().any(|e| e.member.id() == id) {
                continue;
            }
            found.push(Earlier {
                member: member.clone(),
                generation: old.generation,
            });
        }
    }
    found
}
