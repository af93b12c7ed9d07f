//! `hrwproxy node`: one built-in in-memory node.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use crate::net::server;
use crate::node::{self, Store};

pub use crate::node::DEFAULT_NODE_MAX_VALUE_BYTES;

pub async fn node(listen: SocketAddr, max_value_bytes: usize) -> anyhow::Result<ExitCode> {
    let listener = server::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "built-in node serving");
    let mut out = std::io::stdout().lock();
    // A closed stdout is no reason to stop serving.
    let _ = writeln!(out, "hrwproxy node listening on http://{addr}");
    let _ = out.flush();
    drop(out);
    node::serve(
        listener,
        Arc::new(Store::default()),
        max_value_bytes,
        super::shutdown_signal(),
    )
    .await;
    Ok(ExitCode::SUCCESS)
}
