//! memcached nodes over the text protocol (`get`, `set`, `add`, `delete`, `version`) with a
//! small pool of keep-alive connections per node. Keys memcached cannot hold are mapped by
//! [`memcache_key`].

mod keys;
mod reply;

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub use self::keys::memcache_key;
use self::keys::original_key;
use self::reply::{error_reply, read_line, read_value};
use super::pool::{connect_tcp, io_error, is_reset, Failure, Pool};
use super::{
    Backend, BackendError, BoxFuture, Condition, Listing, Stored, Written, MAX_LISTING_BYTES,
};
use crate::config::NodeUrl;
use crate::version::{unix_now, MAX_HEADER_LEN};

/// Idle connections kept per node.
const POOL_SIZE: usize = 32;
/// memcached reads an exptime above 30 days as a Unix time, not a duration.
const MAX_RELATIVE_EXPTIME: u32 = 30 * 24 * 3600;

type Conn = BufReader<TcpStream>;

/// Times a put-if-newer starts over after losing a race to another writer.
const MAX_RACES: usize = 5;

pub(crate) struct MemcacheBackend {
    addr: String,
    connect_timeout: Duration,
    /// The largest value a `get` accepts (plus an envelope).
    max_value_bytes: usize,
    /// Values in the envelope (put-if-newer), or as they are.
    versioned: bool,
    idle: Pool<Conn>,
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
        MemcacheBackend {
            addr: format!("{}:{}", url.host, url.port),
            connect_timeout,
            max_value_bytes,
            versioned,
            idle: Pool::new(POOL_SIZE),
        }
    }

    /// Sends `request` and reads one reply line, on a pooled connection or a new one.
    async fn exchange(&self, request: &[&[u8]]) -> Result<(Conn, String), BackendError> {
        let connect = async {
            let stream = connect_tcp(&self.addr, self.connect_timeout).await?;
            Ok(BufReader::new(stream))
        };
        self.idle
            .exchange(connect, |conn| send(conn, request))
            .await
    }

    /// `set`, `add` or `cas` (with the unique a `gets` gave); true if stored, false if not
    /// (`NOT_STORED`, or `EXISTS` / `NOT_FOUND` for a `cas` that lost a race).
    async fn store(
        &self,
        verb: &str,
        key: &[u8],
        value: &[u8],
        exptime: u64,
        cas: Option<u64>,
    ) -> Result<bool, BackendError> {
        let key = memcache_key(key);
        let cas = cas.map_or(String::new(), |unique| format!(" {unique}"));
        let header = format!(" 0 {exptime} {}{cas}\r\n", value.len());
        let (conn, line) = self
            .exchange(&[
                verb.as_bytes(),
                b" ",
                &key,
                header.as_bytes(),
                value,
                b"\r\n",
            ])
            .await?;
        let stored = match line.as_str() {
            "STORED" => true,
            "NOT_STORED" | "EXISTS" | "NOT_FOUND" => false,
            other => return Err(error_reply(other)),
        };
        self.idle.give_back(conn);
        Ok(stored)
    }

    /// `get` or `gets` (`verb`): the stored bytes, and the cas unique `gets` adds.
    async fn fetch(
        &self,
        verb: &[u8],
        key: &[u8],
    ) -> Result<Option<(Bytes, Option<u64>)>, BackendError> {
        let mkey = memcache_key(key);
        let (mut conn, line) = self.exchange(&[verb, b" ", &mkey, b"\r\n"]).await?;
        let value = read_value(&mut conn, &line, self.max_value_bytes + MAX_HEADER_LEN).await?;
        self.idle.give_back(conn);
        Ok(value)
    }

    /// The stored bytes and their cas unique (`gets`).
    async fn gets(&self, key: &[u8]) -> Result<Option<(Bytes, u64)>, BackendError> {
        match self.fetch(b"gets", key).await? {
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

async fn send(mut conn: Conn, request: &[&[u8]]) -> Result<(Conn, String), Failure> {
    for part in request {
        match conn.get_mut().write_all(part).await {
            Err(e) if is_reset(&e) => return Err(Failure::Stale),
            Err(e) => return Err(Failure::Failed(io_error(e))),
            Ok(()) => {}
        }
    }
    match read_line(&mut conn).await {
        Ok(Some(line)) => Ok((conn, line)),
        Ok(None) => Err(Failure::Stale),
        Err(e) => Err(e.into()),
    }
}

impl Backend for MemcacheBackend {
    fn get<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<Option<Stored>, BackendError>> {
        Box::pin(async move {
            let value = self.fetch(b"get", key).await?;
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
            let (conn, line) = self.exchange(&[b"delete ", &mkey, b"\r\n"]).await?;
            match line.as_str() {
                "DELETED" | "NOT_FOUND" => {
                    self.idle.give_back(conn);
                    Ok(())
                }
                other => Err(error_reply(other)),
            }
        })
    }

    /// `lru_crawler metadump all`, in one page: memcached cannot resume a dump. Keys mapped to
    /// `~sha~` digests cannot be turned back into theirs and are left out.
    fn list<'a>(
        &'a self,
        _cursor: Option<&'a str>,
        _limit: usize,
    ) -> BoxFuture<'a, Result<Listing, BackendError>> {
        Box::pin(async move {
            let (mut conn, mut line) = self.exchange(&[b"lru_crawler metadump all\r\n"]).await?;
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
                keys.extend(original_key(encoded).map(Bytes::from));
                line = read_line(&mut conn)
                    .await?
                    .ok_or_else(|| BackendError::Io("connection closed in a key dump".into()))?;
            }
            self.idle.give_back(conn);
            Ok(Listing { keys, next: None })
        })
    }

    fn health(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            let (conn, line) = self.exchange(&[b"version\r\n"]).await?;
            if !line.starts_with("VERSION ") {
                return Err(error_reply(&line));
            }
            self.idle.give_back(conn);
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
