//! Real redis-server, memcached and nginx (WebDAV: a plain HTTP store) processes on free
//! loopback ports, installed from Debian's packages when the machine lacks them (never
//! skipped), plus minimal raw-protocol clients to look at what they hold, independent of the
//! proxy's own clients.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hrwproxy::backend::memcache_key;
use hrwproxy::version::Stored;

use crate::support::{install_if_missing, reserved_port, ChildGuard, PATIENCE};

/// nginx, where Debian puts it (not on every user's PATH).
const NGINX: &str = "/usr/sbin/nginx";

/// Installs redis-server, memcached, libmemcached's clients and nginx once per test run if
/// they are missing.
pub fn ensure_installed() {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    let bins = ["redis-server", "memcached", "memccat", NGINX];
    let packages = "redis-server memcached libmemcached-tools nginx-light";
    if let Err(e) = INSTALLED.get_or_init(|| install_if_missing(&bins, packages)) {
        panic!("{e}");
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Redis,
    Memcached,
    /// nginx storing each key as a file (`dav_methods PUT DELETE`).
    WebDav,
}

/// A server process on its own port, killed when dropped.
pub struct Server {
    pub kind: Kind,
    pub addr: SocketAddr,
    process: Option<ChildGuard>,
    /// nginx's config, logs and files.
    dir: tempfile::TempDir,
}

impl Server {
    pub fn start(kind: Kind) -> Server {
        ensure_installed();
        let mut server = Server {
            kind,
            addr: SocketAddr::from(([127, 0, 0, 1], reserved_port())),
            process: None,
            dir: tempfile::tempdir().expect("temp dir"),
        };
        server.restart();
        server
    }

    /// The node URL for a config.
    pub fn url(&self) -> String {
        match self.kind {
            Kind::Redis => format!("redis://{}", self.addr),
            Kind::Memcached => format!("memcache://{}", self.addr),
            Kind::WebDav => format!("http://{}", self.addr),
        }
    }

    /// The node's fields of a config besides id and url.
    pub fn node_fields(&self) -> &'static str {
        match self.kind {
            Kind::WebDav => ", store: plain",
            Kind::Redis | Kind::Memcached => "",
        }
    }

    pub fn stop(&mut self) {
        self.process = None;
    }

    /// Sends the process a signal (`STOP`, `CONT`).
    pub fn signal(&self, signal: &str) {
        let pid = self.process.as_ref().expect("running").0.id().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -{signal} {pid}");
    }

    /// Starts the server again on the same port (empty: nothing is persisted).
    pub fn restart(&mut self) {
        self.stop();
        let port = self.addr.port().to_string();
        let mut command = match self.kind {
            Kind::Redis => {
                let mut c = Command::new("redis-server");
                c.args([
                    "--port",
                    &port,
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ]);
                c
            }
            Kind::Memcached => {
                let mut c = Command::new("memcached");
                c.args(["-l", "127.0.0.1", "-p", &port, "-U", "0"]);
                if running_as_root() {
                    c.args(["-u", "root"]);
                }
                c
            }
            Kind::WebDav => {
                let dir = self.dir.path();
                let data = dir.join("data");
                let _ = std::fs::remove_dir_all(&data);
                std::fs::create_dir_all(&data).unwrap();
                let conf = format!(
                    "daemon off; master_process off; pid {dir}/nginx.pid; error_log {dir}/error.log;\n\
                     events {{}}\n\
                     http {{ access_log off; client_body_temp_path {dir}/body;\n\
                       server {{ listen {addr}; root {data}; client_max_body_size 64m;\n\
                         location / {{ dav_methods PUT DELETE; create_full_put_path on; }} }} }}\n",
                    dir = dir.display(),
                    addr = self.addr,
                    data = data.display(),
                );
                std::fs::write(dir.join("nginx.conf"), conf).unwrap();
                let mut c = Command::new(NGINX);
                c.arg("-p").arg(dir).arg("-e").arg(dir.join("error.log"));
                c.arg("-c").arg(dir.join("nginx.conf"));
                c
            }
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {:?}: {e}", self.kind));
        self.process = Some(ChildGuard(child));
        let deadline = Instant::now() + PATIENCE;
        while TcpStream::connect(self.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "{:?} never listened on {}",
                self.kind,
                self.addr
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// What the server holds for the proxy's `key` (memcached's under the mapped key), as the
    /// envelope says.
    pub fn holds(&self, key: &[u8]) -> Option<Stored> {
        let raw = match self.kind {
            Kind::Memcached => self.holds_raw(&memcache_key(key)),
            Kind::Redis | Kind::WebDav => self.holds_raw(key),
        }?;
        Some(Stored::decode(raw.into()))
    }

    /// Stores `value` under the proxy's `key` as another client of Redis would: no envelope.
    pub fn redis_set_raw(&self, key: &[u8], value: &[u8]) {
        assert_eq!(self.kind, Kind::Redis);
        let mut stream = TcpStream::connect(self.addr).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut request = b"*3\r\n$3\r\nSET\r\n".to_vec();
        for part in [key, value] {
            request.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
            request.extend_from_slice(part);
            request.extend_from_slice(b"\r\n");
        }
        stream.write_all(&request).unwrap();
        let mut reply = [0; 5];
        stream.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"+OK\r\n");
    }

    /// The value the server holds under its own key `raw_key`, asked over its protocol.
    fn holds_raw(&self, raw_key: &[u8]) -> Option<Vec<u8>> {
        let mut stream = TcpStream::connect(self.addr).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = Vec::new();
        match self.kind {
            Kind::Redis => {
                let mut request = format!("*2\r\n$3\r\nGET\r\n${}\r\n", raw_key.len()).into_bytes();
                request.extend_from_slice(raw_key);
                request.extend_from_slice(b"\r\n");
                stream.write_all(&request).unwrap();
                reader.read_until(b'\n', &mut line).unwrap();
                let len: i64 = std::str::from_utf8(&line[1..line.len() - 2])
                    .unwrap()
                    .parse()
                    .unwrap();
                (len >= 0).then(|| read_exact(&mut reader, len as usize))
            }
            Kind::WebDav => {
                let key = std::str::from_utf8(raw_key).expect("a file name");
                std::fs::read(self.dir.path().join("data/kv").join(key)).ok()
            }
            Kind::Memcached => {
                stream
                    .write_all(&[b"get ", raw_key, b"\r\n"].concat())
                    .unwrap();
                reader.read_until(b'\n', &mut line).unwrap();
                let header = String::from_utf8(line).unwrap();
                if header == "END\r\n" {
                    return None;
                }
                let len: usize = header
                    .trim_end()
                    .rsplit(' ')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                let value = read_exact(&mut reader, len);
                Some(value)
            }
        }
    }
}

fn read_exact(reader: &mut impl Read, len: usize) -> Vec<u8> {
    let mut value = vec![0; len + 2];
    reader.read_exact(&mut value).unwrap();
    value.truncate(len);
    value
}
