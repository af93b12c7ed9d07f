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
        config_yaml(
            nodes.iter().filter(|n| ids.contains(&n.id.as_str())),
            &format!("replicas: 2\nmax_key_bytes: {}", 1000 + i),
        )
    };
    let proxy = Proxy::start(&config(0));
    let in_force = |i: usize| proxy.reloader.shared().load().config.max_key_bytes == 1000 + i;

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
                    proxy.reloader.status().last_error.is_some()
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
    assert!(
        slowest < Duration::from_secs(1),
        "a change took {slowest:?} to apply"
    );
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
    assert_eq!(proxy.reloader.shared().load().config.nodes.len(), 1);
}
