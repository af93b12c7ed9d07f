//! Live membership: edits of the YAML apply without a restart and move only what they must.

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
