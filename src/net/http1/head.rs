//! The head of a request: parsed with httparse and checked for what RFC 9112 asks of a server
//! (a Host on HTTP/1.1, one body length, `chunked` as the last transfer coding, no line
//! folding) before anything reads its body.

use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};

use crate::net::RequestError;

/// Header slots on the stack; a larger `max_headers` takes them from the heap.
const STACK_HEADERS: usize = 64;

/// How a request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Length(u64),
    Chunked,
}

/// A complete, checked request head.
#[derive(Debug)]
pub(crate) struct Head {
    pub request: Request<()>,
    /// The body's framing; `None` when there is none.
    pub framing: Option<Framing>,
    /// Whether the client's version and `Connection` header allow another request after this
    /// one (never after a request that gave both a length and a transfer coding).
    pub keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for a go-ahead before it sends the body.
    pub expect_continue: bool,
    /// Bytes the head took.
    pub len: usize,
}

/// The limits a head is parsed within.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadLimits {
    pub max_headers: usize,
    pub max_bytes: usize,
}

/// Parses the head at the start of `buf`: `None` while it is incomplete (and within limits).
pub(crate) fn parse(buf: &[u8], limits: HeadLimits) -> Result<Option<Head>, RequestError> {
    if limits.max_headers <= STACK_HEADERS {
        let mut slots = [httparse::EMPTY_HEADER; STACK_HEADERS];
        parse_into(buf, limits, &mut slots[..limits.max_headers])
    } else {
        parse_into(
            buf,
            limits,
            &mut vec![httparse::EMPTY_HEADER; limits.max_headers],
        )
    }
}

fn parse_into<'b>(
    buf: &'b [u8],
    limits: HeadLimits,
    slots: &mut [httparse::Header<'b>],
) -> Result<Option<Head>, RequestError> {
    let mut parsed = httparse::Request::new(slots);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= limits.max_bytes => len,
        Ok(httparse::Status::Partial) if buf.len() <= limits.max_bytes => return Ok(None),
        Ok(_) => return Err(RequestError::HeadTooLarge(limits.max_bytes)),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(RequestError::TooManyHeaders(limits.max_headers))
        }
        Err(e) => return Err(malformed(e)),
    };
    let (Some(method), Some(target), Some(minor)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Err(malformed("incomplete request line"));
    };
    let version = if minor == 1 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    for header in parsed.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes()).map_err(malformed)?;
        let value = HeaderValue::from_bytes(header.value).map_err(malformed)?;
        headers.append(name, value);
    }
    let mut request = Request::new(());
    *request.method_mut() = Method::from_bytes(method.as_bytes()).map_err(malformed)?;
    *request.uri_mut() = Uri::try_from(target).map_err(malformed)?;
    *request.version_mut() = version;

    match headers.get_all(HOST).iter().count() {
        0 if version == Version::HTTP_11 => return Err(RequestError::MissingHost),
        0 | 1 => {}
        _ => return Err(malformed("more than one Host header")),
    }
    let has = |token: &str| tokens(&headers, &CONNECTION).any(|t| t.eq_ignore_ascii_case(token));
    // `close` wins wherever it is in the list.
    let mut keep_alive = !has("close") && (version == Version::HTTP_11 || has("keep-alive"));
    let expect_continue = version == Version::HTTP_11
        && headers
            .get(EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let framing = framing(&mut headers, version, &mut keep_alive)?;
    *request.headers_mut() = headers;
    Ok(Some(Head {
        request,
        framing,
        keep_alive,
        expect_continue,
        len,
    }))
}

