//! The Redis front door with real clients: the `redis` crate and `redis-cli` against a proxy
//! child process in front of built-in nodes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;

use crate::support::*;

/// A proxy child with `resp_listen`; its HTTP and RESP addresses.
fn proxy_with_resp(
    nodes: &[Node],
    settings: &str,
) -> (ChildGuard, SocketAddr, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(CONFIG_NAME);
    let settings = format!("resp_listen: 127.0.0.1:0\n{settings}");
    write_file(&path, &config_yaml(nodes, &settings));
    let (proxy, addrs) = spawn_listening_all(&["serve", "--config", path.to_str().unwrap()], 3);
    (proxy, addrs[0], addrs[2], dir)
}

fn connect(addr: SocketAddr) -> redis::Connection {
    let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
    client.get_connection().unwrap()
}

fn cmd(con: &mut redis::Connection, args: &[&[u8]]) -> redis::RedisResult<redis::Value> {
    let mut c = redis::cmd(std::str::from_utf8(args[0]).unwrap());
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query(con)
}

fn bulk(value: &[u8]) -> redis::Value {
    redis::Value::BulkString(value.to_vec())
}

#[test]
fn redis_clients_read_and_write_through_the_resp_door() {
    let nodes = start_nodes(&["a", "b", "c"]);
    let (_proxy, http, resp, _dir) = proxy_with_resp(&nodes, "replicas: 2\nmax_value_bytes: 1000");
    let mut con = connect(resp);
    use redis::Value::{Array, Int, Nil, Okay};
    assert_eq!(cmd(&mut con, &[b"SET", b"k", b"v"]).unwrap(), Okay);
    assert_eq!(cmd(&mut con, &[b"GET", b"k"]).unwrap(), bulk(b"v"));
    // Written through RESP, read over HTTP: the same data path and placement.
    assert_eq!(request(http, "GET", "/kv/k", b"").text(), "v");
    let binary: &[u8] = b"a\r\nb\0c";
    assert_eq!(
        cmd(&mut con, &[b"SET", b"bin\r\nkey", binary]).unwrap(),
        Okay
    );
    assert_eq!(
        cmd(&mut con, &[b"GET", b"bin\r\nkey"]).unwrap(),
        bulk(binary)
    );

    // Many keys: split over the nodes, answered in order.
    assert_eq!(
        cmd(&mut con, &[b"MSET", b"m1", b"1", b"m2", b"2", b"m3", b"3"]).unwrap(),
        Okay
    );
    assert_eq!(
        cmd(&mut con, &[b"MGET", b"m1", b"none", b"m3", b"m2"]).unwrap(),
        Array(vec![bulk(b"1"), Nil, bulk(b"3"), bulk(b"2")])
    );
    assert_eq!(
        cmd(&mut con, &[b"EXISTS", b"m1", b"m2", b"none"]).unwrap(),
        Int(2)
    );
    assert_eq!(
        cmd(&mut con, &[b"DEL", b"m1", b"m2", b"none"]).unwrap(),
        Int(2)
    );
    assert_eq!(cmd(&mut con, &[b"GET", b"m1"]).unwrap(), Nil);
    assert_eq!(request(http, "GET", "/kv/m2", b"").status, 404);

    // SET's options and GETDEL.
    assert_eq!(
        cmd(&mut con, &[b"SET", b"s", b"1", b"EX", b"100"]).unwrap(),
        Okay
    );
    assert_eq!(cmd(&mut con, &[b"SET", b"s", b"2", b"NX"]).unwrap(), Nil);
    assert_eq!(
        cmd(&mut con, &[b"SET", b"s", b"3", b"XX", b"GET"]).unwrap(),
        bulk(b"1")
    );
    assert_eq!(
        cmd(&mut con, &[b"SET", b"fresh", b"x", b"XX"]).unwrap(),
        Nil
    );
    assert_eq!(cmd(&mut con, &[b"GETDEL", b"s"]).unwrap(), bulk(b"3"));
    assert_eq!(cmd(&mut con, &[b"GET", b"s"]).unwrap(), Nil);
    let ttl = cmd(&mut con, &[b"SET", b"s", b"1", b"EX", b"0"]).unwrap_err();
    assert!(ttl.to_string().contains("invalid expire time"), "{ttl}");

    // A pipeline: every reply, in order, and overwrites of one key seen in order.
    let mut pipe = redis::pipe();
    for i in 0..200 {
        pipe.cmd("SET").arg("p").arg(i).cmd("GET").arg("p");
    }
    let replies: Vec<redis::Value> = pipe.query(&mut con).unwrap();
    for (i, pair) in replies.chunks(2).enumerate() {
        assert_eq!(pair, [Okay, bulk(i.to_string().as_bytes())]);
    }

    // Refusals keep the connection.
    let unknown = cmd(&mut con, &[b"FLUSHALL"]).unwrap_err();
    assert!(
        unknown.to_string().contains("unknown command 'FLUSHALL'"),
        "{unknown}"
    );
    let over_the_value_limit = vec![b'v'; 1010];
    let too_big = cmd(&mut con, &[b"SET", b"big", &over_the_value_limit]).unwrap_err();
    assert!(
        too_big.to_string().contains("the limit is 1000"),
        "{too_big}"
    );
    // Over every argument limit: refused as it streams past, never buffered.
    let big = vec![b'v'; 200_000];
    let too_big = cmd(&mut con, &[b"SET", b"big", &big]).unwrap_err();
    assert!(
        too_big
            .to_string()
            .contains("argument of 200000 bytes; the limit is 1024"),
        "{too_big}"
    );
    let arity = cmd(&mut con, &[b"GET"]).unwrap_err();
    assert!(
        arity.to_string().contains("wrong number of arguments"),
        "{arity}"
    );
    assert_eq!(
        cmd(&mut con, &[b"PING"]).unwrap(),
        redis::Value::SimpleString("PONG".into())
    );
    assert_eq!(cmd(&mut con, &[b"GET", b"big"]).unwrap(), Nil);

    // redis-cli, and RESP3 after HELLO 3.
    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &resp.port().to_string()])
            .args(args)
            .output()
            .expect("redis-cli (the redis-tools package) runs");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(cli(&["SET", "cli", "hello world"]), "OK");
    assert_eq!(cli(&["GET", "cli"]), "hello world");
    assert_eq!(
        cli(&["--no-raw", "MGET", "cli", "none"]),
        "1) \"hello world\"\n2) (nil)"
    );
    let mut raw = TcpStream::connect(resp).unwrap();
    raw.set_read_timeout(Some(PATIENCE)).unwrap();
    raw.write_all(b"HELLO 3\r\nGET none\r\nQUIT\r\n").unwrap();
    let mut answer = String::new();
    raw.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("%7\r\n$6\r\nserver\r\n$8\r\nhrwproxy\r\n"),
        "{answer}"
    );
    assert!(
        answer.ends_with("_\r\n+OK\r\n"),
        "RESP3 null, then QUIT's OK: {answer}"
    );

    // Expiry: TTL reports it, EXPIRE sets it, EXPIRE 0 deletes.
    assert_eq!(cmd(&mut con, &[b"SET", b"ttl", b"v"]).unwrap(), Okay);
    assert_eq!(cmd(&mut con, &[b"TTL", b"ttl"]).unwrap(), Int(-1));
    assert_eq!(cmd(&mut con, &[b"TTL", b"no-such"]).unwrap(), Int(-2));
    assert_eq!(cmd(&mut con, &[b"EXPIRE", b"ttl", b"100"]).unwrap(), Int(1));
    let left = cmd(&mut con, &[b"TTL", b"ttl"]).unwrap();
    assert!(matches!(left, Int(99 | 100)), "{left:?}");
    assert_eq!(cmd(&mut con, &[b"GET", b"ttl"]).unwrap(), bulk(b"v"));
    assert_eq!(
        cmd(&mut con, &[b"EXPIRE", b"no-such", b"5"]).unwrap(),
        Int(0)
    );
    assert_eq!(cmd(&mut con, &[b"EXPIRE", b"ttl", b"0"]).unwrap(), Int(1));
    assert_eq!(cmd(&mut con, &[b"GET", b"ttl"]).unwrap(), Nil);

    // With a node killed, every key is still read from its other replica.
    let keys: Vec<String> = (0..50).map(|i| format!("spread-{i}")).collect();
    for key in &keys {
        assert_eq!(
            cmd(&mut con, &[b"SET", key.as_bytes(), key.as_bytes()]).unwrap(),
            Okay
        );
    }
    let mut nodes = nodes;
    nodes[0].kill();
    for key in &keys {
        assert_eq!(
            cmd(&mut con, &[b"GET", key.as_bytes()]).unwrap(),
            bulk(key.as_bytes()),
            "{key}"
        );
    }
}

