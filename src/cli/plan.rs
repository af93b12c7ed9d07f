//! `hrwproxy plan`: what a config change does to placement, before it is made.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::Config;
use crate::routing::change::{render, ChangeSummary};

pub fn plan(from: &Path, to: &Path, keys: usize) -> anyhow::Result<ExitCode> {
    let load = |path: &Path| Config::load(path).with_context(|| path.display().to_string());
    let (old, new) = (load(from)?, load(to)?);
    let summary = ChangeSummary::sample(
        (&old.ring(), old.replicas),
        (&new.ring(), new.replicas),
        keys,
    );
    write!(
        std::io::stdout().lock(),
        "{}",
        render(&summary, old.replicas, new.replicas)
    )?;
    Ok(ExitCode::SUCCESS)
}
