//! Sloppy quorum and hinted handoff with real processes: a killed Redis among mixed kinds, a
//! double failure (one node killed, another paused) over nginx WebDAV under load, and proxies
//! restarted mid-failure, each against `quorum: strict` where the issue compares them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::servers::{Kind, Server};
use crate::support::*;

/// Quick failure detection, so the tests spend little time waiting for it.
const FAST_FAILOVER: &str = "timeouts: { connect_ms: 100, request_ms: 300, deadline_ms: 2000 }
eject_after: 3
eject_backoff_ms: 200
eject_backoff_max_ms: 400
health_check_interval_ms: 100
hedge_budget_percent: 0";

fn node_line(id: &str, url: &str, fields: &str) -> String {
    format!("  - {{ id: {id}, url: \"{url}\"{fields} }}\n")
}

fn nodes_json(proxy: &Proxy) -> Vec<serde_json::Value> {
    let nodes: serde_json::Value =
        serde_json::from_slice(&proxy.admin("GET", "/admin/nodes").body).unwrap();
    nodes.as_array().unwrap().clone()
}

#[test]
fn killing_redis_leaves_every_key_readable_when_sloppy_and_strict_says_how_many_answered() {
    let mut redis = Server::start(Kind::Redis);
    let memcached = Server::start(Kind::Memcached);
    let builtin = Node::start("builtin");
    let (redis_url, memcached_url) = (redis.url(), memcached.url());
    let config = |quorum: &str| {
        let mut yaml = format!(
            "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nreplicas: 2\nwrite_quorum: 1\nquorum: {quorum}\nhints: {{ scan_interval_s: 1 }}\n{FAST_FAILOVER}\nnodes:\n"
        );
        yaml += &node_line("redis", &redis_url, "");
        yaml += &node_line("memcached", &memcached_url, "");
        yaml += &node_line("builtin", &format!("http://{}", builtin.addr), "");
        yaml
    };
    let proxy = Proxy::start(&config("sloppy"));
    let keys: Vec<String> = (0..40).map(|i| format!("key-{i}")).collect();
    put_keys(&proxy, &keys);
    redis.stop();
    let readable = |proxy: &Proxy| {
        keys.iter()
            .filter(|k| {
                let get = proxy.request("GET", &kv_path(k.as_bytes()), b"");
                get.status == 200 && get.body == k.as_bytes()
            })
            .count()
    };
    assert_eq!(
        readable(&proxy),
        40,
        "keys readable with Redis dead, sloppy"
    );
    // Writes while it is dead land on stand-ins, which keep hints for it.
    let during: Vec<String> = (0..40).map(|i| format!("during-{i}")).collect();
    put_keys(&proxy, &during);
    let held_for_redis = |proxy: &Proxy| {
        let nodes = nodes_json(proxy);
        let redis = nodes.iter().find(|n| n["id"] == "redis").unwrap();
        (
            redis["hints"].as_u64().unwrap(),
            redis["hints_on_nodes"].as_u64().unwrap(),
        )
    };
    wait_until("hints for redis counted on the stand-ins", || {
        held_for_redis(&proxy).1 > 0
    });

    // Strict: the reads that need Redis fail, and say how many answered and why.
    proxy.save_in_place(&config("strict"));
    proxy.await_generation(2);
    let mut failed = 0;
    for key in &keys {
        let get = proxy.request("GET", &kv_path(key.as_bytes()), b"");
        if get.status == 200 {
            continue;
        }
        failed += 1;
        assert!(matches!(get.status, 502 | 503), "{}", get.text());
        let json: serde_json::Value = serde_json::from_slice(&get.body).unwrap();
        let error = json["error"].as_str().unwrap();
        assert!(
            error.starts_with("read quorum not reached: 1 of 2 answers: ")
                && (error.contains("redis ejected") || error.contains("redis refused"))
                && error.contains(" answered"),
            "{error}"
        );
        assert_eq!(
            (json["answers"].as_u64(), json["needed"].as_u64()),
            (Some(1), Some(2))
        );
    }
    assert!(failed > 0 && failed < 40, "{failed} of 40 failed strict");
    eprintln!(
        "strict: {} of 40 keys readable with Redis dead",
        40 - failed
    );

    // Redis comes back empty: the stand-ins hand it the writes it missed, and let go.
    proxy.save_in_place(&config("sloppy"));
    proxy.await_generation(3);
    redis.restart();
    wait_until("hints handed to redis", || {
        proxy.health_of("redis") == "up" && held_for_redis(&proxy) == (0, 0)
    });
    let ring_ids = [("redis", 1.0), ("memcached", 1.0), ("builtin", 1.0)];
    let ring = hrwproxy::routing::Ring::new(ring_ids).unwrap();
    let mut handed = 0;
    for key in &during {
        let top = ring.top(hrwproxy::routing::key_hash(key.as_bytes()), 2);
        if top.iter().any(|i| ring.id(i) == "redis") {
            let held = redis
                .holds(key.as_bytes())
                .unwrap_or_else(|| panic!("{key} not handed"));
            assert_eq!(held.value.as_deref(), Some(key.as_bytes()));
            handed += 1;
        }
    }
    assert!(handed > 0);
    assert_eq!(readable(&proxy), 40);
}

