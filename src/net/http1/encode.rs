//! A response on the wire: the status line, the handler's headers, the length, the date, and
//! whether the connection stays open.

use std::cell::RefCell;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::response::Parts;
use http::StatusCode;
use hyper::body::Body as _;

use crate::net::respond::Body;

thread_local! {
    /// The `Date` header's value, formatted once a second per thread.
    static NOW: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
}

/// How the connection goes on after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Persist {
    /// It stays open (HTTP/1.1's default: nothing to say).
    Stay,
    /// It stays open for an HTTP/1.0 client that asked to keep it.
    StayForHttp10,
    /// It closes after this response.
    Close,
}

/// The bytes of a response body (a whole value, already in memory).
pub(super) fn body_bytes(body: Body) -> Bytes {
    let mut body = pin!(body);
    match body
        .as_mut()
        .poll_frame(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
        _ => Bytes::new(),
    }
}

/// Whether a response with this status carries a body (RFC 9110, section 6.4.1).
pub(super) fn has_body(status: StatusCode) -> bool {
    !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED)
}

/// Writes the head of a response whose body is `body_len` bytes (sent or, for a HEAD, not).
pub(super) fn head(parts: &Parts, body_len: usize, persist: Persist, out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if [CONTENT_LENGTH, TRANSFER_ENCODING, CONNECTION, DATE].contains(name) {
            continue;
        }
        line(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if has_body(parts.status) {
        let mut digits = [0; 20];
        line(out, b"content-length", format_len(body_len, &mut digits));
    }
    NOW.with_borrow_mut(|(second, text)| {
        let now = SystemTime::now();
        let this = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if *second != this || text.is_empty() {
            *second = this;
            *text = httpdate::fmt_http_date(now);
        }
        line(out, b"date", text.as_bytes());
    });
    match persist {
        Persist::Stay => {}
        Persist::StayForHttp10 => line(out, b"connection", b"keep-alive"),
        Persist::Close => line(out, b"connection", b"close"),
    }
    out.extend_from_slice(b"\r\n");
}

fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `n` in decimal, in the tail of `buf`.
fn format_len(mut n: usize, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderValue, Response};

    fn encode(status: StatusCode, body: &str, persist: Persist) -> String {
        let mut resp = Response::new(());
        *resp.status_mut() = status;
        resp.headers_mut()
            .insert("x-hrw-node", HeaderValue::from_static("a"));
        resp.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from_static("999"));
        let (parts, ()) = resp.into_parts();
        let mut out = Vec::new();
        head(&parts, body.len(), persist, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn heads_carry_the_real_length_a_date_and_the_connection_state() {
        let ok = encode(StatusCode::OK, "hello", Persist::Stay);
        assert!(
            ok.starts_with("HTTP/1.1 200 OK\r\nx-hrw-node: a\r\ncontent-length: 5\r\ndate: "),
            "{ok}"
        );
        assert!(ok.ends_with(" GMT\r\n\r\n"), "{ok}");
        assert!(!ok.contains("999") && !ok.contains("connection"), "{ok}");
        let closing = encode(StatusCode::NOT_FOUND, "", Persist::Close);
        assert!(closing.contains("content-length: 0\r\n"), "{closing}");
        assert!(closing.ends_with("connection: close\r\n\r\n"), "{closing}");
        let kept = encode(StatusCode::NO_CONTENT, "", Persist::StayForHttp10);
        assert!(kept.starts_with("HTTP/1.1 204 No Content\r\n"), "{kept}");
        assert!(!kept.contains("content-length"), "{kept}");
        assert!(kept.ends_with("connection: keep-alive\r\n\r\n"), "{kept}");
        let odd = encode(StatusCode::from_u16(599).unwrap(), "x", Persist::Stay);
        assert!(odd.starts_with("HTTP/1.1 599 \r\n"), "{odd}");
        let mut digits = [0; 20];
        assert_eq!(format_len(1234567890, &mut digits), b"1234567890");
    }
}
