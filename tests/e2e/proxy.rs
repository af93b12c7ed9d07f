//! The proxy API against real built-in nodes: replication, fallback, quorum, bad requests.

use crate::support::*;

/// Keys that must never change the backend path, plus ordinary ones.
fn tricky_keys() -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = [
        &b"../../etc/passwd"[..],
        b"a/b/c",
        b"with space",
        b"query?x=1#frag",
        b"crlf\r\nx-injected: 1",
        b"%2F",
        b"\xff\x00binary",
        "caf\u{e9}".as_bytes(),
    ]
    .iter()
    .map(|k| k.to_vec())
    .collect();
    keys.extend((0..40).map(|i| format!("user:{i}").into_bytes()));
    keys
}

#[test]
fn put_lands_on_exactly_the_top_r_and_get_reads_the_first() {
    let nodes = start_nodes(&["a", "b", "c"]);
    let proxy = Proxy::start(&config_yaml(&nodes, "replicas: 2\nwrite_quorum: 2"));
    let all: Vec<&Node> = nodes.iter().collect();
    for key in tricky_keys() {
        let value = [b"value of ".as_slice(), &key].concat();
        let put = proxy.request("PUT", &kv_path(&key), &value);
        assert_eq!(put.status, 204, "PUT {key:?}: {}", put.text());
        assert_eq!(put.header("x-hrw-acks"), Some("2/2"));

        let ranked = ranking(&all, &key);
        for node in &nodes {
            let expected = ranked[..2].contains(&node.id).then(|| value.clone());
            assert_eq!(
                node.holds(&key),
                expected,
                "key {key:?} on node {}",
                node.id
            );
        }
        let get = proxy.request("GET", &kv_path(&key), b"");
        assert_eq!(get.status, 200);
        assert_eq!(get.body, value);
        assert_eq!(get.header("x-hrw-node"), Some(ranked[0].as_str()));
    }
}

#[test]
fn get_falls_back_when_the_primary_is_down() {
    let mut nodes = start_nodes(&["a", "b", "c"]);
    let proxy = Proxy::start(&config_yaml(&nodes, "replicas: 2\nwrite_quorum: 2"));
    let keys: Vec<Vec<u8>> = (0..30).map(|i| format!("k{i}").into_bytes()).collect();
    put_keys(&proxy, &keys);
    let rankings: Vec<Vec<String>> = {
        let all: Vec<&Node> = nodes.iter().collect();
        keys.iter().map(|k| ranking(&all, k)).collect()
    };
    nodes.iter_mut().find(|n| n.id == "a").unwrap().kill();
    let mut fell_back = 0;
    for (key, ranked) in keys.iter().zip(&rankings) {
        let get = proxy.request("GET", &kv_path(key), b"");
        assert_eq!(get.status, 200, "GET {key:?}: {}", get.text());
        assert_eq!(&get.body, key);
        let expected = ranked.iter().find(|id| *id != "a").unwrap();
        assert_eq!(get.header("x-hrw-node"), Some(expected.as_str()));
        fell_back += usize::from(ranked[0] == "a");
    }
    assert!(fell_back > 0, "no key had the killed node as primary");
    // A key the proxy never saw is still a clean miss while a replica is down.
    assert_eq!(proxy.request("GET", "/kv/never-written", b"").status, 404);
}

