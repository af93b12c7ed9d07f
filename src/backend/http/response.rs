//! Reading one HTTP/1.1 response from a node: the head, then a body delimited by
//! Content-Length, chunked encoding or the connection closing. Every part is bounded: a node
//! that lies about lengths or never stops sending gets a protocol error, not our memory.

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::backend::pool::is_reset;
use crate::version::{Version, EXPIRES_HEADER, HEADER as VERSION_HEADER, TOMBSTONE_HEADER};

/// Response headers read at most.
const MAX_HEADERS: usize = 64;
/// Bytes of a response head, a chunk-size line or the trailers at most.
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_CHUNK_LINE: usize = 1024;

/// How reading a response failed.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The connection closed (or was reset) before any byte of an answer: a pooled connection
    /// the node had closed while it was idle.
    Closed,
    Io(std::io::Error),
    Protocol(String),
    /// The body is larger than the limit: the value's fault, not the node's.
    TooLarge(usize),
}

/// A response: status, body, whether the connection can carry another request, and what the
/// built-in node says of what it holds.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
    pub keep_alive: bool,
    pub held: Held,
}

/// What the built-in node's headers say of what it holds.
#[derive(Debug, Default)]
pub(crate) struct Held {
    /// `x-hrw-version`.
    pub version: Option<Version>,
    /// `x-hrw-tombstone: true`.
    pub tombstone: bool,
    /// `x-hrw-expires`: seconds since the Unix epoch.
    pub expires: Option<u64>,
}

fn too_large(max_body: usize) -> ReadError {
    ReadError::TooLarge(max_body)
}

/// Reads into `buf`; end of stream is an error saying `what` was cut short.
async fn fill<R: AsyncRead + Unpin>(
    conn: &mut R,
    buf: &mut BytesMut,
    what: &str,
) -> Result<(), ReadError> {
    match conn.read_buf(buf).await.map_err(ReadError::Io)? {
        0 => Err(ReadError::Protocol(format!("connection closed {what}"))),
        _ => Ok(()),
    }
}

/// Reads one response with a body of at most `max_body` bytes.
pub(crate) async fn read<R: AsyncRead + Unpin>(
    conn: &mut R,
    max_body: usize,
) -> Result<Answer, ReadError> {
    read_next(conn, &mut BytesMut::with_capacity(1024), max_body).await
}

/// Reads the next response on a connection whose replies are pipelined: `buf` holds what was
/// read past the last response, and keeps what is read past this one.
pub(crate) async fn read_next<R: AsyncRead + Unpin>(
    conn: &mut R,
    buf: &mut BytesMut,
    max_body: usize,
) -> Result<Answer, ReadError> {
    // What is buffered already is parsed before anything is read.
    let mut buffered = !buf.is_empty();
    let (head_len, status, length, chunked, mut keep_alive, held) = loop {
        if !std::mem::take(&mut buffered) {
            match conn.read_buf(buf).await {
                Ok(0) if buf.is_empty() => return Err(ReadError::Closed),
                Ok(0) => return Err(ReadError::Protocol("connection closed mid-response".into())),
                Ok(_) => {}
                Err(e) if buf.is_empty() && is_reset(&e) => return Err(ReadError::Closed),
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let head_len = match response.parse(buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD_BYTES => continue,
            Ok(httparse::Status::Partial) => {
                return Err(ReadError::Protocol("response head too large".into()))
            }
            Err(e) => return Err(ReadError::Protocol(format!("bad response: {e}"))),
        };
        let status = StatusCode::from_u16(response.code.unwrap_or(0))
            .map_err(|_| ReadError::Protocol("bad status code".into()))?;
        let mut length = None;
        let mut chunked = false;
        let mut keep_alive = response.version == Some(1);
        let mut held = Held::default();
        for h in response.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let parsed = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok());
                let parsed =
                    parsed.ok_or_else(|| ReadError::Protocol("bad content-length".into()))?;
                if length.is_some_and(|l| l != parsed) {
                    return Err(ReadError::Protocol("conflicting content-length".into()));
                }
                length = Some(parsed);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = h.value.eq_ignore_ascii_case(b"chunked");
            } else if h.name.eq_ignore_ascii_case("connection") {
                // A list of options: `close` among them closes.
                keep_alive = !h
                    .value
                    .split(|&b| b == b',')
                    .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"));
            } else if h.name.eq_ignore_ascii_case(VERSION_HEADER) {
                held.version = Some(number(h.value, VERSION_HEADER)?);
            } else if h.name.eq_ignore_ascii_case(EXPIRES_HEADER) {
                held.expires = Some(number(h.value, EXPIRES_HEADER)?);
            } else if h.name.eq_ignore_ascii_case(TOMBSTONE_HEADER) {
                held.tombstone = h.value.eq_ignore_ascii_case(b"true");
            }
        }
        // An interim answer (100 Continue, 103 Early Hints) comes before the real one.
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            let _ = buf.split_to(head_len);
            buffered = !buf.is_empty();
            continue;
        }
        break (head_len, status, length, chunked, keep_alive, held);
    };
    let _ = buf.split_to(head_len);
    let no_body = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let body = if no_body {
        Bytes::new()
    } else if chunked {
        read_chunked(conn, buf, max_body).await?
    } else if let Some(length) = length {
        if length > max_body {
            return Err(too_large(max_body));
        }
        while buf.len() < length {
            buf.reserve(length - buf.len());
            fill(conn, buf, "mid-body").await?;
        }
        buf.split_to(length).freeze()
    } else {
        // Delimited by the connection closing.
        keep_alive = false;
        loop {
            if buf.len() > max_body {
                return Err(too_large(max_body));
            }
            if conn.read_buf(buf).await.map_err(ReadError::Io)? == 0 {
                break buf.split().freeze();
            }
        }
    };
    Ok(Answer {
        status,
        body,
        keep_alive,
        held,
    })
}

