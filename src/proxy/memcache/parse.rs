//! memcached text-protocol requests off the wire, parsed as bytes arrive. A value over the
//! size limit is skipped as it streams past, never buffered, and answered with
//! `SERVER_ERROR object too large for cache` while the connection goes on, as memcached does;
//! so is a bad command line. Only a line too long to be a command ends the connection.

use bytes::{Buf, Bytes, BytesMut};

use super::commands::FLAGS_HEADER;

/// The longest command line taken (a `get` of many keys is one line).
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// What a command may hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_key: usize,
    pub max_value: usize,
}

/// How a storage command treats what is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Store {
    Set,
    /// Only when the key holds nothing.
    Add,
    /// Only when the key holds something.
    Replace,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    /// `get`/`gets key...`; `cas` when the unique of each value is asked for.
    Get {
        keys: Vec<Bytes>,
        cas: bool,
    },
    Store {
        mode: Store,
        key: Bytes,
        flags: u32,
        exptime: i64,
        data: Bytes,
        noreply: bool,
    },
    Delete {
        key: Bytes,
        noreply: bool,
    },
    Touch {
        key: Bytes,
        exptime: i64,
        noreply: bool,
    },
    Version,
    Quit,
    /// Answered with this line and nothing done: `ERROR`, `CLIENT_ERROR ...`, ...
    Refused(String),
    /// A `noreply` storage command refused (its data read past): nothing is answered.
    Dropped(String),
}

/// A storage command whose data block is still arriving.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    mode: Store,
    key: Bytes,
    flags: u32,
    exptime: i64,
    len: usize,
    noreply: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Line,
    /// The data block of a storage command and its CRLF.
    Data(Pending),
    /// A refused data block going past: `bytes` more (CRLF included), then `reply` (unless
    /// the command said `noreply`).
    Skip {
        bytes: usize,
        reply: String,
        noreply: bool,
    },
}

#[derive(Debug)]
pub(crate) struct Parser {
    limits: Limits,
    state: State,
}

/// A line too long to be a command: the connection cannot go on.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("CLIENT_ERROR line too long")]
pub(crate) struct LineTooLong;

const BAD_FORMAT: &str = "CLIENT_ERROR bad command line format";

impl Parser {
    pub(crate) fn new(limits: Limits) -> Parser {
        Parser {
            limits,
            state: State::Line,
        }
    }

    /// Whether a storage command's line has been taken and its data block not yet.
    pub(crate) fn in_command(&self) -> bool {
        self.state != State::Line
    }

    /// The next whole command in `buf`, its bytes taken from it.
    pub(crate) fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Command>, LineTooLong> {
        loop {
            match &mut self.state {
                State::Line => {
                    let Some(end) = buf.iter().position(|b| *b == b'\n') else {
                        return if buf.len() > MAX_LINE {
                            Err(LineTooLong)
                        } else {
                            Ok(None)
                        };
                    };
                    if end > MAX_LINE {
                        return Err(LineTooLong);
                    }
                    let line = buf.split_to(end + 1).freeze();
                    let line = line.slice(..line.len() - 1 - usize::from(line.ends_with(b"\r\n")));
                    if let Some(command) = self.line(line) {
                        return Ok(Some(command));
                    }
                }
                State::Data(pending) => {
                    if buf.len() < pending.len + 2 {
                        return Ok(None);
                    }
                    let State::Data(pending) = std::mem::replace(&mut self.state, State::Line)
                    else {
                        unreachable!("the state was just matched");
                    };
                    let block = buf.split_to(pending.len + 2).freeze();
                    if !block.ends_with(b"\r\n") {
                        return Ok(Some(refused("CLIENT_ERROR bad data chunk")));
                    }
                    return Ok(Some(Command::Store {
                        mode: pending.mode,
                        key: pending.key,
                        flags: pending.flags,
                        exptime: pending.exptime,
                        data: block.slice(..pending.len),
                        noreply: pending.noreply,
                    }));
                }
                State::Skip {
                    bytes,
                    reply,
                    noreply,
                } => {
                    let taken = (*bytes).min(buf.len());
                    buf.advance(taken);
                    *bytes -= taken;
                    if *bytes > 0 {
                        return Ok(None);
                    }
                    let (reply, noreply) = (std::mem::take(reply), *noreply);
                    self.state = State::Line;
                    return Ok(Some(if noreply {
                        Command::Dropped(reply)
                    } else {
                        Command::Refused(reply)
                    }));
                }
            }
        }
    }

