//! One hookline scenario: a deployment (a throwaway one with every service in this
//! process, or a running one), an organisation with webhooks to the sink, N events
//! published over AMQP, timed until every delivery is recorded as succeeded.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use hookline_bus::Bus;
use hookline_core::delivery::{DeliveryStatus, ErrorKind};
use hookline_core::ids::OrganizationId;
use hookline_store::Pool;
use lapin::BasicProperties;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;

use crate::deployment::{Deployment, Target};
use crate::sink::Sink;
use crate::stages::Stage;
use crate::usage::{CpuTimes, Latency, peak_rss_mib, rss_mib};

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct Scenario {
    /// Name printed in the results.
    pub name: &'static str,
    /// Events published.
    pub events: u64,
    /// Webhooks subscribed to every event (deliveries = events × fan-out).
    pub fan_out: u64,
    /// Every n-th event fails its first request (0: none).
    pub fail_every: u64,
    /// Bytes of padding in each event's data.
    pub payload_bytes: usize,
    /// Events per second to publish at (None: as fast as confirms allow).
    pub rate: Option<f64>,
    /// Attempts (with their deliveries and events) stored before the scenario starts.
    pub stored_attempts: u64,
}

impl Scenario {
    /// The line its results are printed under.
    pub(crate) fn heading(&self) -> String {
        let rate = self.rate.map_or("max".to_owned(), |r| format!("{r:.0}/s"));
        let fails = if self.fail_every == 0 { "never".to_owned() } else { format!("{}th once", self.fail_every) };
        let stored = match self.stored_attempts {
            0 => String::new(),
            n => format!(", {n} attempts stored before"),
        };
        format!(
            "{}: {} events × {} webhooks, {} B padding, fail every {fails}, publish rate {rate}{stored}",
            self.name, self.events, self.fan_out, self.payload_bytes
        )
    }
}

/// What a scenario measured.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// The scenario.
    pub scenario: Scenario,
    /// Events stored per second, publish start to the last event stored.
    pub events_per_second: f64,
    /// Deliveries recorded as succeeded per second, publish start to the last one.
    pub deliveries_per_second: f64,
    /// Publish → receipt at the sink, successful deliveries.
    pub latency: Latency,
    /// Publish → receipt by minute of receipt.
    pub latency_by_minute: Vec<Latency>,
    /// CPU used by the run, per 1,000 deliveries.
    pub cpu_per_thousand: CpuTimes,
    /// This process's peak resident memory after the run, MiB.
    pub peak_rss_mib: f64,
    /// Resident memory sampled every 10 s during the run, MiB (flat means no leak).
    pub rss_samples: Vec<f64>,
    /// Mean rows and milliseconds per batch, by batched statement (in-process
    /// deployments only).
    pub batch_sizes: Option<Vec<(String, f64, f64)>>,
    /// Publish → receipt split at the timestamps hookline writes (first attempts).
    pub stages: Vec<Stage>,
}

/// How often resident memory is sampled during a run.
const RSS_EVERY: Duration = Duration::from_secs(10);

/// How often the run checks whether it is done: the resolution of its timing.
const POLL_EVERY: Duration = Duration::from_millis(5);

/// How often the run looks for a delivery that failed for good (a scan of its rows).
const FAILURE_CHECK_EVERY: Duration = Duration::from_secs(5);

/// Concurrent publishers: enough confirms in flight to keep the broker busy.
const PUBLISHERS: u64 = 64;

