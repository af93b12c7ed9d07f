//! What a config names outside itself, read whenever it is applied: bearer token files, the
//! data listener's certificate and key, the CA bundle for `https://` nodes. Each is read once
//! per reload; its digest is taken from the very bytes that are parsed, and compared at the
//! next reload, so a renewed certificate or rotated token applies even when the YAML did not
//! change (and a half-written one is never mistaken for the finished file).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::TlsConnector;
use twox_hash::XxHash3_64;

use crate::backend::{self, Backend};
use crate::config::{Config, ConfigError, NodeSpec, Scheme};
use crate::net::auth::Tokens;
use crate::net::tls;

#[derive(Default)]
pub(crate) struct Files {
    pub tokens: Tokens,
    pub server_key: Option<Arc<CertifiedKey>>,
    pub connector: Option<TlsConnector>,
    /// The digest of `tls.backend_ca_file` (0 without one).
    pub backend_trust: u64,
}

/// Each file a config names and the digest of what was read from it.
pub(crate) type Digests = Vec<(PathBuf, u64)>;

impl Files {
    /// Reads the files `config` names, relative to `dir` (the config file's directory), once
    /// each; returns what they hold and their digests, or why they cannot be used and the
    /// digests all the same (so the same rejection is not repeated until a file changes).
    pub fn load(config: &Config, dir: &Path) -> (Result<Files, ConfigError>, Digests) {
        let read: HashMap<PathBuf, std::io::Result<Vec<u8>>> = named_by(config, dir)
            .into_iter()
            .map(|path| {
                let bytes = std::fs::read(&path);
                (path, bytes)
            })
            .collect();
        let digests = read
            .iter()
            .map(|(path, bytes)| (path.clone(), digest(bytes)))
            .collect();
        let from_memory = |path: &Path| match read.get(path) {
            Some(Ok(bytes)) => Ok(bytes.clone()),
            Some(Err(e)) => Err(std::io::Error::new(e.kind(), e.to_string())),
            None => std::fs::read(path),
        };
        let trust = config
            .tls
            .backend_ca_file
            .as_ref()
            .and_then(|ca| read.get(&dir.join(ca)))
            .map_or(0, digest);
        let needs_connector = config.tls.backend_ca_file.is_some()
            || config.nodes.iter().any(|n| n.url.scheme == Scheme::Https);
        let files = (|| {
            Ok(Files {
                tokens: Tokens::load(&config.auth, dir, &from_memory)?,
                server_key: tls::load_certified_key(&config.tls, dir, &from_memory)?,
                connector: if needs_connector {
                    Some(tls::connector(&config.tls, dir, &from_memory)?)
                } else {
                    None
                },
                backend_trust: trust,
            })
        })();
        (files, digests)
    }
}

/// A real client for a node, trusting what `files` say for `https://`.
pub(crate) fn connect(spec: &NodeSpec, config: &Config, files: &Files) -> Arc<dyn Backend> {
    backend::connect(spec, config, files.connector.as_ref())
}

/// Every file `config` names, as paths relative to `dir`.
fn named_by(config: &Config, dir: &Path) -> Vec<PathBuf> {
    let (auth, tls) = (&config.auth, &config.tls);
    [
        &auth.data_token_file,
        &auth.admin_token_file,
        &tls.cert_file,
        &tls.key_file,
        &tls.backend_ca_file,
    ]
    .into_iter()
    .flatten()
    .map(|file| dir.join(file))
    .collect()
}

/// A digest of what reading a file gave; a file that cannot be read has its own digest (1),
/// so that its appearing is a change.
fn digest(read: &std::io::Result<Vec<u8>>) -> u64 {
    read.as_ref().map_or(1, |bytes| XxHash3_64::oneshot(bytes))
}

/// The digest of a file as it is now.
pub(crate) fn digest_of(path: &Path) -> u64 {
    digest(&std::fs::read(path))
}
