//! Untrusted clients: connection and header limits, slow senders, smuggling and path tricks,
//! hop-by-hop headers, and a graceful shutdown that finishes requests in flight.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

/// Sends raw bytes on a new connection and reads until the server closes or `PATIENCE`.
fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn connection_header_and_body_limits_hold() {
    let nodes = start_nodes(&["a"]);
    // Idle connections wait a minute here, so the two held below cannot time out before the
    // third client comes.
    let proxy = Proxy::start(&config_yaml(
        &nodes,
        "limits: { max_connections: 2, header_read_timeout_ms: 60000 }",
    ));
    // Two idle keep-alive clients take both slots: the third is told so and closed.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(proxy.addr).unwrap();
        s.write_all(b"GET /kv/x HTTP/1.1\r\nhost: h\r\n\r\n")
            .unwrap();
        let mut buf = [0; 512];
        let _ = s.read(&mut buf).unwrap();
        held.push(s);
    }
    let third = raw(proxy.addr, b"GET /kv/x HTTP/1.1\r\nhost: h\r\n\r\n");
    assert_eq!(status_of(&third), 503, "{third}");
    assert!(third.contains("too many connections"), "{third}");
    drop(held);
    wait_until("the slots to free up", || {
        proxy.request("GET", "/kv/x", b"").status == 404
    });
}

const TIGHT: &str = "limits: { header_read_timeout_ms: 300, body_read_timeout_ms: 300, max_headers: 16, max_header_bytes: 8192 }";

