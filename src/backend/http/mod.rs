//! Nodes that take `GET / PUT / DELETE <url>/kv/<key>` over HTTP/1.1. Built-in nodes over
//! plain TCP get one shared keep-alive connection per worker with requests pipelined on it
//! (`backend::mux`): what a worker's clients ask of a node in one turn leaves in one write, and
//! the answers come back in one read. Any other node, and a request whose shared connection
//! ended before answering, goes through a pool of keep-alive connections that the requesting
//! task drives itself.
//!
//! Two kinds of node speak it. The built-in node keeps versions itself: a versioned write
//! carries `x-hrw-version` and the node applies it only if newer (a DELETE with a version
//! leaves a tombstone), and its answers say the version held. Any other store (`store:
//! plain`) keeps the version in an envelope around the value ([`Stored::encode`]); a write
//! there reads the key first and is put only if newer, which is not atomic.

mod response;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedReadHalf;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use self::response::{Answer, ReadError};
use super::mux::{Protocol, Shared};
use super::pool::{connect_tcp, io_error, is_reset, Failure, Pool};
use super::{
    ttl_of, Backend, BackendError, BoxFuture, Condition, HeldHint, HintPage, Listing, Stored, Ttl,
    Written, MAX_LISTING_BYTES,
};
use crate::config::NodeUrl;
use crate::net::context::{RequestContext, REQUEST_ID, VIA};
use crate::net::key;
use crate::version::{
    Version, EXPIRES_HEADER, HEADER as VERSION_HEADER, HINT_HEADER, MAX_HEADER_LEN,
};

/// The body of an answer to anything but a GET is read and dropped (a health page, an error).
const MAX_OTHER_BYTES: usize = 1024 * 1024;
/// The largest request body sent on a shared connection.
const MAX_SHARED_BODY: usize = 64 * 1024;
/// Idle connections kept per node.
const POOL_SIZE: usize = 64;

/// A connection's byte stream: plain TCP, or TLS over it for `https://` nodes.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Stream for T {}

type Conn = BufReader<Box<dyn Stream>>;

/// How values are kept on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keeping {
    /// As they are, without versions (`versioning: off`).
    Raw,
    /// Versions kept by the node itself: the built-in node's protocol.
    Native,
    /// Versions in an envelope around the value: any other store.
    Envelope,
}

pub(crate) struct HttpBackend {
    /// `host:port`, to connect to and for the Host header.
    authority: String,
    host: String,
    /// For `https://` nodes.
    tls: Option<TlsConnector>,
    connect_timeout: Duration,
    /// The largest value a GET accepts.
    max_value_bytes: usize,
    keeping: Keeping,
    idle: Pool<Conn>,
    /// The shared pipelined connections, for built-in nodes over plain TCP.
    shared: Option<Shared<Http>>,
}

/// HTTP/1.1 answers on a shared connection, in request order; a request expects an answer
/// body of at most this many bytes.
struct Http;

impl Protocol for Http {
    type Expect = usize;
    type Reply = Answer;
    type Reader = (OwnedReadHalf, BytesMut);

    fn reader(read: OwnedReadHalf) -> Self::Reader {
        (read, BytesMut::with_capacity(4096))
    }

    async fn read(
        (read, buf): &mut Self::Reader,
        max_body: usize,
    ) -> Result<(Answer, bool), Failure> {
        let answer = response::read_next(read, buf, max_body).await?;
        let more = answer.keep_alive;
        Ok((answer, more))
    }
}

impl std::fmt::Debug for HttpBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpBackend")
            .field("authority", &self.authority)
            .field("tls", &self.tls.is_some())
            .field("keeping", &self.keeping)
            .finish()
    }
}

/// One request to send: the method, the path (with query), extra headers, the body, and the
/// largest answer body accepted.
struct Call<'a> {
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: &'a [u8],
    max_answer: usize,
    /// Whether it may go on the shared connection: not a health probe (which must see the
    /// node itself answer, not wait behind others), a listing page or a large body (which
    /// would hold up everything behind it).
    shared: bool,
}

impl From<ReadError> for Failure {
    fn from(e: ReadError) -> Failure {
        match e {
            ReadError::Closed => Failure::Stale,
            ReadError::Io(e) => Failure::Failed(io_error(e)),
            ReadError::Protocol(why) => Failure::Failed(BackendError::Protocol(why)),
            ReadError::TooLarge(max) => Failure::Failed(BackendError::Rejected(format!(
                "the node's answer is larger than {max} bytes"
            ))),
        }
    }
}

