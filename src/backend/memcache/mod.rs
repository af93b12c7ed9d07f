//! memcached nodes over the text protocol (`get`, `set`, `add`, `delete`, `version`), on one
//! shared connection per node and worker (`backend::mux`). Keys memcached cannot hold are mapped by
//! [`memcache_key`]. A hint is an item of its own under the `~hint~` prefix (no client key
//! maps there), holding the version its replica missed and which replica and key it is for;
//! hints are found in the key dump and dropped with a compare-and-delete (`md ... C<cas>`,
//! memcached 1.6's meta delete).

mod hints;
mod keys;
mod reply;

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedReadHalf;

pub use self::keys::memcache_key;
use self::keys::{hint_subject, original_key};
use self::reply::{error_reply, read_line, read_value};
use super::mux::{Protocol, Shared};
use super::pool::{connect_tcp, io_error, Failure};
use super::{
    Backend, BackendError, BoxFuture, Condition, HintPage, Listing, Stored, Version, Written,
    MAX_LISTING_BYTES,
};
use crate::config::NodeUrl;
use crate::version::{unix_now, MAX_HEADER_LEN};

/// memcached reads an exptime above 30 days as a Unix time, not a duration.
const MAX_RELATIVE_EXPTIME: u32 = 30 * 24 * 3600;

/// Times a put-if-newer starts over after losing a race to another writer.
const MAX_RACES: usize = 5;

pub(crate) struct MemcacheBackend {
    addr: String,
    connect_timeout: Duration,
    /// The largest value a `get` accepts (plus an envelope).
    max_value_bytes: usize,
    /// Values in the envelope (put-if-newer), or as they are.
    versioned: bool,
    /// The shared connection of each worker.
    shared: Shared<Memcached>,
    /// Hint listings so far, for [`FULL_DUMP_EVERY`].
    hint_passes: AtomicU64,
}

/// memcached's text protocol on a shared connection: replies come in request order.
pub(crate) struct Memcached;

/// What a request reads back.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Expect {
    /// One line (`STORED`, `DELETED`, `VERSION ...`).
    Line,
    /// A `get`/`gets` reply: a value of at most this many bytes (and its cas unique), or none.
    Value { max: usize },
}

#[derive(Debug)]
pub(crate) enum Reply {
    Line(String),
    Value(Option<(Bytes, Option<u64>)>),
}

impl Protocol for Memcached {
    type Expect = Expect;
    type Reply = Reply;
    type Reader = BufReader<OwnedReadHalf>;

    fn reader(read: OwnedReadHalf) -> Self::Reader {
        BufReader::new(read)
    }

    async fn read(read: &mut Self::Reader, expect: Expect) -> Result<(Reply, bool), Failure> {
        let line = match read_line(read).await {
            Ok(Some(line)) => line,
            Ok(None) => return Err(Failure::Stale),
            Err(e) => return Err(Failure::Failed(e)),
        };
        let reply = match expect {
            Expect::Line => Reply::Line(line),
            Expect::Value { max } => Reply::Value(
                read_value(read, &line, max)
                    .await
                    .map_err(Failure::Failed)?,
            ),
        };
        Ok((reply, true))
    }
}

impl std::fmt::Debug for MemcacheBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemcacheBackend")
            .field("addr", &self.addr)
            .finish()
    }
}

/// The exptime field for what is stored: the seconds it has left, or (beyond 30 days, where
/// memcached reads a Unix time) its expiry time itself; 0 for never.
fn exptime(stored: &Stored) -> u64 {
    match (stored.expires, stored.seconds_left(unix_now())) {
        (Some(at), Some(left)) if left > MAX_RELATIVE_EXPTIME => at,
        (_, left) => left.map_or(0, u64::from),
    }
}

impl MemcacheBackend {
    pub(crate) fn new(
        url: &NodeUrl,
        connect_timeout: Duration,
        max_value_bytes: usize,
        versioned: bool,
    ) -> MemcacheBackend {
        let addr = format!("{}:{}", url.host, url.port);
        MemcacheBackend {
            shared: Shared::new(addr.clone(), connect_timeout),
            addr,
            connect_timeout,
            max_value_bytes,
            versioned,
            hint_passes: AtomicU64::new(0),
        }
    }

    /// Sends `request` (its parts joined) on this worker's shared connection and reads its
    /// reply.
    async fn call(&self, request: &[&[u8]], expect: Expect) -> Result<Reply, BackendError> {
        let mut bytes = BytesMut::with_capacity(request.iter().map(|part| part.len()).sum());
        for part in request {
            bytes.put_slice(part);
        }
        self.shared.call(bytes.freeze(), expect).await
    }

