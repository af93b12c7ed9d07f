//! Redis nodes: GET / SET / DEL over one multiplexed connection per node, which the redis
//! crate's connection manager re-establishes by itself after the server restarts.

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, ErrorKind, RedisError, SetExpiry, SetOptions};
use tokio::sync::OnceCell;

use super::{Backend, BackendError, BoxFuture, Ttl};
use crate::config::{NodeUrl, Timeouts};

pub(crate) struct RedisBackend {
    base: String,
    client: Result<redis::Client, String>,
    config: ConnectionManagerConfig,
    /// Made on first use, so a node that is down at startup costs nothing until asked; a
    /// failed first connection is retried by the next request.
    manager: OnceCell<ConnectionManager>,
    connect_ms: u64,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("base", &self.base)
            .finish()
    }
}

impl RedisBackend {
    pub(crate) fn new(url: &NodeUrl, timeouts: &Timeouts) -> RedisBackend {
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
            manager: OnceCell::new(),
            connect_ms: timeouts.connect_ms,
        }
    }

    async fn connection(&self) -> Result<ConnectionManager, BackendError> {
        let client = self
            .client
            .as_ref()
            .map_err(|e| BackendError::Connect(e.clone()))?;
        self.manager
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

impl Backend for RedisBackend {
    fn get<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<Option<Bytes>, BackendError>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            let value: Option<Vec<u8>> = conn.get(key).await.map_err(|e| classify(e, 0))?;
            Ok(value.map(Bytes::from))
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a [u8],
        value: Bytes,
        ttl: Option<Ttl>,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            let _: () = conn
                .set_options(key, value.as_ref(), set_options(ttl))
                .await
                .map_err(|e| classify(e, 0))?;
            Ok(())
        })
    }

    fn put_if_absent<'a>(
        &'a self,
        key: &'a [u8],
        value: Bytes,
        ttl: Option<Ttl>,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            let options = set_options(ttl).conditional_set(redis::ExistenceCheck::NX);
            // SET NX answers OK when it stored and nil when the key existed.
            let stored: Option<String> = conn
                .set_options(key, value.as_ref(), options)
                .await
                .map_err(|e| classify(e, 0))?;
            Ok(stored.is_some())
        })
    }

    fn delete<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            let _: i64 = conn.del(key).await.map_err(|e| classify(e, 0))?;
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
