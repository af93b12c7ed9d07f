//! What a config names outside itself, read whenever it is applied: bearer token files, the
//! data listener's certificate and key, the CA bundle for `https://` nodes. Their contents are
//! part of what a reload compares, so a renewed certificate or rotated token applies on the
//! next reload even when the YAML did not change.

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
    /// A digest of `tls.backend_ca_file` (0 without one).
    pub backend_trust: u64,
}

impl Files {
    /// Reads the files `config` names, relative to `dir` (the config file's directory).
    pub(crate) fn load(config: &Config, dir: &Path) -> Result<Files, ConfigError> {
        let needs_connector = config.tls.backend_ca_file.is_some()
            || config.nodes.iter().any(|n| n.url.scheme == Scheme::Https);
        Ok(Files {
            tokens: Tokens::load(&config.auth, dir)?,
            server_key: tls::load_certified_key(&config.tls, dir)?,
            connector: if needs_connector {
                Some(tls::connector(&config.tls, dir)?)
            } else {
                None
            },
            backend_trust: config
                .tls
                .backend_ca_file
                .as_ref()
                .map_or(0, |ca| digest_of(&dir.join(ca))),
        })
    }
}

/// A real client for a node, trusting what `files` say for `https://`.
pub(crate) fn connect(spec: &NodeSpec, config: &Config, files: &Files) -> Arc<dyn Backend> {
    backend::connect(spec, config, files.connector.as_ref())
}

/// Every file `config` names, as paths relative to `dir`.
pub(crate) fn named_by(config: &Config, dir: &Path) -> Vec<PathBuf> {
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

/// A digest of a file's bytes; a file that cannot be read has its own digest (1), so that
/// its appearing is a change.
pub(crate) fn digest_of(path: &Path) -> u64 {
    std::fs::read(path).map_or(1, |bytes| XxHash3_64::oneshot(&bytes))
}
