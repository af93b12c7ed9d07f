//! The `hrwproxy` commands, one file each; `main.rs` only parses arguments and calls these.
//! Results go to stdout (a closed pipe ends a command quietly), logs to stderr.

mod admin_client;
mod check;
mod locate;
mod node;
mod plan;
mod repair;
mod serve;
mod status;

use std::future::Future;
use std::io;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::LogFormat;

pub use self::check::check;
pub use self::locate::locate;
pub use self::node::{node, DEFAULT_NODE_MAX_VALUE_BYTES};
pub use self::plan::plan;
pub use self::repair::{repair, RepairArgs};
pub use self::serve::serve;
pub use self::status::status;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`): as text, or one JSON object per
/// line with the event's fields (the request id among them) at the top level.
pub fn init_logging(format: LogFormat) {
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(io::stderr);
    match format {
        LogFormat::Text => logs
            .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
            .init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}

/// Runs an async command on a multi-threaded runtime.
pub fn run_async(fut: impl Future<Output = anyhow::Result<ExitCode>>) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(fut)
}

/// The exit code of a command's result: an error is printed (once, with its causes), except a
/// closed stdout, which is how `hrwproxy locate ... | head` ends.
pub fn exit_code(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e)
            if e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            use io::Write;
            let _ = writeln!(io::stderr(), "error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Waits for SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}
