//! `hrwproxy repair` (or `rebalance`): one run over the nodes of a config, resumable from a state file, with
//! a progress line on stderr and the report on stdout.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;

use crate::cluster::reload::Reloader;
use crate::repair::{self, Cursor, Options, Progress, Scope};

/// How often the progress line is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

pub struct RepairArgs {
    pub config: PathBuf,
    pub prune: bool,
    /// Keys per second; 0 for no limit.
    pub rate: f64,
    /// Where progress is saved; by default the config path with `.repair` appended.
    pub state: Option<PathBuf>,
    /// Start from the beginning even if the state file says where a run stopped.
    pub restart: bool,
}

/// The state file of a run over `config` unless one is given.
fn state_path(config: &Path) -> PathBuf {
    let mut path = config.as_os_str().to_owned();
    path.push(".repair");
    path.into()
}

/// Where an interrupted run stopped, unless told to start over.
fn resume_from(state: &Path, restart: bool) -> anyhow::Result<Option<Cursor>> {
    if restart {
        return Ok(None);
    }
    let text = match std::fs::read_to_string(state) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", state.display())),
    };
    let cursor: Cursor = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: not a repair state file; use --restart to start over",
            state.display()
        )
    })?;
    Ok(Some(cursor))
}

/// Replaces the state file atomically, so an interruption never leaves half a cursor.
fn save_cursor(state: &Path, cursor: &Cursor) -> std::io::Result<()> {
    let mut tmp = state.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, serde_json::to_string(cursor).unwrap_or_default())?;
    std::fs::rename(&tmp, state)
}

pub async fn repair(args: RepairArgs) -> anyhow::Result<ExitCode> {
    let rate = repair::rate_limit(args.rate).map_err(|e| anyhow::anyhow!("--rate: {e}"))?;
    let state = args.state.unwrap_or_else(|| state_path(&args.config));
    let resume = resume_from(&state, args.restart)?;
    let reloader =
        Reloader::load(&args.config).with_context(|| args.config.display().to_string())?;
    if let Some(cursor) = &resume {
        let _ = writeln!(
            std::io::stderr(),
            "resuming from node {} after {:?}",
            cursor.node,
            cursor.after.as_deref().unwrap_or("its last key")
        );
    }
    let scope = Scope {
        cluster: reloader.cluster().clone(),
        snap: reloader.cluster().snapshot(),
    };
    let options = Options {
        prune: args.prune,
        rate,
        resume,
    };
    let progress = Mutex::new(Progress::default());
    let mut last_print = std::time::Instant::now();
    let mut save_error = None;
    let report = repair::run(scope, options, &progress, |p| {
        if let Some(cursor) = &p.cursor {
            if let Err(e) = save_cursor(&state, cursor) {
                save_error.get_or_insert(e);
            }
        }
        if last_print.elapsed() >= PROGRESS_EVERY {
            last_print = std::time::Instant::now();
            let _ = write!(
                std::io::stderr(),
                "\rrepair: node {}/{}  scanned {}  copied {}  pruned {}  failed {}   ",
                p.nodes_done + 1,
                p.nodes_total,
                p.scanned,
                p.copied,
                p.pruned,
                p.failed
            );
        }
    })
    .await;
    let mut err = std::io::stderr();
    let _ = writeln!(err);
    if let Some(e) = save_error {
        let _ = writeln!(
            err,
            "warning: cannot save progress to {}: {e}",
            state.display()
        );
    }
    // Every node was gone through: a new run starts over (and retries what failed).
    let _ = std::fs::remove_file(&state);
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "repair done in {:.1} s: scanned {}, copied {}, already up to date {}, pruned {}, failed {}",
        report.elapsed_ms as f64 / 1000.0,
        report.scanned,
        report.copied,
        report.present,
        report.pruned,
        report.failed
    )?;

    if report.hints_handed_off + report.hints_left > 0 {
        writeln!(
            out,
            "hints held on stand-ins: handed over {}, left {} (their replica is out of service or a copy failed)",
            report.hints_handed_off, report.hints_left
        )?;
    }
    for skipped in &report.skipped_nodes {
        writeln!(out, "skipped node {skipped}")?;
    }
    if report.failed > 0 {
        writeln!(
            out,
            "run it again to retry what failed (copies are idempotent)"
        )?;
    }
    Ok(if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