/// What a double failure run saw: reads while the ejections were in effect, and after.
#[derive(Debug, Default)]
struct Tally {
    during_ok: AtomicU64,
    during_total: AtomicU64,
    failed_messages: Mutex<Vec<String>>,
    lost: usize,
    acked: usize,
}

/// 5 WebDAV nodes, r=3, W=2 (R=2), three writers and a reader; one node killed, and once it
/// is ejected a second paused for 6 s. Counts reads answered 200 with the newest
/// acknowledged value from a second into the pause to its end, and at the end acknowledged
/// writes not readable (the killed node stays dead).
fn double_failure(quorum: &str) -> Tally {
    let mut servers: Vec<Server> = (0..5).map(|_| Server::start(Kind::WebDav)).collect();
    let mut yaml = format!(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nreplicas: 3\nwrite_quorum: 2\nquorum: {quorum}\n{FAST_FAILOVER}\nnodes:\n"
    );
    for (i, server) in servers.iter().enumerate() {
        yaml += &node_line(&format!("w{i}"), &server.url(), server.node_fields());
    }
    let proxy = Proxy::start(&yaml);
    let keys: Vec<String> = (0..200).map(|i| format!("key-{i}")).collect();
    // The last acknowledged sequence number of each key.
    let acked: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    for key in &keys {
        let put = proxy.request(
            "PUT",
            &kv_path(key.as_bytes()),
            format!("{key}:0").as_bytes(),
        );
        assert_eq!(put.status, 204, "{}", put.text());
        acked.lock().unwrap().insert(key.clone(), 0);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut workers = Vec::new();
    for w in 0..3 {
        let mine: Vec<String> = keys.iter().skip(w).step_by(3).cloned().collect();
        let (addr, acked, stop) = (proxy.addr, acked.clone(), stop.clone());
        workers.push(std::thread::spawn(move || {
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                for key in &mine {
                    let value = format!("{key}:{seq}");
                    let put = request(addr, "PUT", &kv_path(key.as_bytes()), value.as_bytes());
                    if put.status == 204 {
                        acked.lock().unwrap().insert(key.clone(), seq);
                    }
                }
            }
        }));
    }
    {
        let (addr, acked, stop, measuring, tally) = (
            proxy.addr,
            acked.clone(),
            stop.clone(),
            measuring.clone(),
            tally.clone(),
        );
        let keys = keys.clone();
        workers.push(std::thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                i = (i + 7) % keys.len();
                let key = &keys[i];
                let expected = acked.lock().unwrap()[key];
                let get = request(addr, "GET", &kv_path(key.as_bytes()), b"");
                if !measuring.load(Ordering::Relaxed) {
                    continue;
                }
                tally.during_total.fetch_add(1, Ordering::Relaxed);
                let seq = (get.status == 200).then(|| {
                    get.text()
                        .rsplit(':')
                        .next()
                        .unwrap()
                        .parse::<u64>()
                        .unwrap()
                });
                match seq {
                    Some(seq) if seq >= expected => {
                        tally.during_ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(seq) => eprintln!("stale {key}: read {seq}, acknowledged {expected}"),
                    None => tally.failed_messages.lock().unwrap().push(get.text()),
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_secs(1));
    servers[0].stop();
    wait_until("the killed node ejected", || proxy.health_of("w0") != "up");
    servers[1].signal("STOP");
    std::thread::sleep(Duration::from_secs(1));
    measuring.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(5));
    measuring.store(false, Ordering::Relaxed);
    servers[1].signal("CONT");
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    wait_until("the paused node back with its missed writes", || {
        proxy.health_of("w1") == "up"
            && nodes_json(&proxy)
                .iter()
                .find(|n| n["id"] == "w1")
                .is_some_and(|n| n["hints"] == 0)
    });
    let acked = acked.lock().unwrap().clone();
    let mut lost = 0;
    for (key, &seq) in &acked {
        let get = proxy.request("GET", &kv_path(key.as_bytes()), b"");
        let found = (get.status == 200).then(|| {
            get.text()
                .rsplit(':')
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        });
        if found.is_none_or(|found| found < seq) {
            eprintln!(
                "lost {key}: acknowledged {seq}, read {} {}",
                get.status,
                get.text()
            );
            lost += 1;
        }
    }
    let mut tally = Arc::try_unwrap(tally).unwrap();
    (tally.lost, tally.acked) = (lost, acked.len());
    let (ok, total) = (
        tally.during_ok.load(Ordering::Relaxed),
        tally.during_total.load(Ordering::Relaxed),
    );
    eprintln!("double failure, {quorum}: {ok} of {total} reads answered the newest during the pause; {lost} of {} keys lost an acknowledged write", acked.len());
    drop(servers);
    tally
}

#[test]
fn a_double_failure_keeps_reads_answering_when_sloppy_and_loses_no_acknowledged_write() {
    let tally = double_failure("sloppy");
    let (ok, total) = (
        tally.during_ok.load(Ordering::Relaxed),
        tally.during_total.load(Ordering::Relaxed),
    );
    assert!(total > 100, "too few reads to mean anything: {total}");
    assert!(
        ok * 100 >= total * 99,
        "{ok} of {total} reads answered the newest: {:?}",
        tally.failed_messages.lock().unwrap().first()
    );
    assert_eq!(tally.lost, 0, "acknowledged writes lost");
}

#[test]
fn a_double_failure_fails_the_reads_it_cannot_serve_when_strict_and_says_why() {
    let tally = double_failure("strict");
    let messages = tally.failed_messages.lock().unwrap();
    assert!(
        !messages.is_empty(),
        "no read failed with two of five nodes out"
    );
    for message in messages.iter() {
        let json: serde_json::Value = serde_json::from_str(message).unwrap();
        let error = json["error"].as_str().unwrap();
        // Every node of the key is named with what it did; no state is made up.
        assert!(
            error.starts_with("read quorum not reached: 1 of 2 answers: ")
                || error.starts_with("read quorum not reached: 0 of 2 answers: ")
                || error.starts_with("the request's deadline ran out with "),
            "{error}"
        );
        assert!(json["nodes"].as_array().unwrap().len() >= 3, "{json}");
    }
    assert_eq!(tally.lost, 0, "acknowledged writes lost");
}

#[test]
fn proxies_restarted_mid_failure_lose_nothing_and_another_proxy_hands_over_the_hints() {
    let mut nodes = start_nodes(&["n1", "n2", "n3", "n4", "n5"]);
    let settings =
        format!("replicas: 3\nwrite_quorum: 2\nhints: {{ scan_interval_s: 1 }}\n{FAST_FAILOVER}");
    let first = Proxy::start(&config_yaml(&nodes, &settings));
    let keys: Vec<String> = (0..100).map(|i| format!("key-{i}")).collect();
    put_keys(&first, &keys);
    // n1 dies, n2 pauses: the overwrites land on stand-ins, hinted for them.
    nodes[0].kill();
    nodes[1].signal("STOP");
    for key in &keys {
        let put = first.request(
            "PUT",
            &kv_path(key.as_bytes()),
            format!("{key}:new").as_bytes(),
        );
        assert_eq!(put.status, 204, "{key}: {}", put.text());
    }
    // The proxy that wrote them goes (once the stand-in writes still under way are done),
    // and its memory with it; a second one on the same config was started meanwhile, and a
    // third after.
    let second = first.another();
    std::thread::sleep(Duration::from_secs(1));
    drop(first);
    nodes[1].signal("CONT");
    nodes[0].restart();
    let third = second.another();
    for proxy in [&second, &third] {
        wait_until("every node up and no hint left on the nodes", || {
            nodes_json(proxy)
                .iter()
                .all(|n| n["health"] == "up" && n["hints"] == 0 && n["hints_on_nodes"] == 0)
        });
    }
    let all: Vec<&Node> = nodes.iter().collect();
    for key in &keys {
        let want = format!("{key}:new").into_bytes();
        for proxy in [&second, &third] {
            let get = proxy.request("GET", &kv_path(key.as_bytes()), b"");
            assert_eq!((get.status, &get.body), (200, &want), "{key}");
        }
        // On every replica, the restarted-empty one included; off every stand-in.
        let ranked = ranking(&all, key.as_bytes());
        for node in &nodes {
            let holds = node.holds(key.as_bytes());
            if ranked[..3].contains(&node.id) {
                assert_eq!(holds.as_ref(), Some(&want), "{key} on replica {}", node.id);
            } else {
                assert!(
                    holds.is_none_or(|h| h != want),
                    "{key}: stand-in {} kept its copy",
                    node.id
                );
            }
        }
    }
    let handed: u64 = [&second, &third]
        .iter()
        .flat_map(|p| nodes_json(p))
        .map(|n| n["hints_handed_off"].as_u64().unwrap())
        .sum();
    assert!(
        handed > 0,
        "no hint was handed over by the proxies that did not write them"
    );
}

/// A stand-in of every kind that can keep hints, holding one key's hints for two replicas:
/// handing over the first leaves its copy for the second; handing over the last lets it go.
#[test]
fn a_stand_in_keeps_its_copy_until_the_last_replica_it_stood_in_for_has_it() {
    for kind in [None, Some(Kind::Redis), Some(Kind::Memcached)] {
        let mut owners = start_nodes(&["a", "b"]);
        let fourth = Node::start("d");
        let (builtin, server) = match kind {
            None => (Some(Node::start("c")), None),
            Some(kind) => (None, Some(Server::start(kind))),
        };
        let c_url = match (&builtin, &server) {
            (Some(node), _) => format!("http://{}", node.addr),
            (_, Some(server)) => server.url(),
            _ => unreachable!(),
        };
        let mut yaml = "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nreplicas: 2\nwrite_quorum: 2\neject_after: 0\nhealth_check_interval_ms: 0\nhedge_budget_percent: 0\nhints: { scan_interval_s: 0 }\ntimeouts: { connect_ms: 100, request_ms: 300, deadline_ms: 2000 }\nnodes:\n".to_owned();
        yaml += &node_line("a", &format!("http://{}", owners[0].addr), "");
        yaml += &node_line("b", &format!("http://{}", owners[1].addr), "");
        yaml += &node_line("c", &c_url, "");
        yaml += &node_line("d", &format!("http://{}", fourth.addr), "");
        let proxy = Proxy::start(&yaml);
        let ring =
            hrwproxy::routing::Ring::new([("a", 1.0), ("b", 1.0), ("c", 1.0), ("d", 1.0)]).unwrap();
        let key = (0..)
            .map(|i| format!("shared-{i}"))
            .find(|k| {
                let ranked = ring.rank_all(hrwproxy::routing::key_hash(k.as_bytes()));
                let ids: Vec<&str> = ranked.iter().map(|r| r.id).collect();
                ids[..3] == ["a", "b", "c"] || ids[..3] == ["b", "a", "c"]
            })
            .unwrap();
        let c_holds = || match (&builtin, &server) {
            (Some(node), _) => node.holds(key.as_bytes()),
            (_, Some(server)) => server
                .holds(key.as_bytes())
                .and_then(|s| s.value.map(|v| v.to_vec())),
            _ => unreachable!(),
        };
        let put = |value: &str| {
            let put = proxy.request("PUT", &kv_path(key.as_bytes()), value.as_bytes());
            assert_eq!(put.status, 204, "{kind:?}: {}", put.text());
            assert_eq!(put.header("x-hrw-stand-ins"), Some("1"), "{kind:?}");
        };
        // a is down: c stands in for it. a comes back empty and b goes: c stands in for b.
        owners[0].kill();
        put("v1");
        owners[0].restart();
        owners[1].kill();
        put("v2");
        assert_eq!(c_holds(), Some(b"v2".to_vec()), "{kind:?}");
        // a's hint is handed over; b's keeps the copy.
        let repair = proxy.repair("");
        assert_eq!(repair["hints_left"], 1, "{kind:?}: {repair}");
        assert_eq!(
            owners[0].holds(key.as_bytes()),
            Some(b"v2".to_vec()),
            "{kind:?}"
        );
        assert_eq!(
            c_holds(),
            Some(b"v2".to_vec()),
            "{kind:?}: released too early"
        );
        // b is back: its hint goes, and with the last hint the copy.
        owners[1].restart();
        let repair = proxy.repair("");
        assert_eq!(repair["hints_left"], 0, "{kind:?}: {repair}");
        assert_eq!(
            owners[1].holds(key.as_bytes()),
            Some(b"v2".to_vec()),
            "{kind:?}"
        );
        assert_eq!(c_holds(), None, "{kind:?}: the stand-in kept its copy");
    }
}

/// memcached's hints are found in a dump of all its keys: while a node's count of hints is 0,
/// passes skip it.
#[test]
fn a_memcached_node_without_hints_is_not_dumped_every_pass() {
    use std::io::{BufRead, BufReader, Write};
    let memcached = Server::start(Kind::Memcached);
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nreplicas: 1\nhints: {{ scan_interval_s: 1 }}\nnodes:\n{}",
        node_line("m", &memcached.url(), "")
    );
    let proxy = Proxy::start(&yaml);
    put_keys(&proxy, &["a", "b", "c"]);
    let crawls = || {
        let mut stream = std::net::TcpStream::connect(memcached.addr).unwrap();
        stream.write_all(b"stats\r\n").unwrap();
        let mut starts = None;
        for line in BufReader::new(stream).lines() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("STAT lru_crawler_starts ") {
                starts = Some(n.trim().parse::<u64>().unwrap());
            }
            if line == "END" {
                break;
            }
        }
        starts.expect("memcached reports lru_crawler_starts")
    };
    // Each pass lists the node's hints once: an attempt `op="handoff"` in the metrics.
    let passes = || {
        let text = proxy.admin("GET", "/metrics").text();
        text.lines()
            .find_map(|l| l.strip_prefix(r#"hrw_node_attempts_total{node="m",op="handoff"} "#))
            .map_or(0.0, |n| n.parse::<f64>().unwrap())
    };
    // The first pass dumps (no count yet) and starts the count at 0; the next ones do not.
    wait_until("the first pass", || passes() >= 1.0);
    let after_first = crawls();
    assert!(after_first >= 1, "the first pass did not dump");
    let seen = passes();
    wait_until("three more passes", || passes() >= seen + 3.0);
    assert_eq!(crawls(), after_first, "passes dumped a node without hints");
}
