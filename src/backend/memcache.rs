//! memcached nodes over the text protocol (`get`, `set`, `add`, `delete`, `version`) with a
//! small pool of keep-alive connections per node. Keys memcached cannot hold are mapped by
//! [`memcache_key`].

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::pool::{connect_tcp, Pool};
use super::{Backend, BackendError, BoxFuture, Ttl};
use crate::config::NodeUrl;

/// memcached's own key limit.
pub const MAX_KEY: usize = 250;
/// Idle connections kept per node.
const POOL_SIZE: usize = 32;
/// memcached reads an exptime above 30 days as a Unix time, not a duration.
const MAX_RELATIVE_EXPTIME: u32 = 30 * 24 * 3600;

const BASE64_PREFIX: &[u8] = b"~b64~";
const HASH_PREFIX: &[u8] = b"~sha~";

/// The memcached key for a proxy key. A key of 1 to 250 bytes, all printable ASCII other than
/// space (0x21..=0x7E), not starting with `~b64~` or `~sha~`, is used as it is. Any other key
/// becomes `~b64~` + its unpadded base64url encoding if that fits in 250 bytes (keys up to 183
/// bytes), else `~sha~` + the lowercase hex sha256 of the key. Distinct keys get distinct
/// memcached keys, except for sha256 collisions.
pub fn memcache_key(key: &[u8]) -> Cow<'_, [u8]> {
    let plain = !key.is_empty()
        && key.len() <= MAX_KEY
        && key.iter().all(|b| (0x21..=0x7e).contains(b))
        && !key.starts_with(BASE64_PREFIX)
        && !key.starts_with(HASH_PREFIX);
    if plain {
        return Cow::Borrowed(key);
    }
    let encoded = base64url(key);
    if BASE64_PREFIX.len() + encoded.len() <= MAX_KEY {
        return Cow::Owned([BASE64_PREFIX, encoded.as_bytes()].concat());
    }
    use sha2::{Digest, Sha256};
    let digest: String = Sha256::digest(key)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Cow::Owned([HASH_PREFIX, digest.as_bytes()].concat())
}

/// Unpadded base64url (RFC 4648 section 5).
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

type Conn = BufReader<TcpStream>;

pub struct MemcacheBackend {
    addr: String,
    connect_timeout: Duration,
    idle: Pool<Conn>,
}

impl std::fmt::Debug for MemcacheBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemcacheBackend")
            .field("addr", &self.addr)
            .finish()
    }
}

fn io_error(e: std::io::Error) -> BackendError {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => BackendError::Refused,
        _ => BackendError::Io(e.to_string()),
    }
}

/// A reply line that is an error in every command: `ERROR`, `CLIENT_ERROR ...`,
/// `SERVER_ERROR ...`.
fn error_reply(line: &str) -> BackendError {
    if let Some(why) = line.strip_prefix("SERVER_ERROR ") {
        BackendError::Server(why.to_owned())
    } else if let Some(why) = line.strip_prefix("CLIENT_ERROR ") {
        BackendError::Rejected(why.to_owned())
    } else {
        BackendError::Protocol(format!("unexpected reply {line:?}"))
    }
}

/// The exptime field for a time to live.
fn exptime(ttl: Option<Ttl>) -> u64 {
    match ttl {
        None => 0,
        Some(ttl) if ttl.get() <= MAX_RELATIVE_EXPTIME => u64::from(ttl.get()),
        Some(ttl) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            now + u64::from(ttl.get())
        }
    }
}

impl MemcacheBackend {
    pub fn new(url: &NodeUrl, connect_timeout: Duration) -> MemcacheBackend {
        MemcacheBackend {
            addr: format!("{}:{}", url.host, url.port),
            connect_timeout,
            idle: Pool::new(POOL_SIZE),
        }
    }

    async fn checkout(&self) -> Result<Conn, BackendError> {
        match self.idle.take() {
            Some(conn) => Ok(conn),
            None => Ok(BufReader::new(
                connect_tcp(&self.addr, self.connect_timeout).await?,
            )),
        }
    }

    /// Sends `request` and reads one reply line.
    async fn exchange(&self, request: &[&[u8]]) -> Result<(Conn, String), BackendError> {
        let mut conn = self.checkout().await?;
        for part in request {
            conn.get_mut().write_all(part).await.map_err(io_error)?;
        }
        let line = read_line(&mut conn).await?;
        Ok((conn, line))
    }

