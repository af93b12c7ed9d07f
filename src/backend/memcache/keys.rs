//! How proxy keys become memcached keys (at most 250 bytes of printable ASCII without spaces)
//! and, for the keys a dump lists, back.

use std::borrow::Cow;

/// memcached's own key limit.
const MAX_KEY: usize = 250;
const BASE64_PREFIX: &[u8] = b"~b64~";
const HASH_PREFIX: &[u8] = b"~sha~";
/// Where a memcached node keeps its hints: no client key maps to a key with this prefix.
pub(super) const HINT_PREFIX: &[u8] = b"~hint~";

/// The memcached key for a proxy key. A key of 1 to 250 bytes, all printable ASCII other than
/// space (0x21..=0x7E), not starting with `~b64~`, `~sha~` or `~hint~`, is used as it is. Any other key
/// becomes `~b64~` + its unpadded base64url encoding if that fits in 250 bytes (keys up to 183
/// bytes), else `~sha~` + the lowercase hex sha256 of the key. Distinct keys get distinct
/// memcached keys, except for sha256 collisions.
pub fn memcache_key(key: &[u8]) -> Cow<'_, [u8]> {
    let plain = !key.is_empty()
        && key.len() <= MAX_KEY
        && key.iter().all(|b| (0x21..=0x7e).contains(b))
        && !key.starts_with(BASE64_PREFIX)
        && !key.starts_with(HASH_PREFIX)
        && !key.starts_with(HINT_PREFIX);
    if plain {
        return Cow::Borrowed(key);
    }
    let encoded = base64url(key);
    if BASE64_PREFIX.len() + encoded.len() <= MAX_KEY {
        return Cow::Owned([BASE64_PREFIX, encoded.as_bytes()].concat());
    }
    use sha2::{Digest, Sha256};
    let digest: String = Sha256::digest(key)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Cow::Owned([HASH_PREFIX, digest.as_bytes()].concat())
}

/// The proxy key behind a memcached key (as a key dump gives it, URL-decoded): the reverse of
/// [`memcache_key`], except for `~sha~` digests, which cannot be reversed, and hints, which
/// are no client's key.
pub(super) fn original_key(mkey: &[u8]) -> Option<Vec<u8>> {
    if let Some(encoded) = mkey.strip_prefix(BASE64_PREFIX) {
        return unbase64url(encoded);
    }
    (!mkey.starts_with(HASH_PREFIX) && !mkey.starts_with(HINT_PREFIX)).then(|| mkey.to_vec())
}

/// The key of the hint that `owner` missed `key`: [`HINT_PREFIX`] and the base64url sha256
/// of [`hint_subject`] (the pair itself is in the hint's value).
pub(super) fn hint_key(subject: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    [HINT_PREFIX, base64url(&Sha256::digest(subject)).as_bytes()].concat()
}

/// What a hint is about, as its value carries it after the version: the replica id's length
/// (2 bytes, big-endian), the id, then the key.
pub(super) fn hint_subject(owner: &str, key: &[u8]) -> Vec<u8> {
    // Ids are far shorter; the cap keeps the length off the counts' (see below).
    let owner = &owner.as_bytes()[..owner.len().min(u16::MAX as usize - 1)];
    [&(owner.len() as u16).to_be_bytes()[..], owner, key].concat()
}

/// What the count of a key's hints is about: a replica id length no id has, then the key.
pub(super) fn hint_count_subject(key: &[u8]) -> Vec<u8> {
    [&[0xff, 0xff][..], key].concat()
}

/// Unpadded base64url decoded; `None` if it is not.
fn unbase64url(text: &[u8]) -> Option<Vec<u8>> {
    let sextet = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= sextet(c)? << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

/// Unpadded base64url (RFC 4648 section 5).
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_keys_pass_through() {
        for key in [&b"user:42"[..], b"a", b"~tilde", &[b'x'; 250]] {
            assert_eq!(memcache_key(key), key);
        }
        // Hints' keys are the node's own: a client key that looks like one is mapped.
        assert_eq!(&*memcache_key(b"~hint~x"), b"~b64~fmhpbnR-eA");
        assert_eq!(original_key(b"~hint~abc"), None);
        let hint = hint_key(&hint_subject("a", b"k"));
        assert!(hint.starts_with(HINT_PREFIX) && hint.len() == 6 + 43);
    }

    #[test]
    fn other_keys_are_mapped_deterministically_and_distinctly() {
        let long = vec![b'x'; 251];
        let cases: [(&[u8], &[u8]); 6] = [
            (b"with space", b"~b64~d2l0aCBzcGFjZQ"),
            (b"", b"~b64~"),
            (b"\x00\xff", b"~b64~AP8"),
            (b"caf\xc3\xa9", b"~b64~Y2Fmw6k"),
            (b"~b64~abc", b"~b64~fmI2NH5hYmM"),
            (&[0; 3], b"~b64~AAAA"),
        ];
        for (key, mapped) in cases {
            assert_eq!(&*memcache_key(key), mapped, "{key:?}");
        }
        // 183 bytes is the longest key whose base64 (244 characters) fits beside the prefix.
        let longest = memcache_key(&[0; 183]);
        assert_eq!(longest.len(), 249);
        assert!(longest.starts_with(BASE64_PREFIX));
        let hashed = memcache_key(&[0; 184]);
        assert!(hashed.starts_with(HASH_PREFIX) && hashed.len() == 5 + 64);
        assert_eq!(
            &*memcache_key(&long),
            &*memcache_key(&long),
            "deterministic"
        );
        assert_ne!(memcache_key(&long[..200]), memcache_key(&long[..201]));
        for key in [&b"x y"[..], &long, b"\n"] {
            let mapped = memcache_key(key);
            assert!(mapped.len() <= MAX_KEY && mapped.iter().all(|b| (0x21..=0x7e).contains(b)));
        }
    }

    #[test]
    fn dumped_keys_map_back_to_the_proxy_keys() {
        for key in [
            &b"user:42"[..],
            b"with space",
            b"\x00\xff",
            b"caf\xc3\xa9",
            b"~b64~abc",
            &[7; 183],
        ] {
            let mapped = String::from_utf8(memcache_key(key).into_owned()).unwrap();
            assert_eq!(
                original_key(mapped.as_bytes()).as_deref(),
                Some(key),
                "{mapped}"
            );
        }
        assert_eq!(original_key(&memcache_key(&[0; 184])), None);
        assert_eq!(original_key(b"~b64~%"), None);
    }
}
