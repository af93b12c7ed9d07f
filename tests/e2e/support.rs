//! What the end-to-end tests run against: built-in nodes as real child processes, the proxy
//! either in this process (to watch its generation) or as a child, and a raw HTTP/1.1 client
//! so a test controls every byte of the request line.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use hrwproxy::routing::{key_hash, Ring};
use hrwproxy::StartOptions;

pub const BIN: &str = env!("CARGO_BIN_EXE_hrwproxy");

/// How long a test waits for something that should happen at once (a reload, a listener).
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A child process killed when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `hrwproxy ARGS` and waits for its `... listening on http://ADDR` lines on stdout;
/// returns the addresses in the order printed (the proxy prints its admin address second).
pub fn spawn_listening_all(args: &[&str], lines: usize) -> (ChildGuard, Vec<SocketAddr>) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start hrwproxy");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let guard = ChildGuard(child);
    let mut addrs = Vec::new();
    for _ in 0..lines {
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read stdout");
        let addr = line
            .trim()
            .rsplit("://")
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("hrwproxy {args:?} printed {line:?}, not its address"));
        addrs.push(addr);
    }
    // Keep reading so the child never writes to a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    (guard, addrs)
}

pub fn spawn_listening(args: &[&str]) -> (ChildGuard, SocketAddr) {
    let (guard, addrs) = spawn_listening_all(args, 1);
    (guard, addrs[0])
}

/// A free port for a server a test starts and may restart on the same port. It comes from
/// below the kernel's ephemeral range (which starts at 32768), so no outgoing connection or
/// port-0 listener can take it while the server is down.
pub fn reserved_port() -> u16 {
    const FIRST: u16 = 20_000;
    const SPAN: u16 = 12_000;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Each test process starts at its own offset, so concurrent runs rarely meet.
    let offset = (std::process::id() % 60) as u16 * 200;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = FIRST + (offset + n) % SPAN;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A built-in node in its own process, on a reserved port.
pub struct Node {
    pub id: String,
    pub addr: SocketAddr,
    process: Option<ChildGuard>,
}

impl Node {
    pub fn start(id: &str) -> Node {
        let listen = format!("127.0.0.1:{}", reserved_port());
        let (process, addr) = spawn_listening(&["node", "--listen", &listen]);
        Node {
            id: id.to_string(),
            addr,
            process: Some(process),
        }
    }

    /// Kills the node (SIGKILL): its port refuses connections from now on.
    pub fn kill(&mut self) {
        self.process = None;
    }

    /// Starts a killed node again on its address, empty.
    pub fn restart(&mut self) {
        let listen = self.addr.to_string();
        let (process, _) = spawn_listening(&["node", "--listen", &listen]);
        self.process = Some(process);
    }

    /// Sends a signal by name (`STOP`, `CONT`, ...) to the node's process.
    pub fn signal(&self, name: &str) {
        let pid = self
            .process
            .as_ref()
            .expect("a running node")
            .0
            .id()
            .to_string();
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -{name} {pid}");
    }

    /// The value the node itself holds for `key`, asked directly.
    pub fn holds(&self, key: &[u8]) -> Option<Vec<u8>> {
        let resp = request(self.addr, "GET", &kv_path(key), b"");
        match resp.status {
            200 => Some(resp.body),
            404 => None,
            other => panic!("node {} answered {other}", self.id),
        }
    }
}

pub fn start_nodes(ids: &[&str]) -> Vec<Node> {
    ids.iter().map(|id| Node::start(id)).collect()
}

/// A config for `nodes` with the given top-level settings (YAML lines, may be empty). Reads
/// are not hedged unless the settings say so: a hedge may answer from the second replica, and
/// tests read `x-hrw-node` to see who owns a key.
pub fn config_yaml<'a>(nodes: impl IntoIterator<Item = &'a Node>, settings: &str) -> String {
    let hedging = if settings.contains("hedge_budget_percent") {
        ""
    } else {
        "hedge_budget_percent: 0\n"
    };
    let mut yaml =
        format!("listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\n{hedging}{settings}\nnodes:\n");
    for node in nodes {
        yaml.push_str(&format!(
            "  - id: {}\n    url: http://{}\n",
            node.id, node.addr
        ));
    }
    yaml
}

