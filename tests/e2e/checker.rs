//! The consistency checker: two proxies on one config over five nodes of every kind (three
//! built-in, Redis, memcached), r=3, W=2, R=2. Writers overwrite and delete their own keys with
//! increasing sequence numbers through either proxy while readers check every answer against
//! what was acknowledged before the read began, and meanwhile nodes are cut off and healed (a
//! relay that breaks their connections), paused and resumed, killed and restarted empty, and a
//! node joins mid-run. Then a repair runs, and every key is checked on every replica.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hrwproxy::routing::{key_hash, Ring};

use crate::relay::Relay;
use crate::servers::{Kind, Server};
use crate::support::*;

/// The last acknowledged write of a key: its sequence number, and whether it was a delete.
type Acked = Arc<Mutex<HashMap<String, (u64, bool)>>>;

#[derive(Debug, Default)]
struct Counts {
    writes_acked: AtomicU64,
    writes_unknown: AtomicU64,
    reads: AtomicU64,
    reads_failed: AtomicU64,
    stale: AtomicU64,
    resurrected: AtomicU64,
}

/// A tiny xorshift, so the run needs no crate.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What one read says of a key, against the last write acknowledged before it began (and the
/// last delete sent before it ended: a 404 may be that newer delete).
fn judge(
    counts: &Counts,
    key: &str,
    expected: Option<(u64, bool)>,
    deleting: u64,
    status: u16,
    body: &[u8],
) {
    counts.reads.fetch_add(1, Ordering::Relaxed);
    let Some((acked, deleted)) = expected else {
        return;
    };
    match status {
        200 => {
            let text = String::from_utf8_lossy(body);
            let seq: u64 = text
                .strip_prefix(&format!("{key}:"))
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("{key}: a value that was never written: {text}"));
            if seq < acked {
                eprintln!(
                    "checker: stale {key}: read {seq}, acknowledged {acked} (deleted {deleted})"
                );
                counts.stale.fetch_add(1, Ordering::Relaxed);
                if deleted {
                    counts.resurrected.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        404 if !deleted && deleting <= acked => {
            eprintln!("checker: stale {key}: 404, acknowledged {acked}");
            counts.stale.fetch_add(1, Ordering::Relaxed);
        }
        404 => {}
        _ => {
            counts.reads_failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The version a node holds for `key`, asked directly (not through a relay).
fn held_version(node: &Holder, key: &str) -> Option<u128> {
    match node {
        Holder::Builtin(addr) => {
            let resp = request(*addr, "GET", &kv_path(key.as_bytes()), b"");
            resp.header("x-hrw-version").map(|v| v.parse().unwrap())
        }
        Holder::External(server) => server.holds(key.as_bytes()).map(|s| s.version.0),
    }
}

enum Holder<'a> {
    Builtin(SocketAddr),
    External(&'a Server),
}

struct Report {
    counts: Counts,
    lost: usize,
    resurrected_after: usize,
    replicas_differ: usize,
    keys: usize,
}

fn run(settings: &str, load: Duration) -> Report {
    let mut builtin = start_nodes(&["n1", "n2", "n3", "n6"]);
    let redis = Server::start(Kind::Redis);
    let memcached = Server::start(Kind::Memcached);
    let relay_n1 = Relay::start(builtin[0].addr);
    let relay_redis = Relay::start(redis.addr);
    let node_line = |id: &str, url: String| format!("  - {{ id: {id}, url: \"{url}\" }}\n");
    let addrs: Vec<SocketAddr> = builtin.iter().map(|n| n.addr).collect();
    let config = |with_n6: bool| {
        let mut yaml = format!("listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\n{settings}\nnodes:\n");
        yaml += &node_line("n1", format!("http://{}", relay_n1.addr));
        yaml += &node_line("n2", format!("http://{}", addrs[1]));
        yaml += &node_line("n3", format!("http://{}", addrs[2]));
        yaml += &node_line("n4", format!("redis://{}", relay_redis.addr));
        yaml += &node_line("n5", format!("memcache://{}", memcached.addr));
        if with_n6 {
            yaml += &node_line("n6", format!("http://{}", addrs[3]));
        }
        yaml
    };
    let first = Proxy::start(&config(false));
    let second = first.another();
    let proxies = [first.addr, second.addr];
    let keys: Vec<String> = (0..100).map(|i| format!("key-{i}")).collect();
    let acked: Acked = Arc::default();
    // The last delete of each key sent (acknowledged or not).
    let deletes_issued: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4 {
        let mine: Vec<String> = keys.iter().skip(w).step_by(4).cloned().collect();
        let (acked, counts, stop) = (acked.clone(), counts.clone(), stop.clone());
        let issued = deletes_issued.clone();
        workers.push(std::thread::spawn(move || {
            let mut rng = Rng(0x9E37_79B9 + w as u64);
            let mut seq: HashMap<String, u64> = HashMap::new();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let key = &mine[i % mine.len()];
                let n = seq.entry(key.clone()).or_default();
                *n += 1;
                let delete = rng.below(10) == 0;
                let proxy = proxies[i % 2];
                let value = format!("{key}:{n}");
                if delete {
                    issued.lock().unwrap().insert(key.clone(), *n);
                }
                let resp = if delete {
                    request(proxy, "DELETE", &kv_path(key.as_bytes()), b"")
                } else {
                    request(proxy, "PUT", &kv_path(key.as_bytes()), value.as_bytes())
                };
                if resp.status == 204 {
                    acked.lock().unwrap().insert(key.clone(), (*n, delete));
                    counts.writes_acked.fetch_add(1, Ordering::Relaxed);
                } else {
                    counts.writes_unknown.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        }));
    }
    for r in 0..2 {
        let (acked, counts, stop, keys) =
            (acked.clone(), counts.clone(), stop.clone(), keys.clone());
        let issued = deletes_issued.clone();
        workers.push(std::thread::spawn(move || {
            let mut rng = Rng(0xC0FF_EE00 + r);
            while !stop.load(Ordering::Relaxed) {
                let key = &keys[rng.below(keys.len() as u64) as usize];
                let expected = acked.lock().unwrap().get(key).copied();
                let proxy = proxies[rng.below(2) as usize];
                let resp = request(proxy, "GET", &kv_path(key.as_bytes()), b"");
                // A 404 may be a newer delete already under way.
                let deleting = issued.lock().unwrap().get(key).copied().unwrap_or(0);
                judge(&counts, key, expected, deleting, resp.status, &resp.body);
            }
        }));
    }
    // The faults, spread over the load. A node restarted empty has lost writes it
    // acknowledged, so it goes down only once the paused one has had a step to get its missed
    // writes replayed: R + W > r covers one replica short of a write at a time, not two.
    let step = load / 8;
    std::thread::sleep(step);
    relay_n1.cut();
    std::thread::sleep(step);
    relay_n1.heal();
    builtin[1].signal("STOP");
    std::thread::sleep(step);
    builtin[1].signal("CONT");
    std::thread::sleep(step);
    builtin[2].kill();
    std::thread::sleep(step);
    builtin[2].restart();
    relay_redis.cut();
    first.save_by_rename(&config(true));
    std::thread::sleep(step);
    relay_redis.heal();
    std::thread::sleep(step * 2);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    first.await_generation(2);
    second.await_generation(2);

    // Every node back in service with its missed writes replayed, in both proxies.
    for proxy in [&first, &second] {
        wait_until("every node back, hints replayed", || {
            let nodes: serde_json::Value =
                serde_json::from_slice(&proxy.admin("GET", "/admin/nodes").body).unwrap();
            nodes
                .as_array()
                .unwrap()
                .iter()
                .all(|n| n["health"] == "up" && n["hints"] == 0)
        });
    }
    let repair = first.repair("prune");
    eprintln!("checker: repair {repair}");

    // After the repair: every acknowledged write readable, every delete deleted, and the
    // replicas of every key alike.
    let acked = acked.lock().unwrap().clone();
    let (mut lost, mut resurrected_after, mut replicas_differ) = (0, 0, 0);
    let ids = ["n1", "n2", "n3", "n4", "n5", "n6"];
    let ring = Ring::new(ids.iter().map(|id| (*id, 1.0))).unwrap();
    for key in &keys {
        let get = first.request("GET", &kv_path(key.as_bytes()), b"");
        if let Some(&(seq, deleted)) = acked.get(key) {
            let found: Option<u64> = (get.status == 200)
                .then(|| get.text().rsplit(':').next().unwrap().parse().unwrap());
            match (found, deleted) {
                (Some(found), false) if found < seq => lost += 1,
                (None, false) => lost += 1,
                (Some(found), true) if found < seq => resurrected_after += 1,
                _ => {}
            }
        }
        let versions: Vec<Option<u128>> = ring
            .top(key_hash(key.as_bytes()), 3)
            .iter()
            .map(|i| match ring.id(i) {
                "n1" => held_version(&Holder::Builtin(builtin[0].addr), key),
                "n2" => held_version(&Holder::Builtin(builtin[1].addr), key),
                "n3" => held_version(&Holder::Builtin(builtin[2].addr), key),
                "n6" => held_version(&Holder::Builtin(builtin[3].addr), key),
                "n4" => held_version(&Holder::External(&redis), key),
                _ => held_version(&Holder::External(&memcached), key),
            })
            .collect();
        if versions.windows(2).any(|w| w[0] != w[1]) {
            replicas_differ += 1;
            eprintln!("checker: {key} replicas hold {versions:?}");
        }
    }
    Report {
        counts: Arc::try_unwrap(counts).unwrap(),
        lost,
        resurrected_after,
        replicas_differ,
        keys: keys.len(),
    }
}

fn print(name: &str, report: &Report) {
    let c = &report.counts;
    eprintln!(
        "checker {name}: writes acked {} unknown {}; reads {} failed {} stale {} (resurrected deletes {}); after repair: lost acked writes {}, resurrected deletes {}, keys whose replicas differ {} of {}",
        c.writes_acked.load(Ordering::Relaxed),
        c.writes_unknown.load(Ordering::Relaxed),
        c.reads.load(Ordering::Relaxed),
        c.reads_failed.load(Ordering::Relaxed),
        c.stale.load(Ordering::Relaxed),
        c.resurrected.load(Ordering::Relaxed),
        report.lost,
        report.resurrected_after,
        report.replicas_differ,
        report.keys,
    );
}

const FAULTS: &str = "replicas: 3
timeouts: { connect_ms: 100, request_ms: 300, deadline_ms: 2000 }
eject_after: 3
eject_backoff_ms: 200
eject_backoff_max_ms: 400
health_check_interval_ms: 100
handoff_window_s: 600";

/// Enough load to mean anything.
fn assert_loaded(report: &Report) {
    let c = &report.counts;
    assert!(
        c.writes_acked.load(Ordering::Relaxed) > 500,
        "too little load to mean anything"
    );
    assert!(
        c.reads.load(Ordering::Relaxed) > 500,
        "too little load to mean anything"
    );
}

#[test]
fn strict_with_r_plus_w_above_r_no_read_is_stale_no_write_lost_no_delete_undone() {
    let report = run(
        &format!("{FAULTS}\nwrite_quorum: 2\nquorum: strict"),
        Duration::from_secs(8),
    );
    print("strict R=2 W=2", &report);
    assert_loaded(&report);
    let c = &report.counts;
    assert_eq!(c.stale.load(Ordering::Relaxed), 0, "stale reads");
    assert_eq!(
        c.resurrected.load(Ordering::Relaxed),
        0,
        "resurrected deletes"
    );
    assert_eq!(report.lost, 0, "acknowledged writes lost");
    assert_eq!(report.resurrected_after, 0, "deletes undone");
    assert_eq!(
        report.replicas_differ, 0,
        "replicas that differ after the repair"
    );
}

/// Sloppy (the default): reads and writes go on past failed replicas, so a read may miss a
/// write held only on stand-ins (its stale reads are counted and printed, not hidden), but
/// nothing acknowledged is lost and nothing deleted comes back once hints are handed over and
/// the repair ran.
#[test]
fn sloppy_loses_no_write_and_undoes_no_delete() {
    let report = run(
        &format!("{FAULTS}\nwrite_quorum: 2"),
        Duration::from_secs(8),
    );
    print("sloppy R=2 W=2", &report);
    assert_loaded(&report);
    assert_eq!(report.lost, 0, "acknowledged writes lost");
    assert_eq!(report.resurrected_after, 0, "deletes undone");
    assert_eq!(
        report.replicas_differ, 0,
        "replicas that differ after the repair"
    );
}

/// What the guarantee buys: the same run with R=1 and W=1. Figures only (stale reads are
/// expected here); run with `cargo test --test e2e checker -- --ignored --nocapture`.
#[test]
#[ignore]
fn with_r1_w1_reads_can_be_stale() {
    let report = run(
        &format!("{FAULTS}\nwrite_quorum: 1\nread_quorum: 1\nquorum: strict"),
        Duration::from_secs(8),
    );
    print("R=1 W=1", &report);
    assert_eq!(
        report.replicas_differ, 0,
        "replicas that differ after the repair"
    );
}

/// What versions buy: the same run with `versioning: off`, the proxy as it was before them.
/// Figures only; run as above.
#[test]
#[ignore]
fn with_versioning_off() {
    let report = run(
        &format!("{FAULTS}\nversioning: off"),
        Duration::from_secs(8),
    );
    print("versioning off", &report);
}
