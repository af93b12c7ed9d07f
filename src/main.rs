//! The `hrwproxy` command: subcommands, logging, exit codes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use hrwproxy::app;
use hrwproxy::config::Config;
use hrwproxy::demo::Fleet;
use hrwproxy::error::ConfigError;
use hrwproxy::key;
use hrwproxy::node::{self, Store, DEFAULT_NODE_MAX_VALUE_BYTES};
use hrwproxy::rebalance;
use hrwproxy::reload::Reloader;
use hrwproxy::routing::change::ChangeSummary;
use hrwproxy::routing::key_hash;
use hrwproxy::snapshot::{Files, Snapshot};

#[derive(Parser)]
#[command(
    name = "hrwproxy",
    version,
    about = "Stateless HTTP proxy placing keys on cache and storage nodes by weighted rendezvous hashing",
    long_about = "Stateless HTTP proxy that puts cache and storage nodes behind PUT / GET / DELETE /kv/<key>.\n\
        Each key lives on its top-r nodes by weighted rendezvous hashing; writes go to all r and are\n\
        answered after write_quorum acks, reads fall back down the ranking, and edits of the YAML\n\
        node list apply live, moving only the keys of nodes that changed.\n\n\
        Try it: hrwproxy demo, then curl -X PUT --data-binary hello localhost:8080/kv/greeting\n\
        Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) to change how much."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy, following live edits of the config file.
    Serve {
        /// The YAML config (nodes, replicas, write_quorum, ...).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run a built-in in-memory storage node (GET/HEAD/PUT/DELETE /kv/<key>, GET /health).
    Node {
        /// Address to listen on; port 0 picks a free port (printed on stdout).
        #[arg(long, short, default_value = "127.0.0.1:7001")]
        listen: SocketAddr,
        /// Largest value the node stores, in bytes.
        #[arg(long, default_value_t = DEFAULT_NODE_MAX_VALUE_BYTES)]
        max_value_bytes: usize,
    },
    /// Run the proxy plus a built-in node for every loopback http node of the config.
    Demo {
        #[arg(long, short, default_value = "config/demo.yaml")]
        config: PathBuf,
    },
    /// Print every node id ranked for KEY, best first; the first `replicas` hold it.
    Locate {
        #[arg(long, short)]
        config: PathBuf,
        /// The key, taken literally (see --encoded).
        key: String,
        /// KEY is percent-encoded as in a /kv/<key> URL path; decode it first.
        #[arg(long)]
        encoded: bool,
        /// Also print each node's weight, score and whether it is a replica.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Show what changing the config from OLD to NEW does to placement, before doing it.
    Plan {
        /// The config serving now.
        #[arg(long)]
        from: PathBuf,
        /// The config you are about to apply.
        #[arg(long)]
        to: PathBuf,
        /// Keys to sample for the exact figures.
        #[arg(long, default_value_t = 1_000_000)]
        keys: usize,
    },
    /// Copy every key to its current top-r nodes (from nodes that can list their keys).
    #[command(
        long_about = "Copy every key to its current top-r nodes, reading from every node of the config that can list\n\
            its keys (the built-in node can). Copies never overwrite a value already on a node, so client\n\
            writes made meanwhile win. With --prune, a key is then deleted from nodes that are not among\n\
            its top-r. Progress is saved after every page to the state file, and an interrupted run\n\
            resumes from it."
    )]
    Rebalance {
        #[arg(long, short)]
        config: PathBuf,
        /// Delete keys from nodes that no longer own them, once their owners have them.
        #[arg(long)]
        prune: bool,
        /// Keys per second at most; 0 for no limit.
        #[arg(long, default_value_t = 2000.0)]
        rate: f64,
        /// Where progress is saved [default: the config path with .rebalance appended].
        #[arg(long)]
        state: Option<PathBuf>,
        /// Start from the beginning even if a state file says where a run stopped.
        #[arg(long)]
        restart: bool,
    },
    /// A terse view of a running proxy from its admin listener: nodes, health, reload state.
    Status {
        /// The proxy's admin address (the config's `admin:`).
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin: String,
        /// A file holding the admin bearer token, if the proxy requires one.
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
    /// Validate a config: prints "ok", or the error with its line and column and exits 1.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Check { config } => check(&config),
        Command::Locate {
            config,
            key,
            encoded,
            verbose,
        } => locate(&config, &key, encoded, verbose),
        Command::Plan { from, to, keys } => plan(&from, &to, keys),
        Command::Rebalance {
            config,
            prune,
            rate,
            state,
            restart,
        } => {
            let state = state.unwrap_or_else(|| {
                let mut s = config.clone().into_os_string();
                s.push(".rebalance");
                s.into()
            });
            run_async(rebalance_cli(config, prune, rate, state, restart))
        }
        Command::Status { admin, token_file } => run_async(status(admin, token_file)),
        Command::Serve { config } => run_async(serve(config, false)),
        Command::Demo { config } => run_async(serve(config, true)),
        Command::Node {
            listen,
            max_value_bytes,
        } => run_async(run_node(listen, max_value_bytes)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_async(
    fut: impl std::future::Future<Output = anyhow::Result<ExitCode>>,
) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(fut)
}

fn load(path: &Path) -> anyhow::Result<Config> {
    Config::load(path).with_context(|| format!("{}", path.display()))
}

fn check(path: &Path) -> anyhow::Result<ExitCode> {
    match Config::load(path) {
        Ok(_) => {
            println!("ok");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            match e {
                ConfigError::Read { .. } => println!("{e}"),
                ConfigError::Invalid { .. } => println!("{}: {e}", path.display()),
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

fn locate(path: &Path, raw: &str, encoded: bool, verbose: bool) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    let key = if encoded {
        key::decode(raw, usize::MAX)?.into_owned()
    } else {
        raw.as_bytes().to_vec()
    };
    let ring = config.ring();
    for (rank, node) in ring.rank_all(key_hash(&key)).iter().enumerate() {
        if verbose {
            let role = if rank < config.replicas {
                "replica"
            } else {
                "-"
            };
            println!("{}\t{}\t{:.6}\t{role}", node.id, node.weight, node.score);
        } else {
            println!("{}", node.id);
        }
    }
    Ok(ExitCode::SUCCESS)
}

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

async fn serve(path: PathBuf, demo: bool) -> anyhow::Result<ExitCode> {
    let reloader = Reloader::load(&path).with_context(|| format!("{}", path.display()))?;
    let config = reloader.shared().load().config.clone();
    if demo {
        let fleet = Arc::new(Fleet::default());
        fleet.start_missing(&config);
        let handle = tokio::runtime::Handle::current();
        reloader.on_applied(move |snap| {
            let _guard = handle.enter();
            fleet.start_missing(&snap.config);
        });
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let admin_listener = tokio::net::TcpListener::bind(config.admin)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (admin; set `admin:` in the config)",
                config.admin
            )
        })?;
    let addr = listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    let proxy = app::start(reloader.clone(), listener, admin_listener)
        .with_context(|| format!("cannot watch {}", path.display()))?;
    tokio::spawn(reload_on_hangup(reloader));
    tracing::info!(
        %addr,
        %admin_addr,
        config = %path.display(),
        nodes = config.nodes.len(),
        replicas = config.replicas,
        write_quorum = config.write_quorum,
        "hrwproxy serving"
    );
    println!("hrwproxy listening on http://{addr}");
    println!("hrwproxy admin listening on http://{admin_addr}");
    proxy.serve(shutdown_signal()).await;
    Ok(ExitCode::SUCCESS)
}

/// `kill -HUP` re-reads the config, like an edit would.
async fn reload_on_hangup(reloader: Arc<Reloader>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot install the SIGHUP handler; reload by editing the file or POST /admin/reload");
            return;
        };
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: re-reading the config");
            let reloader = reloader.clone();
            let _ = tokio::task::spawn_blocking(move || reloader.reload_logged()).await;
        }
    }
    #[cfg(not(unix))]
    let _ = reloader;
}

