//! What each memcached command does, through the same reads and writes as the HTTP API
//! ([`data`]); failures answer `SERVER_ERROR` with what the replicas did, a request over the
//! limits `CLIENT_ERROR`.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::future::join_all;

use super::parse::{Command, Store};
use crate::net::Ttl;
use crate::proxy::door::data::{self, Failed, Read};
use crate::proxy::write::WriteOp;
use crate::proxy::DataPath;
use crate::version::unix_now;

/// A client's flags travel in front of its value when they are not 0 (or when the value
/// itself starts like this): these four bytes, then the flags as four big-endian bytes.
/// A value with flags 0 is stored as it is, the bytes HTTP and Redis clients read.
pub(crate) const FLAGS_MAGIC: &[u8; 4] = b"\xffMCF";
pub(crate) const FLAGS_HEADER: usize = 8;

/// Exptimes up to this many seconds are relative; larger ones are Unix times (memcached's
/// rule).
const RELATIVE_UP_TO: i64 = 30 * 24 * 3600;

/// One client connection's state: whether it authenticated.
#[derive(Debug)]
pub(crate) struct Session {
    path: Arc<DataPath>,
    authenticated: bool,
}

/// When a stored value expires, from a command's exptime.
#[derive(Debug, PartialEq, Eq)]
enum Expiry {
    Never,
    After(Ttl),
    /// Already: what is stored is deleted instead.
    Past,
}

impl Session {
    pub(crate) fn new(path: Arc<DataPath>) -> Session {
        Session {
            path,
            authenticated: false,
        }
    }

    /// Whether the cluster wants a token from this connection before anything else.
    pub(crate) fn must_authenticate(&self) -> bool {
        !self.authenticated && self.path.cluster.snapshot().tokens.data.is_some()
    }

    /// Authentication the way memcached does it in text mode: a `set` of any key whose data
    /// is `<username> <password>`; the password is the data bearer token.
    pub(crate) fn authenticate(&mut self, command: &Command, out: &mut Vec<u8>) {
        let snap = self.path.cluster.snapshot();
        let (Command::Store { data, .. }, Some(secret)) = (command, &snap.tokens.data) else {
            return out.extend_from_slice(b"CLIENT_ERROR unauthenticated\r\n");
        };
        let password = data.rsplit(|b| *b == b' ').next().unwrap_or_default();
        if secret.matches(password) {
            self.authenticated = true;
            out.extend_from_slice(b"STORED\r\n");
        } else {
            out.extend_from_slice(b"CLIENT_ERROR authentication failure\r\n");
        }
    }

