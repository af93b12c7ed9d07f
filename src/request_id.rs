//! Request ids: taken from the client's `x-request-id` or made here, returned to the client,
//! sent to HTTP backends, and on every log line of the request.

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
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let seed = std::process::id() as u64
        ^ (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64));
    let id = crate::routing::mix(n, seed);
    Arc::from(format!("{id:016x}"))
}

/// The current request's id, if this task works for one.
pub fn current() -> Option<Arc<str>> {
    CURRENT.try_with(Arc::clone).ok()
}

/// `tokio::spawn` that keeps the current request's id and log span in the new task.
pub fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    use tracing::Instrument;
    let fut = fut.instrument(tracing::Span::current());
    match current() {
        Some(id) => tokio::spawn(CURRENT.scope(id, fut)),
        None => tokio::spawn(fut),
    }
}
