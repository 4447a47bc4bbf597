//! Running services, alone or all together.

use anyhow::Context as _;
use hookline_telemetry::{Settings, init_tracing, shutdown_on_signals};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// One of hookline's services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Ingest,
    Router,
    Worker,
    Scheduler,
    Api,
}

impl Service {
    pub const ALL: [Service; 5] = [Service::Ingest, Service::Router, Service::Worker, Service::Scheduler, Service::Api];

    pub fn name(self) -> &'static str {
        match self {
            Service::Ingest => "hookline-ingest",
            Service::Router => "hookline-router",
            Service::Worker => "hookline-worker",
            Service::Scheduler => "hookline-scheduler",
            Service::Api => "hookline-api",
        }
    }

    /// Runs the service until `shutdown` is cancelled.
    pub async fn run(self, settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
        match self {
            Service::Ingest => hookline_ingest::run(settings, shutdown).await?,
            Service::Router => hookline_router::run(settings, shutdown).await?,
            Service::Worker => hookline_worker::run(settings, shutdown).await?,
            Service::Scheduler => hookline_scheduler::run(settings, shutdown).await?,
            Service::Api => {
                let listener = tokio::net::TcpListener::bind(settings.api.listen)
                    .await
                    .with_context(|| format!("binding api.listen {}", settings.api.listen))?;
                hookline_api::run(settings, listener, shutdown).await?
            }
        }
        Ok(())
    }
}

/// Runs one service with logging and signal handling.
pub async fn one(service: Service, settings: Settings) -> anyhow::Result<()> {
    init_tracing(service.name(), &settings.telemetry);
    let shutdown = shutdown_on_signals();
    service.run(settings, shutdown).await.with_context(|| service.name())
}

/// Runs every service in this process; the first to fail stops the others.
pub async fn all(settings: Settings) -> anyhow::Result<()> {
    init_tracing("hookline", &settings.telemetry);
    let shutdown = shutdown_on_signals();
    run_all(settings, shutdown).await
}

/// Runs every service until `shutdown` is cancelled or one of them fails.
pub async fn run_all(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    // Migrate once up front rather than have five services queue on the lock.
    let pool = hookline_store::connect(settings.database_url(), 1)?;
    hookline_store::migrate(&pool).await.context("migrating the database")?;
    let mut tasks = JoinSet::new();
    for service in Service::ALL {
        let settings = settings.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move { service.run(settings, shutdown).await.with_context(|| service.name()) });
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
