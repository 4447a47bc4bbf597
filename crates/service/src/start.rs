//! Starting a service and consuming its queue: what every service's `run` does first.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hookline_bus::Bus;
use hookline_bus::consumer::{ConsumerOptions, Incoming, Outcome};
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
    stall_after: Duration,
}

impl Service {
    /// Connects to the database (applying pending migrations) and to the broker
    /// (declaring the topology with a delay queue per configured retry delay), from the
    /// shared sections of `settings`, and reports the queues' depths in `metrics`.
    ///
    /// Either may be down when the service starts (everything starting at once, or an
    /// outage): it waits for each as long as it takes, logging once, and is `None` when
    /// `shutdown` comes first. Only what waiting cannot fix (bad configuration, a refused
    /// migration) is an error.
    pub async fn start(
        name: &'static str,
        settings: &Settings,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) -> Result<Option<Self>> {
        let delays = settings.retry_policy()?.delays().to_vec();
        let Some(pool) = open_database(settings, &shutdown).await? else { return Ok(None) };
        let bus = match Bus::open(settings.amqp_url(), &settings.amqp.prefix, name, &delays, &shutdown).await {
            Ok(bus) => bus,
            Err(hookline_bus::Error::Disconnected) if shutdown.is_cancelled() => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        bus.report_queue_depths(&metrics);
        register_checks(name, &pool, &bus, &metrics);
        Ok(Some(Self {
            name,
            pool,
            bus,
            metrics,
            shutdown,
            database_url: settings.database_url().to_owned(),
            grace: settings.shutdown.grace,
            // Longer than any one message may legitimately take: a delivery's request
            // and its record.
            stall_after: STALL_AFTER.max(settings.delivery.timeout * 2),
        }))
    }

    /// The service's name, as its spans and connections carry it.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Starts listening for webhook, endpoint and credential changes on a connection of
    /// its own (kept up through database outages), for what the service keeps in memory.
    pub fn watch_config(&self) -> Result<ConfigWatch> {
        Ok(ConfigWatch::listen(&self.database_url)?)
    }

    /// The secrets key, checked against the one this database's secrets were sealed with
    /// (waiting through a database outage; `None` when shutdown comes first).
    pub async fn secrets(&self, settings: &Settings) -> Result<Option<hookline_core::crypto::SecretBox>> {
        let secrets = settings.secret_box()?;
        let checked = self
            .patiently("checking the secrets key", || hookline_store::repo::key_check::verify(&self.pool, &secrets))
            .await?;
        Ok(checked.map(|()| secrets))
    }

    /// Runs start-up `work` that needs the database or broker, waiting through their
    /// outages as [`Service::start`] does; `None` when shutdown comes first.
    pub async fn patiently<T, E, F, Fut>(&self, what: &str, work: F) -> Result<Option<T>>
    where
        E: Into<crate::Error>,
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
    {
        while_unavailable(what, &self.shutdown, work).await
    }

    /// Consumes `queue` with `handler` on up to `concurrency` messages at once until
    /// shutdown, through every loss of the broker; in-flight messages then get
    /// `shutdown.grace` to finish.
    pub async fn consume<H, F>(&self, queue: String, concurrency: usize, handler: H) -> Result<()>
    where
        H: Fn(Arc<Incoming>) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Outcome> + Send + 'static,
    {
        let watchdog = self.metrics.health().watchdog(format!("{} consuming {queue}", self.name), self.stall_after);
        let options = ConsumerOptions {
            service: self.name,
            metrics: self.metrics.clone(),
            tag: format!("{}-{}", self.name, std::process::id()),
            queue,
            concurrency,
            shutdown_grace: self.grace,
            watchdog,
        };
        tracing::info!(service = self.name, queue = %options.queue, concurrency, "consuming");
        self.bus.consume(options, self.shutdown.clone(), handler).await?;
        Ok(())
    }
}

/// How long a consume loop may have every handler place taken with none given back
/// before `/healthz` calls it wedged (at least twice the delivery timeout).
const STALL_AFTER: Duration = Duration::from_secs(300);

/// Tells `/readyz` how to see whether `name`'s database and broker answer.
fn register_checks(name: &'static str, pool: &Pool, bus: &Bus, metrics: &Metrics) {
    let pool = pool.clone();
    metrics.health().check(format!("{name}: database"), move || {
        let pool = pool.clone();
        async move {
            let client = pool.get().await.map_err(|err| err.to_string())?;
            client.simple_query("SELECT 1").await.map(drop).map_err(|err| err.to_string())
        }
    });
    let publisher = bus.publisher.clone();
    metrics.health().check(format!("{name}: broker"), move || {
        let connected = publisher.is_connected();
        async move { if connected { Ok(()) } else { Err("not connected".to_owned()) } }
    });
}

/// The migrated database of `settings`, once it answers; `None` when `shutdown` comes
/// first.
async fn open_database(settings: &Settings, shutdown: &CancellationToken) -> Result<Option<Pool>> {
    let open = || hookline_store::open(settings.database_url(), settings.database.pool_size);
    while_unavailable("reaching the database", shutdown, open).await
}

/// Runs `work` until it succeeds, again after a growing pause for as long as it fails
/// only because the database or broker is away (logging once), and `None` when
/// `shutdown` comes first. Any other failure is returned at once.
async fn while_unavailable<T, E, F, Fut>(what: &str, shutdown: &CancellationToken, mut work: F) -> Result<Option<T>>
where
    E: Into<crate::Error>,
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, E>>,
{
    let mut failures = 0;
    loop {
        let outcome = tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            outcome = work() => outcome.map_err(Into::into),
        };
        match outcome {
            Ok(done) => {
                if failures > 0 {
                    tracing::info!(attempts = failures + 1, "{what}: done");
                }
                return Ok(Some(done));
            }
            Err(err) if err.is_unavailable() => {
                if failures == 0 {
                    tracing::warn!(error = %err, "{what}: unavailable; trying again until it answers");
                }
                failures += 1;
            }
            Err(err) => return Err(err),
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            () = tokio::time::sleep(hookline_core::backoff::after(failures)) => {}
        }
    }
}
