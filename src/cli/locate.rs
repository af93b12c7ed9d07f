//! `hrwproxy locate`: every node ranked for a key, best first.

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
    for (rank, node) in config.ring().rank_all(key_hash(&key)).iter().enumerate() {
        if verbose {
            let role = if rank < config.replicas {
                "replica"
            } else {
                "-"
            };
            writeln!(
                out,
                "{}\t{}\t{:.6}\t{role}",
                node.id, node.weight, node.score
            )?;
        } else {
            writeln!(out, "{}", node.id)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
