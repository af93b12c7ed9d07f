//! memcached nodes over the text protocol (`get`, `set`, `add`, `delete`, `version`) with a
//! small pool of keep-alive connections per node. Keys memcached cannot hold are mapped by
//! [`memcache_key`].

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::pool::{connect_tcp, io_error, is_reset, Failure, Pool};
use super::{
    ttl_of, Backend, BackendError, BoxFuture, Condition, Listing, Stored, Ttl, Written,
    MAX_LISTING_BYTES,
};
use crate::config::NodeUrl;
use crate::net::key;
use crate::version::MAX_HEADER_LEN;

/// memcached's own key limit.
pub(crate) const MAX_KEY: usize = 250;
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

/// The proxy key behind a memcached key as a key dump gives it (URL-encoded): the reverse of
/// [`memcache_key`], except for `~sha~` digests, which cannot be reversed.
fn original_key(dumped: &str) -> Option<Vec<u8>> {
    // A key dump URL-encodes keys.
    let mkey = key::decode(dumped, usize::MAX).ok()?.into_owned();
    if let Some(encoded) = mkey.strip_prefix(BASE64_PREFIX) {
        return unbase64url(encoded);
    }
    (!mkey.starts_with(HASH_PREFIX)).then_some(mkey)
}

/// Unpadded base64url decoded; `None` if it is not.
fn unbase64url(text: &[u8]) -> Option<Vec<u8>> {
    let sextet = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= sextet(c)? << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
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

/// A reply line longer than this is not memcached talking.
const MAX_LINE: usize = 1024;
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

/// A reply line that is an error in every command: `ERROR`, `CLIENT_ERROR ...`,
/// `SERVER_ERROR ...`. A value too large for the server is the request's fault, not the
/// node's.
fn error_reply(line: &str) -> BackendError {
    if let Some(why) = line.strip_prefix("SERVER_ERROR ") {
        if why.contains("too large") {
            BackendError::Rejected(why.to_owned())
        } else {
            BackendError::Server(why.to_owned())
        }
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
        ttl: Option<Ttl>,
        cas: Option<u64>,
    ) -> Result<bool, BackendError> {
        let key = memcache_key(key);
        let cas = cas.map_or(String::new(), |unique| format!(" {unique}"));
        let header = format!(" 0 {} {}{cas}\r\n", exptime(ttl), value.len());
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

    /// The stored bytes and their cas unique (`gets`).
    async fn gets(&self, key: &[u8]) -> Result<Option<(Bytes, u64)>, BackendError> {
        let mkey = memcache_key(key);
        let (mut conn, line) = self.exchange(&[b"gets ", &mkey, b"\r\n"]).await?;
        let value = read_value(&mut conn, &line, self.max_value_bytes + MAX_HEADER_LEN).await?;
        self.idle.give_back(conn);
        value
            .map(|(bytes, cas)| {
                let cas = cas.ok_or_else(|| {
                    BackendError::Protocol(format!("gets gave no cas unique in {line:?}"))
                })?;
                Ok((bytes, cas))
            })
            .transpose()
    }

    /// Put-if-newer: `gets` the key, compare, then `add` (if absent) or `cas` (if older);
    /// another writer between the two makes it start over, a few times at most.
    async fn put_if_newer(
        &self,
        key: &[u8],
        stored: &Stored,
        ttl: Option<Ttl>,
    ) -> Result<Written, BackendError> {
        let envelope = stored.encode();
        for _ in 0..MAX_RACES {
            let landed = match self.gets(key).await? {
                None => self.store("add", key, &envelope, ttl, None).await?,
                Some((bytes, cas)) => {
                    if Stored::decode(bytes).version >= stored.version {
                        return Ok(Written::Kept);
                    }
                    self.store("cas", key, &envelope, ttl, Some(cas)).await?
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

/// One reply line, at most [`MAX_LINE`] bytes; `None` if the connection closed (or was reset)
/// before any byte of it. Replies end lines in CRLF, but `lru_crawler metadump` ends them in LF.
async fn read_line<R: AsyncBufRead + Unpin>(conn: &mut R) -> Result<Option<String>, BackendError> {
    let mut line = Vec::new();
    let read = (&mut *conn)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut line)
        .await;
    match read {
        Ok(0) => return Ok(None),
        Err(e) if is_reset(&e) && line.is_empty() => return Ok(None),
        Err(e) => return Err(io_error(e)),
        Ok(_) => {}
    }
    let line = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))
        .ok_or_else(|| {
            BackendError::Protocol(if line.len() >= MAX_LINE {
                format!("reply line longer than {MAX_LINE} bytes")
            } else {
                "reply line without a line end".into()
            })
        })?;
    String::from_utf8(line.to_vec())
        .map(Some)
        .map_err(|_| BackendError::Protocol("reply line is not UTF-8".into()))
}

/// The rest of a `get` or `gets` reply after its first line: `END`, or `VALUE <key> <flags>
/// <bytes> [<cas unique>]`, the data, CRLF and `END`.
async fn read_value<R: AsyncBufRead + Unpin>(
    conn: &mut R,
    first: &str,
    max_value: usize,
) -> Result<Option<(Bytes, Option<u64>)>, BackendError> {
    if first == "END" {
        return Ok(None);
    }
    let Some(fields) = first.strip_prefix("VALUE ") else {
        return Err(error_reply(first));
    };
    let mut fields = fields.split(' ').skip(2);
    let bad = || BackendError::Protocol(format!("bad VALUE line {first:?}"));
    let len: usize = fields.next().and_then(|l| l.parse().ok()).ok_or_else(bad)?;
    let cas = fields
        .next()
        .map(|c| c.parse().map_err(|_| bad()))
        .transpose()?;
    if len > max_value {
        // The value's fault, not the node's; the connection is dropped with the reply unread.
        return Err(BackendError::Rejected(format!(
            "value of {len} bytes is larger than {max_value}"
        )));
    }
    let mut data = vec![0; len + 2];
    conn.read_exact(&mut data).await.map_err(io_error)?;
    if !data.ends_with(b"\r\n") {
        return Err(BackendError::Protocol("value not followed by CRLF".into()));
    }
    data.truncate(len);
    match read_line(conn).await? {
        Some(end) if end == "END" => Ok(Some((Bytes::from(data), cas))),
        end => Err(BackendError::Protocol(format!("expected END, got {end:?}"))),
    }
}

impl Backend for MemcacheBackend {
    fn get<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<Option<Stored>, BackendError>> {
        Box::pin(async move {
            let mkey = memcache_key(key);
            let (mut conn, line) = self.exchange(&[b"get ", &mkey, b"\r\n"]).await?;
            let max = self.max_value_bytes + MAX_HEADER_LEN;
            let value = read_value(&mut conn, &line, max).await?;
            self.idle.give_back(conn);
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
            let ttl = ttl_of(&stored);
            let verb = match (condition, &stored.value) {
                (Condition::IfNewer, _) => return self.put_if_newer(key, &stored, ttl).await,
                // Raw: no versions; a tombstone there is a removal.
                (_, None) => return self.remove(key).await.map(|()| Written::Stored),
                (Condition::IfAbsent, _) => "add",
                (Condition::Always, _) => "set",
            };
            let value = stored.value.as_deref().unwrap_or_default();
            match self.store(verb, key, value, ttl, None).await? {
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

    async fn value(reply: &[u8], max: usize) -> Result<Option<Bytes>, BackendError> {
        let mut conn = reply;
        let first = read_line(&mut conn).await?.expect("a first line");
        Ok(read_value(&mut conn, &first, max)
            .await?
            .map(|(value, _)| value))
    }

    #[tokio::test]
    async fn gets_gives_the_cas_unique() {
        let mut conn = &b"\r\nEND\r\n"[..];
        let got = read_value(&mut conn, "VALUE k 0 0 77", 10).await;
        assert_eq!(got, Ok(Some((Bytes::new(), Some(77)))));
        let mut conn = &b""[..];
        assert!(read_value(&mut conn, "VALUE k 0 0 x", 10).await.is_err());
    }

    #[tokio::test]
    async fn get_replies_are_parsed_and_bounded() {
        assert_eq!(value(b"END\r\n", 10).await, Ok(None));
        assert_eq!(
            value(b"VALUE k 0 5\r\nhello\r\nEND\r\n", 10).await,
            Ok(Some(Bytes::from_static(b"hello")))
        );
        assert_eq!(
            value(b"VALUE k 0 4 99\r\na\r\nb\r\nEND\r\n", 10).await,
            Ok(Some(Bytes::from_static(b"a\r\nb"))),
            "a value may hold CRLF; gets adds a cas field"
        );
        for (reply, why) in [
            (&b"VALUE k 0 x\r\n"[..], "bad VALUE line"),
            (b"VALUE k 0 5\r\nhelloXXEND\r\n", "CRLF"),
            (b"VALUE k 0 5\r\nhello\r\nVALUE x\r\n", "expected END"),
            (b"END", "without a line end"),
            (b"WHAT\r\n", "unexpected reply"),
        ] {
            let got = value(reply, 10).await;
            assert!(
                matches!(&got, Err(BackendError::Protocol(m)) if m.contains(why)),
                "{:?}: {got:?}",
                String::from_utf8_lossy(reply)
            );
        }
        let large = value(b"VALUE k 0 11\r\nhello world\r\nEND\r\n", 10).await;
        assert!(
            matches!(&large, Err(BackendError::Rejected(m)) if m.contains("larger than 10")),
            "the value's fault, not the node's: {large:?}"
        );
        let endless = vec![b'x'; 5000];
        let mut conn = &endless[..];
        let got = read_line(&mut conn).await;
        assert!(
            matches!(&got, Err(BackendError::Protocol(m)) if m.contains("longer than")),
            "{got:?}"
        );
    }

    #[test]
    fn error_replies_blame_the_request_or_the_node() {
        assert_eq!(
            error_reply("SERVER_ERROR object too large for cache"),
            BackendError::Rejected("object too large for cache".into())
        );
        assert!(!error_reply("SERVER_ERROR object too large for cache").counts_against_node());
        assert_eq!(
            error_reply("SERVER_ERROR out of memory storing object"),
            BackendError::Server("out of memory storing object".into())
        );
        assert_eq!(
            error_reply("CLIENT_ERROR bad data chunk"),
            BackendError::Rejected("bad data chunk".into())
        );
        assert!(matches!(error_reply("ERROR"), BackendError::Protocol(_)));
    }

    #[test]
    fn dumped_keys_map_back_to_the_proxy_keys() {
        for key in [
            &b"user:42"[..],
            b"with space",
            b"\x00\xff",
            b"caf\xc3\xa9",
            b"~b64~abc",
            &[7; 183],
        ] {
            let mapped = String::from_utf8(memcache_key(key).into_owned()).unwrap();
            // The dump URL-encodes: plain keys may carry characters it escapes.
            let dumped: String = mapped
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"~-_".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            assert_eq!(original_key(&dumped).as_deref(), Some(key), "{mapped}");
        }
        let hashed = String::from_utf8(memcache_key(&[0; 184]).into_owned()).unwrap();
        assert_eq!(original_key(&hashed), None);
        assert_eq!(original_key("~b64~%"), None);
    }

    #[test]
    fn long_ttls_become_unix_times() {
        assert_eq!(exptime(None), 0);
        assert_eq!(exptime(Ttl::new(60)), 60);
        assert!(exptime(Ttl::new(MAX_RELATIVE_EXPTIME + 1)) > 1_700_000_000);
    }
}