/// PUTs every key through the proxy with itself as the value.
pub fn put_keys<K: AsRef<[u8]>>(proxy: &Proxy, keys: &[K]) {
    for key in keys {
        let key = key.as_ref();
        let put = proxy.request("PUT", &kv_path(key), key);
        assert_eq!(put.status, 204, "PUT {key:?}: {}", put.text());
    }
}

/// The first key `prefix-N` whose first replica among `nodes` is `primary`.
pub fn key_with_primary(nodes: &[Node], prefix: &str, primary: &str) -> String {
    let all: Vec<&Node> = nodes.iter().collect();
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|k| ranking(&all, k.as_bytes())[0] == primary)
        .expect("some key")
}

/// The same ranking the proxy uses, from the public library API.
pub fn ranking(nodes: &[&Node], key: &[u8]) -> Vec<String> {
    let ring = Ring::new(nodes.iter().map(|n| (n.id.as_str(), 1.0))).unwrap();
    ring.rank_all(key_hash(key))
        .iter()
        .map(|r| r.id.to_string())
        .collect()
}

pub const CONFIG_NAME: &str = "hrwproxy.yaml";

/// The proxy in this process, serving a config file in its own temporary directory.
pub struct Proxy {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub handle: hrwproxy::Proxy,
    dir: std::sync::Arc<tempfile::TempDir>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Proxy {
    pub fn start(yaml: &str) -> Proxy {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(CONFIG_NAME), yaml).expect("write config");
        Proxy::start_in(dir)
    }

    /// Serves `dir/hrwproxy.yaml`, which the caller has laid out (a symlink, say).
    pub fn start_in(dir: tempfile::TempDir) -> Proxy {
        Proxy::start_shared(std::sync::Arc::new(dir))
    }

    /// A second proxy in this process on the same config file.
    pub fn another(&self) -> Proxy {
        Proxy::start_shared(self.dir.clone())
    }

