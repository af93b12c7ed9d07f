//! `hrwproxy check`: validate a config, as a reload would.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use crate::config::{Config, ConfigError};

/// Prints "ok", or the error with its line and column, and fails.
pub fn check(path: &Path) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match Config::load(path) {
        Ok(_) => {
            writeln!(out, "ok")?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ ConfigError::Read { .. }) => {
            writeln!(out, "{e}")?;
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            writeln!(out, "{}: {e}", path.display())?;
            Ok(ExitCode::FAILURE)
        }
    }
}
