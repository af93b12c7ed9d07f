//! Redis requests off the wire: RESP arrays of bulk strings (what client libraries send) and
//! inline commands (what `printf ... | nc` sends). Parsed as bytes arrive; a command over the
//! size limit is skipped as it streams past, never buffered, and answered with an error while
//! the connection goes on. Anything that is not RESP ends the connection after an error, as
//! Redis does: there is no way to find where the next command starts.

use bytes::{Buf, Bytes, BytesMut};

/// The longest `*<n>` or `$<len>` line taken.
const MAX_HEADER_LINE: usize = 32;
/// The longest inline command taken (Redis allows 64 KiB).
const MAX_INLINE: usize = 64 * 1024;
/// The most arguments in one command.
pub(crate) const MAX_ARGS: usize = 1 << 20;

/// What a command may hold: each argument at most `max_arg` bytes, all of them together at
/// most `max_total`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_arg: usize,
    pub max_total: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A command and its arguments, the name first.
    Command(Vec<Bytes>),
    /// A whole command was read past and refused, for this reason.
    Refused(String),
}

/// Not RESP: the connection cannot go on.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("Protocol error: {0}")]
pub(crate) struct ProtocolError(pub &'static str);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between commands.
    Start,
    /// Inside an array: the `$<len>` of the next of `left` arguments.
    Header { left: usize },
    /// An argument's bytes and CRLF.
    Data { len: usize, left: usize },
    /// An argument over the limit, going past: `bytes` more, CRLF included.
    Skip { bytes: usize, left: usize },
}

#[derive(Debug)]
pub(crate) struct Parser {
    limits: Limits,
    state: State,
    args: Vec<Bytes>,
    total: usize,
    refused: Option<String>,
}

impl Parser {
    pub(crate) fn new(limits: Limits) -> Parser {
        Parser {
            limits,
            state: State::Start,
            args: Vec::new(),
            total: 0,
            refused: None,
        }
    }

    /// Whether a command is partly read.
    pub(crate) fn in_command(&self) -> bool {
        self.state != State::Start
    }

    /// The next complete command in `buf`, taking its bytes; `None` until one is complete.
    pub(crate) fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Parsed>, ProtocolError> {
        loop {
            match self.state {
                State::Start => {
                    let Some(&first) = buf.first() else {
                        return Ok(None);
                    };
                    if first != b'*' {
                        match inline(buf)? {
                            None => return Ok(None),
                            Some(args) if args.is_empty() => continue,
                            Some(args) => return Ok(Some(Parsed::Command(args))),
                        }
                    }
                    let Some(n) = header_line(buf, b'*')? else {
                        return Ok(None);
                    };
                    // `*0` and `*-1` are no command at all.
                    let Ok(n) = usize::try_from(n) else { continue };
                    if n == 0 {
                        continue;
                    }
                    if n > MAX_ARGS {
                        return Err(ProtocolError("invalid multibulk length"));
                    }
                    self.args = Vec::with_capacity(n.min(64));
                    self.total = 0;
                    self.refused = None;
                    self.state = State::Header { left: n };
                }
                State::Header { left } => {
                    let Some(len) = header_line(buf, b'$')? else {
                        return Ok(None);
                    };
                    let len =
                        usize::try_from(len).map_err(|_| ProtocolError("invalid bulk length"))?;
                    self.total = self.total.saturating_add(len);
                    if self.refused.is_none() && len > self.limits.max_arg {
                        self.refused = Some(format!(
                            "argument of {len} bytes; the limit is {}",
                            self.limits.max_arg
                        ));
                    } else if self.refused.is_none() && self.total > self.limits.max_total {
                        self.refused = Some(format!(
                            "command of more than {} bytes",
                            self.limits.max_total
                        ));
                    }
                    self.state = if self.refused.is_some() {
                        State::Skip {
                            bytes: len.saturating_add(2),
                            left: left - 1,
                        }
                    } else {
                        State::Data {
                            len,
                            left: left - 1,
                        }
                    };
                }
                State::Data { len, left } => {
                    if buf.len() < len + 2 {
                        buf.reserve(len + 2 - buf.len());
                        return Ok(None);
                    }
                    if &buf[len..len + 2] != b"\r\n" {
                        return Err(ProtocolError("bulk string not followed by CRLF"));
                    }
                    self.args.push(buf.split_to(len).freeze());
                    buf.advance(2);
                    if let Some(done) = self.after_argument(left) {
                        return Ok(Some(done));
                    }
                }
                State::Skip { bytes, left } => {
                    let dropped = bytes.min(buf.len());
                    buf.advance(dropped);
                    if dropped < bytes {
                        self.state = State::Skip {
                            bytes: bytes - dropped,
                            left,
                        };
                        return Ok(None);
                    }
                    if let Some(done) = self.after_argument(left) {
                        return Ok(Some(done));
                    }
                }
            }
        }
    }

