//! Starting a service and consuming its queue: what every service's `run` does first.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hookline_bus::Bus;
use hookline_bus::consumer::{self, ConsumerOptions, Incoming, Outcome};
use hookline_store::{ConfigWatch, Pool};
use hookline_telemetry::{Metrics, Settings};
use tokio_util::sync::CancellationToken;

use crate::Result;

/// A service's connections and its place in the process: what its handlers share.
pub struct Service {
    name: &'static str,
    /// The database, migrated.
    pub pool: Pool,
    /// The broker, with the whole topology declared.
    pub bus: Bus,
    /// Where the service counts what it does.
    pub metrics: Metrics,
    /// Cancelled when the service must stop.
    pub shutdown: CancellationToken,
    database_url: String,
    grace: Duration,
}

impl Service {
    /// Connects to the database (applying pending migrations) and to the broker
    /// (declaring the topology with a delay queue per configured retry delay), from the
    /// shared sections of `settings`, and reports the queues' depths in `metrics`.
    pub async fn start(
        name: &'static str,
        settings: &Settings,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) -> Result<Self> {
        let pool = hookline_store::open(settings.database_url(), settings.database.pool_size).await?;
        let delays = settings.retry_policy()?.delays().to_vec();
        let bus = Bus::open(settings.amqp_url(), &settings.amqp.prefix, name, &delays).await?;
        bus.report_queue_depths(&metrics);
        Ok(Self {
            name,
            pool,
            bus,
            metrics,
            shutdown,
            database_url: settings.database_url().to_owned(),
            grace: settings.shutdown.grace,
        })
    }

    /// The service's name, as its spans and connections carry it.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Starts listening for webhook, endpoint and credential changes on a connection of
    /// its own, for what the service keeps in memory.
    pub async fn watch_config(&self) -> Result<ConfigWatch> {
        Ok(ConfigWatch::listen(&self.database_url).await?)
    }

    /// The secrets key, checked against the one this database's secrets were sealed with.
    pub async fn secrets(&self, settings: &Settings) -> Result<hookline_core::crypto::SecretBox> {
        let secrets = settings.secret_box()?;
        hookline_store::repo::key_check::verify(&self.pool, &secrets).await?;
        Ok(secrets)
    }

    /// Consumes `queue` with `handler` on up to `concurrency` messages at once until
    /// shutdown; in-flight messages then get `shutdown.grace` to finish.
    pub async fn consume<H, F>(&self, queue: String, concurrency: usize, handler: H) -> Result<()>
    where
        H: Fn(Arc<Incoming>) -> F + Send + Sync + 'static,
        F: Future<Output = Outcome> + Send + 'static,
    {
        let options = ConsumerOptions {
            service: self.name,
            metrics: self.metrics.clone(),
            tag: format!("{}-{}", self.name, std::process::id()),
            queue,
            concurrency,
            shutdown_grace: self.grace,
        };
        tracing::info!(service = self.name, queue = %options.queue, concurrency, "consuming");
        consumer::consume(&self.bus.connection, options, self.bus.reject_target(), self.shutdown.clone(), handler)
            .await?;
        Ok(())
    }
}
