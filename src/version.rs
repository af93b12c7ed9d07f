//! Versions of values: a hybrid logical clock per process, and the envelope that carries a
//! version with a value on stores that cannot keep one natively.
//!
//! A [`Version`] is 128 bits compared as an integer: the high 64 are the clock (microseconds
//! since the Unix epoch shifted left 12 bits, plus a counter in the low 12 bits, never going
//! backwards in one process, and moved past every version the process sees), the low 64 the
//! writer's instance id, so two proxies never stamp the same version. Microseconds, not
//! milliseconds: two proxies on one clock then order one client's consecutive writes even when
//! they come within the same millisecond. Version 0 is "no version": what a value written by
//! someone else reads as, older than any stamped one.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

/// The header carrying a version: on client requests and answers, and between the proxy and
/// the built-in node.
pub const HEADER: &str = "x-hrw-version";
/// On the built-in node's 404: what it holds is a tombstone (a remembered delete).
pub const TOMBSTONE_HEADER: &str = "x-hrw-tombstone";
/// On the built-in node's answers: when what it holds expires, in seconds since the epoch.
pub const EXPIRES_HEADER: &str = "x-hrw-expires";
/// On a versioned write to the built-in node: the id (percent-encoded) of the replica the
/// write stands in for, which the node keeps as a hint.
pub const HINT_HEADER: &str = "x-hrw-hint";

/// A value's version; higher is newer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u128);

impl Version {
    /// No version: a value written by someone else, or before versions.
    pub const ZERO: Version = Version(0);

    /// Microseconds since the Unix epoch when the version was stamped (meaningless for
    /// versions clients gave that are not clock readings).
    pub fn micros(self) -> u64 {
        ((self.0 >> 64) as u64) >> COUNTER_BITS
    }

    /// The 16 bytes, big-endian: byte order is version order.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Version {
        Version(u128::from_be_bytes(bytes))
    }

    /// As an `x-hrw-version` header's value.
    pub fn header_value(self) -> http::HeaderValue {
        http::HeaderValue::from_str(&self.to_string()).expect("digits are a valid header value")
    }

    /// The version a header carries, if it is one.
    pub fn from_header(value: &http::HeaderValue) -> Option<Version> {
        value.to_str().ok()?.parse().ok()
    }
}

/// Decimal, as `x-hrw-version` carries it.
impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for Version {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Version, Self::Err> {
        s.parse().map(Version)
    }
}

/// Bits of the clock part that count versions within one microsecond.
const COUNTER_BITS: u32 = 12;
/// How far ahead of this process's clock a seen version may be and still be followed. One
/// further ahead (a client's made-up version, a host with a wild clock) would drag every
/// later version of this process with it; it is stored and compared, not followed.
pub const MAX_FOLLOWED_AHEAD: Duration = Duration::from_secs(60);

/// A process's hybrid logical clock.
#[derive(Debug)]
pub struct Clock {
    /// The last clock part handed out.
    last: AtomicU64,
    instance: u64,
}

impl Clock {
    /// A clock whose versions end in `instance`.
    pub fn new(instance: u64) -> Clock {
        Clock {
            last: AtomicU64::new(0),
            instance,
        }
    }

    /// A new version, above every one this clock handed out or observed.
    pub fn next(&self) -> Version {
        let now = clock_part(SystemTime::now());
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = now.max(last.saturating_add(1));
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Version(u128::from(next) << 64 | u128::from(self.instance)),
                Err(current) => last = current,
            }
        }
    }

    /// Notes a version seen elsewhere, so later versions from here are above it, unless it
    /// is more than [`MAX_FOLLOWED_AHEAD`] ahead of this clock.
    pub fn observe(&self, seen: Version) {
        let seen = (seen.0 >> 64) as u64;
        if seen <= clock_part(SystemTime::now() + MAX_FOLLOWED_AHEAD) {
            self.last.fetch_max(seen, Ordering::Relaxed);
        }
    }
}

/// A time as the high 64 bits of a version: microseconds since the epoch, then the counter.
fn clock_part(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
        << COUNTER_BITS
}

