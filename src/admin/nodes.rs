//! The node list of the admin API: `/admin/nodes` in pages, searchable by id, and the views
//! of nodes that `/admin/config` shows too.

use http::{Response, StatusCode};
use tokio::time::Instant;

use super::time;
use super::types::{ErrorView, NodeView};
use crate::cluster::Snapshot;
use crate::health::Phase;
use crate::net::respond::{self, Body};
use crate::net::{key, RequestError};

/// Nodes in one answer of `/admin/nodes` unless `limit` says otherwise, and in
/// `/admin/config`.
pub(super) const NODES_PAGE: usize = 10_000;
/// The most `limit` may ask for.
const MAX_NODES_PAGE: usize = 100_000;

/// `GET /admin/nodes?offset=N&limit=M&q=text`: the nodes whose id contains `q`, from the
/// `offset`-th of them, at most `limit`.
#[derive(Debug, PartialEq)]
pub(super) struct NodesPage {
    offset: usize,
    limit: usize,
    q: String,
}

impl NodesPage {
    pub(super) fn of(query: Option<&str>) -> Result<NodesPage, RequestError> {
        let mut page = NodesPage {
            offset: 0,
            limit: NODES_PAGE,
            q: String::new(),
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let number = |most: usize| {
                value.parse().ok().filter(|n| *n <= most).ok_or_else(|| {
                    RequestError::BadQuery(format!("{name}: {value:?} must be from 0 to {most}"))
                })
            };
            match name {
                "offset" => page.offset = number(usize::MAX)?,
                "limit" => page.limit = number(MAX_NODES_PAGE)?,
                "q" if value.is_empty() => page.q.clear(),
                "q" => {
                    let value = value.replace('+', " ");
                    page.q =
                        String::from_utf8_lossy(&key::decode(&value, usize::MAX)?).into_owned();
                }
                _ => {
                    return Err(RequestError::BadQuery(format!(
                        "unknown parameter {name:?}; use offset, limit and q"
                    )))
                }
            }
        }
        Ok(page)
    }

    /// The page as a JSON array, with `X-Total-Count` (the nodes that match) and, when more
    /// follow, a `Link` to the next page.
    pub(super) fn respond(&self, snap: &Snapshot) -> Response<Body> {
        let members = &snap.placement.members;
        let matching = (0..members.len()).filter(|&i| members[i].id().contains(&self.q));
        let (mut total, mut chosen) = (0, Vec::new());
        for i in matching {
            if total >= self.offset && chosen.len() < self.limit {
                chosen.push(i);
            }
            total += 1;
        }
        let mut resp = respond::json(StatusCode::OK, &node_views(snap, chosen.into_iter()));
        let headers = resp.headers_mut();
        headers.insert("x-total-count", total.into());
        let next = self.offset.saturating_add(self.limit);
        if next < total {
            let mut q = String::new();
            key::encode_into(self.q.as_bytes(), &mut q);
            let link = format!(
                "</admin/nodes?offset={next}&limit={}&q={q}>; rel=\"next\"",
                self.limit
            );
            if let Ok(link) = link.parse() {
                headers.insert(hyper::header::LINK, link);
            }
        }
        resp
    }
}

/// The nodes at `indices` with their weight, share of primaries, health and last error.
pub(super) fn node_views(snap: &Snapshot, indices: impl Iterator<Item = usize>) -> Vec<NodeView> {
    let now = Instant::now();
    let placement = &snap.placement;
    indices
        .map(|i| {
            let m = &placement.members[i];
            let hints = m.hints.counts();
            NodeView {
                id: m.id().to_owned(),
                zone: m.spec.zone.as_ref().map(|z| z.as_str().to_owned()),
                url: m.spec.url.base.clone(),
                weight: m.spec.weight.get(),
                share: placement.ring.share(i),
                health: m.health.phase().name().to_owned(),
                ejected_for_ms: match m.health.phase() {
                    Phase::Ejected { until } => {
                        Some(until.saturating_duration_since(now).as_millis() as u64)
                    }
                    _ => None,
                },
                consecutive_failures: m.health.consecutive_failures(),
                in_flight: m.in_flight.load(std::sync::atomic::Ordering::Relaxed),
                hints: hints.queued,
                hints_dropped: hints.dropped,
                hints_on_nodes: hints.on_nodes.count,
                hints_handed_off: hints.handed_off,
                oldest_hint_age_s: hints.oldest_age_s(),
                last_error: m.health.last_error().map(|(message, at)| ErrorView {
                    message,
                    at: time(at),
                }),
            }
        })
        .collect()
}
