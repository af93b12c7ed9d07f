//! The memcached front door with real clients: raw text-protocol sessions and libmemcached's
//! command-line clients (`memccp`, `memccat`, `memcrm`) against a proxy child process.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;

use crate::servers::ensure_installed;
use crate::support::*;

/// A proxy child with `memcache_listen`; its HTTP and memcached addresses.
fn proxy_with_memcache(
    nodes: &[Node],
    settings: &str,
) -> (ChildGuard, SocketAddr, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(CONFIG_NAME);
    let settings = format!("memcache_listen: 127.0.0.1:0\n{settings}");
    write_file(&path, &config_yaml(nodes, &settings));
    let (proxy, addrs) = spawn_listening_all(&["serve", "--config", path.to_str().unwrap()], 3);
    (proxy, addrs[0], addrs[2], dir)
}

/// Sends `input` and a `quit`, and returns everything answered until the proxy closes.
pub fn session(addr: SocketAddr, input: &[u8]) -> String {
    let mut raw = TcpStream::connect(addr).unwrap();
    raw.set_read_timeout(Some(PATIENCE)).unwrap();
    raw.write_all(input).unwrap();
    raw.write_all(b"quit\r\n").unwrap();
    let mut answer = Vec::new();
    raw.read_to_end(&mut answer).unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn memcached_clients_read_and_write_through_the_memcache_door() {
    let nodes = start_nodes(&["a", "b", "c"]);
    let (_proxy, http, mc, _dir) = proxy_with_memcache(
        &nodes,
        "replicas: 2\nmax_value_bytes: 1000\nmax_key_bytes: 100",
    );

    // Storage commands and their answers; flags come back as they were given.
    let answer = session(
        mc,
        b"set k 0 0 5\r\nhello\r\nget k\r\nset f 42 0 3\r\na\r\n\r\nget f k missing\r\n\
          add k 0 0 1\r\nx\r\nadd new 0 0 1\r\nn\r\nreplace gone 0 0 1\r\nx\r\n\
          replace k 7 0 2\r\nhi\r\nget k\r\ndelete new\r\ndelete new\r\nget new\r\n",
    );
    assert_eq!(
        answer,
        "STORED\r\nVALUE k 0 5\r\nhello\r\nEND\r\nSTORED\r\n\
         VALUE f 42 3\r\na\r\n\r\nVALUE k 0 5\r\nhello\r\nEND\r\n\
         NOT_STORED\r\nSTORED\r\nNOT_STORED\r\nSTORED\r\nVALUE k 7 2\r\nhi\r\nEND\r\n\
         DELETED\r\nNOT_FOUND\r\nEND\r\n"
    );
    // A value written with flags 0 is the bytes HTTP clients read, and the other way round.
    session(mc, b"set plain 0 0 4\r\nv\r\nw\r\n");
    assert_eq!(request(http, "GET", "/kv/plain", b"").body, b"v\r\nw");
    request(http, "PUT", "/kv/from-http", b"over http");
    assert_eq!(
        session(mc, b"get from-http\r\n"),
        "VALUE from-http 0 9\r\nover http\r\nEND\r\n"
    );

    // gets: a unique that changes when the value is written again.
    let unique = |answer: &str| {
        answer
            .lines()
            .next()
            .unwrap()
            .rsplit(' ')
            .next()
            .unwrap()
            .to_owned()
    };
    let first = unique(&session(mc, b"gets plain\r\n"));
    session(mc, b"set plain 0 0 1\r\nx\r\n");
    let second = session(mc, b"gets plain\r\n");
    assert!(second.starts_with("VALUE plain 0 1 "), "{second}");
    assert_ne!(unique(&second), first);

    // Expiry: touch sets it; a negative exptime deletes; an expired value is gone.
    assert_eq!(
        session(
            mc,
            b"touch plain 1\r\ntouch nothing 10\r\nset soon 0 -1 1\r\nx\r\nget soon\r\n"
        ),
        "TOUCHED\r\nNOT_FOUND\r\nSTORED\r\nEND\r\n"
    );
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(session(mc, b"get plain\r\n"), "END\r\n");

    // noreply: nothing comes back, and what follows in the pipeline sees the writes.
    let mut pipeline = Vec::new();
    for i in 0..50 {
        pipeline.extend_from_slice(format!("set p{i} {i} 0 2 noreply\r\n{i:02}\r\n").as_bytes());
    }
    pipeline.extend_from_slice(b"get p0 p7 p49\r\ndelete p7 noreply\r\nget p7\r\n");
    assert_eq!(
        session(mc, &pipeline),
        "VALUE p0 0 2\r\n00\r\nVALUE p7 7 2\r\n07\r\nVALUE p49 49 2\r\n49\r\nEND\r\nEND\r\n"
    );

    // Bad requests are answered and the connection goes on; the value over the limit is
    // read past, not taken for commands.
    let too_large = format!("set big 0 0 2000\r\n{}\r\n", "x".repeat(2000));
    let mut bad = Vec::from(&b"incr k 1\r\nset k zero 0 1\r\n"[..]);
    bad.extend_from_slice(too_large.as_bytes());
    bad.extend_from_slice(
        format!(
            "get {}\r\nset k 0 0 1\r\nabc\r\nversion\r\n",
            "k".repeat(101)
        )
        .as_bytes(),
    );
    assert_eq!(
        session(mc, &bad),
        format!(
            "ERROR\r\nCLIENT_ERROR bad command line format\r\n\
             SERVER_ERROR object too large for cache\r\n\
             CLIENT_ERROR key is 101 bytes; the limit is 100\r\n\
             CLIENT_ERROR bad data chunk\r\nERROR\r\nVERSION {}\r\n",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert_eq!(session(mc, b"get big\r\n"), "END\r\n");
    // A value that fits the limit only without its flags is refused as too large; with
    // noreply, silently, and the next answer is the next command's.
    let near = format!(
        "set near 1 0 995 noreply\r\n{}\r\nget near\r\n",
        "n".repeat(995)
    );
    assert_eq!(session(mc, near.as_bytes()), "END\r\n");
}

#[test]
fn libmemcached_clients_work_through_the_memcache_door() {
    ensure_installed();
    let nodes = start_nodes(&["a", "b"]);
    let (_proxy, http, mc, dir) = proxy_with_memcache(&nodes, "");
    let servers = format!("--servers={mc}");
    let file = dir.path().join("notes.txt");
    write_file(&file, "copied by memccp\n");
    let run = |args: &[&str]| {
        let out = Command::new(args[0])
            .args(&args[1..])
            .output()
            .unwrap_or_else(|e| panic!("{} runs: {e}", args[0]));
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    run(&[
        "memccp",
        &servers,
        "--flags=9",
        "--basename",
        file.to_str().unwrap(),
    ]);
    // memccat ends what it prints with a newline of its own.
    assert_eq!(
        run(&["memccat", &servers, "notes.txt"]),
        "copied by memccp\n\n"
    );
    let with_flags = run(&["memccat", &servers, "-F", "notes.txt"]);
    assert!(with_flags.contains('9'), "{with_flags:?}");
    // The flags are kept in front of the value: an HTTP reader sees them (documented).
    let stored = request(http, "GET", "/kv/notes.txt", b"").body;
    assert!(stored.ends_with(b"copied by memccp\n"), "{stored:?}");
    run(&["memcrm", &servers, "notes.txt"]);
    assert_eq!(request(http, "GET", "/kv/notes.txt", b"").status, 404);
    let missing = Command::new("memccat")
        .args([&servers, "notes.txt"])
        .output()
        .unwrap();
    assert!(
        !missing.status.success(),
        "a removed key is not found: {missing:?}"
    );
}

#[test]
fn the_memcache_door_asks_for_the_data_token() {
    let nodes = start_nodes(&["a"]);
    let dir = tempfile::tempdir().unwrap();
    write_file(&dir.path().join("data.token"), "s3cret\n");
    let path = dir.path().join(CONFIG_NAME);
    let settings = "memcache_listen: 127.0.0.1:0\nauth: { data_token_file: data.token }";
    write_file(&path, &config_yaml(&nodes, settings));
    let (_proxy, addrs) = spawn_listening_all(&["serve", "--config", path.to_str().unwrap()], 3);
    assert_eq!(
        session(
            addrs[2],
            b"get k\r\nset auth 0 0 10\r\nuser wrong\r\nset auth 0 0 11\r\nuser s3cret\r\n\
              set k 0 0 1\r\nv\r\nget k\r\n"
        ),
        "CLIENT_ERROR unauthenticated\r\nCLIENT_ERROR authentication failure\r\nSTORED\r\n\
         STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n"
    );
    // The door's reads and writes count as the HTTP requests they stand for; logins do not.
    let scrape = request(addrs[1], "GET", "/metrics", b"").text();
    for series in [
        "hrw_requests_total{op=\"put\",status=\"204\"} 1",
        "hrw_requests_total{op=\"get\",status=\"200\"} 1",
    ] {
        assert!(scrape.contains(series), "{series} in {scrape}");
    }
}