#[test]
fn the_resp_door_asks_for_the_data_token() {
    let nodes = start_nodes(&["a"]);
    let dir = tempfile::tempdir().unwrap();
    write_file(&dir.path().join("data.token"), "s3cret\n");
    let path = dir.path().join(CONFIG_NAME);
    let settings = "resp_listen: 127.0.0.1:0\nauth: { data_token_file: data.token }";
    write_file(&path, &config_yaml(&nodes, settings));
    let (_proxy, addrs) = spawn_listening_all(&["serve", "--config", path.to_str().unwrap()], 3);
    let mut raw = TcpStream::connect(addrs[2]).unwrap();
    raw.set_read_timeout(Some(PATIENCE)).unwrap();
    raw.write_all(b"GET k\r\nAUTH wrong\r\nAUTH s3cret\r\nSET k v\r\nGET k\r\nQUIT\r\n")
        .unwrap();
    let mut answer = String::new();
    raw.read_to_string(&mut answer).unwrap();
    assert_eq!(
        answer,
        "-NOAUTH Authentication required.\r\n-WRONGPASS invalid username-password pair or user is disabled.\r\n+OK\r\n+OK\r\n$1\r\nv\r\n+OK\r\n"
    );
}

#[test]
fn both_doors_front_a_mixed_cluster_of_builtin_redis_and_memcached_nodes() {
    use crate::servers::{Kind, Server};
    let builtin = Node::start("b");
    let mut redis = Server::start(Kind::Redis);
    let memcached = Server::start(Kind::Memcached);
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nresp_listen: 127.0.0.1:0\nmemcache_listen: 127.0.0.1:0\nreplicas: 3\nhealth_check_interval_ms: 0\nnodes:\n  - {{ id: b, url: \"http://{}\" }}\n  - {{ id: r, url: \"{}\" }}\n  - {{ id: m, url: \"{}\" }}\n",
        builtin.addr,
        redis.url(),
        memcached.url()
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(CONFIG_NAME);
    write_file(&path, &yaml);
    let (_proxy, addrs) = spawn_listening_all(&["serve", "--config", path.to_str().unwrap()], 4);
    let (mut con, memcache) = (connect(addrs[2]), addrs[3]);
    let keys: Vec<String> = (0..20).map(|i| format!("mixed-{i}")).collect();
    let mut mset: Vec<&[u8]> = vec![b"MSET"];
    for key in &keys {
        mset.extend([key.as_bytes(), key.as_bytes()]);
    }
    assert_eq!(cmd(&mut con, &mset).unwrap(), redis::Value::Okay);
    // r = 3 of 3 nodes: every node of every kind holds every key, in its own form (the
    // third write may still be on its way after the answer at W = 2).
    for key in &keys {
        let k = key.as_bytes();
        wait_until(&format!("every node holds {key}"), || {
            builtin.holds(k).as_deref() == Some(k)
                && redis.holds(k).and_then(|s| s.value).as_deref() == Some(k)
                && memcached.holds(k).and_then(|s| s.value).as_deref() == Some(k)
        });
    }
    // Redis gone: reads (R = 2) are answered by the other two kinds.
    redis.stop();
    let mut mget: Vec<&[u8]> = vec![b"MGET"];
    mget.extend(keys.iter().map(|k| k.as_bytes()));
    let expected: Vec<redis::Value> = keys.iter().map(|k| bulk(k.as_bytes())).collect();
    assert_eq!(cmd(&mut con, &mget).unwrap(), redis::Value::Array(expected));
    // The memcached door reads the same keys, and what it writes Redis clients read.
    let get = format!("get {} {}\r\nset from-mc 0 0 2\r\nmc\r\n", keys[1], keys[2]);
    assert_eq!(
        crate::memcache::session(memcache, get.as_bytes()),
        format!(
            "VALUE {a} 0 {}\r\n{a}\r\nVALUE {b} 0 {}\r\n{b}\r\nEND\r\nSTORED\r\n",
            keys[1].len(),
            keys[2].len(),
            a = keys[1],
            b = keys[2]
        )
    );
    assert_eq!(cmd(&mut con, &[b"GET", b"from-mc"]).unwrap(), bulk(b"mc"));
    // A delete at the ack level (2 of 3) reaches the nodes still up.
    assert_eq!(
        cmd(&mut con, &[b"DEL", keys[0].as_bytes()]).unwrap(),
        redis::Value::Int(1)
    );
    assert_eq!(
        cmd(&mut con, &[b"GET", keys[0].as_bytes()]).unwrap(),
        redis::Value::Nil
    );
    assert_eq!(
        memcached.holds(keys[0].as_bytes()).map(|s| s.value),
        Some(None),
        "a tombstone"
    );
}