    /// After an argument: the next one's header, or the command complete.
    fn after_argument(&mut self, left: usize) -> Option<Parsed> {
        if left > 0 {
            self.state = State::Header { left };
            return None;
        }
        self.state = State::Start;
        let args = std::mem::take(&mut self.args);
        Some(match self.refused.take() {
            Some(why) => Parsed::Refused(why),
            None => Parsed::Command(args),
        })
    }
}

/// A `*<n>` or `$<len>` line: `None` until its CRLF is in.
fn header_line(buf: &mut BytesMut, kind: u8) -> Result<Option<i64>, ProtocolError> {
    let Some(end) = buf.iter().take(MAX_HEADER_LINE).position(|&b| b == b'\r') else {
        if buf.len() >= MAX_HEADER_LINE {
            return Err(ProtocolError("length line too long"));
        }
        return Ok(None);
    };
    if buf.len() < end + 2 {
        return Ok(None);
    }
    if buf[0] != kind || buf[end + 1] != b'\n' {
        return Err(ProtocolError(if kind == b'$' {
            "expected '$'"
        } else {
            "expected '*'"
        }));
    }
    let digits = std::str::from_utf8(&buf[1..end]).ok();
    let n = digits
        .filter(|d| !d.is_empty() && !d.starts_with('+'))
        .and_then(|d| d.parse::<i64>().ok())
        .ok_or(ProtocolError("invalid length"))?;
    buf.advance(end + 2);
    Ok(Some(n))
}

