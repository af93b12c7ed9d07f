//! Redis nodes: GET / SET / DEL over one multiplexed connection per node and worker, which
//! the redis crate's connection manager re-establishes by itself after the server restarts. With
//! versions, values are kept in the envelope and written by one server-side script that
//! compares versions and sets atomically (`EVALSHA`, loaded on first use); keys are listed
//! with `SCAN`. Hints live in one hash per node, [`HINTS_KEY`]: a field per (replica, key)
//! whose value is the newest version that replica missed, written in the same script step as
//! the stand-in's value, and a field per key counting its hints, so that the stand-in's copy
//! goes only with the last of them.

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, ErrorKind, RedisError, SetExpiry, SetOptions};
use tokio::sync::OnceCell;

use super::{
    ttl_of, Backend, BackendError, BoxFuture, Condition, HeldHint, HintPage, Listing, Stored, Ttl,
    Version, Written,
};
use crate::config::{NodeUrl, Timeouts};
use crate::net::workers;

pub(crate) struct RedisBackend {
    base: String,
    client: Result<redis::Client, String>,
    config: ConnectionManagerConfig,
    /// Made on first use, so a node that is down at startup costs nothing until asked; a
    /// failed first connection is retried by the next request.
    /// Each worker's connection (see [`workers`]): its driver runs on the worker's own
    /// runtime, so a request and its reply never cross threads.
    managers: Box<[OnceCell<ConnectionManager>]>,
    connect_ms: u64,
    /// Values in the envelope (put-if-newer), or as they are.
    versioned: bool,
    put_if_newer: redis::Script,
    put_hinted: redis::Script,
    drop_hint: redis::Script,
}

/// The hash holding a Redis node's hints. A client key of this name is refused (it would be
/// read as a value), and key listings leave it out.
pub const HINTS_KEY: &[u8] = b"~hrw-hints~";

/// A hint's field in [`HINTS_KEY`]: the replica id's length (2 bytes, big-endian), the id,
/// then the key. Binary-safe for any key and id.
fn hint_field(owner: &str, key: &[u8]) -> Vec<u8> {
    // Ids are far shorter; the cap keeps the length off the count fields' mark.
    let owner = &owner.as_bytes()[..owner.len().min(u16::MAX as usize - 1)];
    let mut field = Vec::with_capacity(2 + owner.len() + key.len());
    field.extend_from_slice(&(owner.len() as u16).to_be_bytes());
    field.extend_from_slice(owner);
    field.extend_from_slice(key);
    field
}

/// The field of [`HINTS_KEY`] counting the key's hints: a length no replica id has, then
/// the key.
fn count_field(key: &[u8]) -> Vec<u8> {
    [&COUNT_MARK[..], key].concat()
}

const COUNT_MARK: [u8; 2] = [0xff, 0xff];

/// A field of [`HINTS_KEY`] and its value back as a hint; `None` if it is not one (a count).
fn parse_hint(field: &[u8], value: &[u8]) -> Option<HeldHint> {
    if field.starts_with(&COUNT_MARK) {
        return None;
    }
    let len = u16::from_be_bytes(field.get(..2)?.try_into().ok()?) as usize;
    let owner = std::str::from_utf8(field.get(2..2 + len)?).ok()?.to_owned();
    let key = Bytes::copy_from_slice(&field[2 + len..]);
    let version = Version::from_bytes(value.try_into().ok()?);
    Some(HeldHint {
        key,
        owner,
        version,
    })
}

/// A client key that names the hints' hash.
fn reserved(key: &[u8]) -> Result<(), BackendError> {
    if key == HINTS_KEY {
        return Err(BackendError::Rejected(
            "the key ~hrw-hints~ is where Redis nodes keep hints; use another".into(),
        ));
    }
    Ok(())
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("base", &self.base)
            .finish()
    }
}

impl RedisBackend {
    pub(crate) fn new(url: &NodeUrl, timeouts: &Timeouts, versioned: bool) -> RedisBackend {
        let mut info = redis::ConnectionInfo {
            addr: redis::ConnectionAddr::Tcp(url.host.clone(), url.port),
            redis: redis::RedisConnectionInfo {
                db: i64::from(url.db),
                ..Default::default()
            },
        };
        if let Some((user, password)) = &url.credentials {
            info.redis.username = (!user.is_empty()).then(|| user.clone());
            info.redis.password = Some(password.clone());
        }
        // Few, quick reconnect attempts: a request waits for at most its own timeout anyway,
        // and the next request tries again.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(timeouts.connect())
            .set_number_of_retries(1)
            .set_factor(50)
            .set_max_delay(1000);
        RedisBackend {
            base: url.base.clone(),
            client: redis::Client::open(info).map_err(|e| e.to_string()),
            config,
            managers: (0..=workers::count()).map(|_| OnceCell::new()).collect(),
            connect_ms: timeouts.connect_ms,
            versioned,
            put_if_newer: redis::Script::new(&format!(
                "{PUT_IF_NEWER}\nreturn put_if_newer(KEYS[1], ARGV[1], tonumber(ARGV[2]))"
            )),
            put_hinted: redis::Script::new(&format!("{PUT_IF_NEWER}\n{PUT_HINTED}")),
            drop_hint: redis::Script::new(&format!("{PUT_IF_NEWER}\n{DROP_HINT}")),
        }
    }