/// A header's value as a number.
fn number<T: std::str::FromStr>(value: &[u8], header: &str) -> Result<T, ReadError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ReadError::Protocol(format!("bad {header}")))
}

/// The position of the first CRLF in `buf`.
fn crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

/// A chunked body: hex size line (extensions ignored), data, CRLF, until a zero-size chunk and
/// the trailers.
async fn read_chunked<R: AsyncRead + Unpin>(
    conn: &mut R,
    buf: &mut BytesMut,
    max_body: usize,
) -> Result<Bytes, ReadError> {
    let mut body = BytesMut::new();
    loop {
        let line_end = loop {
            if let Some(at) = crlf(buf) {
                break at;
            }
            if buf.len() > MAX_CHUNK_LINE {
                return Err(ReadError::Protocol("chunk size line too long".into()));
            }
            fill(conn, buf, "in a chunk size line").await?;
        };
        let line = buf.split_to(line_end + 2);
        let size = std::str::from_utf8(&line[..line_end])
            .ok()
            .map(|l| l.split(';').next().unwrap_or("").trim())
            .filter(|hex| !hex.is_empty())
            .and_then(|hex| usize::from_str_radix(hex, 16).ok())
            .ok_or_else(|| ReadError::Protocol("bad chunk size".into()))?;
        if size == 0 {
            // Trailers (usually none) end with an empty line; all of them are bounded.
            let mut trailers = 0usize;
            loop {
                match crlf(buf) {
                    Some(0) => {
                        let _ = buf.split_to(2);
                        return Ok(body.freeze());
                    }
                    Some(at) => {
                        trailers += at + 2;
                        let _ = buf.split_to(at + 2);
                    }
                    None => fill(conn, buf, "in the trailers").await?,
                }
                if trailers + buf.len() > MAX_HEAD_BYTES {
                    return Err(ReadError::Protocol("trailers too large".into()));
                }
            }
        }
        // `body.len() <= max_body` holds, so neither side can overflow.
        if size > max_body - body.len() {
            return Err(too_large(max_body));
        }
        while buf.len() < size + 2 {
            fill(conn, buf, "mid-chunk").await?;
        }
        if &buf[size..size + 2] != b"\r\n" {
            return Err(ReadError::Protocol(
                "chunk data not followed by CRLF".into(),
            ));
        }
        body.extend_from_slice(&buf[..size]);
        let _ = buf.split_to(size + 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(raw: &[u8], max: usize) -> Result<Answer, ReadError> {
        let mut conn = raw;
        read(&mut conn, max).await
    }

    fn protocol_error(result: Result<Answer, ReadError>) -> String {
        match result {
            Err(ReadError::Protocol(why)) => why,
            Err(ReadError::TooLarge(max)) => format!("larger than {max}"),
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn bodies_by_length_chunks_and_close() {
        let a = parse(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", 10)
            .await
            .unwrap();
        assert_eq!(
            (a.status, &a.body[..], a.keep_alive),
            (StatusCode::OK, &b"hello"[..], true)
        );
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nx-trailer: 1\r\n\r\n";
        let a = parse(chunked, 100).await.unwrap();
        assert_eq!(&a.body[..], b"hello world");
        assert!(a.keep_alive);
        let a = parse(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", 100)
            .await
            .unwrap();
        assert_eq!((&a.body[..], a.keep_alive), (&b"until the end"[..], false));
        let a = parse(b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n", 10)
            .await
            .unwrap();
        assert!(!a.keep_alive, "HTTP/1.0 closes");
        let a = parse(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n", 10)
            .await
            .unwrap();
        assert!(a.body.is_empty() && !a.keep_alive);
        let a = parse(
            b"HTTP/1.1 200 OK\r\nconnection: upgrade, Close\r\ncontent-length: 0\r\n\r\n",
            10,
        )
        .await
        .unwrap();
        assert!(!a.keep_alive, "close in a list of options");
        let a = parse(b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", 10)
            .await
            .unwrap();
        assert_eq!(
            (a.status, &a.body[..]),
            (StatusCode::OK, &b"ok"[..]),
            "an interim answer is skipped"
        );
    }

    #[tokio::test]
    async fn pipelined_answers_are_read_one_after_another_from_what_is_buffered() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nv1HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nv3\r\n0\r\n\r\n";
        // Read in pieces that cut answers anywhere, and all at once.
        for piece in [1, 7, raw.len()] {
            let (client, mut server) = tokio::io::duplex(piece);
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                for part in raw.chunks(piece) {
                    server.write_all(part).await.unwrap();
                }
            });
            let (mut conn, mut buf) = (client, BytesMut::new());
            let mut next = async || read_next(&mut conn, &mut buf, 10).await.unwrap();
            let (a, b, c) = (next().await, next().await, next().await);
            assert_eq!((a.status, &a.body[..]), (StatusCode::OK, &b"v1"[..]));
            assert_eq!((b.status, b.body.len()), (StatusCode::NOT_FOUND, 0));
            assert_eq!(&c.body[..], b"v3");
            assert!(matches!(
                read_next(&mut conn, &mut buf, 10).await,
                Err(ReadError::Closed)
            ));
        }
    }

    #[tokio::test]
    async fn every_body_is_bounded_and_lies_are_refused() {
        let why = protocol_error(
            parse(
                b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhello world",
                10,
            )
            .await,
        );
        assert!(why.contains("larger than 10"), "{why}");
        let why = protocol_error(
            parse(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n", 10).await,
        );
        assert!(why.contains("larger than 10"), "{why}");
        let why = protocol_error(parse(b"HTTP/1.1 200 OK\r\n\r\n0123456789abcdef", 10).await);
        assert!(why.contains("larger than 10"), "{why}");
        // A chunk size that would overflow a length computation.
        let why = protocol_error(
            parse(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nffffffffffffffff\r\nx",
                10,
            )
            .await,
        );
        assert!(why.contains("larger than"), "{why}");
        let why = protocol_error(
            parse(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1ffffffffffffffffff\r\nx",
                10,
            )
            .await,
        );
        assert_eq!(why, "bad chunk size");
        let why = protocol_error(
            parse(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
                10,
            )
            .await,
        );
        assert!(why.contains("CRLF"), "{why}");
        let why =
            protocol_error(parse(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhel", 10).await);
        assert!(why.contains("mid-body"), "{why}");
        let why = protocol_error(
            parse(
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nabc",
                10,
            )
            .await,
        );
        assert!(why.contains("conflicting"), "{why}");
        let endless_head = [b"HTTP/1.1 200 OK\r\nx: ".as_slice(), &[b'a'; 70_000]].concat();
        let why = protocol_error(parse(&endless_head, 10).await);
        assert!(why.contains("head too large"), "{why}");
        let endless_trailers = [
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n".as_slice(),
            &b"x: y\r\n".repeat(20_000),
        ]
        .concat();
        let why = protocol_error(parse(&endless_trailers, 10).await);
        assert!(why.contains("trailers too large"), "{why}");
        let endless_line = [
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".as_slice(),
            &[b'1'; 2000],
        ]
        .concat();
        let why = protocol_error(parse(&endless_line, 10).await);
        assert!(why.contains("too long"), "{why}");
        assert!(matches!(parse(b"", 10).await, Err(ReadError::Closed)));
        let why = protocol_error(parse(b"SMTP ready\r\n\r\n", 10).await);
        assert!(why.starts_with("bad response"), "{why}");
    }
}
