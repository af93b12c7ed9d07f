//! The `hrwproxy` binary as a user runs it: serve, demo, locate, check, --help.

use std::process::Command;

use crate::support::*;

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN).args(args).output().expect("run hrwproxy");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn serve_stores_where_locate_says() {
    let nodes = start_nodes(&["a", "b", "c"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hrwproxy.yaml");
    write_file(&path, &config_yaml(&nodes, "replicas: 2"));
    let config = path.to_str().unwrap();
    let (_proxy, addr) = spawn_listening(&["serve", "--config", config]);
    for key in ["greeting", "a/b", "x y"] {
        let put = request(addr, "PUT", &kv_path(key.as_bytes()), b"hello");
        assert_eq!(put.status, 204, "{}", put.text());
        let (ok, located) = run(&["locate", "--config", config, key]);
        assert!(ok, "{located}");
        let ranked: Vec<&str> = located.lines().collect();
        assert_eq!(ranked.len(), 3, "{located}");
        for node in &nodes {
            let expected = ranked[..2].contains(&node.id.as_str());
            assert_eq!(
                node.holds(key.as_bytes()).is_some(),
                expected,
                "{key} on {}",
                node.id
            );
        }
        let get = request(addr, "GET", &kv_path(key.as_bytes()), b"");
        assert_eq!(get.header("x-hrw-node"), Some(ranked[0]));
    }
    let (ok, encoded) = run(&["locate", "--config", config, "--encoded", "a%2Fb"]);
    assert!(ok);
    assert_eq!(encoded, run(&["locate", "--config", config, "a/b"]).1);
}

#[test]
fn demo_starts_its_own_nodes_and_serves_the_curl_session() {
    let ports: Vec<u16> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect::<Vec<_>>()
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo.yaml");
    let mut yaml =
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nreplicas: 2\nwrite_quorum: 2\nnodes:\n"
            .to_string();
    for (id, port) in ["a", "b", "c"].iter().zip(&ports) {
        yaml += &format!("  - {{ id: {id}, url: \"http://127.0.0.1:{port}\" }}\n");
    }
    write_file(&path, &yaml);
    let (_demo, addr) = spawn_listening(&["demo", "--config", path.to_str().unwrap()]);
    let put = request(addr, "PUT", "/kv/greeting", b"hello");
    assert_eq!(
        (put.status, put.header("x-hrw-acks")),
        (204, Some("2/2")),
        "{}",
        put.text()
    );
    let get = request(addr, "GET", "/kv/greeting", b"");
    assert_eq!((get.status, get.body.as_slice()), (200, &b"hello"[..]));
    assert_eq!(request(addr, "DELETE", "/kv/greeting", b"").status, 204);
    assert_eq!(request(addr, "GET", "/kv/greeting", b"").status, 404);
}

#[test]
fn check_prints_ok_or_the_line_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    let config = path.to_str().unwrap();
    write_file(
        &path,
        "nodes:\n  - { id: a, url: \"http://127.0.0.1:1\" }\n",
    );
    assert_eq!(
        run(&["check", "--config", config]),
        (true, "ok\n".to_string())
    );
    write_file(
        &path,
        "nodes:\n  - { id: a, url: \"http://127.0.0.1:1\", weight: 0 }\n",
    );
    let (ok, text) = run(&["check", "--config", config]);
    assert!(!ok);
    assert!(text.contains("line 2") && text.contains("weight"), "{text}");
    let (ok, text) = run(&["check", "--config", "/nonexistent/x.yaml"]);
    assert!(!ok);
    assert_eq!(text.matches("/nonexistent/x.yaml").count(), 1, "{text}");
}

#[test]
fn help_explains_every_subcommand() {
    let (ok, help) = run(&["--help"]);
    assert!(ok);
    for sub in [
        "serve",
        "node",
        "demo",
        "locate",
        "check",
        "plan",
        "rebalance",
    ] {
        assert!(help.contains(sub), "--help lacks {sub}: {help}");
    }
}

#[test]
fn the_readme_config_reference_is_a_valid_config() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("## Configuration")
        .nth(1)
        .expect("a Configuration section");
    let yaml = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a yaml block");
    let config =
        hrwproxy::config::Config::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert_eq!(
        config.limits,
        hrwproxy::config::Limits::default(),
        "the README shows the defaults"
    );
    assert_eq!(config.resilience, hrwproxy::config::Resilience::default());
}
