//! TLS, optional: HTTPS on the data listener with a certificate re-read at every reload, and
//! the trust used for `https://` nodes (the public web roots plus an optional CA file).

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

use crate::config::{ConfigError, TlsConfig};

fn invalid(field: &str, path: &Path, why: impl std::fmt::Display) -> ConfigError {
    ConfigError::invalid(format!("tls.{field}: {}: {why}", path.display()))
}

/// Reads a file the config names (the reload reads each once, so what is parsed is what is
/// compared at the next reload).
pub(crate) type ReadFile<'a> = &'a dyn Fn(&Path) -> std::io::Result<Vec<u8>>;

fn read_certs(
    field: &str,
    path: &Path,
    read: ReadFile<'_>,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let pem = read(path).map_err(|e| invalid(field, path, e))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(field, path, e))?;
    if certs.is_empty() {
        return Err(invalid(field, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

/// The listener's certificate and key, checked to belong together.
pub(crate) fn load_certified_key(
    tls: &TlsConfig,
    dir: &Path,
    read: ReadFile<'_>,
) -> Result<Option<Arc<CertifiedKey>>, ConfigError> {
    let (Some(cert_file), Some(key_file)) = (&tls.cert_file, &tls.key_file) else {
        return Ok(None);
    };
    let (cert_path, key_path) = (dir.join(cert_file), dir.join(key_file));
    let certs = read_certs("cert_file", &cert_path, read)?;
    let pem = read(&key_path).map_err(|e| invalid("key_file", &key_path, e))?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| invalid("key_file", &key_path, e))?
        .ok_or_else(|| invalid("key_file", &key_path, "no PEM private key in it"))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| invalid("key_file", &key_path, e))?;
    let certified = CertifiedKey::new(certs, signing);
    certified.keys_match().map_err(|e| {
        invalid(
            "key_file",
            &key_path,
            format!("does not match cert_file: {e}"),
        )
    })?;
    Ok(Some(Arc::new(certified)))
}

/// The certificate the listener presents; a reload swaps it, new handshakes use the new one.
#[derive(Debug)]
pub(crate) struct ServerCert(ArcSwap<CertifiedKey>);

impl ServerCert {
    pub(crate) fn new(key: Arc<CertifiedKey>) -> Arc<ServerCert> {
        Arc::new(ServerCert(ArcSwap::new(key)))
    }

    pub(crate) fn replace(&self, key: Arc<CertifiedKey>) {
        self.0.store(key);
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The acceptor of the HTTPS data listener.
pub(crate) fn acceptor(cert: Arc<ServerCert>) -> tokio_rustls::TlsAcceptor {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// The client side for `https://` nodes: the public web roots, plus `backend_ca_file`.
pub(crate) fn connector(
    tls: &TlsConfig,
    dir: &Path,
    read: ReadFile<'_>,
) -> Result<tokio_rustls::TlsConnector, ConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(ca_file) = &tls.backend_ca_file {
        let path = dir.join(ca_file);
        for cert in read_certs("backend_ca_file", &path, read)? {
            roots
                .add(cert)
                .map_err(|e| invalid("backend_ca_file", &path, e))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