    async fn connection(&self) -> Result<ConnectionManager, BackendError> {
        let client = self
            .client
            .as_ref()
            .map_err(|e| BackendError::Connect(e.clone()))?;
        self.managers[workers::slot() % self.managers.len()]
            .get_or_try_init(|| client.get_connection_manager_with_config(self.config.clone()))
            .await
            .cloned()
            .map_err(|e| classify(e, self.connect_ms))
    }
}

/// Sorts a Redis error into the shared classes.
fn classify(e: RedisError, timeout_ms: u64) -> BackendError {
    if e.is_connection_refusal() {
        BackendError::Refused
    } else if e.is_timeout() {
        BackendError::Timeout(timeout_ms)
    } else if e.is_io_error() || e.is_connection_dropped() {
        BackendError::Io(e.to_string())
    } else if matches!(e.kind(), ErrorKind::TypeError | ErrorKind::ParseError) {
        BackendError::Protocol(e.to_string())
    } else {
        BackendError::Server(e.to_string())
    }
}

fn set_options(ttl: Option<Ttl>) -> SetOptions {
    let options = SetOptions::default();
    match ttl {
        Some(ttl) => options.with_expiration(SetExpiry::EX(u64::from(ttl.get()))),
        None => options,
    }
}

/// Put-if-newer in one step on the server, as Lua functions the scripts below share:
/// `put_if_newer(key, envelope, ttl)` stores the envelope (with `EX ttl` when ttl > 0) unless
/// the key holds something as new or newer, and returns 1 if it stored. An envelope's version
/// is bytes 5 to 20 (big-endian); anything else (as `Stored::decode` reads it) is version 0.
/// Bytes are compared one by one: Lua's `<` on strings follows the locale.
const PUT_IF_NEWER: &str = r"
local function version_of(held)
  local n = string.len(held)
  local flags = n >= 21 and string.byte(held, 21) or 255
  if string.sub(held, 1, 4) == 'HRW1' and flags < 4 and (flags < 2 or n >= 29) then
    return string.sub(held, 5, 20)
  end
  return string.rep('\0', 16)
end
local function older(a, b)
  for i = 1, 16 do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x < y then return true end
    if x > y then return false end
  end
  return false
end
local function put_if_newer(key, new, ttl)
  local held = redis.call('GET', key)
  if held and not older(version_of(held), string.sub(new, 5, 20)) then return 0 end
  if ttl > 0 then
    redis.call('SET', key, new, 'EX', ttl)
  else
    redis.call('SET', key, new)
  end
  return 1
end
";

/// A stand-in's write: KEYS[1] the key, KEYS[2] the hints' hash; ARGV[1] the envelope,
/// ARGV[2] seconds to live (0: none), ARGV[3] the hint's field, ARGV[4] the key's count
/// field. The hint keeps the newest version its replica missed.
const PUT_HINTED: &str = r"
local version = string.sub(ARGV[1], 5, 20)
local hinted = redis.call('HGET', KEYS[2], ARGV[3])
if not hinted then redis.call('HINCRBY', KEYS[2], ARGV[4], 1) end
if not hinted or older(hinted, version) then
  redis.call('HSET', KEYS[2], ARGV[3], version)
end
return put_if_newer(KEYS[1], ARGV[1], tonumber(ARGV[2]))
";

/// A hint handed over: KEYS[1] the key, KEYS[2] the hints' hash; ARGV[1] the field, ARGV[2]
/// the version handed over (16 bytes), ARGV[3] '1' to release the copy too, ARGV[4] the
/// key's count field. A hint renewed past that version stays, and so does the copy; the copy
/// goes only when it is no newer and no other hint for the key is left.
const DROP_HINT: &str = r"
local hinted = redis.call('HGET', KEYS[2], ARGV[1])
if hinted and older(ARGV[2], hinted) then return 0 end
if hinted then
  redis.call('HDEL', KEYS[2], ARGV[1])
  if redis.call('HINCRBY', KEYS[2], ARGV[4], -1) <= 0 then redis.call('HDEL', KEYS[2], ARGV[4]) end
end
if ARGV[3] == '1' and redis.call('HEXISTS', KEYS[2], ARGV[4]) == 0 then
  local held = redis.call('GET', KEYS[1])
  if held and not older(ARGV[2], version_of(held)) then redis.call('DEL', KEYS[1]) end
end
return 1
";