/// `hrwproxy rebalance`: one run on the config's nodes, resumable from a state file, with a
/// progress line on stderr and the report on stdout.
async fn rebalance_cli(
    path: PathBuf,
    prune: bool,
    rate: f64,
    state: PathBuf,
    restart: bool,
) -> anyhow::Result<ExitCode> {
    let rate = match rate {
        0.0 => None,
        rate => Some(
            rebalance::valid_rate(rate)
                .map_err(|e| anyhow::anyhow!("--rate: {e}, or 0 for no limit"))?,
        ),
    };
    let config = load(&path)?;
    let resume = match std::fs::read_to_string(&state) {
        Ok(text) if !restart => {
            let cursor: rebalance::Cursor = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{}: not a rebalance state file; use --restart",
                    state.display()
                )
            })?;
            eprintln!(
                "resuming from node {} after key {:?}",
                cursor.node, cursor.after
            );
            Some(cursor)
        }
        _ => None,
    };
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let files = Files::load(&config, &dir).with_context(|| format!("{}", path.display()))?;
    let snap = Arc::new(Snapshot::build_with(config, files, 1, None));
    let options = rebalance::Options {
        prune,
        rate,
        resume,
    };
    let progress = std::sync::Mutex::new(rebalance::Progress::default());
    let mut last_print = std::time::Instant::now();
    let mut save_error = None;
    let report = rebalance::run(snap, options, &progress, |p| {
        if let Some(cursor) = &p.cursor {
            if let Err(e) = save_cursor(&state, cursor) {
                save_error.get_or_insert(e);
            }
        }
        if last_print.elapsed() >= std::time::Duration::from_millis(500) {
            last_print = std::time::Instant::now();
            eprint!(
                "\rrebalance: node {}/{}  scanned {}  copied {}  pruned {}  failed {}   ",
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
    eprintln!();
    if let Some(e) = save_error {
        eprintln!("warning: cannot save progress to {}: {e}", state.display());
    }
    // Every node was gone through: a new run starts over (and retries what failed).
    let _ = std::fs::remove_file(&state);
    println!(
        "rebalance done in {:.1} s: scanned {}, copied {}, already present {}, pruned {}, failed {}",
        report.elapsed_ms as f64 / 1000.0,
        report.scanned,
        report.copied,
        report.present,
        report.pruned,
        report.failed
    );
    for skipped in &report.skipped_nodes {
        println!("skipped node {skipped}");
    }
    if report.failed > 0 {
        println!("run it again to retry what failed (copies are idempotent)");
    }
    Ok(if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Replaces the state file atomically, so an interruption never leaves half a cursor.
fn save_cursor(state: &Path, cursor: &rebalance::Cursor) -> std::io::Result<()> {
    let mut tmp = state.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, serde_json::to_string(cursor).unwrap_or_default())?;
    std::fs::rename(&tmp, state)
}

async fn admin_get(
    admin: &str,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<serde_json::Value> {
    use http_body_util::{BodyExt, Empty};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<bytes::Bytes>>();
    let uri: hyper::Uri = format!("http://{admin}{path}")
        .parse()
        .with_context(|| format!("bad admin address {admin:?}"))?;
    let mut request = hyper::Request::get(uri);
    if let Some(token) = token {
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request.body(Empty::new())?;
    let resp = tokio::time::timeout(std::time::Duration::from_secs(5), client.request(request))
        .await
        .context("the admin listener did not answer within 5 s")?
        .with_context(|| format!("cannot reach the admin listener at {admin}"))?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    anyhow::ensure!(
        status.is_success(),
        "{path}: {status}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok(serde_json::from_slice(&body)?)
}

/// `hrwproxy status`: the generation, the last reload and every node, for a terminal.
async fn status(admin: String, token_file: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let token = match &token_file {
        Some(file) => Some(
            std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    let config = admin_get(&admin, "/admin/config", token.as_deref()).await?;
    let nodes = admin_get(&admin, "/admin/nodes", token.as_deref()).await?;
    let sha = config["sha256"].as_str().unwrap_or("");
    println!(
        "generation {} (sha256 {}), loaded {}, replicas {}, write_quorum {}",
        config["generation"],
        &sha[..sha.len().min(12)],
        config["loaded_at"].as_str().unwrap_or("?"),
        config["replicas"],
        config["write_quorum"]
    );
    match config["last_error"]["message"].as_str() {
        Some(error) => println!("last reload: REJECTED: {error}"),
        None => println!("last reload: ok"),
    }
    if let Some(windows) = config["handoff_from"].as_array().filter(|w| !w.is_empty()) {
        for w in windows {
            println!(
                "handoff from generation {} for {} s more",
                w["generation"], w["closes_in_s"]
            );
        }
    }
    println!(
        "{:<16} {:<8} {:>7} {:>7} {:>8}  last error",
        "node", "health", "share", "weight", "failures"
    );
    for n in nodes.as_array().into_iter().flatten() {
        println!(
            "{:<16} {:<8} {:>6.2}% {:>7} {:>8}  {}",
            n["id"].as_str().unwrap_or("?"),
            n["health"].as_str().unwrap_or("?"),
            n["share"].as_f64().unwrap_or(0.0) * 100.0,
            n["weight"].to_string(),
            n["consecutive_failures"].to_string(),
            n["last_error"]["message"].as_str().unwrap_or("-")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn plan(from: &Path, to: &Path, keys: usize) -> anyhow::Result<ExitCode> {
    let (old, new) = (load(from)?, load(to)?);
    let summary = ChangeSummary::sample(
        (&old.ring(), old.replicas),
        (&new.ring(), new.replicas),
        keys,
    );
    print!(
        "{}",
        hrwproxy::routing::change::render(&summary, old.replicas, new.replicas)
    );
    Ok(ExitCode::SUCCESS)
}

async fn run_node(listen: SocketAddr, max_value_bytes: usize) -> anyhow::Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "built-in node serving");
    println!("hrwproxy node listening on http://{addr}");
    node::serve(
        listener,
        Arc::new(Store::default()),
        max_value_bytes,
        shutdown_signal(),
    )
    .await;
    Ok(ExitCode::SUCCESS)
}