/// Seconds since the Unix epoch now: the clock expiry times are kept in.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The expiry time of something given `ttl` seconds to live now: rounded up to the next whole
/// second, so it lives at least `ttl` seconds, never less.
pub fn expiry_after(ttl: u64) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    now.as_secs() + u64::from(now.subsec_nanos() > 0) + ttl
}

/// What a node holds for a key: a value, or a tombstone (a delete that is remembered), with
/// its version and when it expires. The expiry is a point in time, not a duration, so that a
/// copy made later (read repair, handoff, repair, a replayed hint) expires when the original
/// does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub version: Version,
    /// `None` for a tombstone.
    pub value: Option<Bytes>,
    /// Seconds since the Unix epoch when it expires; `None` for never.
    pub expires: Option<u64>,
}

/// Which of what nodes hold (`None`: nothing) is the newest, by index; of equal versions the
/// first, so that callers list the nodes in the order they prefer.
pub fn newest<'a>(held: impl IntoIterator<Item = Option<&'a Stored>>) -> Option<usize> {
    let mut best: Option<(usize, Version)> = None;
    for (i, held) in held.into_iter().enumerate() {
        if let Some(held) = held {
            if best.is_none_or(|(_, version)| held.version > version) {
                best = Some((i, held.version));
            }
        }
    }
    best.map(|(i, _)| i)
}

/// The envelope's first four bytes.
pub const MAGIC: &[u8; 4] = b"HRW1";
/// Magic, version, flags: the shortest envelope.
pub const HEADER_LEN: usize = 4 + 16 + 1;
/// With an expiry time as well: the longest.
pub const MAX_HEADER_LEN: usize = HEADER_LEN + 8;
const TOMBSTONE: u8 = 1;
const EXPIRES: u8 = 2;

impl Stored {
    /// A value or a tombstone that never expires.
    pub fn new(version: Version, value: Option<Bytes>) -> Stored {
        Stored {
            version,
            value,
            expires: None,
        }
    }

    /// Whether it has expired by `now` (seconds since the epoch).
    pub fn expired(&self, now: u64) -> bool {
        self.expires.is_some_and(|at| at <= now)
    }

    /// Whole seconds it has left to live from `now`, at least 1; `None` for never.
    pub fn seconds_left(&self, now: u64) -> Option<u32> {
        self.expires
            .map(|at| at.saturating_sub(now).clamp(1, u64::from(u32::MAX)) as u32)
    }

    /// The envelope: `HRW1`, the version as 16 big-endian bytes, a flags byte (bit 0: a
    /// tombstone; bit 1: an expiry time follows), the expiry time if any (seconds since the
    /// Unix epoch, 8 bytes big-endian), then the value's bytes (none for a tombstone).
    pub fn encode(&self) -> Bytes {
        let value = self.value.as_deref().unwrap_or(&[]);
        let mut out = Vec::with_capacity(MAX_HEADER_LEN + value.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.version.to_bytes());
        let tombstone = if self.value.is_none() { TOMBSTONE } else { 0 };
        let expires = if self.expires.is_some() { EXPIRES } else { 0 };
        out.push(tombstone | expires);
        if let Some(at) = self.expires {
            out.extend_from_slice(&at.to_be_bytes());
        }
        out.extend_from_slice(value);
        Bytes::from(out)
    }

    /// What a node's bytes hold: with versions, what [`Stored::decode`] finds, `None` once
    /// expired (a plain store keeps what expired until it is overwritten); without, the bytes
    /// exactly as they are, at version 0.
    pub fn from_node(bytes: Bytes, versioned: bool) -> Option<Stored> {
        if !versioned {
            return Some(Stored::new(Version::ZERO, Some(bytes)));
        }
        Some(Stored::decode(bytes)).filter(|s| !s.expired(unix_now()))
    }

