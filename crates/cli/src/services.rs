//! Running services, alone or all together.

use anyhow::Context as _;
use hookline_telemetry::{Metrics, Settings, flush_traces, init_tracing, shutdown_on_signals, start_metrics_endpoint};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// One of hookline's services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    Ingest,
    Router,
    Worker,
    Scheduler,
    Api,
}

impl Service {
    pub(crate) const ALL: [Service; 5] =
        [Service::Ingest, Service::Router, Service::Worker, Service::Scheduler, Service::Api];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Service::Ingest => "hookline-ingest",
            Service::Router => "hookline-router",
            Service::Worker => "hookline-worker",
            Service::Scheduler => "hookline-scheduler",
            Service::Api => "hookline-api",
        }
    }

    /// Runs the service until `shutdown` is cancelled.
    pub(crate) async fn run(
        self,
        settings: Settings,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        match self {
            Service::Ingest => hookline_ingest::run(settings, metrics, shutdown).await?,
            Service::Router => hookline_router::run(settings, metrics, shutdown).await?,
            Service::Worker => hookline_worker::run(settings, metrics, shutdown).await?,
            Service::Scheduler => hookline_scheduler::run(settings, metrics, shutdown).await?,
            Service::Api => {
                let listener = tokio::net::TcpListener::bind(settings.api.listen)
                    .await
                    .with_context(|| format!("binding api.listen {}", settings.api.listen))?;
                hookline_api::run(settings, metrics, listener, shutdown).await?
            }
        }
        Ok(())
    }
}

/// Runs one service with logging, tracing, metrics and signal handling.
pub(crate) async fn one(service: Service, settings: Settings) -> anyhow::Result<()> {
    init_tracing(service.name(), &settings.telemetry);
    let shutdown = shutdown_on_signals();
    let metrics = Metrics::new();
    start_metrics_endpoint(&settings, &metrics, &shutdown).await?;
    let result = service.run(settings, metrics, shutdown).await.with_context(|| service.name());
    flush_traces();
    result
}

/// Runs every service in this process, with one `/metrics` endpoint for all of them;
/// the first to fail stops the others.
pub(crate) async fn all(settings: Settings) -> anyhow::Result<()> {
    init_tracing("hookline", &settings.telemetry);
    let shutdown = shutdown_on_signals();
    let metrics = Metrics::new();
    start_metrics_endpoint(&settings, &metrics, &shutdown).await?;
    let result = run_all(settings, metrics, shutdown).await;
    flush_traces();
    result
}

/// Runs every service until `shutdown` is cancelled or one of them fails.
pub(crate) async fn run_all(settings: Settings, metrics: Metrics, shutdown: CancellationToken) -> anyhow::Result<()> {
    // Migrate once up front rather than have five services queue on the lock.
    hookline_store::migrate(settings.database_url()).await.context("migrating the database")?;
    let mut tasks = JoinSet::new();
    for service in Service::ALL {
        let (settings, metrics, shutdown) = (settings.clone(), metrics.clone(), shutdown.clone());
        tasks.spawn(async move { service.run(settings, metrics, shutdown).await.with_context(|| service.name()) });
    }
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined.map_err(anyhow::Error::from).and_then(|r| r);
        if let Err(err) = outcome {
            tracing::error!(error = %format!("{err:#}"), "service stopped; stopping the others");
            shutdown.cancel();
            first_error.get_or_insert(err);
        } else if !shutdown.is_cancelled() {
            shutdown.cancel();
        }
    }
    first_error.map_or(Ok(()), Err)
}
