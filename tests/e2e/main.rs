//! End-to-end tests: real processes and sockets on 127.0.0.1, nothing mocked.

mod backends;
mod browser;
mod chaos;
mod checker;
mod cli;
mod hardening;
mod membership;
mod memcache;
mod observe;
mod proxy;
mod relay;
mod reload;
mod resp;
mod servers;
mod sloppy;
mod support;
mod tls;