    /// `set` or `add`; true if stored.
    async fn store(
        &self,
        verb: &str,
        key: &[u8],
        value: &[u8],
        ttl: Option<Ttl>,
    ) -> Result<bool, BackendError> {
        let key = memcache_key(key);
        let header = format!(" 0 {} {}\r\n", exptime(ttl), value.len());
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
            "NOT_STORED" => false,
            other => return Err(error_reply(other)),
        };
        self.idle.give_back(conn);
        Ok(stored)
    }
}

async fn read_line(conn: &mut Conn) -> Result<String, BackendError> {
    let mut line = Vec::new();
    let n = conn.read_until(b'\n', &mut line).await.map_err(io_error)?;
    if n == 0 {
        return Err(BackendError::Io("connection closed by memcached".into()));
    }
    let line = line
        .strip_suffix(b"\r\n")
        .ok_or_else(|| BackendError::Protocol("reply line without CRLF".into()))?;
    String::from_utf8(line.to_vec())
        .map_err(|_| BackendError::Protocol("reply line is not UTF-8".into()))
}

impl Backend for MemcacheBackend {
    fn get<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<Option<Bytes>, BackendError>> {
        Box::pin(async move {
            let mkey = memcache_key(key);
            let (mut conn, line) = self.exchange(&[b"get ", &mkey, b"\r\n"]).await?;
            if line == "END" {
                self.idle.give_back(conn);
                return Ok(None);
            }
            // VALUE <key> <flags> <bytes>
            let len: usize = match line
                .strip_prefix("VALUE ")
                .map(|rest| rest.split(' ').nth(2))
            {
                Some(Some(len)) => len
                    .parse()
                    .map_err(|_| BackendError::Protocol(format!("bad length in {line:?}")))?,
                _ => return Err(error_reply(&line)),
            };
            let mut data = vec![0; len + 2];
            conn.read_exact(&mut data).await.map_err(io_error)?;
            if !data.ends_with(b"\r\n") {
                return Err(BackendError::Protocol("value not followed by CRLF".into()));
            }
            data.truncate(len);
            let end = read_line(&mut conn).await?;
            if end != "END" {
                return Err(BackendError::Protocol(format!("expected END, got {end:?}")));
            }
            self.idle.give_back(conn);
            Ok(Some(Bytes::from(data)))
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a [u8],
        value: Bytes,
        ttl: Option<Ttl>,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            match self.store("set", key, &value, ttl).await? {
                true => Ok(()),
                false => Err(BackendError::Server("set answered NOT_STORED".into())),
            }
        })
    }

    fn put_if_absent<'a>(
        &'a self,
        key: &'a [u8],
        value: Bytes,
        ttl: Option<Ttl>,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        Box::pin(async move { self.store("add", key, &value, ttl).await })
    }

    fn delete<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<(), BackendError>> {
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
    fn plain_keys_pass_through() {
        for key in [&b"user:42"[..], b"a", b"~tilde", &[b'x'; 250]] {
            assert_eq!(memcache_key(key), key);
        }
    }

    #[test]
    fn other_keys_are_mapped_deterministically_and_distinctly() {
        let long = vec![b'x'; 251];
        let cases: [(&[u8], &[u8]); 6] = [
            (b"with space", b"~b64~d2l0aCBzcGFjZQ"),
            (b"", b"~b64~"),
            (b"\x00\xff", b"~b64~AP8"),
            (b"caf\xc3\xa9", b"~b64~Y2Fmw6k"),
            (b"~b64~abc", b"~b64~fmI2NH5hYmM"),
            (&[0; 3], b"~b64~AAAA"),
        ];
        for (key, mapped) in cases {
            assert_eq!(&*memcache_key(key), mapped, "{key:?}");
        }
        // 183 bytes is the longest key whose base64 (244 characters) fits beside the prefix.
        let longest = memcache_key(&[0; 183]);
        assert_eq!(longest.len(), 249);
        assert!(longest.starts_with(BASE64_PREFIX));
        let hashed = memcache_key(&[0; 184]);
        assert!(hashed.starts_with(HASH_PREFIX) && hashed.len() == 5 + 64);
        assert_eq!(
            &*memcache_key(&long),
            &*memcache_key(&long),
            "deterministic"
        );
        assert_ne!(memcache_key(&long[..200]), memcache_key(&long[..201]));
        for key in [&b"x y"[..], &long, b"\n"] {
            let mapped = memcache_key(key);
            assert!(mapped.len() <= MAX_KEY && mapped.iter().all(|b| (0x21..=0x7e).contains(b)));
        }
    }

    #[test]
    fn long_ttls_become_unix_times() {
        assert_eq!(exptime(None), 0);
        assert_eq!(exptime(Ttl::new(60)), 60);
        assert!(exptime(Ttl::new(MAX_RELATIVE_EXPTIME + 1)) > 1_700_000_000);
    }
}
