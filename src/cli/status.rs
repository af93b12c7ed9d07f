//! `hrwproxy status`: a running proxy's generation, last reload and nodes, for a terminal.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::admin_client;
use crate::admin::types::ConfigView;

pub async fn status(admin: String, token_file: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let token = match &token_file {
        Some(file) => Some(
            std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    let config: ConfigView = admin_client::get(&admin, "/admin/config", token.as_deref()).await?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "generation {} (sha256 {}), loaded {} by {}, replicas {}, write_quorum {}",
        config.generation,
        &config.sha256[..config.sha256.len().min(12)],
        config.loaded_at,
        config.applied_by,
        config.replicas,
        config.write_quorum
    )?;
    match &config.last_error {
        Some(error) => writeln!(out, "last reload: REJECTED: {}", error.message)?,
        None => writeln!(out, "last reload: ok")?,
    }
    for window in &config.handoff_from {
        writeln!(
            out,
            "handoff from generation {} for {} s more",
            window.generation, window.closes_in_s
        )?;
    }
    writeln!(
        out,
        "{:<16} {:<8} {:>7} {:>7} {:>8} {:>9}  last error",
        "node", "health", "share", "weight", "failures", "in flight"
    )?;
    for n in &config.nodes {
        writeln!(
            out,
            "{:<16} {:<8} {:>6.2}% {:>7} {:>8} {:>9}  {}",
            n.id,
            n.health,
            n.share * 100.0,
            n.weight,
            n.consecutive_failures,
            n.in_flight,
            n.last_error.as_ref().map_or("-", |e| e.message.as_str())
        )?;
    }
    if config.nodes_total > config.nodes.len() {
        writeln!(
            out,
            "... and {} more nodes ({} of {} up): GET /admin/nodes?offset={}&q=<id> for the rest",
            config.nodes_total - config.nodes.len(),
            config.nodes_up,
            config.nodes_total,
            config.nodes.len()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