    /// What stored bytes hold: an envelope, or (without one) a value of version 0. Bytes that
    /// start like an envelope but are too short for it or have unknown flags are a value.
    pub fn decode(bytes: Bytes) -> Stored {
        let raw = |bytes| Stored::new(Version::ZERO, Some(bytes));
        if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
            return raw(bytes);
        }
        let flags = bytes[20];
        if flags & !(TOMBSTONE | EXPIRES) != 0 {
            return raw(bytes);
        }
        let (expires, start) = if flags & EXPIRES != 0 {
            let Some(at) = bytes.get(HEADER_LEN..MAX_HEADER_LEN) else {
                return raw(bytes);
            };
            let at = u64::from_be_bytes(at.try_into().expect("8 bytes"));
            (Some(at), MAX_HEADER_LEN)
        } else {
            (None, HEADER_LEN)
        };
        Stored {
            version: Version::from_bytes(bytes[4..20].try_into().expect("16 bytes")),
            value: (flags & TOMBSTONE == 0).then(|| bytes.slice(start..)),
            expires,
        }
    }

    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_never_goes_back_and_instances_never_tie() {
        let a = Clock::new(1);
        let b = Clock::new(2);
        let mut last = Version::ZERO;
        for _ in 0..100_000 {
            let v = a.next();
            assert!(v > last);
            last = v;
        }
        assert_ne!(a.next(), b.next());
        // A version seen from a clock a little ahead is overtaken at once; one far ahead is
        // not followed, so it cannot drag every later version along.
        let ahead =
            Version(u128::from(clock_part(SystemTime::now() + Duration::from_secs(30))) << 64);
        a.observe(ahead);
        assert!(a.next() > ahead);
        let far = Version(u128::from(u64::MAX) << 64);
        a.observe(far);
        let next = a.next();
        assert!(
            next.micros() - ahead.micros() < 1_000_000,
            "{next} follows {far}"
        );
        let fresh = Clock::new(3).next().micros();
        assert!(fresh > 1_700_000_000_000_000, "{fresh}");
    }

    #[test]
    fn the_envelope_round_trips_and_anything_else_is_version_zero() {
        let value = Stored::new(
            Version(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10),
            Some(Bytes::from_static(b"hello")),
        );
        let encoded = value.encode();
        assert_eq!(
            &encoded[..],
            b"HRW1\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x00hello"
        );
        assert_eq!(Stored::decode(encoded), value);
        let tombstone = Stored {
            version: Version(7),
            value: None,
            expires: Some(0x0102_0304),
        };
        assert_eq!(
            &tombstone.encode()[..],
            b"HRW1\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x07\x03\0\0\0\0\x01\x02\x03\x04"
        );
        assert_eq!(Stored::decode(tombstone.encode()), tombstone);
        for raw in [
            &b""[..],
            b"hello",
            b"HRW1short",
            b"HRX1\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00x",
            // Flags no envelope has, and an expiry time cut short.
            b"HRW1\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x04x",
            b"HRW1\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x02\x00",
        ] {
            let stored = Stored::decode(Bytes::copy_from_slice(raw));
            assert_eq!(
                (stored.version, stored.value.as_deref()),
                (Version::ZERO, Some(raw))
            );
        }
        // A value that itself starts with the magic survives being wrapped.
        let tricky = Stored::new(Version(9), Some(value.encode()));
        assert_eq!(Stored::decode(tricky.encode()), tricky);
        assert!(Version(1) < Version(2) && Version(1).to_bytes() < Version(2).to_bytes());
    }

    #[test]
    fn an_expired_envelope_reads_as_nothing_and_time_left_rounds_up() {
        let now = unix_now();
        let with = |expires| Stored {
            expires,
            ..Stored::new(Version(3), Some(Bytes::from_static(b"v")))
        };
        assert_eq!(Stored::from_node(with(Some(now - 1)).encode(), true), None);
        assert_eq!(
            Stored::from_node(with(Some(now + 60)).encode(), true),
            Some(with(Some(now + 60)))
        );
        let raw = with(Some(now - 1)).encode();
        assert_eq!(
            Stored::from_node(raw.clone(), false).and_then(|s| s.value),
            Some(raw),
            "without versions, bytes as they are"
        );
        assert_eq!(with(Some(now + 60)).seconds_left(now), Some(60));
        assert_eq!(with(Some(now)).seconds_left(now), Some(1));
        assert_eq!(with(None).seconds_left(now), None);
    }
}
