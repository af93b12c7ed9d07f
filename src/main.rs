//! The `hrwproxy` command: arguments, then the subcommand in `hrwproxy::cli`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use hrwproxy::cli::{self, RepairArgs};
use hrwproxy::config;

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
        and open the status page at http://127.0.0.1:9090/.\n\
        Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) to change how much, and\n\
        log_format: json in the config for one JSON object per line. A config file larger\n\
        than 8 MiB is refused; HRWPROXY_MAX_CONFIG_BYTES sets another limit, in bytes."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy, following live edits of the config file (and SIGHUP).
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
        #[arg(long, default_value_t = cli::DEFAULT_NODE_MAX_VALUE_BYTES)]
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
    /// Give every key's top-r nodes its newest version; --prune removes it from the others
    #[command(
        visible_alias = "rebalance",
        long_about = "Bring every key's replicas up to date. Lists the keys of every node of the config that can list\n\
            them (built-in nodes, Redis, memcached), reads each key on its top-r nodes and writes the newest\n\
            version where a replica is older or missing. Every write is put-if-newer, so client writes made\n\
            meanwhile win and deleted keys stay deleted. With --prune, a key is then deleted from nodes that\n\
            are not among its top-r. Progress is saved after every page to the state file, and an\n\
            interrupted run resumes from it. Also called `rebalance`."
    )]
    Repair {
        #[arg(long, short)]
        config: PathBuf,
        /// Delete keys from nodes that no longer own them, once their owners have them.
        #[arg(long)]
        prune: bool,
        /// Keys per second at most; 0 for no limit.
        #[arg(long, default_value_t = 2000.0)]
        rate: f64,
        /// Where progress is saved [default: the config path with .repair appended].
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
    /// Print a shell completion script, e.g. `hrwproxy completions bash > /etc/bash_completion.d/hrwproxy`.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff), e.g. `hrwproxy man > hrwproxy.1 && man -l hrwproxy.1`.
    Man,
}

fn main() -> ExitCode {
    let args = Cli::parse();
    // The proxy's config may ask for JSON logs; every other command logs text.
    cli::init_logging(match &args.command {
        Command::Serve { config } | Command::Demo { config } => config::log_format_of(config),
        _ => config::LogFormat::Text,
    });
    let result = match args.command {
        Command::Completions { shell } => {
            let mut out = std::io::stdout();
            clap_complete::generate(shell, &mut Cli::command(), "hrwproxy", &mut out);
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into),
        Command::Check { config } => cli::check(&config),
        Command::Locate {
            config,
            key,
            encoded,
            verbose,
        } => cli::locate(&config, &key, encoded, verbose),
        Command::Plan { from, to, keys } => cli::plan(&from, &to, keys),
        Command::Repair {
            config,
            prune,
            rate,
            state,
            restart,
        } => cli::run_async(cli::repair(RepairArgs {
            config,
            prune,
            rate,
            state,
            restart,
        })),
        Command::Status { admin, token_file } => cli::run_async(cli::status(admin, token_file)),
        Command::Serve { config: path } => cli::run_async(cli::serve(&path, false)),
        Command::Demo { config: path } => cli::run_async(cli::serve(&path, true)),
        Command::Node {
            listen,
            max_value_bytes,
        } => cli::run_async(cli::node(listen, max_value_bytes)),
    };
    cli::exit_code(result)
}