/// The body's framing (RFC 9112, section 6.3). A transfer coding overrides a length, whose
/// header is then dropped, and the connection closes after the answer: the two disagreeing is
/// how requests are smuggled past a proxy.
fn framing(
    headers: &mut HeaderMap,
    version: Version,
    keep_alive: &mut bool,
) -> Result<Option<Framing>, RequestError> {
    let codings: Vec<&str> = tokens(headers, &TRANSFER_ENCODING).collect();
    if !codings.is_empty() || headers.contains_key(TRANSFER_ENCODING) {
        if version == Version::HTTP_10 {
            return Err(malformed("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if !codings
            .last()
            .is_some_and(|c| c.eq_ignore_ascii_case("chunked"))
        {
            return Err(malformed("Transfer-Encoding must end in chunked"));
        }
        if codings.len() > 1 {
            return Err(RequestError::UnsupportedCoding(codings.join(", ")));
        }
        if headers.remove(CONTENT_LENGTH).is_some() {
            *keep_alive = false;
        }
        return Ok(Some(Framing::Chunked));
    }
    let mut length: Option<u64> = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for part in value.to_str().unwrap_or("").split(',') {
            let part = part.trim();
            let parsed = part
                .parse::<u64>()
                .ok()
                .filter(|_| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| malformed("Content-Length is not a number"))?;
            if length.is_some_and(|l| l != parsed) {
                return Err(malformed("Content-Length values that differ"));
            }
            length = Some(parsed);
        }
    }
    Ok(length.filter(|l| *l > 0).map(Framing::Length))
}

/// The comma-separated tokens of every `name` header, trimmed, empty ones skipped.
fn tokens<'h>(headers: &'h HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'h str> {
    headers
        .get_all(name)
        .into_iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

fn malformed(why: impl std::fmt::Display) -> RequestError {
    RequestError::Malformed(why.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_headers: 8,
        max_bytes: 256,
    };

    fn head(raw: &str) -> Result<Option<Head>, RequestError> {
        parse(raw.as_bytes(), LIMITS)
    }

    fn complete(raw: &str) -> Head {
        head(raw).unwrap().unwrap()
    }

    #[test]
    fn a_head_is_complete_only_after_its_blank_line() {
        let raw = "PUT /kv/a%2Fb?ttl=5 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc";
        for end in 0..raw.len() - 3 {
            assert!(head(&raw[..end]).unwrap().is_none(), "{end}");
        }
        let parsed = complete(raw);
        assert_eq!(parsed.len, raw.len() - 3);
        assert_eq!(parsed.request.method(), Method::PUT);
        assert_eq!(parsed.request.uri().path(), "/kv/a%2Fb");
        assert_eq!(parsed.request.uri().query(), Some("ttl=5"));
        assert_eq!(parsed.request.headers()["host"], "h");
        assert_eq!(parsed.framing, Some(Framing::Length(3)));
        assert!(parsed.keep_alive && !parsed.expect_continue);
    }

    #[test]
    fn versions_and_connection_tokens_decide_keep_alive() {
        let keeps = |raw: &str| complete(raw).keep_alive;
        assert!(keeps("GET / HTTP/1.1\r\nhost: h\r\n\r\n"));
        assert!(!keeps(
            "GET / HTTP/1.1\r\nhost: h\r\nconnection: foo, Close\r\n\r\n"
        ));
        assert!(!keeps("GET / HTTP/1.0\r\n\r\n"));
        assert!(keeps("GET / HTTP/1.0\r\nconnection: Keep-Alive\r\n\r\n"));
        assert!(!keeps(
            "GET / HTTP/1.0\r\nconnection: close, keep-alive\r\n\r\n"
        ));
        assert!(
            complete("PUT / HTTP/1.1\r\nhost: h\r\nexpect: 100-Continue\r\n\r\n").expect_continue
        );
    }

    #[test]
    fn one_body_length_or_chunked_last() {
        let framing = |extra: &str| {
            head(&format!("PUT / HTTP/1.1\r\nhost: h\r\n{extra}\r\n")).map(|h| {
                let h = h.unwrap();
                (
                    h.framing,
                    h.keep_alive,
                    h.request.headers().contains_key(CONTENT_LENGTH),
                )
            })
        };
        assert_eq!(framing(""), Ok((None, true, false)));
        assert_eq!(framing("content-length: 0\r\n"), Ok((None, true, true)));
        assert_eq!(
            framing("content-length: 7\r\ncontent-length: 7, 7\r\n"),
            Ok((Some(Framing::Length(7)), true, true))
        );
        assert_eq!(
            framing("transfer-encoding: Chunked\r\n"),
            Ok((Some(Framing::Chunked), true, false))
        );
        assert_eq!(
            framing("content-length: 3\r\ntransfer-encoding: chunked\r\n"),
            Ok((Some(Framing::Chunked), false, false)),
            "the length is dropped and the connection closes after"
        );
        for bad in [
            "content-length: 3\r\ncontent-length: 4\r\n",
            "content-length: +3\r\n",
            "content-length: 0x3\r\n",
            "content-length: \r\n",
            "content-length: 99999999999999999999999\r\n",
            "transfer-encoding: chunked, identity\r\n",
            "transfer-encoding: gzip\r\n",
            "transfer-encoding: \r\n",
        ] {
            assert!(
                matches!(framing(bad), Err(RequestError::Malformed(_))),
                "{bad}: {:?}",
                framing(bad)
            );
        }
        assert!(matches!(
            framing("transfer-encoding: gzip, chunked\r\n"),
            Err(RequestError::UnsupportedCoding(_))
        ));
        assert!(matches!(
            head("PUT / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n"),
            Err(RequestError::Malformed(_))
        ));
    }

    #[test]
    fn refusals_name_the_limit_or_the_fault() {
        assert_eq!(
            head("GET / HTTP/1.1\r\n\r\n").unwrap_err(),
            RequestError::MissingHost
        );
        assert!(complete("GET / HTTP/1.0\r\n\r\n")
            .request
            .headers()
            .is_empty());
        assert!(matches!(
            head("GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n"),
            Err(RequestError::Malformed(_))
        ));
        let many: String = (0..9).map(|i| format!("x-{i}: v\r\n")).collect();
        assert_eq!(
            head(&format!("GET / HTTP/1.1\r\nhost: h\r\n{many}\r\n")).unwrap_err(),
            RequestError::TooManyHeaders(8)
        );
        let long = format!("GET / HTTP/1.1\r\nhost: h\r\nx: {}", "v".repeat(300));
        assert_eq!(head(&long).unwrap_err(), RequestError::HeadTooLarge(256));
        for bad in [
            "GET / HTTP/1.1\r\nhost: h\r\nx-folded: a\r\n b\r\n\r\n",
            "GET / HTTP/2.0\r\nhost: h\r\n\r\n",
            "GET /a b HTTP/1.1\r\nhost: h\r\n\r\n",
            "G(T / HTTP/1.1\r\nhost: h\r\n\r\n",
            "GET / HTTP/1.1\r\nho st: h\r\n\r\n",
        ] {
            assert!(
                matches!(head(bad), Err(RequestError::Malformed(_))),
                "{bad:?}: {:?}",
                head(bad)
            );
        }
        let absolute = complete("GET http://elsewhere.example/kv/abs HTTP/1.1\r\nhost: h\r\n\r\n");
        assert_eq!(absolute.request.uri().path(), "/kv/abs");
    }
}
