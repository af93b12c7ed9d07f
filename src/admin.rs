//! The admin listener (loopback by default): reload on demand, show the serving config, and
//! start or follow a rebalance.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use crate::error::RequestError;
use crate::key;
use crate::rebalance::{self, Options, Rebalancer};
use crate::reload::{Reloaded, Reloader};
use crate::routing::key_hash;
use crate::server::{self, Body};
use crate::snapshot::Snapshot;

/// What the admin endpoints act on.
#[derive(Debug, Clone)]
pub struct Admin {
    pub reloader: Arc<Reloader>,
    pub rebalancer: Arc<Rebalancer>,
}

/// Serves the admin API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    admin: Admin,
    shutdown: impl std::future::Future<Output = ()>,
) {
    server::serve(
        listener,
        move |req| {
            let admin = admin.clone();
            async move { handle(&admin, req).await }
        },
        crate::config::Limits::default(),
        None,
        shutdown,
    )
    .await
}

async fn handle(admin: &Admin, req: Request<Incoming>) -> Response<Body> {
    let tokens = admin.reloader.shared().load().tokens.admin.clone();
    if !crate::auth::allows(tokens.as_ref(), req.headers()) {
        return server::unauthorized();
    }
    let path = req.uri().path();
    if let Some(raw_key) = path.strip_prefix(LOCATE_PREFIX) {
        return match *req.method() {
            Method::GET => locate(admin, raw_key),
            _ => server::rejection(&RequestError::MethodNotAllowed {
                method: req.method().to_string(),
                allow: "GET",
            }),
        };
    }
    let allow = match path {
        "/admin/reload" => "POST",
        "/admin/config" | "/admin/nodes" | "/metrics" => "GET",
        "/admin/rebalance" => "GET, POST",
        _ => {
            return server::text(
                StatusCode::NOT_FOUND,
                "no such admin path; try /metrics, /admin/config, /admin/nodes, /admin/locate/<key>, /admin/reload or /admin/rebalance",
            )
        }
    };
    match (path, req.method()) {
        ("/metrics", &Method::GET) => {
            let snap = admin.reloader.shared().load_full();
            let text = snap.metrics.scrape(&snap, &admin.rebalancer.progress());
            let mut resp = Response::new(Body::new(text.into()));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        ("/admin/nodes", &Method::GET) => server::json(
            StatusCode::OK,
            &json!(nodes_json(&admin.reloader.shared().load_full())),
        ),
        ("/admin/reload", &Method::POST) => reload(admin).await,
        ("/admin/config", &Method::GET) => config(admin),
        ("/admin/rebalance", &Method::GET) => rebalance_progress(admin, StatusCode::OK),
        ("/admin/rebalance", &Method::POST) => match rebalance_options(req.uri().query()) {
            Ok(options) => match admin.rebalancer.start(admin.reloader.shared(), options) {
                Ok(()) => rebalance_progress(admin, StatusCode::ACCEPTED),
                Err(why) => server::text(StatusCode::CONFLICT, &why),
            },
            Err(e) => server::rejection(&e),
        },
        (_, method) => server::rejection(&RequestError::MethodNotAllowed {
            method: method.to_string(),
            allow,
        }),
    }
}

fn rebalance_progress(admin: &Admin, status: StatusCode) -> Response<Body> {
    let progress = serde_json::to_value(admin.rebalancer.progress()).unwrap_or_default();
    server::json(status, &progress)
}

async fn reload(admin: &Admin) -> Response<Body> {
    let reloader = admin.reloader.clone();
    let outcome = tokio::task::spawn_blocking(move || reloader.reload_logged()).await;
    let generation = admin.reloader.shared().load().generation;
    match outcome {
        Ok(Reloaded::Applied(_)) | Ok(Reloaded::Unchanged) => server::json(
            StatusCode::OK,
            &json!({
                "generation": generation,
                "changed": matches!(outcome, Ok(Reloaded::Applied(_))),
            }),
        ),
        Ok(Reloaded::Rejected { error, .. }) => server::json(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({ "error": error.to_string(), "generation": generation }),
        ),
        Err(e) => server::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("reload failed: {e}"),
        ),
    }
}

