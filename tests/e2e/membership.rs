//! Membership changes with no surprises: reload however the file changes, handoff with zero
//! misses, deletes that stay deleted, rebalance that never overwrites a newer write.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;

/// Ways the torture test changes the file, in turn.
#[derive(Debug, Clone, Copy)]
enum Edit {
    InPlace,
    Rename,
    DeleteAndCreate,
    Invalid,
    Truncated,
}

const EDITS: [Edit; 5] = [
    Edit::InPlace,
    Edit::Rename,
    Edit::DeleteAndCreate,
    Edit::Invalid,
    Edit::Truncated,
];

/// Client load until `stop`: each worker PUTs its own keys and reads each back at once.
fn load(
    proxy_addr: std::net::SocketAddr,
    worker: usize,
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicU64>,
    done: Arc<AtomicU64>,
) {
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("load-{worker}-{}", i % 500);
        let value = format!("{worker}:{i}");
        let put = request(
            proxy_addr,
            "PUT",
            &kv_path(key.as_bytes()),
            value.as_bytes(),
        );
        let get = request(proxy_addr, "GET", &kv_path(key.as_bytes()), b"");
        if put.status != 204 || get.status != 200 || get.body != value.as_bytes() {
            eprintln!(
                "failed: PUT {} GET {} {:?}",
                put.status,
                get.status,
                get.text()
            );
            failed.fetch_add(1, Ordering::Relaxed);
        }
        done.fetch_add(2, Ordering::Relaxed);
        i += 1;
    }
}

