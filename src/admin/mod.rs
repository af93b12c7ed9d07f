//! The admin listener (loopback by default): metrics, the serving config and nodes, where a
//! key lives, reload on demand, and a repair to start or follow. Answers are the types of
//! [`types`].

mod nodes;
pub(crate) mod types;

use std::sync::Arc;
use std::time::SystemTime;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::time::Instant;

use self::nodes::{node_views, NodesPage, NODES_PAGE};
use self::types::{
    ConfigView, ErrorView, HotKeyView, HotKeysView, LocateView, PreviousView, RankedView,
    ReloadView, WindowView,
};
use crate::cluster::reload::{Reloaded, Reloader, Trigger};
use crate::cluster::Snapshot;
use crate::config::Limits;
use crate::metrics::{NodeState, ScrapeState};
use crate::net::respond::{self, Body};
use crate::net::{auth, key, server, RequestError};
use crate::proxy::hot_keys::{self, HotKeys};
use crate::repair::{self, BackgroundRepair, Options, Scope};
use crate::routing::key_hash;

const LOCATE_PREFIX: &str = "/admin/locate/";

/// What the admin endpoints act on.
#[derive(Debug)]
pub(crate) struct Admin {
    pub reloader: Arc<Reloader>,
    pub repairs: BackgroundRepair,
    /// The data path's count of the hottest keys.
    pub hot_keys: Arc<HotKeys>,
}

/// Serves the admin API on `listener` until `shutdown` resolves.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    admin: Arc<Admin>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let handler = move |req| {
        let admin = admin.clone();
        async move { handle(&admin, req).await }
    };
    server::serve_http(listener, handler, Limits::default(), None, None, shutdown).await
}

/// The status page (`GET /`): it holds no data, so it is served without the token, which
/// it asks for and sends with the API calls it makes.
const STATUS_PAGE: &str = include_str!("status.html");

async fn handle(admin: &Arc<Admin>, req: Request<Incoming>) -> Response<Body> {
    if req.uri().path() == "/" && req.method() == Method::GET {
        return status_page();
    }
    let snap = admin.reloader.cluster().snapshot();
    if !auth::allows(snap.tokens.admin.as_ref(), req.headers()) {
        return respond::unauthorized();
    }
    let path = req.uri().path();
    if let Some(raw_key) = path.strip_prefix(LOCATE_PREFIX) {
        return match *req.method() {
            Method::GET => locate(&snap, raw_key),
            _ => respond::rejection(&RequestError::MethodNotAllowed {
                method: req.method().to_string(),
                allow: "GET",
            }),
        };
    }
    let allow = match path {
        "/admin/reload" => "POST",
        "/admin/config" | "/admin/nodes" | "/admin/hotkeys" | "/metrics" => "GET",
        "/admin/rebalance" | "/admin/repair" => "GET, POST",
        _ => {
            return respond::text(
                StatusCode::NOT_FOUND,
                "no such admin path; try / (the status page), /metrics, /admin/config, /admin/nodes, /admin/locate/<key>, /admin/hotkeys, /admin/reload or /admin/repair",
            )
        }
    };
    match (path, req.method()) {
        ("/metrics", &Method::GET) => metrics(admin, &snap),
        ("/admin/nodes", &Method::GET) => match NodesPage::of(req.uri().query()) {
            Ok(page) => page.respond(&snap),
            Err(e) => respond::rejection(&e),
        },
        ("/admin/hotkeys", &Method::GET) => match hot_keys_limit(req.uri().query()) {
            Ok(limit) => respond::json(StatusCode::OK, &hot_keys(admin, &snap, limit)),
            Err(e) => respond::rejection(&e),
        },
        ("/admin/reload", &Method::POST) => reload(admin).await,
        ("/admin/config", &Method::GET) => config(admin, &snap),
        ("/admin/rebalance" | "/admin/repair", &Method::GET) => {
            respond::json(StatusCode::OK, &admin.repairs.progress())
        }
        ("/admin/rebalance" | "/admin/repair", &Method::POST) => {
            match repair_options(req.uri().query()) {
                Ok(options) => {
                    let scope = Scope {
                        cluster: admin.reloader.cluster().clone(),
                        snap,
                    };
                    match admin.repairs.start(scope, options) {
                        Ok(()) => respond::json(StatusCode::ACCEPTED, &admin.repairs.progress()),
                        Err(why) => respond::text(StatusCode::CONFLICT, &why),
                    }
                }
                Err(e) => respond::rejection(&e),
            }
        }
        (_, method) => respond::rejection(&RequestError::MethodNotAllowed {
            method: method.to_string(),
            allow,
        }),
    }
}

