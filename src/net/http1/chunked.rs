//! A chunked request body (RFC 9112, section 7.1), decoded as its bytes arrive: strict about
//! line endings, bounded in every line it skips, and never past the value limit.

/// The most bytes of chunk extensions and trailers taken in one body (all skipped), as hyper
/// allows.
const MAX_SKIPPED: usize = 16 * 1024;
/// Hex digits in a chunk size: 15 keep it below 2^60.
const MAX_SIZE_DIGITS: u8 = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkError {
    /// Not chunked encoding as RFC 9112 writes it.
    Malformed(&'static str),
    /// The decoded body would pass the limit.
    TooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In a chunk's size: its value so far and how many hex digits it had.
    Size {
        size: u64,
        digits: u8,
    },
    /// In whitespace after the size, before an extension or the line's end.
    SizeSpace(u64),
    /// In a chunk extension (skipped), after the size.
    Extension(u64),
    /// After the size line's CR.
    SizeLf(u64),
    /// Inside a chunk's data: bytes still to come.
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line, or of the blank line that ends the body.
    LineStart,
    /// Inside a trailer field, skipped.
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

#[derive(Debug)]
pub(crate) struct Decoder {
    state: State,
    max: usize,
    /// Bytes of extensions and trailers skipped so far.
    skipped: usize,
}

impl Decoder {
    /// A decoder for a body of at most `max` bytes.
    pub(crate) fn new(max: usize) -> Decoder {
        Decoder {
            state: State::Size { size: 0, digits: 0 },
            max,
            skipped: 0,
        }
    }

    /// Whether the last chunk and the trailers have been read.
    pub(crate) fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes what it can of `input` into `out`; returns the bytes of `input` used (all of
    /// them unless the body ends before).
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkError> {
        let mut at = 0;
        while at < input.len() && self.state != State::Done {
            if let State::Data(left) = self.state {
                let take = (input.len() - at).min(usize::try_from(left).unwrap_or(usize::MAX));
                out.extend_from_slice(&input[at..at + take]);
                at += take;
                let left = left - take as u64;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data(left)
                };
                continue;
            }
            self.state = self.step(input[at], out.len())?;
            at += 1;
        }
        Ok(at)
    }

    fn step(&mut self, byte: u8, decoded: usize) -> Result<State, ChunkError> {
        use ChunkError::Malformed;
        Ok(match (self.state, byte) {
            (State::Size { size, digits }, _) if byte.is_ascii_hexdigit() => {
                if digits >= MAX_SIZE_DIGITS {
                    return Err(Malformed("chunk size too long"));
                }
                let digit = (byte as char).to_digit(16).unwrap_or(0);
                State::Size {
                    size: size * 16 + u64::from(digit),
                    digits: digits + 1,
                }
            }
            (State::Size { digits: 0, .. }, _) => return Err(Malformed("chunk size missing")),
            (State::Size { size, .. } | State::SizeSpace(size), b' ' | b'\t') => {
                self.skip_byte()?;
                State::SizeSpace(size)
            }
            (State::Size { size, .. } | State::SizeSpace(size), b';') => State::Extension(size),
            (State::Size { size, .. } | State::SizeSpace(size) | State::Extension(size), b'\r') => {
                State::SizeLf(size)
            }
            (State::Extension(size), _) if byte != b'\n' => {
                self.skip_byte()?;
                State::Extension(size)
            }
            (State::SizeLf(0), b'\n') => State::LineStart,
            (State::SizeLf(size), b'\n') => {
                if (decoded as u64).saturating_add(size) > self.max as u64 {
                    return Err(ChunkError::TooLarge);
                }
                State::Data(size)
            }
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => State::Size { size: 0, digits: 0 },
            (State::LineStart, b'\r') => State::EndLf,
            (State::Trailer, b'\r') => State::TrailerLf,
            (State::LineStart | State::Trailer, _) if byte != b'\n' => {
                self.skip_byte()?;
                State::Trailer
            }
            (State::TrailerLf, b'\n') => State::LineStart,
            (State::EndLf, b'\n') => State::Done,
            _ => return Err(Malformed("chunk lines must end in CRLF")),
        })
    }

    fn skip_byte(&mut self) -> Result<(), ChunkError> {
        self.skipped += 1;
        if self.skipped > MAX_SKIPPED {
            return Err(ChunkError::Malformed(
                "chunk extensions and trailers too long",
            ));
        }
        Ok(())
    }
}

/// Decodes a whole chunked body, for tests: the body and the bytes used.
#[cfg(test)]
pub(crate) fn decode(input: &[u8], max: usize) -> Result<(Vec<u8>, usize), ChunkError> {
    let mut decoder = Decoder::new(max);
    let mut out = Vec::new();
    let used = decoder.feed(input, &mut out)?;
    if !decoder.done() {
        return Err(ChunkError::Malformed("incomplete"));
    }
    Ok((out, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_extensions_and_trailers() {
        let body = b"4\r\nWiki\r\n5;name=value\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        let (out, used) = decode(body, 100).unwrap();
        assert_eq!(out, b"Wikipedia in\r\n\r\nchunks.");
        assert_eq!(&body[used..], b"NEXT", "stops at the end of the body");
        assert_eq!(decode(b"0\r\n\r\n", 0).unwrap().0, b"");
    }

    #[test]
    fn any_split_of_the_input_decodes_the_same() {
        let body = b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nt: v\r\n\r\n";
        for split in 0..body.len() {
            let mut decoder = Decoder::new(100);
            let mut out = Vec::new();
            let first = decoder.feed(&body[..split], &mut out).unwrap();
            assert_eq!(first, split);
            decoder.feed(&body[split..], &mut out).unwrap();
            assert!(decoder.done());
            assert_eq!(out, b"abc0123456789abcdef");
        }
    }

    #[test]
    fn malformed_and_oversized_bodies_are_refused() {
        for bad in [
            &b"\r\n"[..],
            b"g\r\n",
            b"3\nabc\r\n0\r\n\r\n",
            b"3\r\nabcd\r\n0\r\n\r\n",
            b"3\r\nabc\n0\r\n\r\n",
            b"0\r\n\n",
            b"0\r\nt: v\n\r\n",
            b"-1\r\n",
            b"1111111111111111\r\n",
            b"5 garbage\r\nabcde\r\n0\r\n\r\n",
        ] {
            assert!(
                matches!(decode(bad, 100), Err(ChunkError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            decode(b"5\r\nabcde\r\n0\r\n\r\n", 4),
            Err(ChunkError::TooLarge)
        );
        assert_eq!(
            decode(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", 4),
            Err(ChunkError::TooLarge)
        );
        assert_eq!(decode(b"1 \t;x\r\na\r\n0\r\n\r\n", 100).unwrap().0, b"a");
        let long_extension = format!("1;{}\r\n", "e".repeat(MAX_SKIPPED + 1));
        assert!(matches!(
            decode(long_extension.as_bytes(), 100),
            Err(ChunkError::Malformed(_))
        ));
        // Many short extensions and trailers add up to the same limit.
        let mut many = "1;e\r\na\r\n".repeat(MAX_SKIPPED + 1);
        many.push_str("0\r\n\r\n");
        assert!(matches!(
            decode(many.as_bytes(), 1 << 20),
            Err(ChunkError::Malformed(_))
        ));
        let trailers = format!("0\r\n{}\r\n", "t: v\r\n".repeat(MAX_SKIPPED / 4 + 1));
        assert!(matches!(
            decode(trailers.as_bytes(), 100),
            Err(ChunkError::Malformed(_))
        ));
    }
}