    /// Sends `request` and reads one reply line.
    async fn line(&self, request: &[&[u8]]) -> Result<String, BackendError> {
        match self.call(request, Expect::Line).await? {
            Reply::Line(line) => Ok(line),
            Reply::Value(_) => unreachable!("a line was asked for"),
        }
    }

    /// `set`, `add` or `cas` (with the unique a `gets` gave) of a client key; true if stored,
    /// false if not (`NOT_STORED`, or `EXISTS` / `NOT_FOUND` for a `cas` that lost a race).
    async fn store(
        &self,
        verb: &str,
        key: &[u8],
        value: &[u8],
        exptime: u64,
        cas: Option<u64>,
    ) -> Result<bool, BackendError> {
        self.store_raw(verb, &memcache_key(key), value, exptime, cas)
            .await
    }

    /// [`MemcacheBackend::store`] under `mkey` as it is (a memcached key, not a client's).
    async fn store_raw(
        &self,
        verb: &str,
        mkey: &[u8],
        value: &[u8],
        exptime: u64,
        cas: Option<u64>,
    ) -> Result<bool, BackendError> {
        let cas = cas.map_or(String::new(), |unique| format!(" {unique}"));
        let header = format!(" 0 {exptime} {}{cas}\r\n", value.len());
        let line = self
            .line(&[
                verb.as_bytes(),
                b" ",
                mkey,
                header.as_bytes(),
                value,
                b"\r\n",
            ])
            .await?;
        match line.as_str() {
            "STORED" => Ok(true),
            "NOT_STORED" | "EXISTS" | "NOT_FOUND" => Ok(false),
            other => Err(error_reply(other)),
        }
    }

    /// `get` or `gets` (`verb`) of `mkey` as it is: the stored bytes, and the cas unique
    /// `gets` adds.
    async fn fetch(
        &self,
        verb: &[u8],
        mkey: &[u8],
    ) -> Result<Option<(Bytes, Option<u64>)>, BackendError> {
        let max = self.max_value_bytes + MAX_HEADER_LEN;
        match self
            .call(&[verb, b" ", mkey, b"\r\n"], Expect::Value { max })
            .await?
        {
            Reply::Value(value) => Ok(value),
            Reply::Line(_) => unreachable!("a value was asked for"),
        }
    }

    /// The bytes a client key holds and their cas unique (`gets`).
    async fn gets(&self, key: &[u8]) -> Result<Option<(Bytes, u64)>, BackendError> {
        self.gets_raw(&memcache_key(key)).await
    }

    /// [`MemcacheBackend::gets`] of `mkey` as it is.
    async fn gets_raw(&self, mkey: &[u8]) -> Result<Option<(Bytes, u64)>, BackendError> {
        match self.fetch(b"gets", mkey).await? {
            None => Ok(None),
            Some((bytes, Some(cas))) => Ok(Some((bytes, cas))),
            Some((_, None)) => Err(BackendError::Protocol("gets gave no cas unique".into())),
        }
    }

    /// Put-if-newer: `gets` the key, compare, then `add` (if absent) or `cas` (if older);
    /// another writer between the two makes it start over, a few times at most.
    async fn put_if_newer(&self, key: &[u8], stored: &Stored) -> Result<Written, BackendError> {
        let (envelope, exptime) = (stored.encode(), exptime(stored));
        for _ in 0..MAX_RACES {
            let landed = match self.gets(key).await? {
                None => self.store("add", key, &envelope, exptime, None).await?,
                Some((bytes, cas)) => {
                    if Stored::decode(bytes).version >= stored.version {
                        return Ok(Written::Kept);
                    }
                    self.store("cas", key, &envelope, exptime, Some(cas))
                        .await?
                }
            };
            if landed {
                return Ok(Written::Stored);
            }
        }
        Err(BackendError::Server(format!(
            "put-if-newer lost {MAX_RACES} races in a row to other writers"
        )))
    }
}

