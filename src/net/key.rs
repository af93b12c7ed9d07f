//! Keys on the wire: percent-decoding the client's path, and re-encoding a key for a backend so
//! that no key can change the backend's path.

use std::borrow::Cow;

use super::error::RequestError;

/// The path prefix of the key-value API.
pub const KV_PREFIX: &str = "/kv/";
/// The methods of the key-value API.
pub const ALLOWED_METHODS: &str = "GET, HEAD, PUT, DELETE";

/// Decodes the part of a path after `/kv/` into key bytes (any bytes allowed) and checks its
/// length against `max`.
pub fn decode(raw: &str, max: usize) -> Result<Cow<'_, [u8]>, RequestError> {
    let bytes = raw.as_bytes();
    let key: Cow<'_, [u8]> = if !bytes.contains(&b'%') {
        Cow::Borrowed(bytes)
    } else {
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = |b: u8| (b as char).to_digit(16);
                match (bytes.get(i + 1), bytes.get(i + 2)) {
                    (Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                        out.push((hex(h).unwrap() * 16 + hex(l).unwrap()) as u8);
                        i += 3;
                    }
                    _ => return Err(RequestError::BadPercentEncoding { at: i }),
                }
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        Cow::Owned(out)
    };
    check(&key, max)?;
    Ok(key)
}

/// A key's length limits: 1 to `max` bytes.
pub(crate) fn check(key: &[u8], max: usize) -> Result<(), RequestError> {
    if key.is_empty() {
        return Err(RequestError::EmptyKey { max });
    }
    if key.len() > max {
        return Err(RequestError::KeyTooLong {
            len: key.len(),
            max,
        });
    }
    Ok(())
}

/// Appends `key` to `out` with every byte outside `A-Z a-z 0-9 - _ ~` percent-encoded, so `/`,
/// `.`, `%`, `?`, `#`, spaces and control bytes never reach a backend's path literally.
pub fn encode_into(key: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.reserve(key.len());
    for &b in key {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'~' {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
}

/// The encoded form of a key, as [`encode_into`] writes it.
pub fn encode(key: &[u8]) -> String {
    let mut s = String::new();
    encode_into(key, &mut s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_escapes_and_keeps_plain_bytes() {
        assert_eq!(&*decode("greeting", 10).unwrap(), b"greeting");
        assert_eq!(&*decode("a%2Fb%00%0d%0A", 10).unwrap(), b"a/b\0\r\n");
        assert_eq!(&*decode("%2e%2E", 10).unwrap(), b"..");
    }

    #[test]
    fn rejects_bad_escapes_empty_and_long_keys() {
        assert_eq!(
            decode("ab%zz", 9),
            Err(RequestError::BadPercentEncoding { at: 2 })
        );
        assert_eq!(
            decode("ab%4", 9),
            Err(RequestError::BadPercentEncoding { at: 2 })
        );
        assert_eq!(
            decode("%", 9),
            Err(RequestError::BadPercentEncoding { at: 0 })
        );
        assert_eq!(decode("", 9), Err(RequestError::EmptyKey { max: 9 }));
        assert_eq!(
            decode("abcd", 3),
            Err(RequestError::KeyTooLong { len: 4, max: 3 })
        );
        assert_eq!(decode("%41%42%43", 3).unwrap().len(), 3);
    }

    #[test]
    fn known_answers() {
        assert_eq!(&*decode("%252F", 9).unwrap(), b"%2F");
        assert_eq!(
            decode("%2", 9),
            Err(RequestError::BadPercentEncoding { at: 0 })
        );
        assert_eq!(&*decode("caf%C3%A9", 9).unwrap(), "caf\u{e9}".as_bytes());
        assert_eq!(encode(b"%2F"), "%252F");
    }

    #[test]
    fn every_byte_round_trips_and_never_leaves_a_path_separator() {
        let all: Vec<u8> = (0..=255).collect();
        let enc = encode(&all);
        assert!(enc
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_~%".contains(&b)));
        assert_eq!(&*decode(&enc, 256).unwrap(), &all[..]);
        assert_eq!(encode(b"../x?y#z"), "%2E%2E%2Fx%3Fy%23z");
    }
}
