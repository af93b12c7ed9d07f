//! What a read or a write came to, in the terms the response needs: a value and who gave it,
//! a miss, acks, or a failure already classified (the status is decided here, once, from the
//! attempts; `respond` only maps the class to HTTP).

use std::sync::Arc;

use bytes::Bytes;

use crate::backend::BackendError;
use crate::cluster::Member;
use crate::version::Version;

/// What happened on one node, for error bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attempted {
    pub node: String,
    pub result: Result<&'static str, BackendError>,
}

impl Attempted {
    pub(crate) fn failed(member: &Member, error: BackendError) -> Attempted {
        Attempted {
            node: member.id().to_owned(),
            result: Err(error),
        }
    }

    pub(crate) fn missed(member: &Member) -> Attempted {
        Attempted {
            node: member.id().to_owned(),
            result: Ok("not found"),
        }
    }
}

/// Why a request could not be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The request's deadline ran out; for a write, the outcome is unknown.
    Deadline,
    /// Every replica of the key is ejected.
    AllEjected,
    /// Every replica asked timed out.
    AllTimedOut,
    /// Replicas answered with errors or malformed replies.
    Unanswered,
    /// A write missed its ack level.
    AckLevelMissed,
    /// A node leads back to a proxy the request already passed.
    Loop,
}

impl Failure {
    /// The class of a read that found nothing usable.
    pub(crate) fn of_read(attempts: &[Attempted], deadline_exceeded: bool) -> Failure {
        let all = |f: fn(&BackendError) -> bool| {
            !attempts.is_empty()
                && attempts
                    .iter()
                    .all(|a| a.result.as_ref().err().is_some_and(f))
        };
        let looped = attempts.iter().any(|a| a.result == Err(BackendError::Loop));
        if deadline_exceeded {
            Failure::Deadline
        } else if looped {
            Failure::Loop
        } else if all(|e| matches!(e, BackendError::Ejected)) {
            Failure::AllEjected
        } else if all(|e| matches!(e, BackendError::Timeout(_))) {
            Failure::AllTimedOut
        } else {
            Failure::Unanswered
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum ReadOutcome {
    /// The newest of the answers is this value.
    Found {
        value: Bytes,
        version: Version,
        /// Seconds since the Unix epoch when it expires; `None` for never.
        expires: Option<u64>,
        node: Arc<Member>,
        /// The generation the node was a replica in, when it answered for handoff.
        handoff_from: Option<u64>,
    },
    /// The key is absent on enough replicas that no acknowledged write can be elsewhere, or
    /// the newest answer is a tombstone (its version given).
    Missing { deleted: Option<Version> },
    Failed {
        why: Failure,
        attempts: Vec<Attempted>,
    },
}

#[derive(Debug)]
pub(crate) struct WriteOutcome {
    /// The write's version (none without versioning).
    pub version: Option<Version>,
    pub acks: usize,
    pub replicas: usize,
    /// Acks the request needed (its ack level).
    pub required: usize,
    /// Failures seen before the answer was decided (later ones are only logged).
    pub failures: Vec<Attempted>,
    /// The request's deadline ran out before the ack level was reached or missed.
    pub deadline_exceeded: bool,
}

impl WriteOutcome {
    pub(crate) fn failure(&self) -> Option<Failure> {
        let looped = self
            .failures
            .iter()
            .any(|a| a.result == Err(BackendError::Loop));
        if self.acks >= self.required {
            None
        } else if self.deadline_exceeded {
            Some(Failure::Deadline)
        } else if looped {
            Some(Failure::Loop)
        } else {
            Some(Failure::AckLevelMissed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(result: Result<&'static str, BackendError>) -> Attempted {
        Attempted {
            node: "n".into(),
            result,
        }
    }

    #[test]
    fn reads_are_classified_by_what_every_replica_did() {
        let ejected = attempt(Err(BackendError::Ejected));
        let timeout = attempt(Err(BackendError::Timeout(5)));
        let refused = attempt(Err(BackendError::Refused));
        let miss = attempt(Ok("not found"));
        let class = |a: &[Attempted]| Failure::of_read(a, false);
        assert_eq!(
            class(&[ejected.clone(), ejected.clone()]),
            Failure::AllEjected
        );
        assert_eq!(
            class(&[timeout.clone(), timeout.clone()]),
            Failure::AllTimedOut
        );
        assert_eq!(
            class(&[ejected.clone(), timeout.clone()]),
            Failure::Unanswered
        );
        assert_eq!(class(&[refused.clone(), miss]), Failure::Unanswered);
        let looped = attempt(Err(BackendError::Loop));
        assert_eq!(class(&[refused, looped]), Failure::Loop);
        assert_eq!(class(&[]), Failure::Unanswered);
        assert_eq!(Failure::of_read(&[ejected], true), Failure::Deadline);
    }
}