fn status_page() -> Response<Body> {
    let mut resp = respond::text(StatusCode::OK, STATUS_PAGE);
    let headers = resp.headers_mut();
    let set = |headers: &mut http::HeaderMap, name, value| {
        headers.insert(name, http::HeaderValue::from_static(value));
    };
    set(
        headers,
        http::header::CONTENT_TYPE,
        "text/html; charset=utf-8",
    );
    set(headers, http::header::CACHE_CONTROL, "no-store");
    set(
        headers,
        http::header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'",
    );
    set(headers, http::header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    resp
}

fn metrics(admin: &Admin, snap: &Snapshot) -> Response<Body> {
    let progress = admin.repairs.progress();
    let placement = &snap.placement;
    let state = ScrapeState {
        generation: snap.generation,
        nodes: placement
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let hints = m.hints.counts();
                NodeState {
                    id: m.id(),
                    ejected: !m.health.is_up(),
                    share: placement.ring.share(i),
                    in_flight: m.in_flight.load(std::sync::atomic::Ordering::Relaxed),
                    hints: hints.queued,
                    hints_on_nodes: hints.on_nodes.count,
                    oldest_hint_s: hints.oldest_age_s().unwrap_or(0),
                }
            })
            .collect(),
        node_limit: snap.config.metrics_node_limit,
        hot_key_shares: {
            let report = admin.hot_keys.report();
            [(1, report.share_of_top(1)), (10, report.share_of_top(10))]
        },
        rebalance: [
            ("scanned", progress.scanned),
            ("copied", progress.copied),
            ("pruned", progress.pruned),
            ("failed", progress.failed),
        ],
    };
    let text = admin.reloader.cluster().metrics.scrape(&state);
    let mut resp = Response::new(Body::new(text.into()));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

async fn reload(admin: &Admin) -> Response<Body> {
    let outcome = admin.reloader.reload(Trigger::Admin).await;
    let generation = admin.reloader.cluster().snapshot().generation;
    match outcome {
        Reloaded::Applied(_) | Reloaded::Unchanged => respond::json(
            StatusCode::OK,
            &ReloadView {
                generation,
                changed: matches!(outcome, Reloaded::Applied(_)),
                error: None,
            },
        ),
        Reloaded::Rejected { error, .. } => respond::json(
            StatusCode::UNPROCESSABLE_ENTITY,
            &ReloadView {
                generation,
                changed: false,
                error: Some(error.to_string()),
            },
        ),
    }
}

