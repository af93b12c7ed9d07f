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
//! | data movement | `rebalance`, `handoff` |
//! | membership | `cluster`: snapshot, members, the attempt function, reload, triggers, probes |
//! | node state | `health` (the state machine) |
//! | storage | [`backend`]: the trait, HTTP, Redis, memcached, pool, an in-memory fake for tests |
//! | leaves | `net` (server loop, requests, key codec, context, TLS, tokens), [`config`], [`routing`], [`metrics`] |
//!
//! `node` (the built-in node and the demo's fleet) sits beside the listeners and uses only
//! the leaves. The public surface is what a user of the library needs: [`routing`] to place
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
mod rebalance;
pub mod routing;

pub use instance::{Proxy, ReloadStatus, Reloaded, Running, StartOptions, Trigger};
pub use net::key;

/// Locks a mutex, ignoring poisoning: every critical section in this crate leaves its data
/// consistent even if a panic cuts it short.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
