//! Redis and memcached next to built-in nodes: each alone, mixed in one cluster, TTLs, a Redis
//! restart, keys of every byte value, and the health probe of each kind; versions on every
//! kind, nginx WebDAV (a plain HTTP store) included.

use std::time::{Duration, Instant};

use crate::servers::{Kind, Server};
use crate::support::*;

/// One node of any kind, and how to look at what it holds.
enum Member {
    Builtin(Node),
    External(String, Server),
}

impl Member {
    fn id(&self) -> &str {
        match self {
            Member::Builtin(node) => &node.id,
            Member::External(id, _) => id,
        }
    }

    /// Its line in a config's `nodes:`.
    fn yaml(&self) -> String {
        match self {
            Member::Builtin(node) => {
                format!("{{ id: {}, url: \"http://{}\" }}", node.id, node.addr)
            }
            Member::External(id, server) => {
                format!(
                    "{{ id: {id}, url: \"{}\"{} }}",
                    server.url(),
                    server.node_fields()
                )
            }
        }
    }

    /// The value the node holds for `key` (Redis, memcached and WebDAV keep it in the
    /// envelope).
    fn holds(&self, key: &[u8]) -> Option<Vec<u8>> {
        let stored = match self {
            Member::Builtin(node) => return node.holds(key),
            Member::External(_, server) => server.holds(key)?,
        };
        assert!(stored.version.0 > 0, "no envelope on {}", self.id());
        stored.value.map(|v| v.to_vec())
    }

    fn server(&mut self) -> &mut Server {
        match self {
            Member::External(_, server) => server,
            Member::Builtin(_) => panic!("not an external server"),
        }
    }
}

fn member(id: &str, kind: Option<Kind>) -> Member {
    match kind {
        None => Member::Builtin(Node::start(id)),
        Some(kind) => Member::External(id.to_string(), Server::start(kind)),
    }
}

fn config_for(members: &[Member], settings: &str) -> String {
    let mut yaml = format!("listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\n{settings}\nnodes:\n");
    for m in members {
        yaml.push_str(&format!("  - {}\n", m.yaml()));
    }
    yaml
}

const KINDS: [Option<Kind>; 3] = [None, Some(Kind::Redis), Some(Kind::Memcached)];
/// Every kind that keeps versions, the plain HTTP store included (it cannot list its keys,
/// keep TTLs or hold keys that are not file names).
const VERSIONED_KINDS: [Option<Kind>; 4] = [
    None,
    Some(Kind::Redis),
    Some(Kind::Memcached),
    Some(Kind::WebDav),
];

/// Keys of every byte value: each byte alone, all 256 in one key, and long ones.
fn every_byte_keys() -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    keys.push((0..=255u8).collect());
    keys.push(b"with space and\r\nnewline".to_vec());
    keys.push(vec![b'k'; 300]);
    keys
}

#[test]
fn each_kind_alone_round_trips_keys_of_every_byte() {
    for kind in KINDS {
        let members = [member("only", kind)];
        let proxy = Proxy::start(&config_for(&members, ""));
        for key in every_byte_keys() {
            let path = kv_path(&key);
            let value = [b"v:".as_slice(), &key].concat();
            let put = proxy.request("PUT", &path, &value);
            assert_eq!(put.status, 204, "{kind:?} PUT {key:?}: {}", put.text());
            let get = proxy.request("GET", &path, b"");
            assert_eq!(
                (get.status, &get.body),
                (200, &value),
                "{kind:?} GET {key:?}"
            );
            assert_eq!(
                members[0].holds(&key),
                Some(value),
                "{kind:?} holds {key:?}"
            );
            assert_eq!(proxy.request("DELETE", &path, b"").status, 204);
            assert_eq!(
                proxy.request("GET", &path, b"").status,
                404,
                "{kind:?} {key:?}"
            );
        }
    }
}

