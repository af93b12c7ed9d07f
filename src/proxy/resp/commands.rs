//! What each Redis command does: the data commands go through the same reads and writes as
//! the HTTP API ([`data`]), with each failure as an error naming what the replicas did.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::join_all;

use super::reply::Replies;
use crate::cluster::Snapshot;
use crate::net::Ttl;
use crate::proxy::door::data::{self, Failed, Read};
use crate::proxy::door::Flow;
use crate::proxy::outcome::Failure;
use crate::proxy::write::WriteOp;
use crate::proxy::DataPath;
use crate::version::expiry_after;

/// One client connection's state: its protocol and whether it authenticated.
#[derive(Debug)]
pub(crate) struct Session {
    path: Arc<DataPath>,
    authenticated: bool,
    pub resp3: bool,
}

impl Session {
    pub(crate) fn new(path: Arc<DataPath>) -> Session {
        Session {
            path,
            authenticated: false,
            resp3: false,
        }
    }

    /// Replies in this connection's protocol.
    pub(crate) fn replies(&self) -> Replies {
        Replies {
            out: Vec::new(),
            resp3: self.resp3,
        }
    }

    /// Runs a command that changes the connection (see [`touches`]), its reply in `r`.
    pub(crate) fn run_alone(&mut self, args: &[Bytes], r: &mut Replies) -> Flow {
        let snap = self.path.cluster.snapshot();
        if args[0].eq_ignore_ascii_case(b"QUIT") {
            r.ok();
            return Flow::Close;
        }
        if args[0].eq_ignore_ascii_case(b"AUTH") {
            if args.len() == 2 || args.len() == 3 {
                self.auth(&snap, &args[args.len() - 1], r);
            } else {
                r.error("ERR wrong number of arguments for 'auth' command");
            }
        } else {
            self.hello(&snap, args, r);
        }
        Flow::Continue
    }

    /// Runs any other command, its reply in `r`.
    pub(crate) async fn run(&self, args: &[Bytes], r: &mut Replies) {
        let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
        let snap = self.path.cluster.snapshot();
        let open = snap.tokens.data.is_none() || self.authenticated;
        let arity = |ok: bool, r: &mut Replies| {
            if !ok {
                r.error(&format!(
                    "ERR wrong number of arguments for '{}' command",
                    name.to_lowercase()
                ));
            }
            ok
        };
        match name.as_str() {
            _ if !open => r.error("NOAUTH Authentication required."),
            "PING" if arity(args.len() <= 2, r) => match args.get(1) {
                Some(message) => r.bulk(message),
                None => r.simple("PONG"),
            },
            "ECHO" if arity(args.len() == 2, r) => r.bulk(&args[1]),
            "SELECT" if arity(args.len() == 2, r) => {
                if &args[1][..] == b"0" {
                    r.ok();
                } else {
                    r.error("ERR DB index is out of range (hrwproxy has database 0 only)");
                }
            }
            // Client libraries ask for the command table on connect; an empty one is allowed.
            "COMMAND" => r.array(0),
            "CLIENT" if arity(args.len() >= 2, r) => {
                match String::from_utf8_lossy(&args[1])
                    .to_ascii_uppercase()
                    .as_str()
                {
                    "SETNAME" | "SETINFO" => r.ok(),
                    "GETNAME" => r.null(),
                    "ID" => r.integer(1),
                    other => r.error(&format!("ERR unknown subcommand '{other}' for 'client'")),
                }
            }
            "GET" if arity(args.len() == 2, r) => {
                let read = self.read(&snap, &args[1]).await;
                reply_value(read, r);
            }
            "GETDEL" if arity(args.len() == 2, r) => {
                let read = self.read(&snap, &args[1]).await;
                if let Read::Value(_) = read {
                    let deleted = self.write(&snap, &args[1], WriteOp::Delete).await;
                    if let Err(why) = deleted {
                        return r.error(&why);
                    }
                }
                reply_value(read, r);
            }
            "SET" if arity(args.len() >= 3, r) => self.set(&snap, args, r).await,
            "MGET" if arity(args.len() >= 2, r) => {
                let reads = join_all(args[1..].iter().map(|key| self.read(&snap, key))).await;
                if let Err(why) = data::fits_one_reply(&reads, snap.config.max_value_bytes) {
                    return r.error(&format!("ERR {why}"));
                }
                r.array(reads.len());
                for read in reads {
                    // A key that cannot be read is a nil, as Redis Cluster proxies answer.
                    match read {
                        Read::Value(found) => r.bulk(&found.value),
                        Read::Absent | Read::Failed(_) => r.null(),
                    }
                }
            }
            "MSET" if arity(args.len() >= 3 && args.len() % 2 == 1, r) => {
                let pairs = args[1..].chunks(2);
                let writes =
                    pairs.map(|kv| self.write(&snap, &kv[0], WriteOp::Put(kv[1].clone(), None)));
                let failed: Vec<String> = join_all(writes)
                    .await
                    .into_iter()
                    .filter_map(Result::err)
                    .collect();
                match failed.first() {
                    None => r.ok(),
                    Some(first) => r.error(&format!(
                        "{first} ({} of {} keys not written)",
                        failed.len(),
                        args.len() / 2
                    )),
                }
            }
            "EXPIRE" if arity(args.len() == 3, r) => self.expire(&snap, args, r).await,
            "TTL" if arity(args.len() == 2, r) => match self.read(&snap, &args[1]).await {
                Read::Value(found) => r.integer(seconds_left(&found)),
                Read::Absent => r.integer(-2),
                Read::Failed(failed) => r.error(&error_line(&failed)),
            },
            "DEL" | "UNLINK" | "EXISTS" if arity(args.len() >= 2, r) => {
                self.count_and_delete(&snap, &args[1..], name != "EXISTS", r)
                    .await;
            }
            "GET" | "GETDEL" | "SET" | "MGET" | "MSET" | "DEL" | "UNLINK" | "EXISTS" | "EXPIRE"
            | "TTL" | "PING" | "ECHO" | "SELECT" | "CLIENT" | "AUTH" => {} // arity error written
            _ => {
                let shown: Vec<String> = args[1..]
                    .iter()
                    .take(3)
                    .map(|a| format!("'{}'", String::from_utf8_lossy(&a[..a.len().min(64)])))
                    .collect();
                r.error(&format!(
                    "ERR unknown command '{}', with args beginning with: {}",
                    String::from_utf8_lossy(&args[0]),
                    shown.join(" ")
                ));
            }
        }
    }