#[test]
fn every_replica_down_is_a_502_saying_what_each_did() {
    let mut nodes = start_nodes(&["a", "b"]);
    let proxy = Proxy::start(&config_yaml(&nodes, "replicas: 2\nwrite_quorum: 1"));
    nodes.iter_mut().for_each(Node::kill);
    let get = proxy.request("GET", "/kv/anything", b"");
    assert_eq!(get.status, 502, "{}", get.text());
    let body: serde_json::Value = serde_json::from_slice(&get.body).unwrap();
    let reported: Vec<&str> = body["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap())
        .collect();
    assert_eq!(reported.len(), 2, "{body}");
    assert!(
        body["nodes"][0]["result"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{body}"
    );
}

#[test]
fn strict_writes_without_quorum_answer_503_naming_the_failed_node_and_sloppy_ones_a_stand_in() {
    let mut nodes = start_nodes(&["a", "b", "c"]);
    let strict = "replicas: 2\nwrite_quorum: 2\nquorum: strict";
    let proxy = Proxy::start(&config_yaml(&nodes, strict));
    nodes.iter_mut().find(|n| n.id == "b").unwrap().kill();
    let all: Vec<&Node> = nodes.iter().collect();
    let key = (0..)
        .map(|i| format!("q{i}").into_bytes())
        .find(|k| ranking(&all, k)[..2].contains(&"b".to_string()))
        .unwrap();
    for (method, body) in [("PUT", &b"v"[..]), ("DELETE", b"")] {
        let resp = proxy.request(method, &kv_path(&key), body);
        assert_eq!(resp.status, 503, "{method}: {}", resp.text());
        assert_eq!(resp.header("x-hrw-acks"), Some("1/2"));
        let json: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        assert!(json["error"].as_str().unwrap().contains("quorum"), "{json}");
        assert_eq!(json["nodes"][0]["node"], "b", "{json}");
    }
    // Sloppy: the key's third node stands in for b, and the answer says so.
    proxy.save_in_place(&config_yaml(&nodes, "replicas: 2\nwrite_quorum: 2"));
    proxy.await_generation(2);
    let put = proxy.request("PUT", &kv_path(&key), b"v");
    assert_eq!(put.status, 204, "{}", put.text());
    assert_eq!(put.header("x-hrw-acks"), Some("2/2"));
    assert_eq!(put.header("x-hrw-stand-ins"), Some("1"));
    let third = &ranking(&all, &key)[2];
    let stand_in = nodes.iter().find(|n| &n.id == third).unwrap();
    assert_eq!(stand_in.holds(&key), Some(b"v".to_vec()));
    // With quorum 1 the same write succeeds and still says how many replicas acked.
    proxy.save_in_place(&config_yaml(
        &nodes,
        "replicas: 2\nwrite_quorum: 1\nquorum: strict",
    ));
    proxy.await_generation(3);
    let put = proxy.request("PUT", &kv_path(&key), b"v");
    assert_eq!(put.status, 204);
    assert_eq!(put.header("x-hrw-acks"), Some("1/2"));
}

#[test]
fn delete_is_idempotent_and_head_has_no_body() {
    let nodes = start_nodes(&["a", "b"]);
    let proxy = Proxy::start(&config_yaml(&nodes, ""));
    assert_eq!(proxy.request("PUT", "/kv/k", b"12345").status, 204);
    let head = proxy.request("HEAD", "/kv/k", b"");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("5"));
    assert!(head.body.is_empty());
    assert!(head.header("x-hrw-node").is_some());
    for _ in 0..2 {
        let delete = proxy.request("DELETE", "/kv/k", b"");
        assert_eq!(delete.status, 204);
        assert_eq!(delete.header("x-hrw-acks"), Some("2/2"));
    }
    assert_eq!(proxy.request("GET", "/kv/k", b"").status, 404);
    assert_eq!(proxy.request("HEAD", "/kv/k", b"").status, 404);
    for node in &nodes {
        assert_eq!(node.holds(b"k"), None);
    }
}

#[test]
fn bad_requests_get_their_status_and_one_line_why() {
    let nodes = start_nodes(&["a"]);
    let proxy = Proxy::start(&config_yaml(
        &nodes,
        "max_key_bytes: 8\nmax_value_bytes: 16",
    ));
    let cases: [(&str, &str, &[u8], u16); 8] = [
        ("POST", "/kv/k", b"", 405),
        ("PATCH", "/kv/k", b"", 405),
        ("GET", "/other", b"", 404),
        ("GET", "/kv", b"", 404),
        ("GET", "/kv/", b"", 400),
        ("GET", "/kv/a%zz", b"", 400),
        ("GET", "/kv/123456789", b"", 414),
        ("PUT", "/kv/k", &[b'x'; 17], 413),
    ];
    for (method, path, body, status) in cases {
        let resp = proxy.request(method, path, body);
        assert_eq!(resp.status, status, "{method} {path}: {}", resp.text());
        let reason = resp.text();
        assert!(
            !reason.trim().is_empty() && reason.trim_end().lines().count() == 1,
            "{method} {path}: reason {reason:?}"
        );
        if status == 405 {
            assert_eq!(resp.header("allow"), Some("GET, HEAD, PUT, DELETE"));
        }
    }
    // The limits are inclusive: 8 key bytes (after decoding) and 16 value bytes pass.
    assert_eq!(
        proxy.request("PUT", "/kv/12345%2F78", &[b'x'; 16]).status,
        204
    );
    assert_eq!(nodes[0].holds(b"12345/78"), Some(vec![b'x'; 16]));
}

/// Every write gets a newer version than the last; reads answer it as `x-hrw-version` and an
/// `ETag`; `x-hrw-r` chooses how many replicas a read waits for.
#[test]
fn versions_are_stamped_answered_and_read_quorums_chosen() {
    let nodes = start_nodes(&["a", "b", "c"]);
    let proxy = Proxy::start(&config_yaml(&nodes, "replicas: 3"));
    let mut last = 0u128;
    for round in 0..5 {
        // Acked by all three, so a read of any R sees it (with W=2, R=1 it need not).
        let value = format!("v{round}");
        let put = request_with_header(proxy.addr, "PUT", "/kv/k", "x-hrw-w: all", value.as_bytes());
        assert_eq!(put.status, 204, "{}", put.text());
        let version: u128 = put.header("x-hrw-version").unwrap().parse().unwrap();
        assert!(version > last, "round {round}: {version} after {last}");
        last = version;
        for quorum in ["1", "2", "all", "quorum"] {
            let get = request_with_header(
                proxy.addr,
                "GET",
                "/kv/k",
                &format!("x-hrw-r: {quorum}"),
                b"",
            );
            assert_eq!((get.status, get.text()), (200, format!("v{round}")));
            assert_eq!(get.header("x-hrw-version"), Some(&*version.to_string()));
            assert_eq!(get.header("etag"), Some(&*format!("\"{version:032x}\"")));
        }
        let head = proxy.request("HEAD", "/kv/k", b"");
        assert_eq!(head.header("x-hrw-version"), Some(&*version.to_string()));
    }
    for (method, header, says) in [
        ("GET", "x-hrw-r: 4", "x-hrw-r must be"),
        ("GET", "x-hrw-r: 0", "x-hrw-r must be"),
        ("PUT", "x-hrw-version: 0", "x-hrw-version must be"),
        ("PUT", "x-hrw-version: soon", "x-hrw-version must be"),
    ] {
        let resp = request_with_header(proxy.addr, method, "/kv/k", header, b"");
        assert_eq!(resp.status, 400, "{header}");
        assert!(resp.text().contains(says), "{header}: {}", resp.text());
    }
}

/// `versioning: off` stores values as sent, with no version anywhere, and says why a client
/// version is refused.
#[test]
fn versioning_off_keeps_raw_values() {
    let nodes = start_nodes(&["a", "b"]);
    let proxy = Proxy::start(&config_yaml(&nodes, "replicas: 2\nversioning: off"));
    for value in ["first", "second"] {
        let put = proxy.request("PUT", "/kv/raw", value.as_bytes());
        assert_eq!(put.status, 204, "{}", put.text());
        assert_eq!(put.header("x-hrw-version"), None);
        let get = proxy.request("GET", "/kv/raw", b"");
        assert_eq!((get.status, get.text()), (200, value.to_string()));
        assert_eq!(get.header("etag"), None);
        for node in &nodes {
            assert_eq!(
                node.holds(b"raw"),
                Some(value.as_bytes().to_vec()),
                "{}",
                node.id
            );
        }
    }
    let refused = request_with_header(proxy.addr, "PUT", "/kv/raw", "x-hrw-version: 5", b"x");
    assert_eq!(refused.status, 400);
    assert!(
        refused.text().contains("needs versioning: on"),
        "{}",
        refused.text()
    );
    assert_eq!(proxy.request("DELETE", "/kv/raw", b"").status, 204);
    assert_eq!(proxy.request("GET", "/kv/raw", b"").status, 404);
    for node in &nodes {
        assert_eq!(node.holds(b"raw"), None, "{}", node.id);
    }
}

/// A replica that lost a value with a time to live gets it back from read repair with the
/// same expiry time, so it does not outlive the others (and come back from there).
#[test]
fn read_repair_copies_keep_the_expiry_time() {
    let mut nodes = start_nodes(&["a", "b"]);
    let proxy = Proxy::start(&config_yaml(
        &nodes,
        "replicas: 2\nrepair_budget_percent: 100\nhealth_check_interval_ms: 0",
    ));
    let put = request_with_header(proxy.addr, "PUT", "/kv/k", "x-hrw-ttl: 2", b"v");
    assert_eq!(put.status, 204, "{}", put.text());
    nodes[1].kill();
    nodes[1].restart();
    let read = request_with_header(proxy.addr, "GET", "/kv/k", "x-hrw-r: all", b"");
    assert_eq!((read.status, read.text()), (200, "v".to_string()));
    wait_until("read repair", || nodes[1].holds(b"k").is_some());
    let expires = |node: &Node| {
        request(node.addr, "GET", "/kv/k", b"")
            .header("x-hrw-expires")
            .map(str::to_owned)
    };
    assert_eq!(expires(&nodes[1]), expires(&nodes[0]));
    assert!(expires(&nodes[1]).is_some());
    std::thread::sleep(std::time::Duration::from_secs(3));
    for node in &nodes {
        assert_eq!(node.holds(b"k"), None, "{} kept an expired value", node.id);
    }
    let read = request_with_header(proxy.addr, "GET", "/kv/k", "x-hrw-r: all", b"");
    assert_eq!(read.status, 404);
}
