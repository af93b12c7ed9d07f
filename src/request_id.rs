//! Request ids: taken from the client's `x-request-id` or made here, returned to the client,
//! sent to HTTP backends, and on every log line written while serving the request (as the
//! `request_id` field; no span per request, which would cost on every request).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::HeaderMap;

pub const HEADER: &str = "x-request-id";
/// Longest client-supplied id kept; longer ones are replaced.
const MAX_LEN: usize = 128;

tokio::task_local! {
    /// The id of the request this task works for.
    pub static CURRENT: Arc<str>;
}

/// The client's id if it is short printable ASCII, else a new one.
pub fn of(headers: &HeaderMap) -> Arc<str> {
    headers
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= MAX_LEN && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(Arc::from)
        .unwrap_or_else(generate)
}

/// 16 hex digits, unique within the process and unlikely to repeat across processes.
fn generate() -> Arc<str> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        now ^ u64::from(std::process::id()).rotate_left(32)
    });
    let id = crate::routing::mix(COUNTER.fetch_add(1, Ordering::Relaxed), seed);
    Arc::from(format!("{id:016x}"))
}

/// The current request's id for a log line, or `-` outside a request.
pub fn for_log() -> Arc<str> {
    current().unwrap_or_else(|| Arc::from("-"))
}

/// The current request's id, if this task works for one.
pub fn current() -> Option<Arc<str>> {
    CURRENT.try_with(Arc::clone).ok()
}

/// `tokio::spawn` that keeps the current request's id in the new task.
pub fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    match current() {
        Some(id) => tokio::spawn(CURRENT.scope(id, fut)),
        None => tokio::spawn(fut),
    }
}