    fn auth(&mut self, snap: &Snapshot, given: &[u8], r: &mut Replies) {
        match &snap.tokens.data {
            None => r.error(
                "ERR AUTH <password> called without any password configured (hrwproxy has no data token)",
            ),
            Some(secret) if secret.matches(given) => {
                self.authenticated = true;
                r.ok();
            }
            Some(_) => {
                self.authenticated = false;
                r.error("WRONGPASS invalid username-password pair or user is disabled.");
            }
        }
    }

    /// `HELLO [protover [AUTH username password] [SETNAME name]]`.
    fn hello(&mut self, snap: &Snapshot, args: &[Bytes], r: &mut Replies) {
        let mut at = 1;
        let mut resp3 = self.resp3;
        if let Some(version) = args.get(1) {
            match &version[..] {
                b"2" => resp3 = false,
                b"3" => resp3 = true,
                _ => return r.error("NOPROTO unsupported protocol version"),
            }
            at = 2;
        }
        while at < args.len() {
            match String::from_utf8_lossy(&args[at])
                .to_ascii_uppercase()
                .as_str()
            {
                "AUTH" if at + 2 < args.len() => {
                    let before = r.out.len();
                    self.auth(snap, &args[at + 2], r);
                    if !self.authenticated {
                        return;
                    }
                    // HELLO answers with its map, not AUTH's +OK.
                    r.out.truncate(before);
                    at += 3;
                }
                "SETNAME" if at + 1 < args.len() => at += 2,
                _ => return r.error("ERR syntax error in HELLO option"),
            }
        }
        if snap.tokens.data.is_some() && !self.authenticated {
            return r
                .error("NOAUTH HELLO must be called with the client's AUTH when a token is set");
        }
        self.resp3 = resp3;
        r.resp3 = resp3;
        r.map(7);
        r.bulk(b"server");
        r.bulk(b"hrwproxy");
        r.bulk(b"version");
        r.bulk(env!("CARGO_PKG_VERSION").as_bytes());
        r.bulk(b"proto");
        r.integer(if resp3 { 3 } else { 2 });
        r.bulk(b"id");
        r.integer(1);
        r.bulk(b"mode");
        r.bulk(b"standalone");
        r.bulk(b"role");
        r.bulk(b"master");
        r.bulk(b"modules");
        r.array(0);
    }

    /// `SET key value [EX s | PX ms] [NX | XX] [GET]`. NX, XX and GET read the key first:
    /// they are not atomic against another client's write in between.
    async fn set(&self, snap: &Arc<Snapshot>, args: &[Bytes], r: &mut Replies) {
        let (mut ttl, mut only, mut get) = (None::<u64>, None::<bool>, false);
        let mut at = 3;
        while at < args.len() {
            let option = String::from_utf8_lossy(&args[at]).to_ascii_uppercase();
            let number = || {
                args.get(at + 1)
                    .and_then(|n| std::str::from_utf8(n).ok())
                    .and_then(|n| n.parse::<u64>().ok())
                    .filter(|n| *n > 0)
            };
            match option.as_str() {
                "EX" | "PX" if ttl.is_none() => {
                    let Some(n) = number() else {
                        return r.error("ERR invalid expire time in 'set' command");
                    };
                    // Whole seconds are what the nodes keep: milliseconds round up.
                    ttl = Some(if option == "EX" { n } else { n.div_ceil(1000) });
                    at += 2;
                }
                "NX" | "XX" if only.is_none() => {
                    only = Some(option == "NX");
                    at += 1;
                }
                "GET" if !get => {
                    get = true;
                    at += 1;
                }
                _ => return r.error("ERR syntax error"),
            }
        }
        let ttl = match ttl {
            None => None,
            Some(seconds) => match u32::try_from(seconds)
                .ok()
                .filter(|s| *s <= crate::net::request::MAX_TTL_SECONDS)
                .and_then(Ttl::new)
            {
                Some(ttl) => Some(ttl),
                None => return r.error("ERR invalid expire time in 'set' command"),
            },
        };
        let before = if only.is_some() || get {
            match self.read(snap, &args[1]).await {
                Read::Failed(failed) => return r.error(&error_line(&failed)),
                read => Some(read),
            }
        } else {
            None
        };
        let exists = matches!(before, Some(Read::Value(_)));
        if only.is_some_and(|nx| nx == exists) {
            return match before {
                Some(Read::Value(old)) if get => r.bulk(&old.value),
                _ => r.null(),
            };
        }
        if let Err(why) = self
            .write(snap, &args[1], WriteOp::Put(args[2].clone(), ttl))
            .await
        {
            return r.error(&why);
        }
        match before {
            Some(Read::Value(old)) if get => r.bulk(&old.value),
            _ if get => r.null(),
            _ => r.ok(),
        }
    }

