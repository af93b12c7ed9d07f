//! `hrwproxy locate`: every node for a key, its replicas first, then the others by rank.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::Config;
use crate::net::key;
use crate::routing::key_hash;

pub fn locate(path: &Path, raw: &str, encoded: bool, verbose: bool) -> anyhow::Result<ExitCode> {
    let config = Config::load(path).with_context(|| path.display().to_string())?;
    let key = if encoded {
        key::decode(raw, usize::MAX)?.into_owned()
    } else {
        raw.as_bytes().to_vec()
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let ring = config.ring();
    let nodes = ring.replicas_then_ranking(key_hash(&key), config.replicas);
    for (at, node) in nodes.iter().enumerate() {
        if verbose {
            let role = if at < config.replicas { "replica" } else { "-" };
            let zone = node.zone.unwrap_or("-");
            writeln!(
                out,
                "{}\t{}\t{:.6}\t{role}\t{zone}",
                node.id, node.weight, node.score
            )?;
        } else {
            writeln!(out, "{}", node.id)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
