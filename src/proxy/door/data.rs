//! Reads and writes for the cache-protocol doors: the data path of the HTTP API (placement,
//! replicas and ack level, fallback and hedging, versions, handoff), with its key and value
//! limits, and each failure as one line naming what the replicas did.

use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use crate::cluster::Snapshot;
use crate::metrics::Op;
use crate::net::{key, RequestError};
use crate::proxy::coalesce::Coalescer;
use crate::proxy::outcome::{Failure, ReadOutcome};
use crate::proxy::write::{self, WriteOp};
use crate::proxy::DataPath;
use crate::version::Version;

/// A value read, with what a protocol may report about it.
#[derive(Debug)]
pub(crate) struct Found {
    pub value: Bytes,
    pub version: Version,
    /// Seconds since the Unix epoch when it expires; `None` for never.
    pub expires: Option<u64>,
}

/// A read as a command sees it.
#[derive(Debug)]
pub(crate) enum Read {
    Value(Found),
    Absent,
    Failed(Failed),
}

/// Why a read or write failed: the client's request (a key or value over the limits), or
/// the replicas (which failure, and what each did).
#[derive(Debug)]
pub(crate) struct Failed {
    /// `None` when the request was at fault.
    pub replicas: Option<Failure>,
    pub message: String,
    /// What the HTTP API answers the same failure with.
    status: u16,
}

impl Failed {
    fn request(e: RequestError) -> Failed {
        Failed {
            replicas: None,
            message: e.to_string(),
            status: e.status().as_u16(),
        }
    }

    fn replicas(why: Failure, message: String) -> Failed {
        Failed {
            replicas: Some(why),
            message,
            status: why.status().as_u16(),
        }
    }
}

/// The most value bytes one multi-key reply holds (or one value, if larger).
const MAX_REPLY: usize = 64 * 1024 * 1024;

/// Whether the values `reads` found fit one reply; a client asking for more is told to ask
/// for fewer keys at a time, so that one command cannot make the proxy hold gigabytes.
pub(crate) fn fits_one_reply(reads: &[Read], max_value_bytes: usize) -> Result<(), String> {
    let total: usize = reads
        .iter()
        .map(|read| match read {
            Read::Value(found) => found.value.len(),
            Read::Absent | Read::Failed(_) => 0,
        })
        .sum();
    let max = MAX_REPLY.max(max_value_bytes);
    if total <= max {
        Ok(())
    } else {
        Err(format!(
            "the values add up to {total} bytes, more than one reply holds ({max}); ask for fewer keys at a time"
        ))
    }
}

/// A read, counted in `hrw_requests_total` as the HTTP GET it stands for.
pub(crate) async fn read(path: &Arc<DataPath>, snap: &Arc<Snapshot>, key: &Bytes) -> Read {
    let started = Instant::now();
    let read = read_replicas(path, snap, key).await;
    let status = match &read {
        Read::Value(_) => 200,
        Read::Absent => 404,
        Read::Failed(failed) => failed.status,
    };
    let took = started.elapsed();
    path.cluster.metrics.request(Op::get, status, took);
    read
}

async fn read_replicas(path: &Arc<DataPath>, snap: &Arc<Snapshot>, key: &Bytes) -> Read {
    let config = &snap.config;
    if let Err(failed) = check_key(key, config.max_key_bytes) {
        return Read::Failed(failed);
    }
    path.hot_keys.offer(key);
    let deadline = Instant::now() + config.timeouts.deadline();
    match Coalescer::read(path, snap, key, config.read_quorum, deadline).await {
        ReadOutcome::Found {
            value,
            version,
            expires,
            ..
        } => Read::Value(Found {
            value,
            version,
            expires,
        }),
        ReadOutcome::Missing { .. } => Read::Absent,
        ReadOutcome::Failed(failure) => {
            Read::Failed(Failed::replicas(failure.why, failure.message()))
        }
    }
}

/// A write at the configured ack level, counted in `hrw_requests_total` as the HTTP PUT or
/// DELETE it stands for.
pub(crate) async fn write(
    path: &Arc<DataPath>,
    snap: &Arc<Snapshot>,
    key: &Bytes,
    op: WriteOp,
) -> Result<(), Failed> {
    let started = Instant::now();
    let counted = match op {
        WriteOp::Put(..) => Op::put,
        WriteOp::Delete => Op::delete,
    };
    let written = write_replicas(path, snap, key, op).await;
    let status = written
        .as_ref()
        .map_or_else(|failed| failed.status, |()| 204);
    path.cluster
        .metrics
        .request(counted, status, started.elapsed());
    written
}

async fn write_replicas(
    path: &Arc<DataPath>,
    snap: &Arc<Snapshot>,
    key: &Bytes,
    op: WriteOp,
) -> Result<(), Failed> {
    let config = &snap.config;
    check_key(key, config.max_key_bytes)?;
    if let WriteOp::Put(value, _) = &op {
        if value.len() > config.max_value_bytes {
            let (len, max) = (value.len() as u64, config.max_value_bytes);
            return Err(Failed::request(RequestError::ValueTooLarge { len, max }));
        }
    }
    let deadline = Instant::now() + config.timeouts.deadline();
    let required = config.write_quorum;
    let outcome = write::write(path, snap, key.clone(), op, required, None, deadline).await;
    match outcome.failure() {
        None => Ok(()),
        Some(why) => Err(Failed::replicas(why, outcome.message())),
    }
}

/// The key limits of the HTTP API, with its messages (but an empty key's: there is no path
/// to name).
fn check_key(key: &[u8], max: usize) -> Result<(), Failed> {
    key::check(key, max).map_err(|e| match e {
        RequestError::EmptyKey { .. } => Failed {
            replicas: None,
            message: "empty key".into(),
            status: e.status().as_u16(),
        },
        e => Failed::request(e),
    })
}