    /// `EXPIRE key seconds`: the value written again with the new time to live (not atomic
    /// against another client's write in between, as SET's NX); 0 or less deletes it.
    async fn expire(&self, snap: &Arc<Snapshot>, args: &[Bytes], r: &mut Replies) {
        let Some(seconds) = std::str::from_utf8(&args[2])
            .ok()
            .and_then(|n| n.parse::<i64>().ok())
        else {
            return r.error("ERR value is not an integer or out of range");
        };
        let found = match self.read(snap, &args[1]).await {
            Read::Value(found) => found,
            Read::Absent => return r.integer(0),
            Read::Failed(failed) => return r.error(&error_line(&failed)),
        };
        let op = if seconds <= 0 {
            WriteOp::Delete
        } else {
            let ttl = u32::try_from(seconds)
                .ok()
                .filter(|s| *s <= crate::net::request::MAX_TTL_SECONDS)
                .and_then(Ttl::new);
            match ttl {
                Some(ttl) => WriteOp::Put(found.value, Some(ttl)),
                None => return r.error("ERR invalid expire time in 'expire' command"),
            }
        };
        match self.write(snap, &args[1], op).await {
            Ok(()) => r.integer(1),
            Err(why) => r.error(&why),
        }
    }

    /// `EXISTS` counts the keys found; `DEL` and `UNLINK` count them and delete every key.
    async fn count_and_delete(
        &self,
        snap: &Arc<Snapshot>,
        keys: &[Bytes],
        delete: bool,
        r: &mut Replies,
    ) {
        let reads = join_all(keys.iter().map(|key| self.read(snap, key))).await;
        if let Some(Read::Failed(failed)) = reads.iter().find(|r| matches!(r, Read::Failed(_))) {
            return r.error(&error_line(failed));
        }
        let found = reads.iter().filter(|r| matches!(r, Read::Value(_))).count();
        if delete {
            let deletes = keys
                .iter()
                .map(|key| self.write(snap, key, WriteOp::Delete));
            if let Some(Err(why)) = join_all(deletes).await.into_iter().find(Result::is_err) {
                return r.error(&why);
            }
        }
        r.integer(found as i64);
    }

    async fn read(&self, snap: &Arc<Snapshot>, key: &Bytes) -> Read {
        data::read(&self.path, snap, key).await
    }

    /// A write at the configured ack level; the error names what each failed replica did.
    async fn write(&self, snap: &Arc<Snapshot>, key: &Bytes, op: WriteOp) -> Result<(), String> {
        data::write(&self.path, snap, key, op)
            .await
            .map_err(|failed| error_line(&failed))
    }
}

/// A failure as an error reply: `TRYAGAIN` where a retry may succeed soon.
fn error_line(failed: &Failed) -> String {
    let code = match failed.replicas {
        None | Some(Failure::Unanswered) => "ERR",
        Some(Failure::Deadline | Failure::AllTimedOut) => "TIMEOUT",
        Some(Failure::AllEjected | Failure::AckLevelMissed) => "TRYAGAIN",
        Some(Failure::Loop) => "ERR loop detected:",
    };
    format!("{code} {}", failed.message)
}

/// `TTL`'s answer for a value: whole seconds left, at least 1, or -1 when it never expires.
fn seconds_left(found: &data::Found) -> i64 {
    // Expiry times are rounded up to a whole second (see `expiry_after`): count from the
    // next second, so that `EXPIRE k 100` then `TTL k` answers 100.
    match found.expires {
        None => -1,
        Some(at) => at.saturating_sub(expiry_after(0)).max(1) as i64,
    }
}

fn reply_value(read: Read, r: &mut Replies) {
    match read {
        Read::Value(found) => r.bulk(&found.value),
        Read::Absent => r.null(),
        Read::Failed(failed) => r.error(&error_line(&failed)),
    }
}
