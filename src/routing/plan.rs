//! From a key's ranking to what a request does: the replicas to write and the acks to wait for,
//! the replicas to read and when a miss is final.

use super::rendezvous::TopR;

/// A PUT or DELETE: send to every replica, answer once `quorum` of them acknowledged.
#[derive(Debug, Clone, Copy)]
pub struct WritePlan {
    pub replicas: TopR,
    pub quorum: usize,
}

/// A GET: ask the replicas in rank order, moving on after an error, and after a miss until
/// `misses_to_stop` replicas said the key is absent.
#[derive(Debug, Clone, Copy)]
pub struct ReadPlan {
    pub replicas: TopR,
    pub misses_to_stop: usize,
}

impl WritePlan {
    pub fn new(replicas: TopR, quorum: usize) -> WritePlan {
        WritePlan {
            replicas,
            quorum: quorum.clamp(1, replicas.len().max(1)),
        }
    }
}

impl ReadPlan {
    /// An acknowledged write is on at least `write_quorum` of the `r` replicas, so once
    /// `r - write_quorum + 1` replicas said "absent" no acknowledged write can be on the rest:
    /// the miss is final. With `write_quorum == r` the first miss is final.
    pub fn new(replicas: TopR, write_quorum: usize) -> ReadPlan {
        let r = replicas.len();
        ReadPlan {
            replicas,
            misses_to_stop: (r + 1).saturating_sub(write_quorum).clamp(1, r.max(1)),
        }
    }
}
