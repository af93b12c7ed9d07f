//! An in-memory backend for unit tests of the data path: the built-in node's [`Store`], plus
//! failures, delays and gates that a test sets per operation, and a count of every call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;

use super::memory::Store;
use super::{Backend, BackendError, BoxFuture, Condition, HintPage, Listing, Stored, Written};
use crate::lock;
use crate::version::Version;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Op {
    Get,
    Put,
    Remove,
    List,
    Health,
}

#[derive(Debug, Default)]
struct State {
    failures: HashMap<Op, BackendError>,
    delays: HashMap<Op, Duration>,
    gates: HashMap<Op, Arc<Semaphore>>,
    calls: HashMap<Op, usize>,
}

#[derive(Debug, Default)]
pub(crate) struct FakeBackend {
    store: Store,
    state: Mutex<State>,
}

impl FakeBackend {
    /// Puts `value` (a tombstone when `None`) at `version`, whatever the node holds.
    pub(crate) fn insert(&self, key: &[u8], version: u128, value: Option<&[u8]>) {
        let stored = Stored::new(Version(version), value.map(Bytes::copy_from_slice));
        self.store.put(key.to_vec(), stored, Condition::Always);
    }

    /// What the node holds for `key` (unless it expired).
    pub(crate) fn held(&self, key: &[u8]) -> Option<Stored> {
        self.store.get(key)
    }

    /// The hints the node holds: (key, owner, version), by key.
    pub(crate) fn hints_held(&self) -> Vec<(String, String, u128)> {
        self.store
            .hints_after(None, usize::MAX)
            .into_iter()
            .map(|h| {
                (
                    String::from_utf8_lossy(&h.key).into_owned(),
                    h.owner,
                    h.version.0,
                )
            })
            .collect()
    }

    /// The value the node holds for `key` (not a tombstone).
    pub(crate) fn value(&self, key: &[u8]) -> Option<Bytes> {
        self.held(key).and_then(|s| s.value)
    }

    /// Every call of `op` fails with `error` from now on (`None` heals it).
    pub(crate) fn fail(&self, op: Op, error: Option<BackendError>) {
        let mut s = lock(&self.state);
        match error {
            Some(e) => s.failures.insert(op, e),
            None => s.failures.remove(&op),
        };
    }

    /// Every operation fails as a node that is down would.
    pub(crate) fn go_down(&self) {
        for op in [Op::Get, Op::Put, Op::Remove, Op::List, Op::Health] {
            self.fail(op, Some(BackendError::Refused));
        }
    }

    /// Every call of `op` takes `delay` (on tokio's clock, so a paused test does not wait).
    pub(crate) fn delay(&self, op: Op, delay: Duration) {
        lock(&self.state).delays.insert(op, delay);
    }

    /// Calls of `op` wait until [`FakeBackend::release`] lets them through, one per permit.
    pub(crate) fn hold(&self, op: Op) {
        lock(&self.state)
            .gates
            .insert(op, Arc::new(Semaphore::new(0)));
    }

    pub(crate) fn release(&self, op: Op, calls: usize) {
        if let Some(gate) = lock(&self.state).gates.get(&op) {
            gate.add_permits(calls);
        }
    }

    pub(crate) fn calls(&self, op: Op) -> usize {
        lock(&self.state).calls.get(&op).copied().unwrap_or(0)
    }

    /// Counts the call, waits out its gate and delay, then says whether it fails.
    async fn enter(&self, op: Op) -> Result<(), BackendError> {
        let (gate, delay) = {
            let mut s = lock(&self.state);
            *s.calls.entry(op).or_default() += 1;
            (s.gates.get(&op).cloned(), s.delays.get(&op).copied())
        };
        if let Some(gate) = gate {
            gate.acquire().await.expect("never closed").forget();
        }
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        match lock(&self.state).failures.get(&op) {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
}

impl Backend for FakeBackend {
    fn get<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<Option<Stored>, BackendError>> {
        // What the node holds when the call reaches it: a gate or a delay holds the answer
        // on its way back.
        Box::pin(async move {
            let held = self.held(key);
            self.enter(Op::Get).await?;
            Ok(held)
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a [u8],
        stored: Stored,
        condition: Condition,
    ) -> BoxFuture<'a, Result<Written, BackendError>> {
        Box::pin(async move {
            self.enter(Op::Put).await?;
            Ok(self.store.put(key.to_vec(), stored, condition).0)
        })
    }

    fn remove<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            self.enter(Op::Remove).await?;
            self.store.remove(key);
            Ok(())
        })
    }

    fn list<'a>(
        &'a self,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Listing, BackendError>> {
        Box::pin(async move {
            self.enter(Op::List).await?;
            let keys: Vec<Bytes> = self
                .store
                .entries_after(cursor.map(str::as_bytes), limit)
                .into_iter()
                .map(|(k, _)| Bytes::from(k))
                .collect();
            // The fake's cursor is the last key itself (test keys are text).
            let next = (keys.len() >= limit)
                .then(|| keys.last().map(|k| String::from_utf8_lossy(k).into_owned()))
                .flatten();
            Ok(Listing { keys, next })
        })
    }

    fn health(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move { self.enter(Op::Health).await })
    }

    fn keeps_hints(&self) -> bool {
        true
    }

    fn put_hinted<'a>(
        &'a self,
        key: &'a [u8],
        stored: Stored,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<Written, BackendError>> {
        Box::pin(async move {
            self.enter(Op::Put).await?;
            Ok(self.store.put_hinted(key.to_vec(), stored, owner).0)
        })
    }

    fn hints<'a>(
        &'a self,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<HintPage, BackendError>> {
        Box::pin(async move {
            self.enter(Op::List).await?;
            let hints = self.store.hints_after(cursor.map(str::as_bytes), limit);
            let next = (hints.len() >= limit)
                .then(|| {
                    hints
                        .last()
                        .map(|h| String::from_utf8_lossy(&h.key).into_owned())
                })
                .flatten();
            Ok(HintPage { hints, next })
        })
    }

    fn drop_hint<'a>(
        &'a self,
        key: &'a [u8],
        owner: &'a str,
        up_to: Version,
        release: bool,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            self.enter(Op::Remove).await?;
            self.store.drop_hint(key, owner, up_to, release);
            Ok(())
        })
    }
}
