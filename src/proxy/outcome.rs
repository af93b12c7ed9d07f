//! What a read or a write came to, in the terms the response needs: a value and who gave it,
//! a miss, acks, or a failure already classified (the status is decided here, once, from the
//! attempts; `respond` only maps the class to HTTP), and the one wording of a failure that the
//! HTTP body, the cache-protocol doors and the log all use.

use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;

use crate::backend::BackendError;
use crate::cluster::Member;
use crate::version::Version;

/// What happened on one node, for error bodies: an answer (`Ok`, what it was) or a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attempted {
    pub node: String,
    pub result: Result<&'static str, BackendError>,
    /// The replica out of service a stand-in was asked in place of.
    pub standing_in_for: Option<String>,
}

/// A node answered a read (a value, a tombstone, or nothing: each counts toward R).
pub(crate) const ANSWERED: &str = "answered";
/// A node had nothing for a read without versions (which waits for a value, not for R).
pub(crate) const NOT_FOUND: &str = "not found";
/// A node was asked and had not answered when the request's deadline ran out.
pub(crate) const NO_ANSWER: &str = "no answer before the deadline";
/// A node stored a write (or held something as new or newer).
pub(crate) const ACKNOWLEDGED: &str = "acknowledged";

impl Attempted {
    pub(crate) fn failed(member: &Member, error: BackendError) -> Attempted {
        Attempted {
            node: member.id().to_owned(),
            result: Err(error),
            standing_in_for: None,
        }
    }

    pub(crate) fn said(member: &Member, what: &'static str) -> Attempted {
        Attempted {
            node: member.id().to_owned(),
            result: Ok(what),
            standing_in_for: None,
        }
    }

    /// The same, asked in place of `replica`.
    pub(crate) fn standing_in_for(mut self, replica: Option<&Member>) -> Attempted {
        self.standing_in_for = replica.map(|r| r.id().to_owned());
        self
    }
}

/// The nodes and what each did, for one line: `a ejected, b timeout (timed out after 100
/// ms), c answered`.
pub(crate) fn describe(attempts: &[Attempted]) -> String {
    if attempts.is_empty() {
        return "no node had answered".into();
    }
    let mut line = String::new();
    for (i, a) in attempts.iter().enumerate() {
        if i > 0 {
            line.push_str(", ");
        }
        let _ = match &a.result {
            Ok(what) => write!(line, "{} {what}", a.node),
            Err(BackendError::Ejected) => write!(line, "{} ejected", a.node),
            Err(e) => write!(line, "{} {} ({e})", a.node, e.kind()),
        };
        if let Some(replica) = &a.standing_in_for {
            let _ = write!(line, " for {replica}");
        }
    }
    line
}

/// Why a request could not be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The request's deadline ran out; for a write, the outcome is unknown.
    Deadline,
    /// Too few nodes in service: every node that did not answer was ejected, not asked.
    AllEjected,
    /// Every node asked that did not answer timed out.
    AllTimedOut,
    /// Nodes answered with errors or malformed replies.
    Unanswered,
    /// A write missed its ack level.
    AckLevelMissed,
    /// A node leads back to a proxy the request already passed.
    Loop,
}

/// Why a loop is a 508.
pub(crate) const LOOP: &str =
    "loop detected: a node leads back to a proxy this request already passed; check the node URLs";