/// Runs `scenario` and cleans up after it; gives up after `deadline`.
#[allow(
    clippy::too_many_lines,
    reason = "one scenario in the order it happens: set up, publish, wait, measure, report"
)]
pub(crate) async fn run(scenario: Scenario, target: &Target, deadline: Duration) -> anyhow::Result<Outcome> {
    // `HOOKLINE__…` variables given to the bench override these, to measure a setting.
    let from_environment: Vec<(String, String)> =
        std::env::vars().filter(|(k, _)| k.starts_with("HOOKLINE__")).collect();
    let mut settings = vec![
        ("HOOKLINE__DATABASE__POOL_SIZE", "16"),
        ("HOOKLINE__DELIVERY__TIMEOUT", "10s"),
        ("HOOKLINE__RETRY__DELAYS", "1s,2s"),
    ];
    settings.extend(from_environment.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let deployment = Deployment::open(target, &settings).await?;
    if scenario.stored_attempts > 0 {
        anyhow::ensure!(!deployment.is_running(), "--stored-attempts fills only a deployment of the bench's own");
        let took = crate::history::store(&deployment, scenario.stored_attempts).await?;
        eprintln!("history: {} attempts stored in {:.0} s", scenario.stored_attempts, took.as_secs_f64());
    }
    let clock = Instant::now();
    let clock_epoch = SystemTime::now();
    let sink = Sink::start(clock, scenario.fail_every).await?;
    let org = deployment.organization().await?;
    for n in 0..scenario.fan_out {
        deployment.create_webhook(&org, sink.url(&format!("/w{n}")), true).await?;
    }
    consumers_attached(deployment.bus()).await?;
    let expected = scenario.events * scenario.fan_out;
    let services_apart = deployment.is_running();
    let cpu_before = CpuTimes::now(services_apart);
    let started = clock.elapsed();
    let target = Arc::new(EventPublisher {
        publisher: deployment.bus().publisher.clone(),
        exchange: deployment.bus().topology.events_exchange(),
        organization: org.to_string(),
        environment: deployment.event_environment(),
    });
    let publishing = tokio::spawn(publish(target, scenario.clone(), clock));
    let mut recorded_at = None;
    let give_up = Instant::now() + deadline;
    let mut failed: i64 = 0;
    let mut rss_samples = vec![rss_mib(services_apart)];
    let mut next_sample = Instant::now() + RSS_EVERY;
    let mut next_failure_check = Instant::now() + FAILURE_CHECK_EVERY;
    while recorded_at.is_none() && failed == 0 && Instant::now() < give_up {
        if Instant::now() >= next_sample {
            rss_samples.push(rss_mib(services_apart));
            next_sample += RSS_EVERY;
        }
        // The sink's own count is free to read; the database is asked only once the
        // sink has every delivery (whether the attempts are recorded yet), so the
        // bench neither loads the database it measures nor times the run coarsely.
        tokio::time::sleep(POLL_EVERY).await;
        if sink.succeeded() >= expected && recorded(deployment.pool(), &org).await? >= expected {
            recorded_at = Some(clock.elapsed());
        }
        // Every scenario's deliveries succeed in the end; one that failed for good never
        // will. Counting them scans the run's deliveries, so it is rare.
        if Instant::now() >= next_failure_check {
            failed = count_failed(deployment.pool(), &org).await?;
            next_failure_check += FAILURE_CHECK_EVERY;
        }
    }
    let stored_at = match recorded_at {
        Some(_) => Some(last_event_stored(deployment.pool(), &org, clock).await?),
        None => None,
    };
    let statuses = delivery_statuses(deployment.pool(), &org).await;
    let stages = match recorded_at {
        Some(_) => crate::stages::measure(deployment.pool(), &org, clock_epoch).await?,
        None => Vec::new(),
    };
    publishing.await??;
    let cpu = CpuTimes::now(services_apart).since(&cpu_before);
    let peak_rss_mib = peak_rss_mib(services_apart);
    let batch_sizes = deployment.batch_sizes().await;
    deployment.finish().await;
    let (Some(stored_at), Some(recorded_at)) = (stored_at, recorded_at) else {
        anyhow::bail!(
            "{}: not every delivery succeeded within {deadline:?}: sink received {} of {expected}; deliveries {statuses}",
            scenario.name,
            sink.succeeded()
        );
    };
    let per_thousand = 1000.0 / expected as f64;
    Ok(Outcome {
        events_per_second: scenario.events as f64 / stored_at.saturating_sub(started).as_secs_f64(),
        deliveries_per_second: expected as f64 / (recorded_at - started).as_secs_f64(),
        latency: sink.latency(),
        latency_by_minute: sink.latency_by_minute(),
        cpu_per_thousand: CpuTimes {
            bench: cpu.bench * per_thousand,
            broker: cpu.broker * per_thousand,
            database: cpu.database * per_thousand,
        },
        peak_rss_mib,
        rss_samples,
        batch_sizes,
        stages,
        scenario,
    })
}

/// Waits until every service consumes its queue, so the clock starts on a running
/// pipeline rather than on services still starting (or never started).
async fn consumers_attached(bus: &Bus) -> anyhow::Result<()> {
    let topology = &bus.topology;
    let consumed =
        [topology.ingest_queue(), topology.route_queue(), topology.delivery_queue(), topology.failed_queue()];
    let channel = bus.connection()?.create_channel().await?;
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        let mut attached = 0;
        for queue in &consumed {
            let declared = channel.queue_declare(queue.as_str().into(), passive, FieldTable::default()).await?;
            attached += usize::from(declared.consumer_count() > 0);
        }
        if attached == consumed.len() {
            channel.close(200, "consumers attached".into()).await?;
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < give_up, "the services did not start consuming within a minute");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many of `organization`'s deliveries are recorded as succeeded.
async fn recorded(pool: &Pool, organization: &OrganizationId) -> anyhow::Result<u64> {
    Ok(u64::try_from(count_in(pool, organization, DeliveryStatus::Succeeded).await?).unwrap_or(0))
}

/// How many of `organization`'s deliveries failed for good.
async fn count_failed(pool: &Pool, organization: &OrganizationId) -> anyhow::Result<i64> {
    count_in(pool, organization, DeliveryStatus::Failed).await
}

/// How many of `organization`'s deliveries are in `status`.
async fn count_in(pool: &Pool, organization: &OrganizationId, status: DeliveryStatus) -> anyhow::Result<i64> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "SELECT count(*) FROM deliveries WHERE organization_id = $1 AND status = $2",
            &[organization, &status],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// When, on `clock`, the statement that stored `organization`'s last event began (its
/// `received_at`), read once the run is over instead of polled during it.
async fn last_event_stored(pool: &Pool, organization: &OrganizationId, clock: Instant) -> anyhow::Result<Duration> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "SELECT extract(epoch FROM clock_timestamp() - max(received_at))::float8 FROM events
             WHERE organization_id = $1",
            &[&organization.as_str()],
        )
        .await?;
    let asked_at = clock.elapsed();
    let age = Duration::try_from_secs_f64(row.get::<_, Option<f64>>(0).unwrap_or(0.0)).unwrap_or_default();
    Ok(asked_at.saturating_sub(age))
}

