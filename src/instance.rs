//! One running proxy, the library's entry point: load a config, then start the data and
//! admin listeners (already bound by the caller), the reload triggers and the probe driver,
//! and stop them all together.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::admin::{self, Admin};
use crate::cluster::reload::Reloader;
pub use crate::cluster::reload::{ReloadStatus, Reloaded, Trigger};
use crate::cluster::{hinted_handoff, probes, triggers};
use crate::config::{Config, ConfigError};
use crate::net::workers::Workers;
use crate::proxy::door::{self, Protocol};
use crate::proxy::hot_keys::HotKeys;
use crate::proxy::memcache::Memcache;
use crate::proxy::resp::Resp;
use crate::proxy::{self, DataPath};
use crate::repair::BackgroundRepair;

/// A loaded proxy: its config serving, ready to [`Proxy::start`]. Clones share everything.
#[derive(Debug, Clone)]
pub struct Proxy {
    reloader: Arc<Reloader>,
    data: Arc<DataPath>,
    admin: Arc<Admin>,
}

/// How a proxy follows its config besides file events, the poll and the admin API.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartOptions {
    /// Reload on SIGHUP (the process's signal: for the `serve` command, not for a proxy
    /// embedded among others).
    pub sighup: bool,
}

impl Proxy {
    /// Loads the config at `path` as generation 1, with the files it names.
    pub fn load(path: &Path) -> Result<Proxy, ConfigError> {
        let reloader = Reloader::load(path)?;
        let hot_keys = Arc::new(HotKeys::default());
        let data = Arc::new(DataPath {
            cluster: reloader.cluster().clone(),
            hedge_budget: Default::default(),
            repair_budget: Default::default(),
            coalescer: Default::default(),
            hot_keys: hot_keys.clone(),
        });
        let admin = Arc::new(Admin {
            reloader: reloader.clone(),
            repairs: BackgroundRepair::default(),
            hot_keys,
        });
        Ok(Proxy {
            reloader,
            data,
            admin,
        })
    }

    /// The config serving now.
    pub fn config(&self) -> Arc<Config> {
        self.reloader.cluster().snapshot().config.clone()
    }

    /// The generation serving now: 1 at start, one more per applied reload.
    pub fn generation(&self) -> u64 {
        self.reloader.cluster().snapshot().generation
    }

    pub fn status(&self) -> ReloadStatus {
        self.reloader.status()
    }

    /// Re-reads the config now, on this thread (it may block), as `POST /admin/reload` does.
    pub fn reload_now(&self) -> Reloaded {
        self.reloader.reload_now(Trigger::Admin)
    }

    /// Calls `hook` with each config applied by a reload (the demo starts nodes for it).
    pub fn on_applied(&self, hook: impl Fn(&Config) + Send + Sync + 'static) {
        self.reloader.on_applied(move |snap| hook(&snap.config));
    }

    /// Starts following the config and probing the nodes; must be called within a tokio
    /// runtime. The config's directories are watched when this returns, so no edit made
    /// afterwards is missed.
    pub fn start(
        &self,
        listener: TcpListener,
        admin_listener: TcpListener,
        options: StartOptions,
    ) -> notify::Result<Running> {
        let cluster = self.reloader.cluster().clone();
        Ok(Running {
            _triggers: Background(triggers::start(&self.reloader, options.sighup)?),
            _probes: Background(tokio::spawn(probes::drive(cluster.clone()))),
            _hinted_handoff: Background(tokio::spawn(hinted_handoff::drive(cluster))),
            proxy: self.clone(),
            listener,
            admin_listener,
            resp_listener: None,
            memcache_listener: None,
        })
    }
}

/// Aborts a background task when dropped, so nothing outlives the proxy it belongs to.
#[derive(Debug)]
struct Background(JoinHandle<()>);

impl Drop for Background {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A started proxy, whose config triggers and probes run; [`Running::serve`] serves it.
#[derive(Debug)]
pub struct Running {
    proxy: Proxy,
    listener: TcpListener,
    admin_listener: TcpListener,
    resp_listener: Option<TcpListener>,
    memcache_listener: Option<TcpListener>,
    _triggers: Background,
    _probes: Background,
    _hinted_handoff: Background,
}

impl Running {
    /// Also serves Redis and memcached clients on these listeners (already bound, as the
    /// others), where given.
    pub fn with_doors(
        mut self,
        resp: Option<TcpListener>,
        memcache: Option<TcpListener>,
    ) -> Running {
        self.resp_listener = resp;
        self.memcache_listener = memcache;
        self
    }

    /// Serves requests (HTTP, and Redis and memcached when given) and the admin API until `shutdown`
    /// resolves; then stops accepting, lets requests in flight finish within the shutdown
    /// grace, and stops everything.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin = tokio::spawn(admin::serve(
            self.admin_listener,
            self.proxy.admin.clone(),
            async {
                let _ = admin_stopped.await;
            },
        ));
        // The data listener and the doors share one set of per-core workers, and so the
        // connections to the nodes.
        let workers = match Workers::start("hrwproxy-worker") {
            Ok(workers) => Some(workers),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start worker threads; serving on the main runtime");
                None
            }
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let http = async {
            let shutdown = async {
                shutdown.await;
                let _ = stop.send(true);
            };
            proxy::serve(
                self.listener,
                self.proxy.data.clone(),
                workers.as_ref(),
                shutdown,
            )
            .await
        };
        let (data, workers) = (&self.proxy.data, workers.as_ref());
        tokio::join!(
            http,
            serve_door(self.resp_listener, data, workers, &stopped, Resp::start),
            serve_door(
                self.memcache_listener,
                data,
                workers,
                &stopped,
                Memcache::start
            )
        );
        let _ = stop_admin.send(());
        let _ = admin.await;
    }
}

/// Serves a cache-protocol door on `listener`, if given, until `stopped` says stop.
async fn serve_door<P: Protocol>(
    listener: Option<TcpListener>,
    path: &Arc<DataPath>,
    workers: Option<&Workers>,
    stopped: &tokio::sync::watch::Receiver<bool>,
    start: fn(Arc<DataPath>) -> P,
) {
    if let Some(listener) = listener {
        let mut stopped = stopped.clone();
        let stopped = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        door::serve(listener, path.clone(), workers, stopped, start).await
    }
}