    /// Runs a command; its reply (none for `noreply`).
    pub(crate) async fn run(&self, command: &Command) -> Vec<u8> {
        let mut out = Vec::new();
        if self.must_authenticate() {
            out.extend_from_slice(b"CLIENT_ERROR unauthenticated\r\n");
            return out;
        }
        let (reply, noreply) = match command {
            Command::Get { keys, cas } => {
                self.get(keys, *cas, &mut out).await;
                return out;
            }
            Command::Store {
                mode,
                key,
                flags,
                exptime,
                data,
                noreply,
            } => (
                self.store(*mode, key, *flags, *exptime, data).await,
                *noreply,
            ),
            Command::Delete { key, noreply } => (self.delete(key).await, *noreply),
            Command::Touch {
                key,
                exptime,
                noreply,
            } => (self.touch(key, *exptime).await, *noreply),
            Command::Version => (Ok(format!("VERSION {}", env!("CARGO_PKG_VERSION"))), false),
            Command::Refused(line) => (Ok(line.clone()), false),
            Command::Dropped(line) => (Ok(line.clone()), true),
            Command::Quit => return out,
        };
        let line = reply.unwrap_or_else(|failed| error_line(&failed));
        if noreply {
            if line.ends_with("ERROR") || line.contains("_ERROR ") {
                tracing::warn!(reply = %line, "a memcached command with noreply failed");
            }
        } else {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// `get`/`gets`: a `VALUE` for each key found, then `END`; any key that cannot be read
    /// makes the whole answer its error, as the protocol has no way to say it for one key.
    async fn get(&self, keys: &[Bytes], cas: bool, out: &mut Vec<u8>) {
        let snap = self.path.cluster.snapshot();
        let reads = join_all(keys.iter().map(|key| data::read(&self.path, &snap, key))).await;
        if let Some(Read::Failed(failed)) = reads.iter().find(|r| matches!(r, Read::Failed(_))) {
            out.extend_from_slice(error_line(failed).as_bytes());
            out.extend_from_slice(b"\r\n");
            return;
        }
        if let Err(why) = data::fits_one_reply(&reads, snap.config.max_value_bytes) {
            out.extend_from_slice(format!("SERVER_ERROR {why}\r\n").as_bytes());
            return;
        }
        for (key, read) in keys.iter().zip(reads) {
            let Read::Value(found) = read else { continue };
            let (flags, value) = unpack(found.value.clone());
            let head = if cas {
                let unique = (found.version.0 >> 64) as u64 ^ found.version.0 as u64;
                format!(" {flags} {} {unique}\r\n", value.len())
            } else {
                format!(" {flags} {}\r\n", value.len())
            };
            out.extend_from_slice(b"VALUE ");
            out.extend_from_slice(key);
            out.extend_from_slice(head.as_bytes());
            out.extend_from_slice(&value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"END\r\n");
    }

    /// `set`, `add`, `replace`. `add` and `replace` read the key first: they are not atomic
    /// against another client's write in between (as Redis's `SET NX` through the proxy).
    async fn store(
        &self,
        mode: Store,
        key: &Bytes,
        flags: u32,
        exptime: i64,
        value: &Bytes,
    ) -> Result<String, Failed> {
        let snap = self.path.cluster.snapshot();
        if mode != Store::Set {
            let exists = match data::read(&self.path, &snap, key).await {
                Read::Value(_) => true,
                Read::Absent => false,
                Read::Failed(failed) => return Err(failed),
            };
            if exists != (mode == Store::Replace) {
                return Ok("NOT_STORED".into());
            }
        }
        data::write(
            &self.path,
            &snap,
            key,
            put_until(pack(flags, value), exptime),
        )
        .await?;
        Ok("STORED".into())
    }

    async fn delete(&self, key: &Bytes) -> Result<String, Failed> {
        let snap = self.path.cluster.snapshot();
        match data::read(&self.path, &snap, key).await {
            Read::Value(_) => {
                data::write(&self.path, &snap, key, WriteOp::Delete).await?;
                Ok("DELETED".into())
            }
            Read::Absent => Ok("NOT_FOUND".into()),
            Read::Failed(failed) => Err(failed),
        }
    }

    /// The value written again with the new expiry (not atomic, as `add`).
    async fn touch(&self, key: &Bytes, exptime: i64) -> Result<String, Failed> {
        let snap = self.path.cluster.snapshot();
        let found = match data::read(&self.path, &snap, key).await {
            Read::Value(found) => found,
            Read::Absent => return Ok("NOT_FOUND".into()),
            Read::Failed(failed) => return Err(failed),
        };
        data::write(&self.path, &snap, key, put_until(found.value, exptime)).await?;
        Ok("TOUCHED".into())
    }
}

/// A failure as the protocol's error line.
fn error_line(failed: &Failed) -> String {
    match failed.replicas {
        None => format!("CLIENT_ERROR {}", failed.message),
        Some(_) => format!("SERVER_ERROR {}", failed.message),
    }
}

/// The write that stores `stored` with memcached's `exptime`: a delete once that is past.
fn put_until(stored: Bytes, exptime: i64) -> WriteOp {
    match expiry(exptime, unix_now()) {
        Expiry::Past => WriteOp::Delete,
        Expiry::Never => WriteOp::Put(stored, None),
        Expiry::After(ttl) => WriteOp::Put(stored, Some(ttl)),
    }
}

/// memcached's exptime: 0 never, negative already, up to 30 days relative, beyond that a
/// Unix time. Times past the proxy's longest TTL are held to it.
fn expiry(exptime: i64, now: u64) -> Expiry {
    let seconds = match exptime {
        0 => return Expiry::Never,
        ..0 => return Expiry::Past,
        1..=RELATIVE_UP_TO => exptime as u64,
        _ => match (exptime as u64).checked_sub(now) {
            Some(left) if left > 0 => left,
            _ => return Expiry::Past,
        },
    };
    let seconds = seconds.min(u64::from(crate::net::request::MAX_TTL_SECONDS)) as u32;
    Ttl::new(seconds).map_or(Expiry::Past, Expiry::After)
}

/// The stored bytes for a value and its flags.
fn pack(flags: u32, value: &Bytes) -> Bytes {
    if flags == 0 && !value.starts_with(FLAGS_MAGIC) {
        return value.clone();
    }
    let mut out = BytesMut::with_capacity(FLAGS_HEADER + value.len());
    out.put_slice(FLAGS_MAGIC);
    out.put_u32(flags);
    out.put_slice(value);
    out.freeze()
}

/// A stored value's flags and the client's bytes.
fn unpack(stored: Bytes) -> (u32, Bytes) {
    if stored.len() >= FLAGS_HEADER && stored.starts_with(FLAGS_MAGIC) {
        let flags = u32::from_be_bytes(stored[4..8].try_into().expect("four bytes"));
        (flags, stored.slice(FLAGS_HEADER..))
    } else {
        (0, stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_ride_in_front_of_a_value_only_when_needed() {
        let plain = Bytes::from_static(b"hello");
        assert_eq!(pack(0, &plain), plain);
        assert_eq!(unpack(pack(0, &plain)), (0, plain.clone()));
        for flags in [1, 42, u32::MAX] {
            assert_eq!(pack(flags, &plain).len(), FLAGS_HEADER + plain.len());
            assert_eq!(unpack(pack(flags, &plain)), (flags, plain.clone()));
        }
        // A value that starts like the header keeps its bytes with flags 0.
        let tricky = Bytes::from_static(b"\xffMCF\0\0\0\x07rest");
        assert_eq!(unpack(pack(0, &tricky)), (0, tricky.clone()));
        assert_eq!(
            unpack(Bytes::from_static(b"\xffMC")),
            (0, Bytes::from_static(b"\xffMC"))
        );
    }

    #[test]
    fn exptime_follows_memcached() {
        let now = 2_000_000_000;
        let after = |s| Expiry::After(Ttl::new(s).unwrap());
        assert_eq!(expiry(0, now), Expiry::Never);
        assert_eq!(expiry(-1, now), Expiry::Past);
        assert_eq!(expiry(10, now), after(10));
        assert_eq!(expiry(RELATIVE_UP_TO, now), after(RELATIVE_UP_TO as u32));
        assert_eq!(expiry(now as i64 + 60, now), after(60));
        assert_eq!(expiry(now as i64, now), Expiry::Past);
        assert_eq!(expiry(RELATIVE_UP_TO + 1, now), Expiry::Past);
        assert_eq!(
            expiry(i64::MAX, now),
            after(crate::net::request::MAX_TTL_SECONDS)
        );
    }
}
