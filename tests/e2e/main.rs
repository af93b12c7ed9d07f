//! End-to-end tests: real processes and sockets on 127.0.0.1, nothing mocked.

mod backends;
mod chaos;
mod cli;
mod hardening;
mod membership;
mod observe;
mod proxy;
mod reload;
mod servers;
mod support;
mod tls;
