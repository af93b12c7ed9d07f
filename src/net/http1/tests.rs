//! Property tests of the parsers on random input: they never panic, never take more than their
//! limits, and give the same answer however the bytes are split.

use proptest::prelude::*;

use super::chunked::{ChunkError, Decoder};
use super::head::{self, HeadLimits};

const LIMITS: HeadLimits = HeadLimits {
    max_headers: 16,
    max_bytes: 1024,
};

/// A chunked encoding of `body` in chunks of the given sizes (the rest in one last chunk).
fn chunked(body: &[u8], sizes: &[usize], extension: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    for size in sizes.iter().copied().chain([usize::MAX]) {
        let take = size.min(rest.len());
        if take == 0 {
            continue;
        }
        out.extend_from_slice(format!("{take:X}").as_bytes());
        if extension {
            out.extend_from_slice(b";ext=1");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&rest[..take]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[take..];
    }
    out.extend_from_slice(b"0\r\nx-t: v\r\n\r\n");
    out
}

proptest! {
    #[test]
    fn any_bytes_give_a_head_within_limits_or_an_answer(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(Some(head)) = head::parse(&bytes, LIMITS) {
            prop_assert!(head.len <= bytes.len() && head.len <= LIMITS.max_bytes);
            prop_assert!(head.request.headers().len() <= LIMITS.max_headers);
        }
    }

    #[test]
    fn a_head_parses_the_same_once_complete_however_it_arrives(
        key in "[a-zA-Z0-9%/._-]{1,40}",
        headers in proptest::collection::vec(("x-[a-z]{1,8}", "[ -~]{0,20}"), 0..8),
        body in proptest::collection::vec(any::<u8>(), 0..64),
        split in any::<prop::sample::Index>(),
    ) {
        let mut raw = format!("PUT /kv/{key} HTTP/1.1\r\nhost: h\r\n");
        for (name, value) in &headers {
            raw.push_str(&format!("{name}: {}\r\n", value.trim()));
        }
        raw.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
        let head_len = raw.len();
        let mut raw = raw.into_bytes();
        raw.extend_from_slice(&body);
        let at = split.index(head_len);
        prop_assert!(head::parse(&raw[..at], LIMITS).unwrap().is_none());
        let head = head::parse(&raw, LIMITS).unwrap().unwrap();
        prop_assert_eq!(head.len, head_len);
        let path = format!("/kv/{key}");
        prop_assert_eq!(head.request.uri().path(), path.as_str());
        prop_assert_eq!(head.request.headers().len(), headers.len() + 2);
    }

    #[test]
    fn chunked_bodies_decode_to_what_was_sent_however_they_arrive(
        body in proptest::collection::vec(any::<u8>(), 0..600),
        sizes in proptest::collection::vec(1usize..100, 0..10),
        extension in any::<bool>(),
        splits in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut wire = chunked(&body, &sizes, extension);
        let end = wire.len();
        wire.extend_from_slice(b"GET /next");
        let mut cuts: Vec<usize> = splits.iter().map(|s| s.index(wire.len())).collect();
        cuts.push(wire.len());
        cuts.sort_unstable();
        let mut decoder = Decoder::new(body.len());
        let mut out = Vec::new();
        let (mut from, mut used) = (0, 0);
        for cut in cuts {
            used += decoder.feed(&wire[from.max(used)..cut.max(used)], &mut out).unwrap();
            from = cut;
        }
        prop_assert!(decoder.done());
        prop_assert_eq!(used, end, "stops right after the body");
        prop_assert_eq!(out, body);
    }

    #[test]
    fn any_bytes_decode_within_the_limit_or_are_refused(
        bytes in proptest::collection::vec(any::<u8>(), 0..1024),
        max in 0usize..256,
    ) {
        let mut out = Vec::new();
        match Decoder::new(max).feed(&bytes, &mut out) {
            Ok(used) => prop_assert!(used <= bytes.len()),
            Err(ChunkError::Malformed(_) | ChunkError::TooLarge) => {}
        }
        prop_assert!(out.len() <= max);
    }
}
