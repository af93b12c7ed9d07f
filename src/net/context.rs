//! The request a task works for: its id (`x-request-id`: taken from the client or made here,
//! returned to the client, on every log line written for it) and the proxies it has passed
//! through (`x-hrw-via`, so a request that comes back to a proxy is refused, not recursed).
//! Both travel with the task, into tasks it spawns, and in every request to an HTTP backend.
//! No span per request: that would cost on every request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use http::HeaderMap;

use super::error::RequestError;

pub(crate) const REQUEST_ID: &str = "x-request-id";
/// The proxy instances a request passed through, comma-separated, oldest first.
pub(crate) const VIA: &str = "x-hrw-via";
/// Longest client-supplied id kept; longer ones are replaced.
const MAX_ID_LEN: usize = 128;
/// Proxies a request may pass through at most: more is a loop through proxies that do not
/// know each other's ids (or a misconfiguration worth refusing).
pub(crate) const MAX_HOPS: usize = 8;

#[derive(Debug, Clone)]
pub(crate) struct RequestContext {
    pub id: Arc<str>,
    /// What this proxy sends on in `x-hrw-via`: the incoming list plus its own instance id.
    pub via: Arc<str>,
}

tokio::task_local! {
    static CURRENT: RequestContext;
}

impl RequestContext {
    /// The context of a request arriving at the proxy `instance`: the client's id if it is
    /// short printable ASCII (else a new one), and the via list with this proxy added; a
    /// request that already passed this proxy, or too many proxies, is refused.
    pub(crate) fn of(
        headers: &HeaderMap,
        instance: &Arc<str>,
    ) -> Result<RequestContext, RequestError> {
        let id = headers
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| {
                !v.is_empty() && v.len() <= MAX_ID_LEN && v.bytes().all(|b| b.is_ascii_graphic())
            })
            .map(Arc::from)
            .unwrap_or_else(generate_id);
        let via = match headers
            .get(VIA)
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
        {
            None => instance.clone(),
            Some(incoming) => {
                let hops: Vec<&str> = incoming.split(',').map(str::trim).collect();
                if hops.contains(&&**instance) || hops.len() >= MAX_HOPS {
                    return Err(RequestError::Loop {
                        via: incoming.into_owned(),
                    });
                }
                Arc::from(format!("{incoming}, {instance}"))
            }
        };
        Ok(RequestContext { id, via })
    }

    /// Runs `fut` as work for this request.
    pub(crate) async fn scope<F: std::future::Future>(self, fut: F) -> F::Output {
        CURRENT.scope(self, fut).await
    }

    /// The context of the request this task works for, if any.
    pub(crate) fn current() -> Option<RequestContext> {
        CURRENT.try_with(Clone::clone).ok()
    }
}

/// A new id for this process: random enough not to repeat across proxies (16 hex digits).
pub(crate) fn instance_id() -> Arc<str> {
    generate_id()
}

/// 16 hex digits, unique within the process and unlikely to repeat across processes.
fn generate_id() -> Arc<str> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static SEED: OnceLock<u64> = OnceLock::new();
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
pub(crate) fn id_for_log() -> Arc<str> {
    CURRENT
        .try_with(|c| c.id.clone())
        .unwrap_or_else(|_| Arc::from("-"))
}

/// `tokio::spawn` that keeps the current request's context in the new task.
pub(crate) fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    match RequestContext::current() {
        Some(context) => tokio::spawn(CURRENT.scope(context, fut)),
        None => tokio::spawn(fut),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn ids_are_kept_when_printable_and_short_else_made() {
        let me: Arc<str> = Arc::from("me");
        let kept = RequestContext::of(&headers(&[(REQUEST_ID, "trace-42")]), &me).unwrap();
        assert_eq!(&*kept.id, "trace-42");
        for bad in ["", "has space", &"x".repeat(129)] {
            let made = RequestContext::of(&headers(&[(REQUEST_ID, bad)]), &me).unwrap();
            assert!(
                made.id.len() == 16 && made.id.bytes().all(|b| b.is_ascii_hexdigit()),
                "{bad:?} -> {}",
                made.id
            );
        }
        let longest = "x".repeat(128);
        let kept = RequestContext::of(&headers(&[(REQUEST_ID, &longest)]), &me).unwrap();
        assert_eq!(&*kept.id, longest);
        let a = RequestContext::of(&HeaderMap::new(), &me).unwrap();
        let b = RequestContext::of(&HeaderMap::new(), &me).unwrap();
        assert_ne!(a.id, b.id);
    }

    #[test]
    fn a_request_that_comes_back_is_refused() {
        let me: Arc<str> = Arc::from("me");
        assert_eq!(
            &*RequestContext::of(&HeaderMap::new(), &me).unwrap().via,
            "me"
        );
        let passed = RequestContext::of(&headers(&[(VIA, "other")]), &me).unwrap();
        assert_eq!(&*passed.via, "other, me");
        let back = RequestContext::of(&headers(&[(VIA, "other, me")]), &me);
        assert!(matches!(back, Err(RequestError::Loop { .. })));
        let many = ["p"; MAX_HOPS].join(", ");
        let far = RequestContext::of(&headers(&[(VIA, &many)]), &me);
        assert!(matches!(far, Err(RequestError::Loop { .. })));
    }
}