/// How many of `organization`'s deliveries are in each status, and what their last
/// errors were.
async fn delivery_statuses(pool: &Pool, organization: &OrganizationId) -> String {
    let Ok(client) = pool.get().await else { return "unknown (no database connection)".into() };
    let rows = client
        .query(
            "SELECT status, last_error_kind, count(*) FROM deliveries WHERE organization_id = $1
             GROUP BY 1, 2 ORDER BY 1, 2",
            &[organization],
        )
        .await
        .unwrap_or_default();
    let parts: Vec<String> = rows
        .iter()
        .map(|row| {
            let status: DeliveryStatus = row.get(0);
            let error = row.get::<_, Option<ErrorKind>>(1).map_or("-", ErrorKind::as_str);
            format!("{} (last error {error}): {}", status.as_str(), row.get::<_, i64>(2))
        })
        .collect();
    parts.join(", ")
}

/// What the publishing tasks need.
struct EventPublisher {
    publisher: hookline_bus::Publisher,
    exchange: String,
    organization: String,
    /// `live` or `test`, as the scenario's webhooks.
    environment: &'static str,
}

/// Publishes the scenario's events from several tasks, each waiting for its confirms,
/// paced to `scenario.rate` when set.
async fn publish(target: Arc<EventPublisher>, scenario: Scenario, clock: Instant) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let padding: Arc<str> = "x".repeat(scenario.payload_bytes).into();
    let start = clock.elapsed();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..PUBLISHERS {
        let (target, next, padding) = (target.clone(), next.clone(), padding.clone());
        let (events, rate) = (scenario.events, scenario.rate);
        tasks.spawn(async move {
            loop {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                if seq >= events {
                    return Ok::<_, anyhow::Error>(());
                }
                if let Some(rate) = rate {
                    let due = start + Duration::from_secs_f64(seq as f64 / rate);
                    tokio::time::sleep(due.saturating_sub(clock.elapsed())).await;
                }
                let sent = u64::try_from(clock.elapsed().as_nanos()).unwrap_or(u64::MAX);
                let body = serde_json::json!({
                    "type": "job.created",
                    "organization": target.organization,
                    "environment": target.environment,
                    "data": {"seq": seq, "sent": sent, "pad": &*padding},
                });
                let properties = BasicProperties::default().with_content_type("application/json".into());
                target
                    .publisher
                    .publish(&target.exchange, "job.created", &serde_json::to_vec(&body)?, properties)
                    .await?;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}
