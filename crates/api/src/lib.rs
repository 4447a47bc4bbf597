#![doc = include_str!("../README.md")]

pub mod admin;
mod answers;
mod api_keys;
pub mod auth;
mod credentials;
mod deliveries;
mod error;
mod event_types;
mod events;
mod idempotency;
mod json;
pub mod openapi;
mod organizations;
mod pagination;
mod rate;
mod synthetic;
mod versions;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use hookline_ingest::Ingestor;
use hookline_service::{Error, Service};
use hookline_store::Pool;
use hookline_telemetry::{Metrics, Settings};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

pub use error::ApiError;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pool: Pool,
    ingestor: Ingestor,
    catalog: Arc<hookline_core::Catalog>,
    secrets: hookline_core::crypto::SecretBox,
    publisher: hookline_bus::Publisher,
    topology: hookline_bus::Topology,
    limits: Limits,
    rate: Arc<rate::RateLimits>,
}

/// Configured bounds the API enforces on what clients ask for (a webhook's own retry
/// policy has the lifecycle's limits, `hookline_core::retry`).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Whether live webhooks may use http://.
    pub allow_http: bool,
    /// How long the previous signing secret keeps signing after a rotation.
    pub rotation_overlap: std::time::Duration,
    /// Hashes of the operator tokens.
    pub operator_token_hashes: Vec<String>,
}

/// The routes, for `run` and for tests.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/events", post(events::publish))
        .route("/v1/event-types", get(event_types::list))
        .route("/v1/organizations", post(organizations::create).get(organizations::list))
        .route(
            "/v1/organizations/{id}",
            get(organizations::get).patch(organizations::update).delete(organizations::delete),
        )
        .route("/v1/organizations/{id}/api-keys", post(organizations::first_key))
        .route("/v1/api-keys", post(api_keys::create).get(api_keys::list))
        .route("/v1/api-keys/{id}", axum::routing::delete(api_keys::revoke))
        .route("/v1/credentials", post(credentials::create).get(credentials::list))
        .route("/v1/credentials/{id}", get(credentials::get).patch(credentials::update).delete(credentials::delete))
        .route("/v1/webhooks", post(webhooks::create).get(webhooks::list))
        .route("/v1/webhooks/{id}", get(webhooks::get).patch(webhooks::update).delete(webhooks::delete))
        .route("/v1/webhooks/{id}/activate", post(webhooks::activate))
        .route("/v1/webhooks/{id}/deactivate", post(webhooks::deactivate))
        .route("/v1/webhooks/{id}/secret", get(webhooks::secret))
        .route("/v1/webhooks/{id}/rotate-secret", post(webhooks::rotate_secret))
        .route("/v1/webhooks/{id}/test", post(webhooks::send_test))
        .route("/v1/webhooks/{id}/deliveries", get(deliveries::list))
        .route("/v1/webhooks/{id}/recover", post(deliveries::recover))
        .route("/v1/deliveries/{id}", get(deliveries::get))
        .route("/v1/deliveries/{id}/redeliver", post(deliveries::redeliver))
        .route("/v1/openapi.json", get(|| async { ([("content-type", "application/json")], openapi::document()) }))
        .layer(axum::middleware::from_fn_with_state(state.clone(), idempotency::middleware))
        .layer(axum::middleware::from_fn(json::json_errors))
        .layer(axum::middleware::from_fn(traced))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .fallback(no_route)
        .method_not_allowed_fallback(no_method)
        .with_state(state)
}

/// A path no route has: JSON like every other error.
async fn no_route() -> ApiError {
    ApiError {
        retry_after: None,
        status: axum::http::StatusCode::NOT_FOUND,
        code: "not_found",
        field: None,
        message: "no such route (see /v1/openapi.json)".into(),
    }
}

/// A route asked with a method it does not take.
async fn no_method() -> ApiError {
    ApiError {
        retry_after: None,
        status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        field: None,
        message: "the route does not take this method (see /v1/openapi.json)".into(),
    }
}

/// Runs each request (but health probes, which would drown the traces) in a server span
/// of `hookline-api` that continues the caller's `traceparent`, so an event posted by a
/// traced application joins that application's trace.
async fn traced(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let method = request.method().clone();
    let span = tracing::info_span!(
        "request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        service.name = "hookline-api",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    hookline_telemetry::propagation::continue_trace(&span, request.headers());
    let response = next.run(request).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    response
}

async fn ready(State(state): State<AppState>) -> (StatusCode, &'static str) {
    let database = match state.pool.get().await {
        Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    };
    let broker = state.publisher.is_connected();
    match (database, broker) {
        (true, true) => (StatusCode::OK, "ready"),
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "database unreachable"),
        (_, false) => (StatusCode::SERVICE_UNAVAILABLE, "broker unreachable"),
    }
}

/// Serves the API on `listener` until `shutdown` is cancelled; events posted to it are
/// counted in `metrics`.
pub async fn run(
    settings: Settings,
    metrics: Metrics,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let catalog = Arc::new(settings.catalog()?);
    let Some(service) = Service::start("hookline-api", &settings, metrics, shutdown).await? else { return Ok(()) };
    let Some(secrets) = service.secrets(&settings).await? else { return Ok(()) };
    let synced =
        service.patiently("syncing the event catalog", || hookline_store::repo::catalog::sync(&service.pool, &catalog));
    if synced.await?.is_none() {
        return Ok(());
    }
    let bus = &service.bus;
    let ingestor = Ingestor::new(
        service.pool.clone(),
        catalog.clone(),
        (bus.publisher.clone(), bus.topology.clone()),
        &settings.ingest,
        settings.database.batch_linger,
        service.metrics.clone(),
    );
    let limits = Limits {
        allow_http: settings.delivery.allow_http,
        rotation_overlap: settings.signing.rotation_overlap,
        operator_token_hashes: settings.api.operator_token_hashes.clone(),
    };
    let state = AppState {
        pool: service.pool.clone(),
        ingestor,
        catalog,
        secrets,
        publisher: bus.publisher.clone(),
        topology: bus.topology.clone(),
        limits,
        rate: Arc::new(rate::RateLimits::new(
            settings.api.requests_per_second_per_key,
            settings.api.failed_sign_ins_per_minute,
        )),
    };
    tracing::info!(address = %listener.local_addr()?, "api listening");
    let stopped = service.shutdown.clone().cancelled_owned();
    // With the peer's address, for the failed sign-in limit.
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(stopped).await?;
    Ok(())
}
