//! Reading memcached's replies: one line at a time, a value with its length, and what an error
//! line says about who is at fault.

use bytes::Bytes;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

use crate::backend::pool::{io_error, is_reset};
use crate::backend::BackendError;

/// A reply line longer than this is not memcached talking.
const MAX_LINE: usize = 1024;

/// A reply line that is an error in every command: `ERROR`, `CLIENT_ERROR ...`,
/// `SERVER_ERROR ...`. A value too large for the server is the request's fault, not the
/// node's.
pub(super) fn error_reply(line: &str) -> BackendError {
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

/// One reply line, at most [`MAX_LINE`] bytes; `None` if the connection closed (or was reset)
/// before any byte of it. Replies end lines in CRLF, but `lru_crawler metadump` ends them in LF.
pub(super) async fn read_line<R: AsyncBufRead + Unpin>(
    conn: &mut R,
) -> Result<Option<String>, BackendError> {
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
pub(super) async fn read_value<R: AsyncBufRead + Unpin>(
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