impl HttpBackend {
    pub(crate) fn new(
        url: &NodeUrl,
        connect_timeout: Duration,
        max_value_bytes: usize,
        tls: Option<TlsConnector>,
        keeping: Keeping,
        builtin: bool,
    ) -> HttpBackend {
        let authority = format!("{}:{}", url.host, url.port);
        HttpBackend {
            shared: (builtin && tls.is_none())
                .then(|| Shared::new(authority.clone(), connect_timeout)),
            authority,
            host: url
                .host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            tls,
            connect_timeout,
            max_value_bytes,
            keeping,
            idle: Pool::new(POOL_SIZE),
        }
    }

    fn kv_path(key: &[u8], ttl: Option<Ttl>) -> String {
        let mut path = String::with_capacity(4 + key.len() * 3 + 16);
        path.push_str(key::KV_PREFIX);
        key::encode_into(key, &mut path);
        if let Some(ttl) = ttl {
            // The built-in node honours `?ttl=`.
            path.push_str(&format!("?ttl={ttl}"));
        }
        path
    }

    async fn connect(&self) -> Result<Conn, BackendError> {
        let stream = connect_tcp(&self.authority, self.connect_timeout).await?;
        let stream: Box<dyn Stream> = match &self.tls {
            None => Box::new(stream),
            Some(tls) => {
                let name = ServerName::try_from(self.host.clone())
                    .map_err(|e| BackendError::Connect(format!("bad TLS server name: {e}")))?;
                let handshake =
                    tokio::time::timeout(self.connect_timeout, tls.connect(name, stream));
                Box::new(
                    handshake
                        .await
                        .map_err(|_| BackendError::Connect("TLS handshake timed out".into()))?
                        .map_err(|e| BackendError::Connect(format!("TLS: {e}")))?,
                )
            }
        };
        Ok(BufReader::with_capacity(4096, stream))
    }

    /// Sends `call` and reads the whole answer: on the shared connection where there is one,
    /// else (or when the shared one ended before answering) on a pooled connection or a new
    /// one.
    async fn send(&self, call: Call<'_>) -> Result<Answer, BackendError> {
        if let Some(shared) = self.shared.as_ref().filter(|_| call.shared) {
            let mut request = self.head(&call).into_bytes();
            request.extend_from_slice(call.body);
            match shared.call_once(request.into(), call.max_answer).await {
                // Everything a built-in node is asked is safe to repeat (reads, put-if-newer,
                // put-if-absent, dropping a hint): what it may have run is sent again too.
                Err(Failure::Stale | Failure::Orphaned) => {}
                answer => return Ok(answer?),
            }
        }
        self.idle
            .exchange(self.connect(), |conn| self.exchange(conn, &call))
            .await
    }

    /// The request line and headers of `call`, with the request's id and path of proxies.
    fn head(&self, call: &Call<'_>) -> String {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nhost: {}\r\ncontent-length: {}\r\n",
            call.method,
            call.path,
            self.authority,
            call.body.len()
        );
        let context = RequestContext::current();
        let context_headers = context
            .iter()
            .flat_map(|c| [(REQUEST_ID, &*c.id), (VIA, &*c.via)]);
        let extra = call.headers.iter().map(|(n, v)| (*n, v.as_str()));
        for (name, value) in extra.chain(context_headers) {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        head
    }

    async fn exchange(&self, mut conn: Conn, call: &Call<'_>) -> Result<Answer, Failure> {
        let head = self.head(call);
        let stream = conn.get_mut();
        let written = if call.body.len() <= 16 * 1024 {
            // One write, one packet, for the usual small request.
            let mut request = head.into_bytes();
            request.extend_from_slice(call.body);
            stream.write_all(&request).await
        } else {
            match stream.write_all(head.as_bytes()).await {
                Ok(()) => stream.write_all(call.body).await,
                Err(e) => Err(e),
            }
        };
        match written {
            Err(e) if is_reset(&e) => return Err(Failure::Stale),
            Err(e) => return Err(Failure::Failed(io_error(e))),
            Ok(()) => {}
        }
        let answer = response::read(&mut conn, call.max_answer).await?;
        if answer.keep_alive {
            self.idle.give_back(conn);
        }
        Ok(answer)
    }

