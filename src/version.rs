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

/// What a node holds for a key: a value, or a tombstone (a delete that is remembered), with
/// its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub version: Version,
    /// `None` for a tombstone.
    pub value: Option<Bytes>,
}

/// The envelope's first four bytes.
pub const MAGIC: &[u8; 4] = b"HRW1";
/// Magic, version, flags.
pub const HEADER_LEN: usize = 4 + 16 + 1;
const TOMBSTONE: u8 = 1;

impl Stored {
    /// The envelope: `HRW1`, the version as 16 big-endian bytes, a flags byte (bit 0: a
    /// tombstone), then the value's bytes (none for a tombstone).
    pub fn encode(&self) -> Bytes {
        let value = self.value.as_deref().unwrap_or(&[]);
        let mut out = Vec::with_capacity(HEADER_LEN + value.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.version.to_bytes());
        out.push(if self.value.is_none() { TOMBSTONE } else { 0 });
        out.extend_from_slice(value);
        Bytes::from(out)
    }

    /// What a node's bytes hold: with versions, what [`Stored::decode`] finds; without, the
    /// bytes as they are (even if they look like an envelope), at version 0.
    pub fn from_node(bytes: Bytes, versioned: bool) -> Stored {
        if versioned {
            Stored::decode(bytes)
        } else {
            Stored {
                version: Version::ZERO,
                value: Some(bytes),
            }
        }
    }

    /// What stored bytes hold: an envelope, or (without one) a value of version 0.
    pub fn decode(bytes: Bytes) -> Stored {
        if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
            return Stored {
                version: Version::ZERO,
                value: Some(bytes),
            };
        }
        let version = Version::from_bytes(bytes[4..20].try_into().expect("16 bytes"));
        let value = (bytes[20] & TOMBSTONE == 0).then(|| bytes.slice(HEADER_LEN..));
        Stored { version, value }
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
        let value = Stored {
            version: Version(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10),
            value: Some(Bytes::from_static(b"hello")),
        };
        let encoded = value.encode();
        assert_eq!(
            &encoded[..],
            b"HRW1\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x00hello"
        );
        assert_eq!(Stored::decode(encoded), value);
        let tombstone = Stored {
            version: Version(7),
            value: None,
        };
        assert_eq!(tombstone.encode().len(), HEADER_LEN);
        assert_eq!(Stored::decode(tombstone.encode()), tombstone);
        for raw in [
            &b""[..],
            b"hello",
            b"HRW1short",
            b"HRX1\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00x",
        ] {
            let stored = Stored::decode(Bytes::copy_from_slice(raw));
            assert_eq!(
                (stored.version, stored.value.as_deref()),
                (Version::ZERO, Some(raw))
            );
        }
        // A value that itself starts with the magic survives being wrapped.
        let tricky = Stored {
            version: Version(9),
            value: Some(value.encode()),
        };
        assert_eq!(Stored::decode(tricky.encode()), tricky);
        assert!(Version(1) < Version(2) && Version(1).to_bytes() < Version(2).to_bytes());
    }
}
