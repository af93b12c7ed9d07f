//! The `hrwproxy` command: subcommands, logging, exit codes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use hrwproxy::config::Config;
use hrwproxy::demo::Fleet;
use hrwproxy::error::ConfigError;
use hrwproxy::node::{self, Store, DEFAULT_NODE_MAX_VALUE_BYTES};
use hrwproxy::reload::Reloader;
use hrwproxy::routing::key_hash;
use hrwproxy::{key, service};

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
    let shared = reloader.shared();
    let config = shared.load().config.clone();
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
    let addr = listener.local_addr()?;
    let _watch = reloader
        .watch()
        .with_context(|| format!("cannot watch {}", path.display()))?;
    tracing::info!(
        %addr,
        config = %path.display(),
        nodes = config.nodes.len(),
        replicas = config.replicas,
        write_quorum = config.write_quorum,
        "hrwproxy serving"
    );
    println!("hrwproxy listening on http://{addr}");
    service::serve(listener, shared, shutdown_signal()).await;
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