#[test]
fn reload_torture_100_changes_under_load_fail_no_request() {
    let nodes = start_nodes(&["a", "b", "c", "d"]);
    // Memberships to cycle through; max_key_bytes marks which change is in force.
    let memberships: [&[&str]; 4] = [
        &["a", "b", "c", "d"],
        &["a", "b", "c"],
        &["b", "c", "d"],
        &["a", "c", "d"],
    ];
    let config = |i: usize| {
        let ids = memberships[i % memberships.len()];
        // The poll is an hour away: every change must be applied from file events.
        config_yaml(
            nodes.iter().filter(|n| ids.contains(&n.id.as_str())),
            &format!(
                "replicas: 2\nreload_poll_s: 3600\nmax_key_bytes: {}",
                1000 + i
            ),
        )
    };
    let proxy = Proxy::start(&config(0));
    let in_force = |i: usize| proxy.config().max_key_bytes == 1000 + i;

    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..2)
        .map(|w| {
            let (addr, stop, failed, done) =
                (proxy.addr, stop.clone(), failed.clone(), done.clone());
            std::thread::spawn(move || load(addr, w, stop, failed, done))
        })
        .collect();

    let mut slowest = Duration::ZERO;
    let mut applied = 0;
    for change in 1..=100 {
        let edit = EDITS[change % EDITS.len()];
        let generation = proxy.generation();
        match edit {
            Edit::InPlace | Edit::Rename | Edit::DeleteAndCreate => {
                let yaml = config(change);
                let written = Instant::now();
                match edit {
                    Edit::InPlace => proxy.save_in_place(&yaml),
                    Edit::Rename => proxy.save_by_rename(&yaml),
                    _ => proxy.save_by_delete_and_create(&yaml),
                }
                wait_until(&format!("change {change} ({edit:?})"), || in_force(change));
                slowest = slowest.max(written.elapsed());
                applied += 1;
            }
            Edit::Invalid | Edit::Truncated => {
                let yaml = config(change);
                let broken = match edit {
                    Edit::Invalid => yaml.replace("replicas: 2", "replicas: [2"),
                    // Cut inside the last node's URL: a half-written file.
                    _ => yaml[..yaml.len() - 6].to_string(),
                };
                proxy.save_in_place(&broken);
                wait_until(&format!("rejection of change {change} ({edit:?})"), || {
                    proxy.handle.status().last_error.is_some()
                });
                assert_eq!(
                    proxy.generation(),
                    generation,
                    "change {change} ({edit:?}) was applied"
                );
                // Finish the write: now it applies.
                let written = Instant::now();
                proxy.save_in_place(&yaml);
                wait_until(&format!("change {change} completed"), || in_force(change));
                slowest = slowest.max(written.elapsed());
                applied += 1;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let (failed, done) = (failed.load(Ordering::Relaxed), done.load(Ordering::Relaxed));
    eprintln!("reload torture: {applied} changes applied, {done} requests, {failed} failed, slowest reload {slowest:?}");
    assert_eq!(failed, 0, "{failed} of {done} requests failed");
    assert!(done > 0);
}

/// What the kubelet does to a ConfigMap volume: a new timestamped directory, then `..data`
/// swapped to it by renaming a fresh symlink over it, then the old directory removed.
fn publish_configmap(dir: &std::path::Path, version: u32, yaml: &str) {
    let data = dir.join(format!("..2026_11_29_{version}"));
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join(CONFIG_NAME), yaml).unwrap();
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(data.file_name().unwrap(), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    if version > 1 {
        std::fs::remove_dir_all(dir.join(format!("..2026_11_29_{}", version - 1))).unwrap();
    }
}

#[test]
fn kubernetes_configmap_symlink_swap_is_seen() {
    let nodes = start_nodes(&["a", "b"]);
    let dir = tempfile::tempdir().unwrap();
    publish_configmap(dir.path(), 1, &config_yaml(&nodes, ""));
    std::os::unix::fs::symlink(
        format!("..data/{CONFIG_NAME}"),
        dir.path().join(CONFIG_NAME),
    )
    .unwrap();
    let proxy = Proxy::start_in(dir);
    publish_configmap(proxy.dir(), 2, &config_yaml(&nodes, "replicas: 1"));
    proxy.await_generation(2);
    publish_configmap(proxy.dir(), 3, &config_yaml(&nodes[..1], ""));
    proxy.await_generation(3);
    assert_eq!(proxy.config().nodes.len(), 1);
}

/// Writes `count` keys `prefix-i` = `v1-i` through the proxy.
fn write_keys(proxy: &Proxy, prefix: &str, count: usize, version: &str) -> Vec<String> {
    (0..count)
        .map(|i| {
            let key = format!("{prefix}-{i}");
            let put = proxy.request(
                "PUT",
                &kv_path(key.as_bytes()),
                format!("{version}-{i}").as_bytes(),
            );
            assert_eq!(put.status, 204, "PUT {key}: {}", put.text());
            key
        })
        .collect()
}

/// Reads every key through the proxy; returns how many missed and checks the others' values.
fn misses(proxy: &Proxy, keys: &[String], version: &str) -> usize {
    let mut misses = 0;
    for (i, key) in keys.iter().enumerate() {
        let get = proxy.request("GET", &kv_path(key.as_bytes()), b"");
        match get.status {
            200 => assert_eq!(get.text(), format!("{version}-{i}"), "{key}"),
            404 => misses += 1,
            other => panic!("GET {key}: {other} {}", get.text()),
        }
    }
    misses
}

/// Checks that each key is on exactly its top-2 of `owners` and on no other node of `all`.
fn assert_placed_exactly(all: &[Node], owners: &[&Node], keys: &[String]) {
    assert_placed_by(all, keys, |key| ranking(owners, key)[..2].to_vec());
}

/// Checks that each key is on exactly the nodes `replicas` names and on no other of `all`.
fn assert_placed_by(all: &[Node], keys: &[String], replicas: impl Fn(&[u8]) -> Vec<String>) {
    let held: Vec<(String, Vec<Vec<u8>>)> = all
        .iter()
        .map(|n| (n.id.clone(), node_keys(n.addr)))
        .collect();
    for key in keys {
        let expected = replicas(key.as_bytes());
        let holders: Vec<&str> = held
            .iter()
            .filter(|(_, keys)| keys.binary_search(&key.as_bytes().to_vec()).is_ok())
            .map(|(id, _)| id.as_str())
            .collect();
        let mut expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        expected.sort();
        assert_eq!(holders, expected, "{key}");
    }
}

#[test]
fn scale_out_misses_nothing_and_rebalance_places_every_key_exactly() {
    let nodes = start_nodes(&["a", "b", "c", "d"]);
    let proxy = Proxy::start(&config_yaml(&nodes[..3], "replicas: 2"));
    let keys = write_keys(&proxy, "out", 10_000, "v1");

    proxy.save_by_rename(&config_yaml(&nodes, "replicas: 2"));
    proxy.await_generation(2);
    let missed = misses(&proxy, &keys, "v1");
    eprintln!(
        "scale-out: {missed} of {} GETs missed during the handoff window",
        keys.len()
    );
    assert_eq!(missed, 0);

    let config = proxy.config_path();
    let out = Command::new(BIN)
        .args([
            "rebalance",
            "--config",
            config.to_str().unwrap(),
            "--prune",
            "--rate",
            "0",
        ])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("failed 0"), "{report}");
    eprint!("scale-out {report}");
    let all: Vec<&Node> = nodes.iter().collect();
    assert_placed_exactly(&nodes, &all, &keys);
}

#[test]
fn scale_in_loses_nothing_and_admin_rebalance_restores_two_copies() {
    let nodes = start_nodes(&["a", "b", "c", "d"]);
    let proxy = Proxy::start(&config_yaml(&nodes, "replicas: 2"));
    let keys = write_keys(&proxy, "in", 2_000, "v1");

    proxy.save_by_rename(&config_yaml(&nodes[..3], "replicas: 2"));
    proxy.await_generation(2);
    assert_eq!(misses(&proxy, &keys, "v1"), 0);

    // By its other name, which starts the same run.
    let started = proxy.admin("POST", "/admin/rebalance?prune");
    assert_eq!(started.status, 202, "{}", started.text());
    assert_eq!(
        proxy.admin("POST", "/admin/repair").status,
        409,
        "a second run must wait"
    );
    let report = proxy.finish_repair();
    assert_eq!(report["failed"], 0, "{report}");
    assert!(
        report["pruned"].as_u64().unwrap() > 0,
        "d was not drained: {report}"
    );
    let survivors: Vec<&Node> = nodes[..3].iter().collect();
    assert_placed_exactly(&nodes, &survivors, &keys);
    assert_eq!(misses(&proxy, &keys, "v1"), 0);
}

/// End to end: a DELETE in a window beats the value its earlier replicas still hold, and a
/// repair then removes that value. (Every order of copies and deletes is proved on fake nodes:
/// `proxy::tests::in_a_window_the_newest_wins_wherever_it_is` and
/// `proxy::tests::a_copy_forward_racing_a_delete_never_brings_the_value_back`.)
#[test]
fn a_delete_during_handoff_stays_deleted() {
    let nodes = start_nodes(&["a", "b", "c", "d"]);
    let proxy = Proxy::start(&config_yaml(&nodes[..3], "replicas: 2"));
    // A key whose replicas change when d joins, so its value is only on earlier replicas.
    let key = key_with_primary(&nodes, "moving", "d");
    assert_eq!(
        proxy
            .request("PUT", &kv_path(key.as_bytes()), b"old")
            .status,
        204
    );
    proxy.save_in_place(&config_yaml(&nodes, "replicas: 2"));
    proxy.await_generation(2);

    let delete = proxy.request("DELETE", &kv_path(key.as_bytes()), b"");
    assert_eq!(delete.status, 204);
    // The earlier replica still holds the old value, older than the tombstone: it loses.
    for _ in 0..5 {
        let get = proxy.request("GET", &kv_path(key.as_bytes()), b"");
        assert_eq!(get.status, 404, "{}", get.text());
    }
    // A repair with prune leaves a value nowhere.
    proxy.repair("prune");
    for node in &nodes {
        assert_eq!(
            node.holds(key.as_bytes()),
            None,
            "{key} came back on {}",
            node.id
        );
    }
    assert_eq!(
        proxy.request("GET", &kv_path(key.as_bytes()), b"").status,
        404
    );
}

/// End to end: client writes during a rebalance are what the owners hold afterwards. (A write
/// that provably overlaps a copy in flight is `repair::tests::a_client_write_during_a_copy_
/// is_never_overwritten_by_it`, on fake nodes that hold the copy.)
#[test]
fn a_write_during_rebalance_is_never_overwritten_by_an_older_copy() {
    let nodes = start_nodes(&["a", "b", "c", "d"]);
    let proxy = Proxy::start(&config_yaml(&nodes[..3], "replicas: 2"));
    let keys = write_keys(&proxy, "race", 2_000, "v1");
    proxy.save_by_rename(&config_yaml(&nodes, "replicas: 2"));
    proxy.await_generation(2);

    // Slow enough that the client writes below overlap the copies.
    proxy.start_repair("prune&rate=4000");
    write_keys(&proxy, "race", 2_000, "v2");
    proxy.finish_repair();
    assert_eq!(misses(&proxy, &keys, "v2"), 0);
    let all: Vec<&Node> = nodes.iter().collect();
    for (i, key) in keys.iter().enumerate() {
        for id in &ranking(&all, key.as_bytes())[..2] {
            let node = nodes.iter().find(|n| &n.id == id).unwrap();
            assert_eq!(
                node.holds(key.as_bytes()),
                Some(format!("v2-{i}").into_bytes()),
                "{key} on {id}"
            );
        }
    }
}

#[test]
fn admin_reload_and_config_report_generation_hash_and_errors() {
    let nodes = start_nodes(&["a", "b"]);
    let good = config_yaml(&nodes, "");
    let proxy = Proxy::start(&good);
    let config: serde_json::Value =
        serde_json::from_slice(&proxy.admin("GET", "/admin/config").body).unwrap();
    assert_eq!(config["generation"], 1);
    assert_eq!(config["sha256"].as_str().unwrap().len(), 64);
    assert!(
        config["loaded_at"].as_str().unwrap().ends_with('Z'),
        "{config}"
    );
    assert!(config["last_error"].is_null());

    // Written with the watcher's view of it beside the point: the admin call reloads now.
    std::fs::write(proxy.config_path(), good.replace("url: http", "url: ftp")).unwrap();
    let rejected = proxy.admin("POST", "/admin/reload");
    assert_eq!(rejected.status, 422, "{}", rejected.text());
    assert!(
        rejected.text().contains("unsupported scheme"),
        "{}",
        rejected.text()
    );
    let config: serde_json::Value =
        serde_json::from_slice(&proxy.admin("GET", "/admin/config").body).unwrap();
    assert_eq!(config["generation"], 1);
    assert!(
        config["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("line"),
        "{config}"
    );

    std::fs::write(
        proxy.config_path(),
        good.replace("nodes:", "replicas: 1\nnodes:"),
    )
    .unwrap();
    let applied = proxy.admin("POST", "/admin/reload");
    assert_eq!(applied.status, 200, "{}", applied.text());
    let applied: serde_json::Value = serde_json::from_slice(&applied.body).unwrap();
    assert_eq!(applied["generation"], 2, "{applied}");
    assert_eq!(proxy.admin("GET", "/admin/reload").status, 405);
    assert_eq!(proxy.admin("GET", "/admin/nope").status, 404);
}

#[test]
fn sighup_applies_a_change_no_file_event_reported() {
    let nodes = start_nodes(&["a"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(CONFIG_NAME);
    // The poll is an hour away: only the signal can apply the change.
    write_file(&path, &config_yaml(&nodes, "reload_poll_s: 3600"));
    let (proxy, addrs) = spawn_listening_all(&["serve", "--config", path.to_str().unwrap()], 2);
    let config = || -> serde_json::Value {
        serde_json::from_slice(&request(addrs[1], "GET", "/admin/config", b"").body).unwrap()
    };
    let generation = || config()["generation"].as_u64().unwrap();
    // Written through a hard link in another directory: the watcher hears nothing.
    let elsewhere = tempfile::tempdir().unwrap();
    let link = elsewhere.path().join("link.yaml");
    std::fs::hard_link(&path, &link).unwrap();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&link)
        .unwrap();
    let changed = config_yaml(&nodes, "reload_poll_s: 3600\nmax_key_bytes: 64");
    std::io::Write::write_all(&mut file, changed.as_bytes()).unwrap();
    drop(file);
    assert_eq!(generation(), 1);
    let pid = proxy.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    wait_until("the SIGHUP reload", || generation() == 2);
    assert_eq!(config()["applied_by"], "signal");
}

#[test]
fn plan_shows_shares_and_moved_keys_before_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let (from, to) = (dir.path().join("from.yaml"), dir.path().join("to.yaml"));
    let node =
        |id: &str, port: u16| format!("  - {{ id: {id}, url: \"http://127.0.0.1:{port}\" }}\n");
    let three = format!("nodes:\n{}{}{}", node("a", 1), node("b", 2), node("c", 3));
    write_file(&from, &three);
    write_file(&to, &format!("{three}{}", node("d", 4)));
    let out = Command::new(BIN)
        .args([
            "plan",
            "--from",
            from.to_str().unwrap(),
            "--to",
            to.to_str().unwrap(),
            "--keys",
            "100000",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let d = text
        .lines()
        .find(|l| l.starts_with("d "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(d.contains("- -> 1") && d.contains("25.00%"), "{d}");
    let primaries = text
        .lines()
        .find(|l| l.starts_with("keys whose primary"))
        .unwrap();
    assert!(primaries.contains("25.00% expected"), "{primaries}");
}

#[test]
fn the_checksum_poll_catches_a_change_no_file_event_reported() {
    let nodes = start_nodes(&["a", "b"]);
    let proxy = Proxy::start(&config_yaml(&nodes, "reload_poll_s: 1"));
    // Writes through a hard link in another directory raise no event in the watched one.
    let elsewhere = tempfile::tempdir().unwrap();
    let link = elsewhere.path().join("link.yaml");
    std::fs::hard_link(proxy.config_path(), &link).unwrap();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&link)
        .unwrap();
    std::io::Write::write_all(
        &mut file,
        config_yaml(&nodes, "reload_poll_s: 1\nreplicas: 1").as_bytes(),
    )
    .unwrap();
    drop(file);
    proxy.await_generation(2);
    assert_eq!(proxy.config().replicas, 1);
    let config: serde_json::Value =
        serde_json::from_slice(&proxy.admin("GET", "/admin/config").body).unwrap();
    assert_eq!(config["applied_by"], "poll");
}

#[test]
fn with_one_replica_a_moved_key_is_served_by_its_earlier_replica_and_copied_forward() {
    let nodes = start_nodes(&["a", "b", "c"]);
    let proxy = Proxy::start(&config_yaml(&nodes[..2], "replicas: 1"));
    let key = key_with_primary(&nodes, "moving", "c");
    let path = kv_path(key.as_bytes());
    assert_eq!(proxy.request("PUT", &path, b"before").status, 204);
    let earlier = nodes[..2]
        .iter()
        .find(|n| n.holds(key.as_bytes()).is_some())
        .unwrap();
    proxy.save_by_rename(&config_yaml(&nodes, "replicas: 1"));
    proxy.await_generation(2);
    let get = proxy.request("GET", &path, b"");
    assert_eq!(
        (get.status, get.body.as_slice()),
        (200, &b"before"[..]),
        "{}",
        get.text()
    );
    assert_eq!(get.header("x-hrw-handoff-from"), Some("1"));
    assert_eq!(get.header("x-hrw-node"), Some(earlier.id.as_str()));
    wait_until("the copy forward", || {
        nodes[2].holds(key.as_bytes()).is_some()
    });
    let get = proxy.request("GET", &path, b"");
    assert_eq!(
        (get.header("x-hrw-node"), get.header("x-hrw-handoff-from")),
        (Some("c"), None)
    );
    let scrape = proxy.admin("GET", "/metrics").text();
    for series in ["hrw_handoff_hits_total 1", "hrw_handoff_copies_total 1"] {
        assert!(scrape.lines().any(|l| l == series), "{series} in\n{scrape}");
    }
    let located: serde_json::Value = serde_json::from_slice(
        &proxy
            .admin("GET", &format!("/admin/locate/{}", &path[4..]))
            .body,
    )
    .unwrap();
    assert_eq!(
        located["previous"][0]["replicas"][0].as_str(),
        Some(earlier.id.as_str())
    );
}

#[test]
fn three_zones_hold_one_replica_each_and_a_lost_zone_loses_no_key() {
    let mut nodes = start_nodes(&["a1", "a2", "b1", "b2", "c1", "c2"]);
    // All three ack before the answer, so each holds the key when the test looks.
    let mut yaml = config_yaml(&nodes, "replicas: 3\nwrite_quorum: 3\neject_after: 1");
    for node in &nodes {
        let line = format!("  - id: {}\n", node.id);
        let zoned = format!("{line}    zone: zone-{}\n", &node.id[..1]);
        yaml = yaml.replace(&line, &zoned);
    }
    let proxy = Proxy::start(&yaml);
    let keys: Vec<String> = (0..60).map(|i| format!("zoned-{i}")).collect();
    put_keys(&proxy, &keys);
    for key in &keys {
        let holders: Vec<&str> = nodes
            .iter()
            .filter(|n| n.holds(key.as_bytes()).is_some())
            .map(|n| &n.id[..1])
            .collect();
        let mut zones = holders.clone();
        zones.sort();
        assert_eq!(zones, ["a", "b", "c"], "{key} is on {holders:?}");
        let located: serde_json::Value =
            serde_json::from_slice(&proxy.admin("GET", &format!("/admin/locate/{key}")).body)
                .unwrap();
        let mut located_zones: Vec<&str> = located["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["replica"] == true)
            .map(|n| n["zone"].as_str().unwrap())
            .collect();
        located_zones.sort();
        assert_eq!(located_zones, ["zone-a", "zone-b", "zone-c"], "{located}");
    }
    // Zone a goes down whole: every key is still read, from the other two zones.
    for node in nodes.iter_mut().filter(|n| n.id.starts_with('a')) {
        node.kill();
    }
    for key in &keys {
        let get = proxy.request("GET", &format!("/kv/{key}"), b"");
        assert_eq!((get.status, get.text()), (200, key.clone()));
        assert!(!get.header("x-hrw-node").unwrap().starts_with('a'));
    }
}

#[test]
fn consistent_placement_puts_keys_where_the_library_says_and_a_removal_moves_only_its_keys() {
    let nodes = start_nodes(&["a", "b", "c", "d"]);
    let settings = "replicas: 2\nplacement: consistent\npoints_per_weight: 50";
    let proxy = Proxy::start(&config_yaml(&nodes, settings));
    let keys = write_keys(&proxy, "points", 2000, "v1");
    let top2 = |members: &[Node]| {
        let ring = hrwproxy::routing::Ring::with_placement(
            members.iter().map(|n| (n.id.as_str(), 1.0, None)),
            hrwproxy::routing::Placement::Consistent {
                points_per_weight: 50.0,
            },
        )
        .unwrap();
        move |key: &[u8]| -> Vec<String> {
            let top = ring.top(hrwproxy::routing::key_hash(key), 2);
            top.iter().map(|i| ring.id(i).to_owned()).collect()
        }
    };
    assert_placed_by(&nodes, &keys, top2(&nodes));

    // Without d: nothing is missed, and a key d did not hold keeps both its replicas.
    proxy.save_by_rename(&config_yaml(&nodes[..3], settings));
    proxy.await_generation(2);
    assert_eq!(misses(&proxy, &keys, "v1"), 0);
    let (before, after) = (top2(&nodes), top2(&nodes[..3]));
    let mut kept = 0;
    for key in &keys {
        let old = before(key.as_bytes());
        if !old.contains(&"d".to_owned()) {
            assert_eq!(after(key.as_bytes()), old, "{key} moved");
            kept += 1;
        }
    }
    assert!(kept > keys.len() / 3, "{kept} keys without d");
}
