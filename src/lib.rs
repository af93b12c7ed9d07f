//! hrwproxy: a stateless HTTP proxy that puts cache and storage nodes behind
//! `PUT / GET / DELETE /kv/<key>`, placing each key on its top-r nodes by weighted rendezvous
//! hashing and following live edits of its YAML node list.
//!
//! # Layout
//!
//! A request's path reads top to bottom: [`proxy`]`::service` parses it, loads one
//! `cluster::Snapshot` and hands it to `read` or `write`, which ask the key's replicas (from
//! [`routing`]) through the cluster's one attempt function and the [`backend`]s; `respond`
//! turns the outcome into a status. The control path: `cluster::triggers` (file events, poll,
//! SIGHUP) and the admin API call `cluster::reload`, which runs the [`config`] pipeline and
//! swaps in a new snapshot; `cluster::probes` owns every health probe.
//!
//! Modules depend only on modules below them:
//!
//! | layer | modules |
//! |---|---|
//! | commands | `cli` (one file per subcommand; `main.rs` only parses arguments) |
//! | a running proxy | [`Proxy`] (`instance`): listeners, triggers and probes together |
//! | listeners | `admin` (routes and the types `status` reads), `proxy` (the data path) |
//! | data movement | `repair`, `handoff` |
//! | membership | `cluster`: snapshot, members, the attempt function, reload, triggers, probes, hinted handoff |
//! | node state | `health` (the state machine) |
//! | storage | [`backend`]: the trait, HTTP, Redis, memcached, pool, the in-memory store, a fake for tests |
//! | leaves | `net` (server loop, per-core workers, requests, key codec, context, TLS, tokens), [`config`], [`routing`], [`metrics`], [`version`] |
//!
//! `node` (the built-in node's API over `backend::memory`, and the demo's fleet) sits beside
//! the listeners. The public surface is what a user of the library needs: [`routing`] to place
//! keys on the client side, [`config`], the [`backend::Backend`] trait, [`key`] encoding,
//! metric names, and [`Proxy`] to run one.

mod admin;
pub mod backend;
pub mod cli;
mod cluster;
pub mod config;
mod handoff;
mod health;
mod instance;
pub mod metrics;
mod net;
mod node;
mod proxy;
mod repair;
pub mod routing;
pub mod version;

pub use instance::{Proxy, ReloadStatus, Reloaded, Running, StartOptions, Trigger};
pub use net::key;

/// Locks a mutex, ignoring poisoning: every critical section in this crate leaves its data
/// consistent even if a panic cuts it short.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The layers the crate documents (above, "Layout") hold: every `crate::` path in a module
/// names a module of a lower layer, or its own.
#[cfg(test)]
mod layering {
    use std::path::Path;

    /// Top-level modules by layer, lowest first; a module may use modules of lower layers.
    const LAYERS: &[&[&str]] = &[
        &["routing", "metrics", "version"],
        &["config"],
        &["net"],
        &["backend"],
        &["health"],
        &["cluster"],
        &["handoff"],
        &["repair"],
        &["proxy", "node"],
        &["admin"],
        &["instance"],
        &["cli"],
    ];

    fn layer(module: &str) -> Option<usize> {
        LAYERS.iter().position(|l| l.contains(&module))
    }

    /// Every `.rs` file under `dir`.
    fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn imports_run_down_the_layers() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        let mut wrong = Vec::new();
        let mut checked = 0;
        for file in &files {
            let relative = file.strip_prefix(&src).unwrap();
            let first = relative
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy();
            let module = first.trim_end_matches(".rs");
            let Some(own) = layer(module) else {
                assert!(
                    ["lib", "main"].contains(&module),
                    "{module} is in no layer: add it to LAYERS and to the Layout in src/lib.rs"
                );
                continue;
            };
            let text = std::fs::read_to_string(file).unwrap();
            // Code only: comments may mention any module.
            let code: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            for (at, _) in code.match_indices("crate::") {
                let used: String = code[at + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                checked += 1;
                match layer(&used) {
                    Some(theirs) if theirs > own => {
                        wrong.push(format!("{}: {module} uses {used}", relative.display()))
                    }
                    None if used != "lock" => wrong.push(format!(
                        "{}: crate::{used} is in no layer",
                        relative.display()
                    )),
                    _ => {}
                }
            }
        }
        assert!(checked > 100, "only {checked} paths found");
        assert!(
            wrong.is_empty(),
            "imports running up the layers:\n{}",
            wrong.join("\n")
        );
    }
}