#[test]
fn a_mixed_cluster_places_by_locate_and_falls_back_across_kinds() {
    let mut members = vec![
        member("builtin", None),
        member("redis", Some(Kind::Redis)),
        member("memcached", Some(Kind::Memcached)),
    ];
    let proxy = Proxy::start(&config_for(&members, "replicas: 2\nwrite_quorum: 2"));
    let ring = hrwproxy::routing::Ring::new(members.iter().map(|m| (m.id(), 1.0))).unwrap();
    let keys: Vec<String> = (0..60).map(|i| format!("mixed-{i}")).collect();
    for key in &keys {
        assert_eq!(
            proxy
                .request("PUT", &kv_path(key.as_bytes()), key.as_bytes())
                .status,
            204
        );
        let owners: Vec<&str> = ring
            .rank_all(hrwproxy::routing::key_hash(key.as_bytes()))
            .iter()
            .take(2)
            .map(|r| r.id)
            .collect();
        for m in &members {
            let expected = owners.contains(&m.id()).then(|| key.clone().into_bytes());
            assert_eq!(m.holds(key.as_bytes()), expected, "{key} on {}", m.id());
        }
    }
    // Each kind stopped in turn: every key still reads from its other replica.
    for stopped in members.iter_mut().skip(1) {
        stopped.server().stop();
        for key in &keys {
            let get = proxy.request("GET", &kv_path(key.as_bytes()), b"");
            assert_eq!(
                (get.status, get.text()),
                (200, key.clone()),
                "{} down",
                stopped.id()
            );
            assert_ne!(get.header("x-hrw-node"), Some(stopped.id()));
        }
        stopped.server().restart();
        // The failures ejected it: writes need it again once its probe readmits it.
        wait_until("the restarted node to be readmitted", || {
            keys.iter().all(|key| {
                let path = kv_path(key.as_bytes());
                proxy.request("PUT", &path, key.as_bytes()).status == 204
            })
        });
    }
}

#[test]
fn ttl_expires_on_every_kind_and_bad_ttls_are_refused() {
    for kind in KINDS {
        let members = [member("only", kind)];
        let proxy = Proxy::start(&config_for(&members, ""));
        // Two seconds, not one: memcached's clock ticks in whole seconds, so an item with one
        // second to live can be gone before the read that follows the write.
        for (path, how) in [("/kv/short?ttl=2", "query"), ("/kv/short-header", "header")] {
            let put = match how {
                "query" => proxy.request("PUT", path, b"soon gone"),
                _ => request_with_header(proxy.addr, "PUT", path, "x-hrw-ttl: 2", b"soon gone"),
            };
            assert_eq!(put.status, 204, "{kind:?} {how}: {}", put.text());
            let key_path = path.split('?').next().unwrap();
            assert_eq!(
                proxy.request("GET", key_path, b"").status,
                200,
                "{kind:?} {how}"
            );
            let written = Instant::now();
            wait_until(&format!("{kind:?} {how} ttl expiry"), || {
                proxy.request("GET", key_path, b"").status == 404
            });
            eprintln!("{kind:?} {how}: expired after {:?}", written.elapsed());
        }
        assert_eq!(proxy.request("PUT", "/kv/kept?ttl=3600", b"v").status, 204);
        assert_eq!(proxy.request("GET", "/kv/kept", b"").status, 200);
        for bad in [
            "ttl=0",
            "ttl=-1",
            "ttl=abc",
            "ttl=",
            "ttl=1.5",
            "ttl=999999999999",
            "expire=1",
        ] {
            let resp = proxy.request("PUT", &format!("/kv/k?{bad}"), b"v");
            assert_eq!(resp.status, 400, "{kind:?} {bad}: {}", resp.text());
        }
        let resp = request_with_header(proxy.addr, "PUT", "/kv/k", "x-hrw-ttl: soon", b"v");
        assert_eq!(resp.status, 400);
        assert_eq!(
            proxy.request("GET", "/kv/k?ttl=5", b"").status,
            400,
            "GET takes no query"
        );
    }
}

