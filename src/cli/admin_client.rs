//! A minimal client of a proxy's admin listener, for the commands that ask it.

use std::time::Duration;

use anyhow::Context;
use http_body_util::{BodyExt, Empty};

/// How long the admin listener has to answer.
const PATIENCE: Duration = Duration::from_secs(5);

/// GETs `path` from the admin listener at `admin` and decodes the JSON answer.
pub(crate) async fn get<T: serde::de::DeserializeOwned>(
    admin: &str,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<T> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<bytes::Bytes>>();
    let uri: hyper::Uri = format!("http://{admin}{path}")
        .parse()
        .with_context(|| format!("bad admin address {admin:?}"))?;
    let mut request = hyper::Request::get(uri);
    if let Some(token) = token {
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request.body(Empty::new())?;
    let resp = tokio::time::timeout(PATIENCE, client.request(request))
        .await
        .with_context(|| format!("the admin listener did not answer within {PATIENCE:?}"))?
        .with_context(|| format!("cannot reach the admin listener at {admin}"))?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    anyhow::ensure!(
        status.is_success(),
        "{path}: {status}: {}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).with_context(|| format!("{path}: unexpected answer"))
}
