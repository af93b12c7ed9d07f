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

/// The client's request id if it is short printable ASCII, else a new one.
pub(crate) fn request_id(headers: &HeaderMap) -> Arc<str> {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty() && v.len() <= MAX_ID_LEN && v.bytes().all(|b| b.is_ascii_graphic())
        })
        .map(Arc::from)
        .unwrap_or_else(generate_id)
}

/// Whether `hop` looks like a proxy instance id: 16 lowercase hex digits.
fn is_instance_id(hop: &str) -> bool {
    hop.len() == 16 && hop.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl RequestContext {
    /// The context of a request arriving at the proxy `instance` with id `id`: the via list
    /// with this proxy added. A request that already passed this proxy, or passed too many,
    /// is a loop; a via list that is not proxy ids is refused.
    pub(crate) fn of(
        headers: &HeaderMap,
        id: Arc<str>,
        instance: &Arc<str>,
    ) -> Result<RequestContext, RequestError> {
        let Some(incoming) = headers.get(VIA) else {
            let via = instance.clone();
            return Ok(RequestContext { id, via });
        };
        let incoming = incoming.to_str().unwrap_or("");
        let hops: Vec<&str> = incoming.split(',').map(str::trim).collect();
        if !hops.iter().all(|h| is_instance_id(h)) {
            return Err(RequestError::BadHeader(format!(
                "{VIA} must list proxy instance ids (16 hex digits each), as proxies send it"
            )));
        }
        if hops.contains(&&**instance) || hops.len() >= MAX_HOPS {
            return Err(RequestError::Loop {
                via: incoming.to_owned(),
            });
        }
        let via = Arc::from(format!("{incoming}, {instance}"));
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
        assert_eq!(
            &*request_id(&headers(&[(REQUEST_ID, "trace-42")])),
            "trace-42"
        );
        for bad in ["", "has space", &"x".repeat(129)] {
            let made = request_id(&headers(&[(REQUEST_ID, bad)]));
            assert!(
                made.len() == 16 && made.bytes().all(|b| b.is_ascii_hexdigit()),
                "{bad:?} -> {made}"
            );
        }
        let longest = "x".repeat(128);
        assert_eq!(&*request_id(&headers(&[(REQUEST_ID, &longest)])), longest);
        assert_ne!(request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
    }

    #[test]
    fn a_request_that_comes_back_is_refused() {
        let me = instance_id();
        let other = instance_id();
        let of = |h: &HeaderMap| RequestContext::of(h, Arc::from("id"), &me);
        assert_eq!(of(&HeaderMap::new()).unwrap().via, me);
        let passed = of(&headers(&[(VIA, &other)])).unwrap();
        assert_eq!(&*passed.via, format!("{other}, {me}"));
        let back = of(&headers(&[(VIA, &format!("{other}, {me}"))]));
        assert!(matches!(back, Err(RequestError::Loop { .. })));
        let many = [&*other; MAX_HOPS].join(", ");
        assert!(matches!(
            of(&headers(&[(VIA, &many)])),
            Err(RequestError::Loop { .. })
        ));
        for bad in [
            "",
            "me",
            "0123456789ABCDEF",
            "0123456789abcdef, x",
            "<script>",
        ] {
            assert!(
                matches!(of(&headers(&[(VIA, bad)])), Err(RequestError::BadHeader(_))),
                "{bad:?}"
            );
        }
    }
}
