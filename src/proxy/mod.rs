//! The data path: one request from HTTP to an outcome and back. [`service`] parses it
//! ([`request`]) and hands it to [`read`] or [`write`], which carry it out against the key's
//! replicas through the cluster's one attempt function, hedging slow reads ([`hedge`]) and
//! sharing the reads of concurrent GETs of a key ([`coalesce`]);
//! [`outcome`] classifies what happened and [`respond`] is the one place that turns it into a
//! status.

mod budget;
mod coalesce;
pub(crate) mod door;
mod hedge;
pub(crate) mod hot_keys;
pub(crate) mod memcache;
mod outcome;
mod read;
mod request;
pub(crate) mod resp;
mod respond;
mod service;
mod write;

use std::future::Future;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::cluster::Cluster;
use crate::net::request::RequestBody;
use crate::net::respond::Body;
use crate::net::workers::Workers;
use crate::net::{http1, server};

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
    workers: Option<&Workers>,
    shutdown: impl Future<Output = ()>,
) {
    let tls = path
        .cluster
        .server_cert
        .clone()
        .map(crate::net::tls::acceptor);
    let limits = path.cluster.snapshot().config.limits;
    match tls {
        // TLS streams keep buffers of their own: hyper serves them.
        Some(tls) => {
            let handler = move |req: Request<Incoming>| {
                let path = path.clone();
                async move { service::handle(&path, req.map(RequestBody::Hyper)).await }
            };
            let tls = Some(tls);
            server::serve_http(listener, handler, limits, tls, workers, shutdown).await
        }
        None => http1::serve(listener, path, limits, workers, shutdown).await,
    }
}

impl http1::Service for Arc<DataPath> {
    fn call<'c>(
        &'c self,
        req: Request<http1::Body<'c>>,
    ) -> impl Future<Output = Response<Body>> + Send + 'c {
        service::handle(self, req.map(RequestBody::Own))
    }
}

#[cfg(test)]
mod tests;