#[test]
fn header_and_body_limits_hold() {
    let nodes = start_nodes(&["a"]);
    let proxy = Proxy::start(&config_yaml(&nodes, TIGHT));

    // Headers that never finish: a 408, and the connection is closed.
    let started = Instant::now();
    let slow = raw(proxy.addr, b"GET /kv/x HTTP/1.1\r\nhost: h\r\n");
    assert_eq!(status_of(&slow), 408, "{slow}");
    assert!(started.elapsed() < PATIENCE);

    // Too many headers.
    let mut many = String::from("GET /kv/x HTTP/1.1\r\nhost: h\r\n");
    for i in 0..40 {
        many.push_str(&format!("x-h{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let answer = raw(proxy.addr, many.as_bytes());
    assert_eq!(status_of(&answer), 431, "{answer}");

    // Header bytes over max_header_bytes.
    let big = format!(
        "GET /kv/x HTTP/1.1\r\nhost: h\r\nx-big: {}\r\n\r\n",
        "v".repeat(9000)
    );
    let answer = raw(proxy.addr, big.as_bytes());
    assert_eq!(status_of(&answer), 431, "{answer}");
    let fits = format!(
        "GET /kv/x HTTP/1.1\r\nhost: h\r\nconnection: close\r\nx-big: {}\r\n\r\n",
        "v".repeat(7000)
    );
    assert_eq!(status_of(&raw(proxy.addr, fits.as_bytes())), 404);

    // HTTP/1.1 needs a Host header (RFC 9112); HTTP/1.0 does not.
    let answer = raw(
        proxy.addr,
        b"GET /kv/x HTTP/1.1\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&answer), 400, "{answer}");
    assert!(answer.contains("Host"), "{answer}");
    let answer = raw(proxy.addr, b"GET /kv/x HTTP/1.0\r\n\r\n");
    assert_eq!(status_of(&answer), 404, "{answer}");

    // A body that stops arriving.
    let answer = raw(
        proxy.addr,
        b"PUT /kv/x HTTP/1.1\r\nhost: h\r\ncontent-length: 10\r\n\r\nhalf",
    );
    assert_eq!(status_of(&answer), 408, "{answer}");
    assert_eq!(nodes[0].holds(b"x"), None, "a partial body was stored");
}

#[test]
fn smuggling_and_path_tricks_never_reach_a_backend_as_another_key() {
    let nodes = start_nodes(&["a"]);
    let proxy = Proxy::start(&config_yaml(&nodes, ""));
    // Content-Length and Transfer-Encoding together: the proxy reads the body as chunked (as
    // RFC 9112 says) and closes the connection after answering, so nothing that follows can
    // be read as another request; the backend gets exactly the chunked body.
    let answer = raw(
        proxy.addr,
        b"PUT /kv/s HTTP/1.1\r\nhost: h\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /kv/smuggled HTTP/1.1\r\nhost: h\r\n\r\n",
    );
    assert_eq!(status_of(&answer), 204, "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert_eq!(
        answer.matches("HTTP/1.1").count(),
        1,
        "a smuggled request was answered: {answer}"
    );
    assert_eq!(nodes[0].holds(b"s"), Some(Vec::new()));
    for (request, status) in [
        (
            &b"PUT /kv/t HTTP/1.1\r\nhost: h\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd"
                [..],
            400,
        ),
        (
            b"PUT /kv/t HTTP/1.1\r\nhost: h\r\nx-folded: a\r\n b\r\ncontent-length: 1\r\n\r\nv",
            400,
        ),
    ] {
        let answer = raw(proxy.addr, request);
        assert_eq!(
            status_of(&answer),
            status,
            "{}\n{answer}",
            String::from_utf8_lossy(request)
        );
    }
    assert_eq!(nodes[0].holds(b"t"), None);
    // Absolute-form targets and encoded dots, slashes and NULs are just key bytes.
    for (target, key) in [
        ("http://elsewhere.example/kv/abs", &b"abs"[..]),
        ("/kv/%2e%2e", b".."),
        ("/kv/..%2F..%2Fadmin", b"../../admin"),
        ("/kv/a%00b", b"a\0b"),
        ("/kv/%0D%0Ahost:%20evil", b"\r\nhost: evil"),
    ] {
        let request = format!(
            "PUT {target} HTTP/1.1\r\nhost: h\r\nconnection: close\r\ncontent-length: 1\r\n\r\nv"
        );
        let answer = raw(proxy.addr, request.as_bytes());
        assert_eq!(status_of(&answer), 204, "{target}: {answer}");
        assert_eq!(nodes[0].holds(key), Some(b"v".to_vec()), "{target}");
    }
}

#[test]
fn hop_by_hop_and_client_headers_are_never_forwarded() {
    let (node, captured) = capture_one_request();
    let proxy = Proxy::start(&format!(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nhealth_check_interval_ms: 0\nhints: {{ scan_interval_s: 0 }}\nnodes:\n  - {{ id: n, url: \"http://{node}\" }}\n"
    ));
    let request = "PUT /kv/k HTTP/1.1\r\nhost: h\r\nconnection: keep-alive, x-secret\r\nx-secret: 1\r\nte: trailers\r\nupgrade: h2c\r\nproxy-authorization: Basic eA==\r\nkeep-alive: timeout=5\r\ncookie: c=1\r\ncontent-length: 1\r\n\r\nv";
    let answer = raw_until_status(proxy.addr, request.as_bytes());
    assert_eq!(status_of(&answer), 204, "{answer}");
    let head = captured.join().unwrap();
    let names: Vec<&str> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':').map(|(n, _)| n))
        .collect();
    assert_eq!(
        names,
        [
            "host",
            "content-length",
            "x-hrw-version",
            "x-request-id",
            "x-hrw-via"
        ],
        "{head}"
    );
}

/// Sends a request and reads just until a status line arrives (the connection stays open).
fn raw_until_status(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(bytes).unwrap();
    let mut buf = [0; 1024];
    let n = stream.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn sigterm_finishes_requests_in_flight_then_exits_zero() {
    let nodes = start_nodes(&["a"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(CONFIG_NAME);
    write_file(
        &path,
        &config_yaml(
            &nodes,
            "limits: { shutdown_grace_ms: 5000 }\ntimeouts: { request_ms: 5000 }\neject_after: 0",
        ),
    );
    let (mut proxy, addrs) = spawn_listening_all(&["serve", "--config", path.to_str().unwrap()], 2);
    assert_eq!(request(addrs[0], "PUT", "/kv/k", b"v").status, 204);
    nodes[0].signal("STOP");
    let data = addrs[0];
    let in_flight = std::thread::spawn(move || request(data, "GET", "/kv/k", b""));
    wait_until("the GET to be in flight", || {
        let nodes: serde_json::Value =
            serde_json::from_slice(&request(addrs[1], "GET", "/admin/nodes", b"").body).unwrap();
        nodes[0]["in_flight"] == 1
    });
    let pid = proxy.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    wait_until("the listener to close", || {
        TcpStream::connect(addrs[0]).is_err()
    });
    nodes[0].signal("CONT");
    let answer = in_flight.join().unwrap();
    assert_eq!((answer.status, answer.body.as_slice()), (200, &b"v"[..]));
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = proxy.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the proxy did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}");
}

#[test]
fn bearer_tokens_guard_both_listeners_and_reload_with_the_config() {
    let nodes = start_nodes(&["a"]);
    let dir = tempfile::tempdir().unwrap();
    write_file(&dir.path().join("data.token"), "data-secret\n");
    write_file(&dir.path().join("admin.token"), "admin-secret");
    let auth = "auth: { data_token_file: data.token, admin_token_file: admin.token }";
    write_file(&dir.path().join(CONFIG_NAME), &config_yaml(&nodes, auth));
    let proxy = Proxy::start_in(dir);
    let with = |token: &str| format!("authorization: Bearer {token}");
    let admin_reload = || {
        let auth = with("admin-secret");
        request_with_header(proxy.admin_addr, "POST", "/admin/reload", &auth, b"")
    };
    let denied = proxy.request("PUT", "/kv/k", b"v");
    assert_eq!(denied.status, 401, "{}", denied.text());
    assert_eq!(denied.header("www-authenticate"), Some("Bearer"));
    assert_eq!(
        request_with_header(proxy.addr, "PUT", "/kv/k", &with("wrong"), b"v").status,
        401
    );
    assert_eq!(
        request_with_header(proxy.addr, "PUT", "/kv/k", &with("data-secret"), b"v").status,
        204
    );
    assert_eq!(proxy.admin("GET", "/admin/config").status, 401);
    let admin = request_with_header(
        proxy.admin_addr,
        "GET",
        "/admin/config",
        &with("admin-secret"),
        b"",
    );
    assert_eq!(admin.status, 200);
    assert!(
        !admin.text().contains("secret"),
        "a token leaked: {}",
        admin.text()
    );

    // A new token applies with the next reload, though the YAML did not change.
    write_file(&proxy.dir().join("data.token"), "rotated");
    let reload = admin_reload();
    assert_eq!(reload.status, 200, "{}", reload.text());
    assert!(
        reload.text().contains("\"changed\":true"),
        "{}",
        reload.text()
    );
    assert_eq!(proxy.generation(), 2);
    assert_eq!(
        request_with_header(proxy.addr, "GET", "/kv/k", &with("data-secret"), b"").status,
        401
    );
    assert_eq!(
        request_with_header(proxy.addr, "GET", "/kv/k", &with("rotated"), b"").status,
        200
    );
    // The scheme is case-insensitive.
    let lower = request_with_header(
        proxy.addr,
        "GET",
        "/kv/k",
        "authorization: bearer rotated",
        b"",
    );
    assert_eq!(lower.status, 200);

    // A token file that is missing rejects the config; the old one keeps serving.
    proxy.save_in_place(&config_yaml(
        &nodes,
        "auth: { data_token_file: nowhere.token }",
    ));
    wait_until("the rejection", || {
        proxy.handle.status().last_error.is_some()
    });
    let error = proxy.handle.status().last_error.unwrap().0.to_string();
    assert!(error.contains("auth.data_token_file"), "{error}");
    assert_eq!(proxy.generation(), 2);
    // The file appears: the next reload applies the config, no edit needed.
    write_file(&proxy.dir().join("nowhere.token"), "found");
    let reload = admin_reload();
    assert_eq!(reload.status, 200, "{}", reload.text());
    assert_eq!(
        request_with_header(proxy.addr, "GET", "/kv/k", &with("found"), b"").status,
        200
    );
}

#[test]
fn a_slow_upload_is_not_a_slow_write() {
    let nodes = start_nodes(&["a"]);
    // The deadline (300 ms) is shorter than the upload; it covers the work once the body is in.
    let proxy = Proxy::start(&config_yaml(&nodes, "timeouts: { deadline_ms: 300 }"));
    let mut stream = TcpStream::connect(proxy.addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
        .write_all(b"PUT /kv/slow HTTP/1.1\r\nhost: h\r\nconnection: close\r\ncontent-length: 6\r\n\r\nhal")
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    stream.write_all(b"ves").unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert_eq!(status_of(&answer), 204, "{answer}");
    assert_eq!(nodes[0].holds(b"slow"), Some(b"halves".to_vec()));
}

#[test]
fn a_node_that_leads_back_to_the_proxy_is_a_loop_refused_at_once() {
    let port = reserved_port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(CONFIG_NAME);
    write_file(
        &path,
        &format!("listen: 127.0.0.1:{port}\nadmin: 127.0.0.1:0\nhealth_check_interval_ms: 0\nnodes:\n  - {{ id: itself, url: \"http://127.0.0.1:{port}\" }}\n"),
    );
    let mut child = Command::new(BIN)
        .args(["serve", "--config", path.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let proxy = ChildGuard(child);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_until("the proxy to listen", || TcpStream::connect(addr).is_ok());
    for method in ["PUT", "GET", "DELETE"] {
        let answer = request_with_header(addr, method, "/kv/k", "x-request-id: loop-1", b"v");
        assert_eq!(answer.status, 508, "{method}: {}", answer.text());
        assert!(answer.text().contains("loop detected"), "{}", answer.text());
        assert_eq!(answer.header("x-request-id"), Some("loop-1"));
    }
    // A client's via list that is not proxy ids is refused, not forwarded.
    let forged = request_with_header(addr, "GET", "/kv/k", "x-hrw-via: <anything>", b"");
    assert_eq!(forged.status, 400, "{}", forged.text());
    // Two hops per request, not thousands: the proxy holds a handful of descriptors.
    let open = std::fs::read_dir(format!("/proc/{}/fd", proxy.0.id()))
        .unwrap()
        .count();
    assert!(open < 64, "{open} descriptors open");
    drop(proxy);
    let log = log.join().unwrap();
    assert!(log.contains("loop detected"), "{log}");
}

/// The responses on one connection, in order: (status, head, body); a HEAD's has no body.
fn responses(mut stream: TcpStream, methods: &[&str]) -> Vec<(u16, String, Vec<u8>)> {
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let mut answers = Vec::new();
    let mut rest = &bytes[..];
    for method in methods {
        let end = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no response to {method}: {bytes:?}"))
            + 4;
        let head = String::from_utf8_lossy(&rest[..end]).to_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |n| n.trim().parse().unwrap());
        let length = if *method == "HEAD" { 0 } else { length };
        answers.push((status_of(&head), head, rest[end..end + length].to_vec()));
        rest = &rest[end + length..];
    }
    assert!(
        rest.is_empty(),
        "more than asked for: {:?}",
        String::from_utf8_lossy(rest)
    );
    answers
}

#[test]
fn pipelined_chunked_and_head_requests_are_answered_in_order_on_one_connection() {
    let nodes = start_nodes(&["a"]);
    let proxy = Proxy::start(&config_yaml(&nodes, ""));
    let mut stream = TcpStream::connect(proxy.addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
        .write_all(concat!(
            "PUT /kv/a HTTP/1.1\r\nhost: h\r\ncontent-length: 1\r\n\r\n1",
            "PUT /kv/b HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n2;x=y\r\nbb\r\n1\r\nb\r\n0\r\ntrailer: t\r\n\r\n",
            "GET /kv/a HTTP/1.1\r\nhost: h\r\n\r\n",
            "HEAD /kv/b HTTP/1.1\r\nhost: h\r\n\r\n",
            "GET /kv/missing HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n",
        ).as_bytes())
        .unwrap();
    let answers = responses(stream, &["PUT", "PUT", "GET", "HEAD", "GET"]);
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert_eq!(statuses, [204, 204, 200, 200, 404]);
    assert_eq!(answers[2].2, b"1");
    assert!(
        answers[3].1.contains("content-length: 3\r\n"),
        "{}",
        answers[3].1
    );
    assert!(
        answers[4].1.contains("connection: close"),
        "{}",
        answers[4].1
    );
    assert_eq!(nodes[0].holds(b"b"), Some(b"bbb".to_vec()));
}

#[test]
fn a_body_the_proxy_does_not_read_ends_the_connection_and_smuggles_nothing() {
    let nodes = start_nodes(&["a"]);
    let proxy = Proxy::start(&config_yaml(&nodes, ""));
    let answer = raw(
        proxy.addr,
        b"GET /kv/x HTTP/1.1\r\nhost: h\r\ncontent-length: 40\r\n\r\nPUT /kv/y HTTP/1.1\r\nhost: h\r\n\r\n",
    );
    assert_eq!(status_of(&answer), 404, "{answer}");
    assert_eq!(answer.matches("HTTP/1.1").count(), 1, "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    // A body declared too large is refused before it is read, and so ends the connection.
    let answer = raw(
        proxy.addr,
        b"PUT /kv/x HTTP/1.1\r\nhost: h\r\ncontent-length: 999999999\r\n\r\nGET /kv/x HTTP/1.1\r\nhost: h\r\n\r\n",
    );
    assert_eq!(status_of(&answer), 413, "{answer}");
    assert_eq!(answer.matches("HTTP/1.1").count(), 1, "{answer}");
    assert_eq!(nodes[0].holds(b"y"), None);
}

#[test]
fn clients_that_wait_for_continue_trickle_bytes_or_speak_http_1_0_are_served() {
    let nodes = start_nodes(&["a"]);
    let proxy = Proxy::start(&config_yaml(&nodes, ""));
    // Expect: 100-continue, as curl sends for bodies over 1 KiB: the go-ahead, then the answer.
    let mut stream = TcpStream::connect(proxy.addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
        .write_all(
            b"PUT /kv/c HTTP/1.1\r\nhost: h\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\r\n",
        )
        .unwrap();
    let mut go_ahead = [0; 25];
    stream.read_exact(&mut go_ahead).unwrap();
    assert_eq!(&go_ahead, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"hello").unwrap();
    assert_eq!(status_of(&raw_read(&mut stream)), 204);
    assert_eq!(nodes[0].holds(b"c"), Some(b"hello".to_vec()));

    // One byte per write: the head and body come together across many reads.
    let mut stream = TcpStream::connect(proxy.addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_nodelay(true).unwrap();
    for byte in b"PUT /kv/d HTTP/1.1\r\nhost: h\r\ncontent-length: 2\r\n\r\nok" {
        stream.write_all(&[*byte]).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(status_of(&raw_read(&mut stream)), 204);
    assert_eq!(nodes[0].holds(b"d"), Some(b"ok".to_vec()));

    // HTTP/1.0 with keep-alive: told it stays, and it does.
    let mut stream = TcpStream::connect(proxy.addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    for _ in 0..2 {
        stream
            .write_all(b"GET /kv/c HTTP/1.0\r\nconnection: keep-alive\r\n\r\n")
            .unwrap();
        let answer = raw_read(&mut stream);
        assert_eq!(status_of(&answer), 200, "{answer}");
        assert!(
            answer.to_lowercase().contains("connection: keep-alive"),
            "{answer}"
        );
        assert!(answer.ends_with("hello"), "{answer}");
    }
}

/// Reads what one read returns: a whole small response on loopback.
fn raw_read(stream: &mut TcpStream) -> String {
    let mut buf = [0; 4096];
    let n = stream.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn bodies_that_are_declared_but_never_sent_cost_no_memory() {
    let nodes = start_nodes(&["a"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(CONFIG_NAME);
    write_file(
        &path,
        &config_yaml(&nodes, "limits: { body_read_timeout_ms: 60000 }"),
    );
    let (proxy, addrs) = spawn_listening_all(&["serve", "--config", path.to_str().unwrap()], 2);
    let rss_kib = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", proxy.0.id())).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .unwrap()
            .to_owned();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    // One whole value first: after it, glibc serves blocks of that size from its heap,
    // where a buffer allocated up front would be written (and resident) at once.
    let value = vec![b'v'; 8388608];
    assert_eq!(request(addrs[0], "PUT", "/kv/big", &value).status, 204);
    let before = rss_kib();
    // 100 clients each declare the whole value limit (8 MiB) and send one byte of it.
    let held: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = TcpStream::connect(addrs[0]).unwrap();
            s.write_all(b"PUT /kv/big HTTP/1.1\r\nhost: h\r\ncontent-length: 8388608\r\n\r\nv")
                .unwrap();
            s
        })
        .collect();
    // Time for every head to be read and its body awaited.
    std::thread::sleep(Duration::from_millis(1000));
    let grown = rss_kib().saturating_sub(before);
    assert!(grown < 64 * 1024, "100 waiting bodies took {grown} KiB");
    // Each of them is still served once its body is all there.
    let mut first = held.into_iter().next().unwrap();
    first.write_all(&vec![b'v'; 8388607]).unwrap();
    first.set_read_timeout(Some(PATIENCE)).unwrap();
    assert_eq!(status_of(&raw_read(&mut first)), 204);
    assert_eq!(nodes[0].holds(b"big").map(|v| v.len()), Some(8388608));
}
