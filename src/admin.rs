//! The admin listener (loopback by default): reload on demand, show the serving config, and
//! start or follow a rebalance.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use crate::error::RequestError;
use crate::rebalance::{self, Options, Rebalancer};
use crate::reload::{Reloaded, Reloader};
use crate::server::{self, Body};

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
        shutdown,
    )
    .await
}

async fn handle(admin: &Admin, req: Request<Incoming>) -> Response<Body> {
    let allow = match req.uri().path() {
        "/admin/reload" => "POST",
        "/admin/config" => "GET",
        "/admin/rebalance" => "GET, POST",
        _ => {
            return server::text(
                StatusCode::NOT_FOUND,
                "no such admin path; try /admin/config, /admin/reload or /admin/rebalance",
            )
        }
    };
    match (req.uri().path(), req.method()) {
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
    let time = |t| humantime::format_rfc3339_seconds(t).to_string();
    let nodes: Vec<_> = snap
        .config
        .nodes
        .iter()
        .zip(snap.health.iter())
        .map(|(n, health)| {
            json!({
                "id": n.id.as_str(),
                "url": n.url.base,
                "weight": n.weight.get(),
                "health": health.phase().name(),
                "consecutive_failures": health.consecutive_failures(),
                "last_error": health.last_error().map(|(e, at)| json!({ "message": e, "at": time(at) })),
            })
        })
        .collect();
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
