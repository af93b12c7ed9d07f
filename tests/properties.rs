//! Property tests and a fuzz-style harness (cargo-fuzz needs a nightly toolchain this machine
//! cannot fetch): key encoding round trips, and no input makes the key decoder, the memcached
//! key mapping or the config parser panic. More cases: PROPTEST_CASES=1000000 cargo test --test properties

use hrwproxy::backend::memcache_key;
use hrwproxy::config::Config;
use hrwproxy::key;
use proptest::prelude::*;

const VALID: &str = "listen: 127.0.0.1:8080\nreplicas: 2\nnodes:\n  - { id: a, url: \"http://127.0.0.1:7001\", weight: 1.0 }\n  - { id: b, url: \"redis://:pw@127.0.0.1:6379/1\" }\n  - { id: c, url: \"memcache://127.0.0.1:11211\", weight: 2.5 }\n";

proptest! {
    #[test]
    fn encoded_keys_decode_to_themselves(key in proptest::collection::vec(any::<u8>(), 1..600)) {
        let encoded = key::encode(&key);
        prop_assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_~%".contains(&b)));
        let decoded = key::decode(&encoded, usize::MAX).unwrap();
        prop_assert_eq!(decoded.as_ref(), &key[..]);
    }

    #[test]
    fn the_key_decoder_never_panics(raw in ".{0,300}", max in 1usize..2048) {
        if let Ok(decoded) = key::decode(&raw, max) {
            prop_assert!(!decoded.is_empty() && decoded.len() <= max);
        }
    }

    #[test]
    fn memcached_keys_are_always_legal(key in proptest::collection::vec(any::<u8>(), 1..400)) {
        let mapped = memcache_key(&key);
        prop_assert!(!mapped.is_empty() && mapped.len() <= 250);
        prop_assert!(mapped.iter().all(|b| (0x21..=0x7e).contains(b)));
    }

    #[test]
    fn the_config_parser_never_panics_on_any_text(text in ".{0,400}") {
        let _ = Config::from_yaml(&text);
    }

    #[test]
    fn the_config_parser_never_panics_on_a_mangled_valid_config(
        cut in 0..VALID.len(),
        insert in "[ -~\n]{0,12}",
    ) {
        let mut text = VALID.to_string();
        let at = (0..=cut).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        text.insert_str(at, &insert);
        let _ = Config::from_yaml(&text);
        let _ = Config::from_yaml(&VALID[..cut]);
    }
}

#[test]
fn the_valid_seed_config_is_valid() {
    Config::from_yaml(VALID).unwrap();
}

/// Inputs that once looked dangerous, kept as seeds: each must be handled without a panic.
#[test]
fn seed_inputs_are_handled() {
    for raw in [
        "",
        "%",
        "%%",
        "%2",
        "%zz",
        "%2F",
        "%2e%2e",
        "..%2F..%2F",
        "%00",
        "%0D%0A",
        "%ff%fe",
        "a?b#c",
        "caf%C3%A9",
        "%E2%82",
        "~_-.",
        "%252F",
    ] {
        let _ = key::decode(raw, 1024);
        let _ = key::decode(raw, 1);
    }
    for yaml in [
        "",
        "nodes:",
        "nodes: []",
        "nodes: [{}]",
        "nodes: [{ id: a }]",
        "nodes: [{ id: a, url: \"\" }]",
        "nodes: [{ id: a, url: \"http://[::1]:99999\" }]",
        "nodes: [{ id: a, url: \"redis://:@h\" }]",
        "nodes: !!binary aGVsbG8=",
        "&a [*a]",
        "nodes: [{ id: a, url: \"http://h:1\", weight: 1e309 }]",
        "replicas: -1\nnodes: [{ id: a, url: \"http://h:1\" }]",
        "limits: { max_header_bytes: 1 }\nnodes: [{ id: a, url: \"http://h:1\" }]",
        "tls: { cert_file: x }\nnodes: [{ id: a, url: \"http://h:1\" }]",
    ] {
        let _ = Config::from_yaml(yaml);
    }
}
