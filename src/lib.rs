//! hrwproxy: a stateless HTTP proxy that puts cache and storage nodes behind
//! `PUT / GET / DELETE /kv/<key>`, placing each key on its top-r nodes by weighted rendezvous
//! hashing and following live edits of its YAML node list.
//!
//! Data path: [`service`] parses a request, loads one [`snapshot::Snapshot`], asks [`routing`]
//! for the plan and [`execute`] carries it out against [`backend`]s.
//! Control path: [`watch`] decides when to look at the config file, [`reload`] turns it into a
//! new snapshot or keeps the old one; [`health`] ejects and readmits nodes; [`handoff`] and
//! [`rebalance`] move data after a membership change; [`admin`] and [`metrics`] show it all.
//! [`routing`] is pure and public, so clients can place keys on their own side.

pub mod admin;
pub mod app;
pub mod auth;
pub mod backend;
pub mod config;
pub mod demo;
pub mod error;
pub mod execute;
pub mod handoff;
pub mod health;
pub mod hedge;
pub mod key;
pub mod metrics;
pub mod node;
pub mod rebalance;
pub mod reload;
pub mod request_id;
pub mod routing;
pub mod server;
pub mod service;
pub mod snapshot;
pub mod tls;
pub mod watch;

/// Locks a mutex, ignoring poisoning: every critical section in this crate leaves its data
/// consistent even if a panic cuts it short.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
