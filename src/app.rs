//! A whole running proxy: the data listener, the admin listener, the config watcher and the
//! active health checks, started and stopped together.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::admin::{self, Admin};
use crate::health;
use crate::reload::Reloader;
use crate::service;
use crate::watch;

/// Aborts a background task when dropped, so nothing outlives the proxy it belongs to.
struct Background(JoinHandle<()>);

impl Drop for Background {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A proxy whose config watch and health checks run, ready to serve.
pub struct Proxy {
    reloader: Arc<Reloader>,
    listener: TcpListener,
    admin_listener: TcpListener,
    _watch: Background,
    _checks: Background,
}

/// Starts following the config and checking the nodes; must be called within a tokio runtime.
/// The watch is in place when this returns, so no edit made afterwards is missed.
pub fn start(
    reloader: Arc<Reloader>,
    listener: TcpListener,
    admin_listener: TcpListener,
) -> notify::Result<Proxy> {
    Ok(Proxy {
        _watch: Background(watch::watch(&reloader)?),
        _checks: Background(tokio::spawn(health::check_actively(reloader.shared()))),
        reloader,
        listener,
        admin_listener,
    })
}

impl Proxy {
    /// Serves requests and the admin API until `shutdown` resolves.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin = Admin {
            reloader: self.reloader.clone(),
            rebalancer: Arc::default(),
        };
        let admin = tokio::spawn(admin::serve(self.admin_listener, admin, async {
            let _ = admin_stopped.await;
        }));
        service::serve(self.listener, self.reloader.shared(), shutdown).await;
        let _ = stop_admin.send(());
        let _ = admin.await;
    }
}