    /// One page of a built-in node's listing at `path` (`/kv` or `/hints`), from `cursor`
    /// on; [`BackendError::Unsupported`] from a node that has no such listing.
    async fn page(
        &self,
        path: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Bytes, BackendError> {
        let mut path = format!("{path}?limit={limit}");
        if let Some(after) = cursor {
            path.push_str("&after=");
            path.push_str(after);
        }
        let call = Call {
            max_answer: MAX_LISTING_BYTES,
            shared: false,
            ..self.call("GET", path, &[])
        };
        let answer = self.send(call).await?;
        match answer.status {
            StatusCode::OK => Ok(answer.body),
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => {
                Err(BackendError::Unsupported)
            }
            status => Err(unexpected(status)),
        }
    }

    fn call<'a>(&self, method: &'static str, path: String, body: &'a [u8]) -> Call<'a> {
        Call {
            method,
            path,
            headers: Vec::new(),
            body,
            max_answer: MAX_OTHER_BYTES,
            shared: body.len() <= MAX_SHARED_BODY,
        }
    }

    /// A write with the built-in node's versions: the node compares, and keeps the expiry
    /// time as it is; standing in for replica `hint`, the node keeps that as well.
    async fn put_native(
        &self,
        key: &[u8],
        stored: Stored,
        hint: Option<&str>,
    ) -> Result<Written, BackendError> {
        let mut call = match &stored.value {
            Some(value) => self.call("PUT", Self::kv_path(key, None), value),
            None => self.call("DELETE", Self::kv_path(key, None), &[]),
        };
        call.headers
            .push((VERSION_HEADER, stored.version.to_string()));
        if let Some(at) = stored.expires {
            call.headers.push((EXPIRES_HEADER, at.to_string()));
        }
        if let Some(owner) = hint {
            call.headers
                .push((HINT_HEADER, key::encode(owner.as_bytes())));
        }
        written(self.send(call).await?.status)
    }

    /// A write to a plain store with the version in an envelope: read, compare, then put.
    async fn put_enveloped(&self, key: &[u8], stored: Stored) -> Result<Written, BackendError> {
        if let Some(held) = self.get(key).await? {
            if held.version >= stored.version {
                return Ok(Written::Kept);
            }
        }
        let envelope = stored.encode();
        let answer = self
            .send(self.call("PUT", Self::kv_path(key, None), &envelope))
            .await?;
        written(answer.status)
    }
}

/// What a write's answer says: stored (2xx), or kept (412: a value or a newer version held).
fn written(status: StatusCode) -> Result<Written, BackendError> {
    match status {
        StatusCode::PRECONDITION_FAILED => Ok(Written::Kept),
        status if status.is_success() => Ok(Written::Stored),
        status => Err(unexpected(status)),
    }
}

/// A key listing: per line a percent-encoded key, then (from the built-in node) its version
/// and, for a tombstone, `tombstone`.
fn parse_listing(body: &[u8]) -> Result<Vec<Bytes>, BackendError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| BackendError::Protocol("key listing is not UTF-8".into()))?;
    text.lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let encoded = line.split(' ').next().unwrap_or("");
            key::decode(encoded, usize::MAX)
                .map(|k| Bytes::from(k.into_owned()))
                .map_err(|e| BackendError::Protocol(format!("key listing: {e}")))
        })
        .collect()
}

/// A hint listing: per line the percent-encoded key, the percent-encoded replica id and the
/// version.
fn parse_hints(body: &[u8]) -> Result<Vec<HeldHint>, BackendError> {
    let bad = |why: &str| BackendError::Protocol(format!("hint listing: {why}"));
    let text = std::str::from_utf8(body).map_err(|_| bad("not UTF-8"))?;
    text.lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let mut fields = line.split(' ');
            let (Some(k), Some(owner), Some(version)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(bad("a line without key, replica and version"));
            };
            let decode = |s| key::decode(s, usize::MAX).map_err(|e| bad(&e.to_string()));
            Ok(HeldHint {
                key: Bytes::from(decode(k)?.into_owned()),
                owner: String::from_utf8(decode(owner)?.into_owned())
                    .map_err(|_| bad("a replica id that is not UTF-8"))?,
                version: version.parse().map_err(|_| bad("a bad version"))?,
            })
        })
        .collect()
}

fn unexpected(status: StatusCode) -> BackendError {
    if status == StatusCode::LOOP_DETECTED {
        BackendError::Loop
    } else if status.is_server_error() {
        BackendError::Server(format!("status {}", status.as_u16()))
    } else {
        BackendError::Rejected(format!("status {}", status.as_u16()))
    }
}

