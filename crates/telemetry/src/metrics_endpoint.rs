//! The HTTP endpoint Prometheus scrapes.

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::settings::{Settings, SettingsError};

/// Content type of the OpenMetrics text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

async fn scrape(State(metrics): State<Metrics>) -> impl IntoResponse {
    ([(CONTENT_TYPE, OPENMETRICS)], metrics.render().await)
}

/// `200 ready`, or `503` naming each dependency that does not answer.
async fn ready(State(metrics): State<Metrics>) -> (StatusCode, String) {
    match metrics.health().ready().await {
        Ok(()) => (StatusCode::OK, "ready".to_owned()),
        Err(missing) => (StatusCode::SERVICE_UNAVAILABLE, missing.join("\n")),
    }
}

/// `200 ok`, or `503` naming each wedged loop.
async fn live(State(metrics): State<Metrics>) -> (StatusCode, String) {
    match metrics.health().live().await {
        Ok(()) => (StatusCode::OK, "ok".to_owned()),
        Err(wedged) => (StatusCode::SERVICE_UNAVAILABLE, wedged.join("\n")),
    }
}

/// Serves `GET /metrics`, `/readyz` and `/healthz` on `listener` until `shutdown` is
/// cancelled.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .route("/readyz", axum::routing::get(ready))
        .route("/healthz", axum::routing::get(live))
        .with_state(metrics);
    axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await
}

/// Binds `telemetry.metrics_listen` (unless it is empty) and serves the metrics there in
/// the background. Returns the bound address; failing to bind is an error naming the key,
/// because a second process on the same port would otherwise go unmonitored silently.
pub async fn start_metrics_endpoint(
    settings: &Settings,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<Option<SocketAddr>, SettingsError> {
    let Some(address) = settings.metrics_listen()? else { return Ok(None) };
    let listener = tokio::net::TcpListener::bind(address).await.map_err(|err| SettingsError::Invalid {
        key: "telemetry.metrics_listen",
        message: format!("cannot listen on {address}: {err}"),
    })?;
    let bound = listener.local_addr().unwrap_or(address);
    tracing::info!(address = %bound, "metrics at /metrics");
    let (metrics, shutdown) = (metrics.clone(), shutdown.clone());
    tokio::spawn(async move {
        if let Err(err) = serve_metrics(listener, metrics, shutdown).await {
            tracing::error!(error = %err, "the metrics endpoint stopped");
        }
    });
    Ok(Some(bound))
}
