//! An in-memory backend for unit tests of the data path: a map, plus failures, delays and
//! gates that a test sets per operation, and a count of every call.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;

use super::{Backend, BackendError, BoxFuture, Ttl};
use crate::lock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Op {
    Get,
    Put,
    PutIfAbsent,
    Delete,
    List,
    Health,
}

#[derive(Debug, Default)]
struct State {
    map: BTreeMap<Vec<u8>, Bytes>,
    failures: HashMap<Op, BackendError>,
    delays: HashMap<Op, Duration>,
    gates: HashMap<Op, Arc<Semaphore>>,
    calls: HashMap<Op, usize>,
}

#[derive(Debug, Default)]
pub(crate) struct FakeBackend {
    state: Mutex<State>,
}

impl FakeBackend {
    pub(crate) fn insert(&self, key: &[u8], value: &[u8]) {
        lock(&self.state)
            .map
            .insert(key.to_vec(), Bytes::copy_from_slice(value));
    }

    pub(crate) fn value(&self, key: &[u8]) -> Option<Bytes> {
        lock(&self.state).map.get(key).cloned()
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
        for op in [
            Op::Get,
            Op::Put,
            Op::PutIfAbsent,
            Op::Delete,
            Op::List,
            Op::Health,
        ] {
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
    fn get<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<Option<Bytes>, BackendError>> {
        Box::pin(async move {
            self.enter(Op::Get).await?;
            Ok(self.value(key))
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a [u8],
        value: Bytes,
        _ttl: Option<Ttl>,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            self.enter(Op::Put).await?;
            lock(&self.state).map.insert(key.to_vec(), value);
            Ok(())
        })
    }

    fn put_if_absent<'a>(
        &'a self,
        key: &'a [u8],
        value: Bytes,
        _ttl: Option<Ttl>,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        Box::pin(async move {
            self.enter(Op::PutIfAbsent).await?;
            let mut s = lock(&self.state);
            if s.map.contains_key(key) {
                return Ok(false);
            }
            s.map.insert(key.to_vec(), value);
            Ok(true)
        })
    }

    fn delete<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            self.enter(Op::Delete).await?;
            lock(&self.state).map.remove(key);
            Ok(())
        })
    }

    fn list<'a>(
        &'a self,
        after: Option<&'a [u8]>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Bytes>, BackendError>> {
        Box::pin(async move {
            self.enter(Op::List).await?;
            use std::ops::Bound;
            let start = after.map_or(Bound::Unbounded, Bound::Excluded);
            Ok(lock(&self.state)
                .map
                .range::<[u8], _>((start, Bound::Unbounded))
                .take(limit)
                .map(|(k, _)| Bytes::copy_from_slice(k))
                .collect())
        })
    }

    fn health(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move { self.enter(Op::Health).await })
    }
}