    fn start_shared(dir: std::sync::Arc<tempfile::TempDir>) -> Proxy {
        let path = dir.path().join(CONFIG_NAME);
        let handle = hrwproxy::Proxy::load(&path).expect("valid config");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (addr, admin_addr) = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addrs = (
                listener.local_addr().unwrap(),
                admin_listener.local_addr().unwrap(),
            );
            let running = handle
                .start(listener, admin_listener, StartOptions::default())
                .expect("watch config dir");
            tokio::spawn(running.serve(std::future::pending()));
            addrs
        });
        Proxy {
            addr,
            admin_addr,
            handle,
            dir,
            runtime: Some(runtime),
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join(CONFIG_NAME)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Saves by deleting the file and creating it anew.
    pub fn save_by_delete_and_create(&self, yaml: &str) {
        std::fs::remove_file(self.config_path()).unwrap();
        std::fs::write(self.config_path(), yaml).unwrap();
    }

    pub fn generation(&self) -> u64 {
        self.handle.generation()
    }

    pub fn config(&self) -> std::sync::Arc<hrwproxy::config::Config> {
        self.handle.config()
    }

    /// Waits until the watcher has applied `generation`.
    pub fn await_generation(&self, generation: u64) {
        let deadline = Instant::now() + PATIENCE;
        while self.generation() < generation {
            assert!(
                Instant::now() < deadline,
                "generation {generation} never applied"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(self.generation(), generation);
    }

    /// Saves like vim or `sed -i`: write a new file, rename it over the old one.
    pub fn save_by_rename(&self, yaml: &str) {
        let tmp = self.dir.path().join(".hrwproxy.yaml.tmp");
        std::fs::write(&tmp, yaml).unwrap();
        std::fs::rename(&tmp, self.config_path()).unwrap();
    }

    /// Saves like `cat > file` or most IDEs: truncate and write the same inode.
    pub fn save_in_place(&self, yaml: &str) {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(self.config_path())
            .unwrap();
        file.write_all(yaml.as_bytes()).unwrap();
    }

    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> Response {
        request(self.addr, method, path, body)
    }

    pub fn admin(&self, method: &str, path: &str) -> Response {
        request(self.admin_addr, method, path, b"")
    }

    /// A node's health as the admin API reports it: `up`, `ejected` or `probing`.
    /// Starts a repair through the admin API: `POST /admin/repair?QUERY`.
    pub fn start_repair(&self, query: &str) {
        let started = self.admin("POST", &format!("/admin/repair?{query}"));
        assert_eq!(started.status, 202, "{}", started.text());
    }

    /// Waits for the repair running to finish; its report.
    pub fn finish_repair(&self) -> serde_json::Value {
        let mut report = serde_json::Value::Null;
        wait_until("the repair to finish", || {
            report = serde_json::from_slice(&self.admin("GET", "/admin/repair").body).unwrap();
            report["state"] == "done"
        });
        report
    }

    /// A whole repair; its report.
    pub fn repair(&self, query: &str) -> serde_json::Value {
        self.start_repair(query);
        self.finish_repair()
    }

    pub fn health_of(&self, id: &str) -> String {
        let config: serde_json::Value =
            serde_json::from_slice(&self.admin("GET", "/admin/config").body).unwrap();
        let node = config["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id);
        node.unwrap()["health"].as_str().unwrap().to_string()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `/kv/<key>` with every byte outside A-Z a-z 0-9 - _ ~ percent-encoded.
pub fn kv_path(key: &[u8]) -> String {
    let mut path = String::from("/kv/");
    for &b in key {
        if b.is_ascii_alphanumeric() || b"-_~".contains(&b) {
            path.push(b as char);
        } else {
            path.push_str(&format!("%{b:02X}"));
        }
    }
    path
}

/// One HTTP/1.1 request on a fresh connection, sent exactly as given, read to the end.
pub fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Response {
    request_with_header(addr, method, path, "x-test: 1", body)
}

/// [`request`] with one extra header line, such as `x-hrw-ttl: 5`.
pub fn request_with_header(
    addr: SocketAddr,
    method: &str,
    path: &str,
    header: &str,
    body: &[u8],
) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n{header}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    // A server may answer (413) and close before reading a large body; that is not an error.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    if let Err(e) = stream.read_to_end(&mut raw) {
        assert!(!raw.is_empty(), "{method} {path}: {e}");
    }
    parse(&raw).unwrap_or_else(|| panic!("{method} {path}: unparsable response {raw:?}"))
}

pub fn parse(raw: &[u8]) -> Option<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Response {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

pub fn write_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// Polls `done` every 10 ms until it holds; panics with `what` after [`PATIENCE`].
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every key a built-in node holds a value for (tombstones left out), from its listing: per
/// line a percent-encoded key, its version, and `tombstone` for a tombstone.
pub fn node_keys(addr: SocketAddr) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let after = last.take().unwrap_or_default();
        let resp = request(addr, "GET", &format!("/kv?limit=1000&after={after}"), b"");
        assert_eq!(resp.status, 200, "listing: {}", resp.text());
        let lines: Vec<String> = resp.text().lines().map(str::to_owned).collect();
        let complete = lines.len() < 1000;
        last = lines
            .last()
            .and_then(|l| l.split(' ').next())
            .map(str::to_owned);
        for line in &lines {
            let mut fields = line.split(' ');
            let key = percent_decode(fields.next().unwrap());
            if fields.nth(1) != Some("tombstone") {
                keys.push(key);
            }
        }
        if complete {
            return keys;
        }
    }
}

fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// A real HTTP peer on a free port that answers 204 to one request and hands back its head.
pub fn capture_one_request() -> (std::net::SocketAddr, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line.to_ascii_lowercase());
        }
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |n| n.trim().parse().unwrap());
        let mut body = vec![0; length];
        std::io::Read::read_exact(&mut reader, &mut body).unwrap();
        let mut stream = stream;
        stream
            .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
            .unwrap();
        head
    });
    (addr, handle)
}

/// Installs Debian's `packages` unless every one of `bins` is there already; the error says
/// what to run when that fails (not root, no registry).
pub fn install_if_missing(bins: &[&str], packages: &str) -> Result<(), String> {
    let have = |bin: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {bin}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    // One install at a time: tests run in parallel, and apt holds a lock while it works.
    static APT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _apt = APT.lock().unwrap_or_else(|e| e.into_inner());
    if bins.iter().all(|bin| have(bin)) {
        return Ok(());
    }
    // Bounded: a registry that does not answer fails the tests in minutes, not hours.
    let script = format!(
        "timeout 300 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq -o DPkg::Lock::Timeout=300 {packages}"
    );
    let installed = Command::new("sh")
        .args(["-c", &script])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if installed && bins.iter().all(|bin| have(bin)) {
        Ok(())
    } else {
        Err(format!(
            "{packages} are needed; install them (as root: {script})"
        ))
    }
}
