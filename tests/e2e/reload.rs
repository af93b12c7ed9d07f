//! Live membership: edits of the YAML apply without a restart and move only what they must.

use std::process::Command;

use hrwproxy::Reloaded;

use crate::support::*;

fn owners(proxy: &Proxy, keys: &[String]) -> Vec<String> {
    keys.iter()
        .map(|k| {
            let get = proxy.request("GET", &kv_path(k.as_bytes()), b"");
            assert_eq!(get.status, 200, "GET {k}: {}", get.text());
            get.header("x-hrw-node").unwrap().to_string()
        })
        .collect()
}

#[test]
fn removing_a_node_by_rename_moves_only_its_keys_and_adding_it_back_in_place_restores_them() {
    let nodes = start_nodes(&["a", "b", "c", "d"]);
    let full = config_yaml(&nodes, "replicas: 2");
    let proxy = Proxy::start(&full);
    let keys: Vec<String> = (0..200).map(|i| format!("key-{i}")).collect();
    put_keys(&proxy, &keys);
    let before = owners(&proxy, &keys);

    let without_c = config_yaml(nodes.iter().filter(|n| n.id != "c"), "replicas: 2");
    proxy.save_by_rename(&without_c);
    proxy.await_generation(2);
    let after = owners(&proxy, &keys);
    let mut moved = 0;
    for ((k, was), now) in keys.iter().zip(&before).zip(&after) {
        if was == "c" {
            moved += 1;
            assert_ne!(now, "c");
        } else {
            assert_eq!(was, now, "key {k} moved though its node stayed");
        }
    }
    assert!(moved > 20, "only {moved} of 200 keys were on c");

    proxy.save_in_place(&full);
    proxy.await_generation(3);
    assert_eq!(owners(&proxy, &keys), before);
}

#[test]
fn an_invalid_edit_is_rejected_and_the_old_membership_keeps_serving() {
    let nodes = start_nodes(&["a", "b"]);
    let good = config_yaml(&nodes, "");
    let proxy = Proxy::start(&good);
    assert_eq!(proxy.request("PUT", "/kv/k", b"v").status, 204);

    for (bad, expected) in [
        (
            good.replace("nodes:", "replicas: 3\nnodes:"),
            "line 5 column 1: replicas",
        ),
        (good.replace("- id: b", "- id: a"), "duplicate"),
        (good.replace("url: http", "url: ftp"), "url"),
        ("nodes: [".to_string(), "line"),
        (good.replace("listen", "lisen"), "lisen"),
    ] {
        proxy.save_by_rename(&bad);
        let Reloaded::Rejected { error, .. } = proxy.handle.reload_now() else {
            panic!("bad config applied: {bad}");
        };
        assert!(error.to_string().contains(expected), "{error}");
        assert_eq!(proxy.generation(), 1);
        let get = proxy.request("GET", "/kv/k", b"");
        assert_eq!((get.status, get.body.as_slice()), (200, &b"v"[..]));
    }
    // The watcher survived the bad saves and still applies a good one.
    proxy.save_in_place(&good.replace("nodes:", "replicas: 1\nnodes:"));
    proxy.await_generation(2);
    assert_eq!(proxy.config().replicas, 1);
}

#[test]
fn one_save_is_one_read_not_a_loop() {
    let nodes = start_nodes(&["a", "b"]);
    let proxy = Proxy::start(&config_yaml(&nodes, ""));
    // Files beside the config are not it: they trigger no read.
    std::fs::write(proxy.config_path().with_file_name("notes.txt"), "x").unwrap();
    proxy.save_by_rename(&config_yaml(&nodes, "replicas: 1"));
    proxy.await_generation(2);
    let checks = proxy.handle.status().checks;
    // Reading the file must not count as a change of it; wait out several debounce periods.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        proxy.handle.status().checks,
        checks,
        "the watcher re-reads without edits"
    );
    assert_eq!(checks, 1, "one save, one read");
}

/// What `GET /admin/config` says applied the config serving.
fn applied_by(proxy: &Proxy) -> String {
    let config: serde_json::Value =
        serde_json::from_slice(&proxy.admin("GET", "/admin/config").body).unwrap();
    config["applied_by"].as_str().unwrap().to_string()
}

/// Points the symlink `link` at `target` the way `ln -sfn` and deploy tools do: a new link
/// renamed over the old one.
fn repoint(link: &std::path::Path, target: &str) {
    let tmp = link.with_extension("tmp-link");
    std::os::unix::fs::symlink(target, &tmp).unwrap();
    std::fs::rename(&tmp, link).unwrap();
}

