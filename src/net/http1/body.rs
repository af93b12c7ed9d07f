//! A request body read from the connection only when the handler asks for it: within the value
//! limit and the body timeout, after a `100 Continue` when the client waits for one.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::chunked::{ChunkError, Decoder};
use super::head::Framing;
use super::Conn;
use crate::net::RequestError;

/// Bytes read from the socket at a time while decoding a chunked body, and the first
/// allocation for a body of declared length.
const READ_CHUNK: usize = 8192;
/// How much a body of declared length grows at a time as its bytes arrive.
const GROW_CHUNK: usize = 256 * 1024;

/// The body of the request a connection is serving.
#[derive(Debug)]
pub(crate) struct Body<'c>(pub(super) &'c mut Conn);

impl Body<'_> {
    /// Reads the whole body, of at most `max` bytes, within `timeout`. A declared length over
    /// `max` is refused before anything is read.
    pub(crate) async fn read(self, max: usize, timeout: Duration) -> Result<Bytes, RequestError> {
        let Some(framing) = self.0.unread else {
            return Ok(Bytes::new());
        };
        if let Framing::Length(len) = framing {
            if len > max as u64 {
                return Err(RequestError::ValueTooLarge { len, max });
            }
        }
        tokio::time::timeout(timeout, self.0.read_body(framing, max))
            .await
            .map_err(|_| RequestError::BodyTimeout(timeout.as_millis() as u64))?
    }
}

impl Conn {
    async fn read_body(&mut self, framing: Framing, max: usize) -> Result<Bytes, RequestError> {
        if std::mem::take(&mut self.expect_continue) && self.buf.is_empty() {
            self.stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .map_err(failed)?;
        }
        let body = match framing {
            Framing::Length(len) => {
                // Within `max`, which is a usize. Grown as bytes arrive, not all at once: a
                // head that declares the limit and sends nothing costs nothing.
                let len = len as usize;
                let buffered = len.min(self.buf.len());
                let mut body = Vec::with_capacity(buffered.max(len.min(READ_CHUNK)));
                body.extend_from_slice(&self.buf[..buffered]);
                self.buf.drain(..buffered);
                while body.len() < len {
                    let want = len - body.len();
                    body.reserve(want.min(GROW_CHUNK));
                    let mut limited = (&mut self.stream).take(want as u64);
                    if limited.read_buf(&mut body).await.map_err(failed)? == 0 {
                        return Err(ended_early());
                    }
                }
                body
            }
            Framing::Chunked => {
                let mut decoder = Decoder::new(max);
                let mut body = Vec::new();
                loop {
                    let used = decoder.feed(&self.buf, &mut body).map_err(|e| match e {
                        ChunkError::TooLarge => RequestError::BodyTooLarge { max },
                        ChunkError::Malformed(why) => {
                            RequestError::Malformed(format!("bad chunked body: {why}"))
                        }
                    })?;
                    self.buf.drain(..used);
                    if decoder.done() {
                        break;
                    }
                    self.buf.reserve(READ_CHUNK);
                    if self.stream.read_buf(&mut self.buf).await.map_err(failed)? == 0 {
                        return Err(ended_early());
                    }
                }
                body
            }
        };
        self.unread = None;
        Ok(Bytes::from(body))
    }
}

fn failed(e: std::io::Error) -> RequestError {
    RequestError::BodyRead(e.to_string())
}

fn ended_early() -> RequestError {
    RequestError::BodyRead("the connection closed before the body was complete".into())
}