#[test]
fn a_restarted_redis_is_reconnected_without_restarting_the_proxy() {
    let mut members = [member("redis", Some(Kind::Redis))];
    let proxy = Proxy::start(&config_for(&members, ""));
    assert_eq!(proxy.request("PUT", "/kv/before", b"1").status, 204);
    members[0].server().stop();
    let down = proxy.request("GET", "/kv/before", b"");
    assert_eq!(down.status, 502, "{}", down.text());
    members[0].server().restart();
    wait_until("the proxy to reconnect to redis", || {
        proxy.request("PUT", "/kv/after", b"2").status == 204
    });
    let get = proxy.request("GET", "/kv/after", b"");
    assert_eq!((get.status, get.text()), (200, "2".to_string()));
}

#[test]
fn health_probes_tell_up_from_down_for_every_kind() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for kind in KINDS {
        let mut m = member("probe", kind);
        let yaml = config_for(std::slice::from_ref(&m), "");
        let config = hrwproxy::config::Config::from_yaml(&yaml).unwrap();
        let backend = hrwproxy::backend::connect(&config.nodes[0], &config, None);
        runtime.block_on(async {
            backend
                .health()
                .await
                .unwrap_or_else(|e| panic!("{kind:?} up: {e}"));
        });
        match &mut m {
            Member::Builtin(node) => node.kill(),
            Member::External(_, server) => server.stop(),
        }
        let down = runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(2), backend.health()).await
        });
        assert!(!matches!(down, Ok(Ok(()))), "{kind:?} down but healthy");
    }
}