impl Failure {
    /// The class of a read that found nothing usable, from what the nodes that did not
    /// answer did.
    pub(crate) fn of_read(attempts: &[Attempted], deadline_exceeded: bool) -> Failure {
        let failures = || attempts.iter().filter_map(|a| a.result.as_ref().err());
        let all = |f: fn(&BackendError) -> bool| failures().next().is_some() && failures().all(f);
        if deadline_exceeded {
            Failure::Deadline
        } else if failures().any(|e| *e == BackendError::Loop) {
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

/// A read short of its R answers.
#[derive(Debug, Clone)]
pub(crate) struct ReadFailure {
    pub why: Failure,
    /// Answers counted toward R, and R.
    pub answers: usize,
    pub needed: usize,
    /// Every node considered, in rank order, and what it did.
    pub nodes: Vec<Attempted>,
}

impl ReadFailure {
    /// The one wording of the failure: `1 of 2 answers: a ejected, b ejected, c answered`.
    pub(crate) fn message(&self) -> String {
        let (answers, needed, nodes) = (self.answers, self.needed, describe(&self.nodes));
        match self.why {
            Failure::Loop => LOOP.into(),
            Failure::Deadline => format!(
                "the request's deadline ran out with {answers} of {needed} answers: {nodes}"
            ),
            // R answers came, all without the key, and an earlier replica that may hold it
            // could not be asked.
            _ if answers >= needed => format!(
                "no answer holds the key and an earlier replica could not be asked: {nodes}"
            ),
            _ => format!("read quorum not reached: {answers} of {needed} answers: {nodes}"),
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
    /// The key is absent on R nodes (replicas, or in sloppy mode stand-ins for them), or the
    /// newest answer is a tombstone (its version given).
    Missing {
        deleted: Option<Version>,
    },
    Failed(ReadFailure),
}

#[derive(Debug)]
pub(crate) struct WriteOutcome {
    /// The write's version (none without versioning).
    pub version: Option<Version>,
    pub acks: usize,
    pub replicas: usize,
    /// Acks the request needed (its ack level).
    pub required: usize,
    /// Of the acks, those stand-ins gave for replicas out of service.
    pub stand_in_acks: usize,
    /// What each node did before the answer was decided, in the order they answered
    /// (later ones are only logged).
    pub nodes: Vec<Attempted>,
    /// The request's deadline ran out before the ack level was reached or missed.
    pub deadline_exceeded: bool,
}

impl WriteOutcome {
    pub(crate) fn failure(&self) -> Option<Failure> {
        let looped = self
            .nodes
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

    /// The one wording of a failed write: `write quorum not reached: 1 of 2 acks: ...`.
    pub(crate) fn message(&self) -> String {
        let (acks, required, nodes) = (self.acks, self.required, describe(&self.nodes));
        match self.failure() {
            Some(Failure::Loop) => LOOP.into(),
            Some(Failure::Deadline) => format!(
                "the request's deadline ran out with {acks} of {required} acks needed; the outcome is unknown: {nodes}"
            ),
            _ => format!("write quorum not reached: {acks} of {required} acks needed: {nodes}"),
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
            standing_in_for: None,
        }
    }

    #[test]
    fn reads_are_classified_by_what_every_replica_did() {
        let ejected = attempt(Err(BackendError::Ejected));
        let timeout = attempt(Err(BackendError::Timeout(5)));
        let refused = attempt(Err(BackendError::Refused));
        let miss = attempt(Ok(NOT_FOUND));
        let answered = attempt(Ok(ANSWERED));
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
        // Answers do not change the class: what the nodes that did not answer did does.
        assert_eq!(
            class(&[ejected.clone(), ejected.clone(), answered.clone()]),
            Failure::AllEjected
        );
        assert_eq!(class(&[answered]), Failure::Unanswered);
        let looped = attempt(Err(BackendError::Loop));
        assert_eq!(class(&[refused, looped]), Failure::Loop);
        assert_eq!(class(&[]), Failure::Unanswered);
        assert_eq!(Failure::of_read(&[ejected], true), Failure::Deadline);
    }

    #[test]
    fn a_failure_says_how_many_answered_and_what_each_node_did() {
        let node = |id: &str, result| Attempted {
            node: id.into(),
            result,
            standing_in_for: None,
        };
        let failure = ReadFailure {
            why: Failure::AllEjected,
            answers: 1,
            needed: 2,
            nodes: vec![
                node("n0", Err(BackendError::Ejected)),
                node("n1", Err(BackendError::Ejected)),
                node("n2", Ok(ANSWERED)),
            ],
        };
        assert_eq!(
            failure.message(),
            "read quorum not reached: 1 of 2 answers: n0 ejected, n1 ejected, n2 answered"
        );
        let write = WriteOutcome {
            version: None,
            acks: 1,
            replicas: 2,
            required: 2,
            stand_in_acks: 0,
            nodes: vec![
                node("a", Ok(ACKNOWLEDGED)),
                node("b", Err(BackendError::Refused)),
            ],
            deadline_exceeded: false,
        };
        assert_eq!(
            write.message(),
            "write quorum not reached: 1 of 2 acks needed: a acknowledged, b refused (connection refused)"
        );
    }
}
