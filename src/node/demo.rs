//! The demo's own nodes: a built-in node for every node of the config that is http on a
//! loopback address, started in this process, including nodes added by a later reload.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use crate::config::{Config, NodeUrl, Scheme};
use crate::node::{self, Store, DEFAULT_NODE_MAX_VALUE_BYTES};

/// The socket address of a node the demo can run itself: its host is a loopback IP literal or
/// `localhost`.
fn loopback_addr(url: &NodeUrl) -> Option<SocketAddr> {
    let host = url.host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::from([127, 0, 0, 1])
    } else {
        host.parse().ok()?
    };
    ip.is_loopback().then_some(SocketAddr::new(ip, url.port))
}

/// The built-in nodes this process runs, by address.
#[derive(Debug, Default)]
pub(crate) struct Fleet {
    running: Mutex<HashSet<SocketAddr>>,
}

impl Fleet {
    /// Starts a node for each loopback http node of `config` not already running here. A node
    /// whose address is taken (say, one you started yourself) is left to whoever holds it.
    /// Must be called within a tokio runtime.
    pub(crate) fn start_missing(&self, config: &Config) {
        let mut running = crate::lock(&self.running);
        for spec in &config.nodes {
            if spec.url.scheme != Scheme::Http {
                continue;
            }
            let Some(addr) = loopback_addr(&spec.url) else {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_nodes_are_the_demo_s_own() {
        let addr = |s: &str| loopback_addr(&NodeUrl::try_from(s.to_owned()).unwrap());
        assert!(addr("http://127.0.0.1:7001").is_some());
        assert!(addr("http://localhost:7001").is_some());
        assert!(addr("http://[::1]:7001").is_some());
        assert!(addr("http://10.0.0.1:7001").is_none());
        assert!(addr("http://cache-1:7001").is_none());
    }
}