impl Backend for RedisBackend {
    fn get<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<Option<Stored>, BackendError>> {
        Box::pin(async move {
            reserved(key)?;
            let mut conn = self.connection().await?;
            let held: Option<Vec<u8>> = conn.get(key).await.map_err(|e| classify(e, 0))?;
            Ok(held.and_then(|bytes| Stored::from_node(bytes.into(), self.versioned)))
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a [u8],
        stored: Stored,
        condition: Condition,
    ) -> BoxFuture<'a, Result<Written, BackendError>> {
        Box::pin(async move {
            reserved(key)?;
            let ttl = ttl_of(&stored);
            let mut conn = self.connection().await?;
            let stored_it = |yes: bool| if yes { Written::Stored } else { Written::Kept };
            match (condition, &stored.value) {
                (Condition::IfNewer, _) => {
                    let applied: i64 = self
                        .put_if_newer
                        .key(key)
                        .arg(stored.encode().as_ref())
                        .arg(ttl.map_or(0, |t| t.get()))
                        .invoke_async(&mut conn)
                        .await
                        .map_err(|e| classify(e, 0))?;
                    Ok(stored_it(applied == 1))
                }
                (condition, value) => {
                    let mut options = set_options(ttl);
                    if condition == Condition::IfAbsent {
                        options = options.conditional_set(redis::ExistenceCheck::NX);
                    }
                    // SET answers OK when it stored, and nil when NX found the key.
                    let value = value.as_deref().unwrap_or_default();
                    let reply: Option<String> = conn
                        .set_options(key, value, options)
                        .await
                        .map_err(|e| classify(e, 0))?;
                    Ok(stored_it(reply.is_some()))
                }
            }
        })
    }

    fn remove<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            reserved(key)?;
            let mut conn = self.connection().await?;
            let _: i64 = conn.del(key).await.map_err(|e| classify(e, 0))?;
            Ok(())
        })
    }

    /// `SCAN`: the cursor is Redis's own; a key may come twice, which repair tolerates.
    fn list<'a>(
        &'a self,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Listing, BackendError>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            let (next, keys): (String, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor.unwrap_or("0"))
                .arg("COUNT")
                .arg(limit)
                .query_async(&mut conn)
                .await
                .map_err(|e| classify(e, 0))?;
            Ok(Listing {
                keys: keys
                    .into_iter()
                    .filter(|k| k != HINTS_KEY)
                    .map(Bytes::from)
                    .collect(),
                next: (next != "0").then_some(next),
            })
        })
    }

    fn keeps_hints(&self) -> bool {
        self.versioned
    }

    fn put_hinted<'a>(
        &'a self,
        key: &'a [u8],
        stored: Stored,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<Written, BackendError>> {
        Box::pin(async move {
            reserved(key)?;
            let ttl = ttl_of(&stored);
            let mut conn = self.connection().await?;
            let applied: i64 = self
                .put_hinted
                .key(key)
                .key(HINTS_KEY)
                .arg(stored.encode().as_ref())
                .arg(ttl.map_or(0, |t| t.get()))
                .arg(hint_field(owner, key))
                .arg(count_field(key))
                .invoke_async(&mut conn)
                .await
                .map_err(|e| classify(e, 0))?;
            Ok(if applied == 1 {
                Written::Stored
            } else {
                Written::Kept
            })
        })
    }

    /// `HSCAN` of the hints' hash: the cursor is Redis's own (a hint may come twice).
    fn hints<'a>(
        &'a self,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<HintPage, BackendError>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            let (next, flat): (String, Vec<Vec<u8>>) = redis::cmd("HSCAN")
                .arg(HINTS_KEY)
                .arg(cursor.unwrap_or("0"))
                .arg("COUNT")
                .arg(limit)
                .query_async(&mut conn)
                .await
                .map_err(|e| classify(e, 0))?;
            let hints = flat
                .chunks_exact(2)
                .filter_map(|pair| parse_hint(&pair[0], &pair[1]))
                .collect();
            Ok(HintPage {
                hints,
                next: (next != "0").then_some(next),
            })
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
            let mut conn = self.connection().await?;
            let _: i64 = self
                .drop_hint
                .key(key)
                .key(HINTS_KEY)
                .arg(hint_field(owner, key))
                .arg(&up_to.to_bytes()[..])
                .arg(if release { "1" } else { "0" })
                .arg(count_field(key))
                .invoke_async(&mut conn)
                .await
                .map_err(|e| classify(e, 0))?;
            Ok(())
        })
    }

    fn health(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            let pong: String = redis::cmd("PING")
                .query_async(&mut conn)
                .await
                .map_err(|e| classify(e, 0))?;
            if pong == "PONG" {
                Ok(())
            } else {
                Err(BackendError::Protocol(format!("PING answered {pong:?}")))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hint_field_carries_any_replica_id_and_key() {
        for (owner, key) in [
            ("a", &b"k"[..]),
            ("", b""),
            ("n\0de", b"\xff\x00~hrw-hints~"),
        ] {
            let field = hint_field(owner, key);
            let hint = parse_hint(&field, &Version(7).to_bytes()).unwrap();
            assert_eq!(
                (hint.owner.as_str(), &hint.key[..], hint.version),
                (owner, key, Version(7))
            );
        }
        assert_eq!(parse_hint(b"\x00", b""), None);
        assert_eq!(parse_hint(b"\x00\x05ab", &[0; 16]), None, "id cut short");
        assert_eq!(
            parse_hint(&count_field(b"k"), &[0; 16]),
            None,
            "a key's count"
        );
    }
}
