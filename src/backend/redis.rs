//! Redis nodes: GET / SET / DEL over one multiplexed connection per node and worker, which
//! the redis crate's connection manager re-establishes by itself after the server restarts. With
//! versions, values are kept in the envelope and written by one server-side script that
//! compares versions and sets atomically (`EVALSHA`, loaded on first use); keys are listed
//! with `SCAN`.

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, ErrorKind, RedisError, SetExpiry, SetOptions};
use tokio::sync::OnceCell;

use super::{ttl_of, Backend, BackendError, BoxFuture, Condition, Listing, Stored, Ttl, Written};
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
            put_if_newer: redis::Script::new(PUT_IF_NEWER),
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

/// Put-if-newer in one step on the server. KEYS[1]: the key; ARGV[1]: the envelope; ARGV[2]:
/// seconds to live, 0 for none. Stores ARGV[1] unless the key holds something as new or newer:
/// an envelope's version is bytes 5 to 20 (big-endian), anything else (as `Stored::decode`
/// reads it) is version 0. 1 if it stored. Bytes are compared one by one: Lua's `<` on
/// strings follows the locale.
const PUT_IF_NEWER: &str = r"
local held = redis.call('GET', KEYS[1])
if held then
  local n = string.len(held)
  local flags = n >= 21 and string.byte(held, 21) or 255
  local enveloped = string.sub(held, 1, 4) == 'HRW1' and flags < 4 and (flags < 2 or n >= 29)
  local new = ARGV[1]
  for i = 5, 20 do
    local a, b = enveloped and string.byte(held, i) or 0, string.byte(new, i)
    if a > b then return 0 end
    if a < b then break end
    if i == 20 then return 0 end
  end
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[1])
end
return 1
";

impl Backend for RedisBackend {
    fn get<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<Option<Stored>, BackendError>> {
        Box::pin(async move {
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
                keys: keys.into_iter().map(Bytes::from).collect(),
                next: (next != "0").then_some(next),
            })
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