impl Backend for HttpBackend {
    fn get<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<Option<Stored>, BackendError>> {
        Box::pin(async move {
            let envelope = if self.keeping == Keeping::Envelope {
                MAX_HEADER_LEN
            } else {
                0
            };
            let call = Call {
                max_answer: self.max_value_bytes + envelope,
                ..self.call("GET", Self::kv_path(key, None), &[])
            };
            let Answer {
                status, body, held, ..
            } = self.send(call).await?;
            let stored = |value| Stored {
                version: held.version.unwrap_or(Version::ZERO),
                value,
                expires: held.expires,
            };
            match (status, self.keeping) {
                // A plain store keeps what expired until it is overwritten: it reads as nothing.
                (StatusCode::OK, Keeping::Envelope) => Ok(Stored::from_node(body, true)),
                (StatusCode::OK, _) => Ok(Some(stored(Some(body)))),
                (StatusCode::NOT_FOUND, Keeping::Native) if held.tombstone => {
                    Ok(Some(stored(None)))
                }
                (StatusCode::NOT_FOUND, _) => Ok(None),
                (status, _) => Err(unexpected(status)),
            }
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a [u8],
        stored: Stored,
        condition: Condition,
    ) -> BoxFuture<'a, Result<Written, BackendError>> {
        Box::pin(async move {
            match (condition, self.keeping) {
                (Condition::IfNewer, Keeping::Native) => self.put_native(key, stored, None).await,
                (Condition::IfNewer, Keeping::Envelope) => self.put_enveloped(key, stored).await,
                (condition, _) => {
                    let ttl = ttl_of(&stored);
                    let value = stored.value.unwrap_or_default();
                    let mut call = self.call("PUT", Self::kv_path(key, ttl), &value);
                    if condition == Condition::IfAbsent {
                        call.headers.push(("if-none-match", "*".into()));
                    }
                    written(self.send(call).await?.status)
                }
            }
        })
    }

    fn list<'a>(
        &'a self,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Listing, BackendError>> {
        Box::pin(async move {
            // The cursor is the last key listed, percent-encoded.
            let keys = parse_listing(&self.page("/kv", cursor, limit).await?)?;
            let next = (keys.len() >= limit)
                .then(|| keys.last().map(|k| key::encode(k)))
                .flatten();
            Ok(Listing { keys, next })
        })
    }

    fn remove<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let answer = self
                .send(self.call("DELETE", Self::kv_path(key, None), &[]))
                .await?;
            match answer.status {
                status if status.is_success() || status == StatusCode::NOT_FOUND => Ok(()),
                status => Err(unexpected(status)),
            }
        })
    }

    fn keeps_hints(&self) -> bool {
        self.keeping == Keeping::Native
    }

    fn put_hinted<'a>(
        &'a self,
        key: &'a [u8],
        stored: Stored,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<Written, BackendError>> {
        Box::pin(async move {
            if self.keeping != Keeping::Native {
                return Err(BackendError::Unsupported);
            }
            self.put_native(key, stored, Some(owner)).await
        })
    }

    fn hints<'a>(
        &'a self,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<HintPage, BackendError>> {
        Box::pin(async move {
            if self.keeping != Keeping::Native {
                return Err(BackendError::Unsupported);
            }
            let hints = parse_hints(&self.page("/hints", cursor, limit).await?)?;
            // A key's hints share a page: the cursor is the last key.
            let next = (hints.len() >= limit)
                .then(|| hints.last().map(|h| key::encode(&h.key)))
                .flatten();
            Ok(HintPage { hints, next })
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
            let mut path = String::from("/hints/");
            key::encode_into(key, &mut path);
            path.push_str("?owner=");
            key::encode_into(owner.as_bytes(), &mut path);
            path.push_str(&format!("&up_to={up_to}&release={release}"));
            match self.send(self.call("DELETE", path, &[])).await?.status {
                status if status.is_success() => Ok(()),
                StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => {
                    Err(BackendError::Unsupported)
                }
                status => Err(unexpected(status)),
            }
        })
    }

    fn health(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            // A store without a /health route (404) still answered: it is up.
            let probe = Call {
                shared: false,
                ..self.call("GET", "/health".into(), &[])
            };
            match self.send(probe).await?.status {
                status if status.is_server_error() => Err(unexpected(status)),
                _ => Ok(()),
            }
        })
    }
}
