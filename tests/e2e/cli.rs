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
fn a_config_past_the_size_limit_is_refused_until_the_limit_is_raised() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.yaml");
    let config = path.to_str().unwrap();
    let padding = "#".repeat(hrwproxy::config::MAX_CONFIG_BYTES);
    write_file(
        &path,
        &format!("{padding}\nnodes:\n  - {{ id: a, url: \"http://127.0.0.1:1\" }}\n"),
    );
    let (ok, text) = run(&["check", "--config", config]);
    assert!(!ok);
    assert!(text.contains("HRWPROXY_MAX_CONFIG_BYTES"), "{text}");
    let raised = Command::new(BIN)
        .args(["check", "--config", config])
        .env("HRWPROXY_MAX_CONFIG_BYTES", "20000000")
        .output()
        .unwrap();
    assert!(raised.status.success());
    assert_eq!(raised.stdout, b"ok\n");
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
        "repair",
        "alias: rebalance",
        "completions",
        "man",
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
    let nodes_only = &yaml[yaml.find("\nnodes:").expect("nodes")..];
    assert_eq!(
        config,
        hrwproxy::config::Config::from_yaml(nodes_only).unwrap(),
        "the README shows the defaults"
    );
}

#[test]
fn locate_into_a_pipe_closed_early_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.yaml");
    // 20 000 nodes: the ranking is far more than a pipe buffer.
    let mut yaml = String::from("nodes:\n");
    for i in 0..20_000 {
        yaml.push_str(&format!(
            "  - {{ id: n{i}, url: \"http://127.0.0.1:1\" }}\n"
        ));
    }
    write_file(&path, &yaml);
    let mut child = Command::new(BIN)
        .args(["locate", "--config", path.to_str().unwrap(), "k"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    assert!(first.starts_with('n'), "{first}");
    // The reader is gone (like `| head -1`).
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn check_points_at_the_line_and_column_of_each_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    let config = path.to_str().unwrap();
    for (yaml, expected) in [
        (
            "nodes:\n  - { id: a, url: \"http://127.0.0.1:1\", wieght: 1 }\n",
            "line 2 column 41: nodes[0]: unknown field `wieght`",
        ),
        (
            "replicas: 1\nnodes:\n  - { id: a, url: \"http://127.0.0.1:1\" }\n\n\n\n\n\n\n\n\n\n\nreplicas: 1\n",
            "line 14 column 1: duplicate field `replicas`",
        ),
        ("listen: nowhere\nnodes: []\n", "line 1 column 9: listen: invalid socket address"),
    ] {
        write_file(&path, yaml);
        let (ok, text) = run(&["check", "--config", config]);
        assert!(!ok);
        assert!(text.starts_with(&format!("{config}: {expected}")), "{yaml}: {text}");
    }
}

/// `hrwproxy repair ARGS` on `config`: success, stdout, stderr.
fn repair(config: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(["repair", "--config", config.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn repair_resumes_where_it_was_interrupted_and_can_start_over() {
    let nodes = start_nodes(&["a", "b", "c"]);
    // 600 keys on a only, as if it had been the only node; b and c own two thirds of them.
    for i in 0..600 {
        let put = request(nodes[0].addr, "PUT", &format!("/kv/key-{i:03}"), b"v");
        assert_eq!(put.status, 204);
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join(CONFIG_NAME);
    write_file(&config, &config_yaml(&nodes, "replicas: 1"));
    let state = dir.path().join(format!("{CONFIG_NAME}.repair"));

    // Interrupted after its first page (500 keys at 1000 per second).
    let mut run = Command::new(BIN)
        .args([
            "rebalance", // its other name: the same command, the same state file
            "--config",
            config.to_str().unwrap(),
            "--rate",
            "1000",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the first page to be saved", || state.exists());
    run.kill().unwrap();
    run.wait().unwrap();
    let cursor: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(cursor["node"], "a", "{cursor}");
    assert_eq!(cursor["after"], "key-499", "{cursor}");

    let (ok, report, log) = repair(&config, &["--rate", "0"]);
    assert!(ok, "{report}{log}");
    assert!(
        log.contains("resuming from node a after \"key-499\""),
        "{log}"
    );
    assert!(report.contains("failed 0"), "{report}");
    assert!(!state.exists(), "a finished run leaves no state file");
    // Every key is now also on its owner.
    let all: Vec<&Node> = nodes.iter().collect();
    for i in 0..600 {
        let key = format!("key-{i:03}");
        let owner = &ranking(&all, key.as_bytes())[0];
        let node = nodes.iter().find(|n| &n.id == owner).unwrap();
        assert!(node.holds(key.as_bytes()).is_some(), "{key} on {owner}");
    }
    let scanned: u64 = report
        .split("scanned ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    // The 100 keys after the cursor on a, plus the copies then listed on b and c.
    assert!((100..600).contains(&scanned), "{report}");

    // A state file that is not one: refused, and --restart starts over anyway.
    write_file(&state, "{ not json");
    let (ok, _, log) = repair(&config, &[]);
    assert!(!ok);
    assert!(
        log.contains("not a repair state file; use --restart"),
        "{log}"
    );
    let (ok, report, log) = repair(&config, &["--restart", "--rate", "0"]);
    assert!(ok, "{report}{log}");
    assert!(!log.contains("resuming"), "{log}");
    assert!(report.contains("already up to date"), "{report}");

    for bad in ["-1", "1e99", "fast"] {
        let (ok, _, log) = repair(&config, &[&format!("--rate={bad}")]);
        assert!(!ok, "--rate {bad}");
        assert!(
            log.contains("rate") || log.contains("invalid value"),
            "{log}"
        );
    }
}

#[test]
fn json_logs_are_one_object_per_line_with_the_request_id_as_a_field() {
    let mut nodes = start_nodes(&["a"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(CONFIG_NAME);
    // No probes: the request's failure is the node's first, the one logged in full.
    write_file(
        &path,
        &config_yaml(&nodes, "log_format: json\nhealth_check_interval_ms: 0"),
    );
    let log = dir.path().join("stderr.log");
    let mut child = std::process::Command::new(BIN)
        .args(["serve", "--config", path.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr: std::net::SocketAddr = line.trim().rsplit("://").next().unwrap().parse().unwrap();
    let _proxy = ChildGuard(child);
    nodes[0].kill();
    let failed = request_with_header(addr, "GET", "/kv/k", "x-request-id: trace-json-7", b"");
    assert!(failed.status >= 500, "{} {}", failed.status, failed.text());
    let mut lines = Vec::new();
    wait_until("the failure logged", || {
        lines = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .unwrap_or_else(|e| panic!("{l:?}: {e}"))
            })
            .collect();
        lines.iter().any(|l| l["request_id"] == "trace-json-7")
    });
    for l in &lines {
        assert!(
            l["timestamp"].is_string() && l["level"].is_string() && l["message"].is_string(),
            "{l}"
        );
    }
    let failure = lines
        .iter()
        .find(|l| l["request_id"] == "trace-json-7")
        .unwrap();
    // The attempt's line (node as a field) or, when the log budget left it out, the read's
    // (naming the node in its message).
    assert_eq!(failure["level"].as_str(), Some("WARN"), "{failure}");
    assert!(
        failure["node"] == "a"
            || failure["message"]
                .as_str()
                .is_some_and(|m| m.contains("a refused")),
        "{failure}"
    );
    assert!(
        lines.iter().any(|l| l["message"] == "hrwproxy serving"),
        "{lines:?}"
    );
}

#[test]
fn completions_and_the_man_page_describe_every_command() {
    let (ok, bash) = run(&["completions", "bash"]);
    assert!(ok, "{bash}");
    let script = tempfile::NamedTempFile::new().unwrap();
    write_file(script.path(), &bash);
    // Sourced by bash, it registers completion for hrwproxy, and knows the subcommands.
    let registered = Command::new("bash")
        .args([
            "-c",
            &format!("source {} && complete -p hrwproxy", script.path().display()),
        ])
        .output()
        .unwrap();
    assert!(registered.status.success(), "{registered:?}");
    assert!(String::from_utf8_lossy(&registered.stdout).contains("hrwproxy"));
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let (ok, text) = run(&["completions", shell]);
        assert!(ok && text.contains("hrwproxy"), "{shell}: {text}");
    }
    let (ok, man) = run(&["man"]);
    assert!(ok, "{man}");
    assert!(man.contains(".TH hrwproxy 1"), "{man}");
    for command in [
        "serve",
        "demo",
        "locate",
        "plan",
        "repair",
        "status",
        "check",
        "completions",
    ] {
        assert!(bash.contains(command) && man.contains(command), "{command}");
    }
    let (ok, unknown) = run(&["completions", "tcsh"]);
    assert!(!ok && unknown.contains("possible values"), "{unknown}");
}