#[test]
fn restarted_nodes_cost_no_failed_request_though_pooled_connections_went_stale() {
    // memcached and the built-in node, each alone with r=1: a request that failed would be
    // an error answer, and with eject_after 1 it would eject the node.
    for kind in [Some(Kind::Memcached), None] {
        let mut m = member("only", kind);
        let proxy = Proxy::start(&config_for(
            std::slice::from_ref(&m),
            "eject_after: 1\nhealth_check_interval_ms: 0",
        ));
        // Several connections in the pool.
        let writers: Vec<_> = (0..8)
            .map(|i| {
                let addr = proxy.addr;
                std::thread::spawn(move || {
                    for j in 0..20 {
                        let path = format!("/kv/warm-{i}-{j}");
                        assert_eq!(request(addr, "PUT", &path, b"v").status, 204);
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        match &mut m {
            Member::Builtin(node) => {
                node.kill();
                node.restart();
            }
            Member::External(_, server) => server.restart(),
        }
        for i in 0..20 {
            let put = proxy.request("PUT", &format!("/kv/after-{i}"), b"v");
            assert_eq!(put.status, 204, "{kind:?} PUT {i}: {}", put.text());
        }
        assert_eq!(proxy.health_of("only"), "up", "{kind:?}");
        let scrape = proxy.admin("GET", "/metrics").text();
        assert!(
            !scrape.contains("hrw_node_failures_total{"),
            "{kind:?}:\n{scrape}"
        );
    }
}

#[test]
fn a_node_streaming_an_endless_body_gets_a_502_and_costs_no_more_than_the_value_limit() {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Each connection: a chunked 200 that never ends; counts what it managed to send.
    let sent = std::thread::spawn(move || {
        let mut totals = Vec::new();
        for stream in listener.incoming().take(4) {
            let mut stream = stream.unwrap();
            let mut head = [0u8; 1024];
            let _ = std::io::Read::read(&mut stream, &mut head);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
            let chunk = [b"4000\r\n".as_slice(), &[b'x'; 0x4000], b"\r\n"].concat();
            let mut total = 0usize;
            while total < 256 * 1024 * 1024 && stream.write_all(&chunk).is_ok() {
                total += chunk.len();
            }
            totals.push(total);
        }
        totals
    });
    let proxy = Proxy::start(&format!(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nmax_value_bytes: 65536\neject_after: 0\nhealth_check_interval_ms: 0\nhints: {{ scan_interval_s: 0 }}\nreplicas: 1\nnodes:\n  - {{ id: liar, url: \"http://{addr}\" }}\n"
    ));
    let answers: Vec<_> = (0..4)
        .map(|i| {
            let addr = proxy.addr;
            std::thread::spawn(move || request(addr, "GET", &format!("/kv/k{i}"), b""))
        })
        .collect();
    for answer in answers {
        let get = answer.join().unwrap();
        assert_eq!(get.status, 502, "{}", get.text());
        assert!(get.text().contains("larger than 65536"), "{}", get.text());
    }
    // Each stream was cut off after the value limit (plus what socket buffers hold), not
    // after the 64 MiB the old bound allowed.
    for total in sent.join().unwrap() {
        assert!(
            total < 32 * 1024 * 1024,
            "{total} bytes sent before the proxy hung up"
        );
    }
}

#[test]
fn every_kind_keeps_the_newest_through_overwrites_and_deletes() {
    for kind in VERSIONED_KINDS {
        let members = [member("only", kind)];
        let proxy = Proxy::start(&config_for(&members, ""));
        for round in 0..20 {
            let path = format!("/kv/k{}", round % 3);
            let value = format!("v{round}");
            match round % 4 {
                3 => {
                    assert_eq!(
                        proxy.request("DELETE", &path, b"").status,
                        204,
                        "{kind:?} {round}"
                    );
                    assert_eq!(
                        proxy.request("GET", &path, b"").status,
                        404,
                        "{kind:?} {round}"
                    );
                }
                _ => {
                    let put = proxy.request("PUT", &path, value.as_bytes());
                    assert_eq!(put.status, 204, "{kind:?} {round}: {}", put.text());
                    let get = proxy.request("GET", &path, b"");
                    assert_eq!(
                        (get.status, get.text()),
                        (200, value),
                        "{kind:?} round {round}"
                    );
                }
            }
        }
        // What the node itself holds: the last value, and a tombstone for the deleted key.
        assert_eq!(members[0].holds(b"k0"), Some(b"v18".to_vec()), "{kind:?}");
        assert_eq!(members[0].holds(b"k1"), None, "{kind:?}");
    }
}

/// Writes stamped by clients (`x-hrw-version`) reach every kind out of order; each keeps the
/// newest, deletes included, and a write older than a tombstone does not bring a value back.
#[test]
fn every_kind_keeps_the_newer_of_writes_sent_out_of_order() {
    const OLDER: u128 = 1 << 70;
    const NEWER: u128 = 1 << 90;
    const NEWEST: u128 = 1 << 100;
    for kind in VERSIONED_KINDS {
        let members = [member("only", kind)];
        let proxy = Proxy::start(&config_for(&members, ""));
        let send = |method: &str, version: u128, body: &str| {
            let header = format!("x-hrw-version: {version}");
            let resp = request_with_header(proxy.addr, method, "/kv/k", &header, body.as_bytes());
            assert_eq!(
                resp.status,
                204,
                "{kind:?} {method} {version}: {}",
                resp.text()
            );
        };
        let get = || proxy.request("GET", "/kv/k", b"");

        send("PUT", NEWER, "newer");
        send("PUT", OLDER, "older");
        send("DELETE", OLDER, "");
        let read = get();
        assert_eq!(
            (read.status, read.text()),
            (200, "newer".into()),
            "{kind:?}"
        );
        assert_eq!(read.header("x-hrw-version"), Some(&*NEWER.to_string()));
        assert_eq!(read.header("etag"), Some(&*format!("\"{NEWER:032x}\"")));

        send("DELETE", NEWEST, "");
        send("PUT", NEWER + 1, "too late");
        let read = get();
        assert_eq!(read.status, 404, "{kind:?}: {}", read.text());
        assert_eq!(read.header("x-hrw-version"), Some(&*NEWEST.to_string()));
    }
}

/// A repair lists the keys of every kind and copies them to every kind: raising `replicas`
/// leaves each key one copy short until the repair fills it in.
#[test]
fn repair_lists_and_fills_every_kind() {
    for kind in KINDS {
        let members = [member("a", kind), member("b", kind)];
        let proxy = Proxy::start(&config_for(&members, "replicas: 1"));
        let keys: Vec<String> = (0..200).map(|i| format!("repair-{i}")).collect();
        put_keys(&proxy, &keys);
        proxy.save_by_rename(&config_for(&members, "replicas: 2"));
        proxy.await_generation(2);

        let report = proxy.repair("");
        assert_eq!(report["failed"], 0, "{kind:?}: {report}");
        assert_eq!(report["skipped_nodes"], serde_json::json!([]), "{kind:?}");
        assert_eq!(report["copied"], 200, "{kind:?}: {report}");
        for key in &keys {
            for m in &members {
                assert!(
                    m.holds(key.as_bytes()).is_some(),
                    "{kind:?}: {key} not on {}",
                    m.id()
                );
            }
        }
    }
}

/// The envelope does not eat into the value limit: a plain store holds values of exactly
/// `max_value_bytes`, overwrites included (each is a read, then a write).
#[test]
fn a_plain_store_takes_values_of_the_full_limit() {
    let members = [member("files", Some(Kind::WebDav))];
    let proxy = Proxy::start(&config_for(&members, "max_value_bytes: 1000"));
    for fill in [b'a', b'b'] {
        let value = vec![fill; 1000];
        let put = proxy.request("PUT", "/kv/full", &value);
        assert_eq!(put.status, 204, "{}", put.text());
        let get = proxy.request("GET", "/kv/full", b"");
        assert_eq!((get.status, get.body), (200, value));
    }
}

/// Values another client wrote to Redis (no envelope) read as themselves at version 0 and are
/// replaced by the first write through the proxy, even bytes that begin like an envelope.
#[test]
fn values_without_an_envelope_read_as_version_zero_and_give_way_to_any_write() {
    let mut members = [member("cache", Some(Kind::Redis))];
    let proxy = Proxy::start(&config_for(&members, ""));
    let mut lookalike = b"HRW1".to_vec();
    lookalike.extend_from_slice(&[0xff; 16]);
    lookalike.extend_from_slice(b"\x09 flags no envelope has");
    for (key, raw) in [
        (&b"legacy"[..], &b"plain bytes"[..]),
        (b"lookalike", &lookalike),
    ] {
        members[0].server().redis_set_raw(key, raw);
        let get = proxy.request("GET", &kv_path(key), b"");
        assert_eq!((get.status, &get.body[..]), (200, raw), "{key:?}");
        assert_eq!(get.header("x-hrw-version"), None, "version 0 is not shown");
        let put = proxy.request("PUT", &kv_path(key), b"new");
        assert_eq!(put.status, 204);
        let get = proxy.request("GET", &kv_path(key), b"");
        assert_eq!(
            (get.status, get.text()),
            (200, "new".to_string()),
            "{key:?}"
        );
    }
}

#[test]
fn a_paused_memcached_gives_each_request_its_own_reply_once_resumed() {
    let m = member("only", Some(Kind::Memcached));
    let Member::External(_, server) = &m else {
        unreachable!("an external node")
    };
    let proxy = Proxy::start(&config_for(
        std::slice::from_ref(&m),
        "timeouts: { connect_ms: 100, request_ms: 300, deadline_ms: 1000 }\n\
         eject_after: 0\nhealth_check_interval_ms: 0\nhedge_budget_percent: 0",
    ));
    let keys: Vec<String> = (0..20).map(|i| format!("paused-{i}")).collect();
    for key in &keys {
        assert_eq!(
            proxy
                .request("PUT", &kv_path(key.as_bytes()), key.as_bytes())
                .status,
            204
        );
    }
    server.signal("STOP");
    // Reads pile up on the node's shared connection and time out.
    let stuck: Vec<_> = keys[..8]
        .iter()
        .map(|key| {
            let (addr, path) = (proxy.addr, kv_path(key.as_bytes()));
            std::thread::spawn(move || request(addr, "GET", &path, b"").status)
        })
        .collect();
    for status in stuck {
        assert!(status.join().unwrap() >= 500);
    }
    server.signal("CONT");
    // Their late replies must never answer the requests that follow.
    for _ in 0..3 {
        for key in &keys {
            let get = proxy.request("GET", &kv_path(key.as_bytes()), b"");
            assert_eq!((get.status, get.text()), (200, key.clone()), "{key}");
        }
    }
}