impl MemcacheBackend {
    /// Every key of a `lru_crawler metadump all`, as memcached holds it (URL-decoded), in one
    /// page: memcached cannot resume a dump. On a connection of its own, closed after: a dump
    /// is long and would hold up the shared one.
    async fn dump(&self) -> Result<Vec<Vec<u8>>, BackendError> {
        let mut conn = BufReader::new(connect_tcp(&self.addr, self.connect_timeout).await?);
        let request = b"lru_crawler metadump all\r\n";
        conn.get_mut().write_all(request).await.map_err(io_error)?;
        let closed = || BackendError::Io("connection closed in a key dump".into());
        let mut line = read_line(&mut conn).await?.ok_or_else(closed)?;
        let mut keys = Vec::new();
        let mut listed = 0;
        while line != "END" {
            let Some(encoded) = line
                .strip_prefix("key=")
                .map(|rest| rest.split(' ').next().unwrap_or(""))
            else {
                return Err(match error_reply(&line) {
                    BackendError::Protocol(_) => BackendError::Unsupported,
                    other => other,
                });
            };
            listed += line.len();
            if listed > MAX_LISTING_BYTES {
                return Err(BackendError::Server(format!(
                    "a key dump longer than {MAX_LISTING_BYTES} bytes"
                )));
            }
            // The dump URL-encodes keys.
            keys.extend(
                crate::net::key::decode(encoded, usize::MAX)
                    .ok()
                    .map(|k| k.into_owned()),
            );
            line = read_line(&mut conn).await?.ok_or_else(closed)?;
        }
        Ok(keys)
    }
}

impl Backend for MemcacheBackend {
    fn get<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<Option<Stored>, BackendError>> {
        Box::pin(async move {
            let value = self.fetch(b"get", &memcache_key(key)).await?;
            Ok(value.and_then(|(bytes, _)| Stored::from_node(bytes, self.versioned)))
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a [u8],
        stored: Stored,
        condition: Condition,
    ) -> BoxFuture<'a, Result<Written, BackendError>> {
        Box::pin(async move {
            let verb = match condition {
                Condition::IfNewer => return self.put_if_newer(key, &stored).await,
                Condition::IfAbsent => "add",
                Condition::Always => "set",
            };
            let value = stored.value.as_deref().unwrap_or_default();
            match self.store(verb, key, value, exptime(&stored), None).await? {
                true => Ok(Written::Stored),
                false if verb == "add" => Ok(Written::Kept),
                false => Err(BackendError::Server("set answered NOT_STORED".into())),
            }
        })
    }

    fn remove<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let mkey = memcache_key(key);
            match self.line(&[b"delete ", &mkey, b"\r\n"]).await?.as_str() {
                "DELETED" | "NOT_FOUND" => Ok(()),
                other => Err(error_reply(other)),
            }
        })
    }

    /// The key dump ([`MemcacheBackend::dump`]), mapped back to client keys. Keys mapped to
    /// `~sha~` digests cannot be turned back into theirs and are left out, and so are hints.
    fn list<'a>(
        &'a self,
        _cursor: Option<&'a str>,
        _limit: usize,
    ) -> BoxFuture<'a, Result<Listing, BackendError>> {
        Box::pin(async move {
            let keys = self
                .dump()
                .await?
                .iter()
                .filter_map(|mkey| original_key(mkey))
                .map(Bytes::from)
                .collect();
            Ok(Listing { keys, next: None })
        })
    }

    fn keeps_hints(&self) -> bool {
        self.versioned
    }

    /// The hint first, then the value: a hint without its value hands over nothing and is
    /// dropped; a value without its hint would not be found.
    fn put_hinted<'a>(
        &'a self,
        key: &'a [u8],
        stored: Stored,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<Written, BackendError>> {
        Box::pin(async move {
            self.raise_hint(&hint_subject(owner, key), key, stored.version)
                .await?;
            self.put_if_newer(key, &stored).await
        })
    }

    /// The hints in the key dump (see `hints.rs`); one page.
    fn hints<'a>(
        &'a self,
        _cursor: Option<&'a str>,
        _limit: usize,
    ) -> BoxFuture<'a, Result<HintPage, BackendError>> {
        Box::pin(async move { self.list_hints().await })
    }

    fn drop_hint<'a>(
        &'a self,
        key: &'a [u8],
        owner: &'a str,
        up_to: Version,
        release: bool,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move { self.drop_held_hint(key, owner, up_to, release).await })
    }

    fn health(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            let line = self.line(&[b"version\r\n"]).await?;
            if !line.starts_with("VERSION ") {
                return Err(error_reply(&line));
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_ttls_become_unix_times() {
        let expiring = |expires| Stored {
            expires,
            ..Stored::new(crate::version::Version(1), None)
        };
        let now = unix_now();
        assert_eq!(exptime(&expiring(None)), 0);
        assert_eq!(exptime(&expiring(Some(now + 60))), 60);
        let far = now + u64::from(MAX_RELATIVE_EXPTIME) + 1;
        assert_eq!(exptime(&expiring(Some(far))), far);
    }
}
