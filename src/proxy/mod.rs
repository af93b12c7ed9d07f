//! The data path: one request from HTTP to an outcome and back. [`service`] parses it
//! ([`request`]) and hands it to [`read`] or [`write`], which carry it out against the key's
//! replicas through the cluster's one attempt function, hedging slow reads ([`hedge`]) and
//! sharing the reads of concurrent GETs of a key ([`coalesce`]);
//! [`outcome`] classifies what happened and [`respond`] is the one place that turns it into a
//! status.

mod budget;
mod coalesce;
mod hedge;
pub(crate) mod hot_keys;
mod outcome;
mod read;
mod request;
mod respond;
mod service;
mod write;

use std::future::Future;
use std::sync::Arc;

use crate::cluster::Cluster;
use crate::net::server;
use crate::net::workers::Workers;

/// What the data path keeps for the life of the process besides the cluster.
#[derive(Debug)]
pub(crate) struct DataPath {
    pub cluster: Arc<Cluster>,
    /// Hedged reads allowed.
    pub hedge_budget: budget::Budget,
    /// Read repairs allowed.
    pub repair_budget: budget::Budget,
    /// Reads in flight, shared by concurrent GETs of a key.
    pub coalescer: coalesce::Coalescer,
    /// The keys taking the most requests (the admin API reports them).
    pub hot_keys: Arc<hot_keys::HotKeys>,
}

/// Serves the proxy on `listener` (over TLS when the cluster has a certificate) until
/// `shutdown` resolves.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    path: Arc<DataPath>,
    shutdown: impl Future<Output = ()>,
) {
    let tls = path
        .cluster
        .server_cert
        .clone()
        .map(crate::net::tls::acceptor);
    let limits = path.cluster.snapshot().config.limits;
    let workers = match Workers::start("hrwproxy-worker") {
        Ok(workers) => Some(workers),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start worker threads; serving on the main runtime");
            None
        }
    };
    let handler = move |req| service::handle(path.clone(), req);
    server::serve_http(listener, handler, limits, tls, workers, shutdown).await
}

#[cfg(test)]
mod tests;