    /// The command a line holds; `None` when a data block follows.
    fn line(&mut self, line: Bytes) -> Option<Command> {
        let words: Vec<Bytes> = line
            .split(|b| *b == b' ')
            .filter(|w| !w.is_empty())
            .map(|w| line.slice_ref(w))
            .collect();
        let Some((name, args)) = words.split_first() else {
            return Some(refused("ERROR"));
        };
        // Only after the key: `delete noreply` deletes the key "noreply" and answers.
        let noreply = args.len() > 1 && args.last().is_some_and(|w| &w[..] == b"noreply");
        let command = match &name[..] {
            b"get" | b"gets" if !args.is_empty() => match self.keys(args) {
                Ok(()) => Command::Get {
                    keys: args.to_vec(),
                    cas: &name[..] == b"gets",
                },
                Err(line) => Command::Refused(line),
            },
            b"set" | b"add" | b"replace" => {
                let mode = match &name[..] {
                    b"set" => Store::Set,
                    b"add" => Store::Add,
                    _ => Store::Replace,
                };
                return self.storage(mode, args, noreply);
            }
            b"delete" if (1..=3).contains(&args.len()) => {
                // `delete <key> [0] [noreply]`: a hold time other than 0 is long gone.
                let rest = args
                    .get(1..args.len() - usize::from(noreply))
                    .unwrap_or(&[]);
                match (self.keys(&args[..1]), rest) {
                    (Err(line), _) => Command::Refused(line),
                    (Ok(()), [] | [_]) if rest.iter().all(|w| &w[..] == b"0") => Command::Delete {
                        key: args[0].clone(),
                        noreply,
                    },
                    _ => refused(
                        "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]",
                    ),
                }
            }
            b"touch" if args.len() == 2 + usize::from(noreply) => {
                match (self.keys(&args[..1]), number::<i64>(&args[1])) {
                    (Err(line), _) => Command::Refused(line),
                    (Ok(()), Some(exptime)) => Command::Touch {
                        key: args[0].clone(),
                        exptime,
                        noreply,
                    },
                    (Ok(()), None) => refused("CLIENT_ERROR invalid exptime argument"),
                }
            }
            b"version" if args.is_empty() => Command::Version,
            b"quit" if args.is_empty() => Command::Quit,
            _ => refused("ERROR"),
        };
        Some(command)
    }

    /// `<key> <flags> <exptime> <bytes> [noreply]`, then the data block.
    fn storage(&mut self, mode: Store, args: &[Bytes], noreply: bool) -> Option<Command> {
        if args.len() != 4 + usize::from(noreply) {
            return Some(refused(BAD_FORMAT));
        }
        let (flags, exptime, len) = (
            number::<u32>(&args[1]),
            number::<i64>(&args[2]),
            number::<usize>(&args[3]),
        );
        let (Some(flags), Some(exptime), Some(len)) = (flags, exptime, len) else {
            return Some(refused(BAD_FORMAT));
        };
        // Flags other than 0 are stored in front of the value: they count against the limit.
        let stored = len.saturating_add(if flags == 0 { 0 } else { FLAGS_HEADER });
        let refusal = match self.keys(&args[..1]) {
            Err(line) => Some(line),
            Ok(()) if stored > self.limits.max_value => {
                Some("SERVER_ERROR object too large for cache".to_owned())
            }
            Ok(()) => None,
        };
        self.state = match refusal {
            // The data block is read past, so that the next command is found.
            Some(reply) => State::Skip {
                bytes: len.saturating_add(2),
                reply,
                noreply,
            },
            None => State::Data(Pending {
                mode,
                key: args[0].clone(),
                flags,
                exptime,
                len,
                noreply,
            }),
        };
        None
    }

    /// Keys are 1 to `max_key` bytes; any bytes but spaces and line ends, as memcached takes
    /// them (load generators such as memaslap send control characters).
    fn keys(&self, keys: &[Bytes]) -> Result<(), String> {
        match keys.iter().find(|key| key.len() > self.limits.max_key) {
            Some(key) => {
                let (len, max) = (key.len(), self.limits.max_key);
                Err(format!(
                    "CLIENT_ERROR key is {len} bytes; the limit is {max}"
                ))
            }
            None => Ok(()),
        }
    }
}

fn refused(line: &str) -> Command {
    Command::Refused(line.to_owned())
}

fn number<T: std::str::FromStr>(word: &[u8]) -> Option<T> {
    std::str::from_utf8(word).ok()?.parse().ok()
}

#[cfg(test)]
mod tests;
