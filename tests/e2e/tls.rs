//! HTTPS on the data listener (certificate swapped by a reload) and `https://` nodes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use tokio_rustls::rustls;

use crate::support::*;

/// A self-signed certificate for localhost: (certificate PEM, key PEM).
fn self_signed() -> (String, String) {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    (made.cert.pem(), made.signing_key.serialize_pem())
}

/// One HTTPS request trusting only `ca_pem`; `Err` if the handshake fails.
fn https(
    addr: SocketAddr,
    ca_pem: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<Response, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = "localhost".try_into().unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let head = format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\n\r\n", body.len());
    tls.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    tls.write_all(body).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    if let Err(e) = tls.read_to_end(&mut raw) {
        if raw.is_empty() {
            return Err(e.to_string());
        }
    }
    parse(&raw).ok_or_else(|| format!("unparsable: {raw:?}"))
}

#[test]
fn https_listener_rotates_its_certificate_and_https_nodes_are_trusted_by_ca_file() {
    let nodes = start_nodes(&["a"]);
    let (cert, key) = self_signed();
    let dir = tempfile::tempdir().unwrap();
    write_file(&dir.path().join("server.pem"), &cert);
    write_file(&dir.path().join("server.key"), &key);
    let tls = "tls: { cert_file: server.pem, key_file: server.key }";
    write_file(&dir.path().join(CONFIG_NAME), &config_yaml(&nodes, tls));
    let front = Proxy::start_in(dir);

    let put = https(front.addr, &cert, "PUT", "/kv/k", b"over tls").unwrap();
    assert_eq!(put.status, 204);
    assert_eq!(nodes[0].holds(b"k"), Some(b"over tls".to_vec()));
    // Plain HTTP on the HTTPS listener gets no HTTP answer.
    let mut plain = TcpStream::connect(front.addr).unwrap();
    plain.set_read_timeout(Some(PATIENCE)).unwrap();
    plain
        .write_all(b"GET /kv/k HTTP/1.1\r\nhost: h\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");

    // A second proxy reaches the first as an https:// node, trusting it by backend_ca_file.
    let back = tempfile::tempdir().unwrap();
    write_file(&back.path().join("ca.pem"), &cert);
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\ntls: {{ backend_ca_file: ca.pem }}\nnodes:\n  - {{ id: front, url: \"https://localhost:{}\" }}\n",
        front.addr.port()
    );
    write_file(&back.path().join(CONFIG_NAME), &yaml);
    let chained = Proxy::start_in(back);
    let get = chained.request("GET", "/kv/k", b"");
    assert_eq!(
        (get.status, get.body.as_slice()),
        (200, &b"over tls"[..]),
        "{}",
        get.text()
    );

    // A new certificate in the same files applies with the next reload.
    let (cert2, key2) = self_signed();
    write_file(&front.dir().join("server.pem"), &cert2);
    write_file(&front.dir().join("server.key"), &key2);
    front.save_in_place(&config_yaml(&nodes, &format!("{tls}\nmax_key_bytes: 100")));
    front.await_generation(2);
    assert_eq!(
        https(front.addr, &cert2, "GET", "/kv/k", b"")
            .unwrap()
            .status,
        200
    );
    assert!(
        https(front.addr, &cert, "GET", "/kv/k", b"").is_err(),
        "the old certificate is still served"
    );

    // A key that does not match its certificate is refused, with the field named.
    write_file(&front.dir().join("server.key"), &key);
    front.save_in_place(&config_yaml(&nodes, &format!("{tls}\nmax_key_bytes: 200")));
    wait_until("the rejection", || {
        front.handle.status().last_error.is_some()
    });
    let error = front.handle.status().last_error.unwrap().0.to_string();
    assert!(error.contains("tls.key_file"), "{error}");
}