#[test]
fn repointing_a_release_symlink_and_every_save_after_it_apply_from_file_events() {
    let nodes = start_nodes(&["a", "b"]);
    let dir = tempfile::tempdir().unwrap();
    // The poll is an hour away: only file events can apply these changes.
    let yaml = |settings: &str| config_yaml(&nodes, &format!("reload_poll_s: 3600\n{settings}"));
    for release in ["1", "2"] {
        std::fs::create_dir_all(dir.path().join("releases").join(release)).unwrap();
    }
    let root = dir.path().to_owned();
    let in_release = |n: &str| root.join("releases").join(n).join(CONFIG_NAME);
    write_file(&in_release("1"), &yaml(""));
    write_file(&in_release("2"), &yaml("replicas: 1"));
    std::os::unix::fs::symlink("releases/1", dir.path().join("current")).unwrap();
    std::os::unix::fs::symlink(
        format!("current/{CONFIG_NAME}"),
        dir.path().join(CONFIG_NAME),
    )
    .unwrap();
    let proxy = Proxy::start_in(dir);
    let mut generation = 1;
    let mut applied = |what: &str, change: &dyn Fn()| {
        let started = std::time::Instant::now();
        change();
        generation += 1;
        proxy.await_generation(generation);
        assert_eq!(applied_by(&proxy), "file event", "{what}");
        eprintln!("{what}: in force after {:?}", started.elapsed());
    };
    applied("re-pointing current", &|| {
        repoint(&proxy.dir().join("current"), "releases/2")
    });
    assert_eq!(proxy.config().replicas, 1);
    let live = in_release("2");
    applied("an in-place edit in the new release", &|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&live)
            .unwrap();
        std::io::Write::write_all(&mut file, yaml("max_key_bytes: 100").as_bytes()).unwrap();
    });
    applied("a save by rename in the new release", &|| {
        let tmp = live.with_extension("swp");
        write_file(&tmp, &yaml("max_key_bytes: 101"));
        std::fs::rename(&tmp, &live).unwrap();
    });
    applied("sed -i in the new release", &|| {
        let status = Command::new("sed")
            .args([
                "-i",
                "s/max_key_bytes: 101/max_key_bytes: 102/",
                live.to_str().unwrap(),
            ])
            .status()
            .unwrap();
        assert!(status.success());
    });
    assert_eq!(proxy.config().max_key_bytes, 102);
    // The release it left is no longer followed.
    write_file(&in_release("1"), &yaml("max_key_bytes: 5"));
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(proxy.generation(), generation);
}

#[test]
fn a_deeply_nested_file_is_refused_at_once_while_the_data_path_keeps_serving() {
    let nodes = start_nodes(&["a"]);
    let proxy = Proxy::start(&config_yaml(&nodes, ""));
    assert_eq!(proxy.request("PUT", "/kv/k", b"v").status, 204);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let admin_reader = {
        let (addr, stop) = (proxy.admin_addr, stop.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                assert_eq!(request(addr, "GET", "/admin/config", b"").status, 200);
                reads += 1;
            }
            reads
        })
    };
    for depth in [100_000, 5_000_000] {
        let deep = format!("nodes: [{}", "{".repeat(depth));
        proxy.save_in_place(&deep);
        wait_until("the rejection", || {
            proxy
                .handle
                .status()
                .last_error
                .is_some_and(|(e, _)| e.to_string().contains("nested more than"))
        });
        // The data path answered all along (each request has PATIENCE to answer).
        let get = proxy.request("GET", "/kv/k", b"");
        assert_eq!((get.status, get.body.as_slice()), (200, &b"v"[..]));
        proxy.save_in_place(&config_yaml(&nodes, ""));
        wait_until("the good file to be read", || {
            proxy.handle.status().last_error.is_none()
        });
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(admin_reader.join().unwrap() > 0);
    // A file over the size bound is refused as such.
    proxy.save_in_place(&format!(
        "{}\n{}",
        "#".repeat(9 * 1024 * 1024),
        config_yaml(&nodes, "")
    ));
    wait_until("the size rejection", || {
        proxy
            .handle
            .status()
            .last_error
            .is_some_and(|(e, _)| e.to_string().contains("larger than"))
    });
    assert_eq!(proxy.generation(), 1);
}

#[test]
fn a_file_caught_half_written_is_read_again_once_without_any_event() {
    let nodes = start_nodes(&["a", "b"]);
    let proxy = Proxy::start(&config_yaml(&nodes, "reload_poll_s: 3600"));
    let good = config_yaml(&nodes, "reload_poll_s: 3600\nreplicas: 1");
    // Half written: rejected on the event. The rest arrives through a hard link in another
    // directory, which raises no event in the watched one: only the retry can see it.
    let elsewhere = tempfile::tempdir().unwrap();
    let link = elsewhere.path().join("link.yaml");
    std::fs::hard_link(proxy.config_path(), &link).unwrap();
    proxy.save_in_place(&good[..good.len() / 2]);
    wait_until("the rejection", || {
        proxy.handle.status().last_error.is_some()
    });
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&link)
        .unwrap();
    std::io::Write::write_all(&mut file, good.as_bytes()).unwrap();
    drop(file);
    proxy.await_generation(2);
    assert_eq!(applied_by(&proxy), "retry");
}