fn config(admin: &Admin) -> Response<Body> {
    let status = admin.reloader.status();
    let snap = admin.reloader.shared().load_full();
    let nodes = nodes_json(&snap);
    let now = std::time::Instant::now();
    let handoff: Vec<_> = snap
        .previous
        .iter()
        .filter(|r| r.is_open(now))
        .map(|r| json!({ "generation": r.snapshot.generation, "closes_in_s": (r.until - now).as_secs() }))
        .collect();
    server::json(
        StatusCode::OK,
        &json!({
            "path": admin.reloader.path().display().to_string(),
            "generation": snap.generation,
            "sha256": status.sha256,
            "loaded_at": time(status.loaded_at),
            "checks": status.checks,
            "last_error": status.last_error.map(|(error, at)| json!({ "message": error.to_string(), "at": time(at) })),
            "replicas": snap.config.replicas,
            "write_quorum": snap.config.write_quorum,
            "nodes": nodes,
            "handoff_from": handoff,
        }),
    )
}

const LOCATE_PREFIX: &str = "/admin/locate/";

fn time(at: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Each node with its weight, share of primaries, health and last error.
fn nodes_json(snap: &Snapshot) -> Vec<serde_json::Value> {
    snap.config
        .nodes
        .iter()
        .zip(snap.health.iter())
        .enumerate()
        .map(|(index, (n, health))| {
            json!({
                "id": n.id.as_str(),
                "url": n.url.base,
                "weight": n.weight.get(),
                "share": snap.ring.share(index),
                "health": health.phase().name(),
                "consecutive_failures": health.consecutive_failures(),
                "last_error": health.last_error().map(|(e, at)| json!({ "message": e, "at": time(at) })),
            })
        })
        .collect()
}

/// `GET /admin/locate/<percent-encoded key>`: the key's ranking, replicas marked, and its
/// replicas in each snapshot whose handoff window is open.
fn locate(admin: &Admin, raw_key: &str) -> Response<Body> {
    let snap = admin.reloader.shared().load_full();
    let key = match key::decode(raw_key, usize::MAX) {
        Ok(key) => key,
        Err(e) => return server::rejection(&e),
    };
    let hash = key_hash(&key);
    let ranked: Vec<_> = snap
        .ring
        .rank_all(hash)
        .iter()
        .enumerate()
        .map(|(rank, r)| {
            json!({
                "node": r.id,
                "weight": r.weight,
                "score": r.score,
                "replica": rank < snap.config.replicas,
                "health": snap.health[r.index].phase().name(),
            })
        })
        .collect();
    let previous: Vec<_> = snap
        .open_windows()
        .map(|retired| {
            let old = &retired.snapshot;
            let replicas: Vec<&str> = old.replicas(&key).iter().map(|i| old.node_id(i)).collect();
            json!({ "generation": old.generation, "replicas": replicas })
        })
        .collect();
    server::json(
        StatusCode::OK,
        &json!({
            "key_hash": format!("{hash:016x}"),
            "generation": snap.generation,
            "nodes": ranked,
            "previous": previous,
        }),
    )
}

/// `?prune` (or `prune=true`) and `rate=<keys per second>`.
fn rebalance_options(query: Option<&str>) -> Result<Options, RequestError> {
    let mut options = Options::default();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("prune", "" | "true") => options.prune = true,
            ("prune", "false") => options.prune = false,
            ("rate", n) => {
                let rate = n
                    .parse::<f64>()
                    .map_err(|_| format!("rate {n:?} is not a number"))
                    .and_then(rebalance::valid_rate)
                    .map_err(RequestError::BadQuery)?;
                options.rate = Some(rate);
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
