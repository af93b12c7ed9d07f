//! `hrwproxy serve` and `hrwproxy demo`: the proxy, following live edits of its config; the
//! demo also runs a built-in node for every loopback http node of the config.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use crate::instance::{Proxy, StartOptions};
use crate::net::server;
use crate::node::demo::Fleet;

pub async fn serve(path: &Path, demo: bool) -> anyhow::Result<ExitCode> {
    let proxy = Proxy::load(path).with_context(|| path.display().to_string())?;
    let config = proxy.config();
    if demo {
        let fleet = Arc::new(Fleet::default());
        fleet.start_missing(&config);
        let handle = tokio::runtime::Handle::current();
        proxy.on_applied(move |config| {
            let _guard = handle.enter();
            fleet.start_missing(config);
        });
    }
    let listener = server::bind(config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let admin_listener = server::bind(config.admin).with_context(|| {
        format!(
            "cannot listen on {} (admin; set `admin:` in the config)",
            config.admin
        )
    })?;
    let door = |at: Option<std::net::SocketAddr>, setting: &str| match at {
        Some(at) => server::bind(at)
            .with_context(|| format!("cannot listen on {at} ({setting})"))
            .map(Some),
        None => Ok(None),
    };
    let resp_listener = door(config.resp_listen, "resp_listen")?;
    let memcache_listener = door(config.memcache_listen, "memcache_listen")?;
    let (addr, admin_addr) = (listener.local_addr()?, admin_listener.local_addr()?);
    let resp_addr = resp_listener.as_ref().map(|l| l.local_addr()).transpose()?;
    let memcache_addr = memcache_listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()?;
    let running = proxy
        .start(listener, admin_listener, StartOptions { sighup: true })
        .with_context(|| format!("cannot watch {}", path.display()))?
        .with_doors(resp_listener, memcache_listener);
    tracing::info!(
        %addr,
        %admin_addr,
        config = %path.display(),
        nodes = config.nodes.len(),
        replicas = config.replicas,
        write_quorum = config.write_quorum,
        "hrwproxy serving"
    );
    let mut out = std::io::stdout().lock();
    // A closed stdout is no reason to stop serving.
    let _ = writeln!(out, "hrwproxy listening on http://{addr}");
    let _ = writeln!(out, "hrwproxy admin listening on http://{admin_addr}");
    if let Some(resp_addr) = resp_addr {
        let _ = writeln!(out, "hrwproxy RESP listening on redis://{resp_addr}");
    }
    if let Some(memcache_addr) = memcache_addr {
        let _ = writeln!(
            out,
            "hrwproxy memcached listening on memcache://{memcache_addr}"
        );
    }
    let _ = out.flush();
    drop(out);
    running.serve(super::shutdown_signal()).await;
    Ok(ExitCode::SUCCESS)
}
