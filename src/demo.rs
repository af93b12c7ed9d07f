//! The demo's own nodes: a built-in node for every node of the config that is http on a
//! loopback address, started in this process, including nodes added by a later reload.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::config::{Config, Scheme};
use crate::node::{self, Store, DEFAULT_NODE_MAX_VALUE_BYTES};

/// The built-in nodes this process runs, by address.
#[derive(Debug, Default)]
pub struct Fleet {
    running: Mutex<HashSet<SocketAddr>>,
}

impl Fleet {
    /// Starts a node for each loopback http node of `config` not already running here. A node
    /// whose address is taken (say, one you started yourself) is left to whoever holds it.
    /// Must be called within a tokio runtime.
    pub fn start_missing(&self, config: &Config) {
        let mut running = crate::lock(&self.running);
        for spec in &config.nodes {
            if spec.url.scheme != Scheme::Http {
                continue;
            }
            let Some(addr) = spec.url.loopback_addr() else {
                continue;
            };
            if running.contains(&addr) {
                continue;
            }
            let listener = std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .and_then(tokio::net::TcpListener::from_std);
            match listener {
                Ok(listener) => {
                    running.insert(addr);
                    tracing::info!(node = %spec.id, %addr, "built-in node started");
                    tokio::spawn(node::serve(
                        listener,
                        Arc::new(Store::default()),
                        DEFAULT_NODE_MAX_VALUE_BYTES,
                        std::future::pending(),
                    ));
                }
                Err(e) => tracing::warn!(
                    node = %spec.id,
                    %addr,
                    error = %e,
                    "cannot start a built-in node there; using whatever listens on it"
                ),
            }
        }
    }
}