/// An inline command: its words, split at spaces; `None` until its line is in.
fn inline(buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    let Some(end) = buf.iter().take(MAX_INLINE).position(|&b| b == b'\n') else {
        if buf.len() >= MAX_INLINE {
            return Err(ProtocolError("too big inline request"));
        }
        return Ok(None);
    };
    let line = buf.split_to(end + 1).freeze();
    let line = line.slice(..line.len() - 1);
    let line = line
        .strip_suffix(b"\r")
        .map_or(line.clone(), |l| line.slice(..l.len()));
    Ok(Some(
        line.split(|b| *b == b' ' || *b == b'\t')
            .filter(|w| !w.is_empty())
            .map(|w| line.slice_ref(w))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_arg: 8,
        max_total: 20,
    };

    fn all(input: &[u8]) -> (Vec<Parsed>, Result<(), ProtocolError>, usize) {
        let mut parser = Parser::new(LIMITS);
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        loop {
            match parser.next(&mut buf) {
                Ok(Some(parsed)) => out.push(parsed),
                Ok(None) => return (out, Ok(()), buf.len()),
                Err(e) => return (out, Err(e), buf.len()),
            }
        }
    }

    fn command(words: &[&str]) -> Parsed {
        Parsed::Command(
            words
                .iter()
                .map(|w| Bytes::copy_from_slice(w.as_bytes()))
                .collect(),
        )
    }

    #[test]
    fn arrays_and_inline_commands_in_a_pipeline() {
        let (parsed, result, left) =
            all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n\r\n  set  a  b \r\n*0\r\n*1\r\n$4\r\nPI");
        assert_eq!(result, Ok(()));
        assert_eq!(
            parsed,
            [
                command(&["GET", "k"]),
                command(&["PING"]),
                command(&["set", "a", "b"])
            ]
        );
        assert_eq!(left, 2, "a partial command waits");
        let (parsed, _, _) = all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n");
        assert_eq!(parsed, [command(&["SET", "k", "a\r\nb"])], "binary-safe");
    }

    #[test]
    fn any_split_gives_the_same_commands() {
        let wire = b"*3\r\n$3\r\nSET\r\n$2\r\nk1\r\n$5\r\nvalue\r\n*2\r\n$3\r\nGET\r\n$9\r\nbig-value\r\n*1\r\n$4\r\nPING\r\n";
        let (whole, _, _) = all(wire);
        assert_eq!(whole.len(), 3);
        assert!(matches!(whole[1], Parsed::Refused(_)));
        for split in 0..wire.len() {
            let mut parser = Parser::new(LIMITS);
            let mut buf = BytesMut::from(&wire[..split]);
            let mut got = Vec::new();
            while let Some(p) = parser.next(&mut buf).unwrap() {
                got.push(p);
            }
            buf.extend_from_slice(&wire[split..]);
            while let Some(p) = parser.next(&mut buf).unwrap() {
                got.push(p);
            }
            assert_eq!(got, whole, "split at {split}");
        }
    }

    #[test]
    fn oversized_commands_are_refused_and_the_stream_goes_on() {
        let (parsed, result, _) =
            all(b"*2\r\n$3\r\nGET\r\n$9\r\n123456789\r\n*4\r\n$3\r\nSET\r\n$8\r\n12345678\r\n$8\r\n12345678\r\n$2\r\nxy\r\n*1\r\n$4\r\nPING\r\n");
        assert_eq!(result, Ok(()));
        assert_eq!(parsed.len(), 3);
        assert!(matches!(&parsed[0], Parsed::Refused(why) if why.contains("9 bytes")));
        assert!(matches!(&parsed[1], Parsed::Refused(why) if why.contains("more than 20")));
        assert_eq!(parsed[2], command(&["PING"]));
    }

    #[test]
    fn what_is_not_resp_ends_the_connection() {
        for bad in [
            &b"*2\r\n+GET\r\n"[..],
            b"*1\r\n$3\r\nGETX\r\n",
            b"*x\r\n",
            b"*99999999999\r\n",
            b"*1\r\n$-5\r\n",
            b"*1\r\n$+3\r\nGET\r\n",
            b"*1\r\n$3\nGET\r\n",
        ] {
            let (_, result, _) = all(bad);
            assert!(result.is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let (_, result, _) = all(&[b'*'; 40]);
        assert_eq!(result, Err(ProtocolError("length line too long")));
        let (_, result, _) = all(&vec![b'a'; MAX_INLINE + 1]);
        assert_eq!(result, Err(ProtocolError("too big inline request")));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_give_commands_within_limits_or_an_error(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            cut in 0usize..512,
        ) {
            let mut parser = Parser::new(LIMITS);
            let cut = cut.min(bytes.len());
            let mut buf = BytesMut::from(&bytes[..cut]);
            let check = |parser: &mut Parser, buf: &mut BytesMut| -> bool {
                loop {
                    match parser.next(buf) {
                        Ok(Some(Parsed::Command(args))) => {
                            assert!(!args.is_empty());
                            // An inline command is bounded by its line instead.
                            let total: usize = args.iter().map(|a| a.len()).sum();
                            assert!(total <= LIMITS.max_total.max(MAX_INLINE));
                            assert!(args.iter().all(|a| a.len() <= LIMITS.max_arg.max(MAX_INLINE)));
                        }
                        Ok(Some(Parsed::Refused(_))) => {}
                        Ok(None) => return true,
                        Err(_) => return false,
                    }
                }
            };
            if check(&mut parser, &mut buf) {
                buf.extend_from_slice(&bytes[cut..]);
                check(&mut parser, &mut buf);
            }
        }
    }
}