fn time(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

fn config(admin: &Admin, snap: &Snapshot) -> Response<Body> {
    let status = admin.reloader.status();
    let now = Instant::now();
    let view = ConfigView {
        path: admin.reloader.path().display().to_string(),
        generation: snap.generation,
        sha256: status.sha256,
        loaded_at: time(status.loaded_at),
        applied_by: status.applied_by.name().to_owned(),
        checks: status.checks,
        last_error: status.last_error.map(|(error, at)| ErrorView {
            message: error.to_string(),
            at: time(at),
        }),
        replicas: snap.config.replicas,
        write_quorum: snap.config.write_quorum,
        nodes: node_views(snap, (0..snap.placement.members.len()).take(NODES_PAGE)),
        nodes_total: snap.placement.members.len(),
        nodes_up: snap
            .placement
            .members
            .iter()
            .filter(|m| m.health.is_up())
            .count(),
        handoff_from: snap
            .open_windows()
            .map(|w| WindowView {
                generation: w.placement.generation,
                closes_in_s: (w.until - now).as_secs(),
            })
            .collect(),
        recent_reloads: admin.reloader.recent_changes(),
    };
    respond::json(StatusCode::OK, &view)
}

/// `GET /admin/locate/<percent-encoded key>`: the key's ranking, replicas marked, and its
/// replicas in each placement whose handoff window is open.
fn locate(snap: &Snapshot, raw_key: &str) -> Response<Body> {
    let key = match key::decode(raw_key, usize::MAX) {
        Ok(key) => key,
        Err(e) => return respond::rejection(&e),
    };
    let hash = key_hash(&key);
    let placement = &snap.placement;
    let view = LocateView {
        key_hash: format!("{hash:016x}"),
        generation: snap.generation,
        nodes: placement
            .ring
            .replicas_then_ranking(hash, placement.replicas)
            .iter()
            .enumerate()
            .map(|(at, r)| RankedView {
                node: r.id.to_owned(),
                weight: r.weight,
                zone: r.zone.map(str::to_owned),
                score: r.score,
                replica: at < placement.replicas,
                health: placement.members[r.index].health.phase().name().to_owned(),
            })
            .collect(),
        previous: snap
            .open_windows()
            .map(|w| PreviousView {
                generation: w.placement.generation,
                replicas: w
                    .placement
                    .replicas(&key)
                    .iter()
                    .map(|m| m.id().to_owned())
                    .collect(),
            })
            .collect(),
    };
    respond::json(StatusCode::OK, &view)
}

/// `?limit=N`: 1 to the keys a summary tracks; 10 unless given.
fn hot_keys_limit(query: Option<&str>) -> Result<usize, RequestError> {
    let mut limit = 10;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("limit", n)) => {
                limit = n
                    .parse()
                    .ok()
                    .filter(|n| (1..=hot_keys::CAPACITY).contains(n))
                    .ok_or_else(|| {
                        RequestError::BadQuery(format!(
                            "limit: {n:?} must be from 1 to {}",
                            hot_keys::CAPACITY
                        ))
                    })?
            }
            _ => {
                return Err(RequestError::BadQuery(format!(
                    "unknown parameter {pair:?}; only limit=N is accepted"
                )))
            }
        }
    }
    Ok(limit)
}

/// `GET /admin/hotkeys`: the hottest keys of the last window, with their replicas.
fn hot_keys(admin: &Admin, snap: &Snapshot, limit: usize) -> HotKeysView {
    let report = admin.hot_keys.report();
    HotKeysView {
        window_s: report.window.as_secs_f64(),
        requests: report.total,
        top1_share: report.share_of_top(1),
        top10_share: report.share_of_top(10),
        keys: report
            .keys
            .iter()
            .take(limit)
            .map(|(key, count)| HotKeyView {
                key: key::encode(key),
                requests: *count,
                per_second: report.rate(*count),
                share: *count as f64 / report.total.max(1) as f64,
                replicas: snap
                    .placement
                    .replicas(key)
                    .iter()
                    .map(|m| m.id().to_owned())
                    .collect(),
            })
            .collect(),
    }
}

/// `?prune` (or `prune=true`) and `rate=<keys per second>` (0 for no limit).
fn repair_options(query: Option<&str>) -> Result<Options, RequestError> {
    let mut options = Options::default();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("prune", "" | "true") => options.prune = true,
            ("prune", "false") => options.prune = false,
            ("rate", n) => {
                options.rate = n
                    .parse::<f64>()
                    .map_err(|_| format!("rate {n:?} is not a number"))
                    .and_then(repair::rate_limit)
                    .map_err(RequestError::BadQuery)?;
            }
            (name, _) => {
                return Err(RequestError::BadQuery(format!(
                    "unknown parameter {name:?}; use prune and rate"
                )))
            }
        }
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repair_options_take_prune_and_a_rate_where_zero_is_no_limit() {
        let options = repair_options(Some("prune&rate=250")).unwrap();
        assert!(options.prune);
        assert_eq!(options.rate, Some(250.0));
        assert_eq!(repair_options(Some("rate=0")).unwrap().rate, None);
        assert!(!repair_options(Some("prune=false")).unwrap().prune);
        for bad in ["rate=-1", "rate=fast", "rate=1e99", "limit=3"] {
            assert!(repair_options(Some(bad)).is_err(), "{bad}");
        }
    }
}
