//! The Prometheus metrics every service exposes at `/metrics`.
//!
//! One [`Metrics`] is made per process (one for all five services in `hookline all`)
//! and handed to each service, rather than kept in a global, so that tests running
//! several pipelines in one process each count only their own work.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSource {
    /// Published to the events exchange.
    Amqp,
    /// Posted to `POST /v1/events`.
    Http,
}

/// How a delivery ended for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// A 2xx was received.
    Succeeded,
    /// Attempts are exhausted or the failure is not retryable.
    Failed,
    /// Closed without an attempt because its webhook is inactive or deleted.
    Closed,
}

/// Why a delivery job was not sent: another copy of it already was, or is being.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuplicateJob {
    /// The attempt it asks for is recorded already.
    AlreadyRecorded,
    /// Another worker holds the delivery's lease (its copy is sending now); this copy
    /// waits in the defer queue and is dropped once that attempt is recorded.
    InFlight,
}

/// Why a delivery job left the delivery queue to wait for its endpoint in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParkReason {
    /// The endpoint's circuit is open.
    CircuitOpen,
    /// The endpoint is at its in-flight cap.
    EndpointBusy,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToLabels {
    to: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabels {
    queue: String,
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    status_class: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DelayLabels {
    delay: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatementLabels {
    statement: &'static str,
}

fn batch_rows_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 8))
}

fn batch_seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 14))
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: String,
}

/// `(queue, messages ready)` for every queue of the deployment, once read.
pub type DepthsFuture<'a> = Pin<Box<dyn Future<Output = Vec<(String, u64)>> + Send + 'a>>;

/// Reads how many messages wait in each queue, at scrape time.
pub trait QueueDepths: Send + Sync {
    /// Reads the depths from the broker.
    fn depths(&self) -> DepthsFuture<'_>;
}

/// The counters, gauges and histograms; cheap to clone, clones share them.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    registry: Registry,
    events_ingested: Family<SourceLabels, Counter>,
    messages_rejected: Family<RejectLabels, Counter>,
    deliveries_created: Counter,
    deliveries_completed: Family<OutcomeLabels, Counter>,
    attempts: Family<AttemptLabels, Counter>,
    attempt_duration: Histogram,
    delivery_latency: Histogram,
    attempts_in_flight: Gauge,
    retries_scheduled: Family<DelayLabels, Counter>,
    duplicate_jobs: Family<ReasonLabels, Counter>,
    parked_jobs: Family<ReasonLabels, Counter>,
    released_jobs: Counter,
    circuit_changes: Family<ToLabels, Counter>,
    open_circuits: Gauge,
    queue_messages: Family<QueueLabels, Gauge>,
    batch_rows: Family<StatementLabels, Histogram, fn() -> Histogram>,
    batch_seconds: Family<StatementLabels, Histogram, fn() -> Histogram>,
    queue_depths: OnceLock<Arc<dyn QueueDepths>>,
    health: crate::health::Health,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// `metric`, registered as `name` with `help`: what the registry reads at every scrape
/// is the clone it keeps.
fn registered<M: prometheus_client::registry::Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Metrics {
    /// A fresh registry with every hookline metric at zero.
    #[allow(clippy::too_many_lines, reason = "one registration per metric, with the help text /metrics shows")]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("hookline");
        let r = &mut registry;
        let statements = || Family::<StatementLabels, Histogram, fn() -> Histogram>::new_with_constructor;
        Self(Arc::new(Inner {
            events_ingested: registered(
                r,
                "events_ingested",
                "Events accepted (duplicates included)",
                Family::default(),
            ),
            messages_rejected: registered(
                r,
                "messages_rejected",
                "Messages moved to the rejected queue, by the queue they came from and the reason",
                Family::default(),
            ),
            deliveries_created: registered(
                r,
                "deliveries_created",
                "Deliveries created (one per event and matching endpoint)",
                Counter::default(),
            ),
            deliveries_completed: registered(
                r,
                "deliveries_completed",
                "Deliveries that ended, by outcome (succeeded, failed, closed)",
                Family::default(),
            ),
            attempts: registered(
                r,
                "attempts",
                "Delivery attempts by response status class (2xx to 5xx, or none when no response came)",
                Family::default(),
            ),
            attempt_duration: registered(
                r,
                "attempt_duration_seconds",
                "Time from sending a delivery request to its response (or failure)",
                Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            ),
            delivery_latency: registered(
                r,
                "delivery_latency_seconds",
                "Time from an event's occurred_at to its successful delivery, retries included",
                Histogram::new(exponential_buckets(0.005, 2.5, 16)),
            ),
            attempts_in_flight: registered(
                r,
                "attempts_in_flight",
                "Delivery requests waiting for a response",
                Gauge::default(),
            ),
            retries_scheduled: registered(
                r,
                "retries_scheduled",
                "Failed attempts put into a delay queue, by delay",
                Family::default(),
            ),
            duplicate_jobs: registered(
                r,
                "duplicate_jobs",
                "Delivery jobs not sent because another copy was sent or is being sent, by reason (already_recorded, in_flight)",
                Family::default(),
            ),
            parked_jobs: registered(
                r,
                "parked_jobs",
                "Delivery jobs that left the delivery queue to wait for their endpoint, by reason (circuit_open, endpoint_busy)",
                Family::default(),
            ),
            released_jobs: registered(
                r,
                "released_jobs",
                "Parked deliveries whose jobs were put back in the delivery queue",
                Counter::default(),
            ),
            circuit_changes: registered(
                r,
                "circuit_changes",
                "Endpoint circuits this worker opened or closed, by the state changed to (open, closed)",
                Family::default(),
            ),
            open_circuits: registered(
                r,
                "open_circuits",
                "Endpoint circuits open, as this worker last read them (the same figure in every worker)",
                Gauge::default(),
            ),
            queue_messages: registered(
                r,
                "queue_messages",
                "Messages waiting in each queue (delivery, delay queues, rejected, ...) at scrape time",
                Family::default(),
            ),
            batch_rows: registered(
                r,
                "batch_rows",
                "Messages whose database work ran in one statement, by statement (group commit at work)",
                statements()(batch_rows_histogram as fn() -> Histogram),
            ),
            batch_seconds: registered(
                r,
                "batch_seconds",
                "Time one batched statement (or route message publish) took, by statement: what a message waits behind",
                statements()(batch_seconds_histogram as fn() -> Histogram),
            ),
            queue_depths: OnceLock::new(),
            health: crate::health::Health::default(),
            registry,
        }))
    }

    /// Runs `work`, the statement of one batch of `rows` messages (of kind `statement`),
    /// noting the batch's size and how long the statement took: the two figures that
    /// say what group commit gathers and what each message waits behind.
    pub async fn timed_batch<T>(&self, statement: &'static str, rows: usize, work: impl Future<Output = T>) -> T {
        let labels = StatementLabels { statement };
        self.0.batch_rows.get_or_create(&labels).observe(rows as f64);
        let started = std::time::Instant::now();
        let outcome = work.await;
        self.0.batch_seconds.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
        outcome
    }

    /// The process's readiness checks and watchdogs, served beside the metrics as
    /// `/readyz` and `/healthz`: one per process, like the metrics.
    pub fn health(&self) -> &crate::health::Health {
        &self.0.health
    }

    /// Counts a job copy that was not sent.
    pub fn duplicate_job(&self, why: DuplicateJob) {
        let reason = match why {
            DuplicateJob::AlreadyRecorded => "already_recorded",
            DuplicateJob::InFlight => "in_flight",
        };
        self.0.duplicate_jobs.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Counts a job parked to wait for its endpoint.
    pub fn parked_job(&self, why: ParkReason) {
        let reason = match why {
            ParkReason::CircuitOpen => "circuit_open",
            ParkReason::EndpointBusy => "endpoint_busy",
        };
        self.0.parked_jobs.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Counts parked deliveries put back in the delivery queue.
    pub fn released_jobs(&self, count: usize) {
        self.0.released_jobs.inc_by(count as u64);
    }

    /// Counts an endpoint circuit this worker opened (`true`) or closed.
    pub fn circuit_changed(&self, opened: bool) {
        let to = if opened { "open" } else { "closed" };
        self.0.circuit_changes.get_or_create(&ToLabels { to }).inc();
    }

    /// Sets how many endpoint circuits are open.
    pub fn set_open_circuits(&self, count: usize) {
        self.0.open_circuits.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Counts an accepted event.
    pub fn event_ingested(&self, source: EventSource) {
        let source = match source {
            EventSource::Amqp => "amqp",
            EventSource::Http => "http",
        };
        self.0.events_ingested.get_or_create(&SourceLabels { source }).inc();
    }

    /// Counts a message moved from `queue` to the rejected queue; returns how many have
    /// been moved from that queue for that reason so far.
    pub fn message_rejected(&self, queue: &str, reason: &str) -> u64 {
        let labels = RejectLabels { queue: queue.to_owned(), reason: reason.to_owned() };
        self.0.messages_rejected.get_or_create(&labels).inc() + 1
    }

    /// Counts deliveries the router created.
    pub fn deliveries_created(&self, count: usize) {
        self.0.deliveries_created.inc_by(u64::try_from(count).unwrap_or(u64::MAX));
    }

    /// Counts a delivery that ended; for a success, `latency` is the time since the
    /// event occurred.
    pub fn delivery_completed(&self, outcome: DeliveryOutcome, latency: Option<Duration>) {
        let outcome = match outcome {
            DeliveryOutcome::Succeeded => "succeeded",
            DeliveryOutcome::Failed => "failed",
            DeliveryOutcome::Closed => "closed",
        };
        self.0.deliveries_completed.get_or_create(&OutcomeLabels { outcome }).inc();
        if let Some(latency) = latency {
            self.0.delivery_latency.observe(latency.as_secs_f64());
        }
    }

    /// Counts a finished attempt by its response status (`None`: no response).
    pub fn attempt_finished(&self, status: Option<u16>, duration: Duration) {
        let status_class = match status {
            Some(100..=199) => "1xx",
            Some(200..=299) => "2xx",
            Some(300..=399) => "3xx",
            Some(400..=499) => "4xx",
            Some(500..=599) => "5xx",
            Some(_) => "other",
            None => "none",
        };
        self.0.attempts.get_or_create(&AttemptLabels { status_class }).inc();
        self.0.attempt_duration.observe(duration.as_secs_f64());
    }

    /// Marks one attempt as in flight until the returned guard is dropped.
    pub fn attempt_in_flight(&self) -> InFlight {
        self.0.attempts_in_flight.inc();
        InFlight(self.0.attempts_in_flight.clone())
    }

    /// Counts a retry put into the delay queue for `delay`.
    pub fn retry_scheduled(&self, delay: &str) {
        self.0.retries_scheduled.get_or_create(&DelayLabels { delay: delay.to_owned() }).inc();
    }

    /// Sets where queue depths are read at scrape time. The first source set wins, so the
    /// services of `hookline all` can each offer theirs.
    pub fn set_queue_depths(&self, source: Arc<dyn QueueDepths>) {
        let _ = self.0.queue_depths.set(source);
    }

    /// Reads queue depths (when a source is set) and renders every metric in the
    /// OpenMetrics text format Prometheus scrapes.
    pub async fn render(&self) -> String {
        if let Some(source) = self.0.queue_depths.get() {
            // A broker that does not answer must not hang the scrape; stale depths stay.
            if let Ok(depths) = tokio::time::timeout(Duration::from_secs(2), source.depths()).await {
                for (queue, messages) in depths {
                    let gauge = self.0.queue_messages.get_or_create(&QueueLabels { queue });
                    gauge.set(i64::try_from(messages).unwrap_or(i64::MAX));
                }
            }
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.0.registry);
        text
    }
}

/// Counts an attempt in flight while it lives.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_appear_in_the_rendered_text() {
        let metrics = Metrics::new();
        metrics.event_ingested(EventSource::Amqp);
        metrics.event_ingested(EventSource::Amqp);
        metrics.message_rejected("p.ingest", "malformed");
        metrics.attempt_finished(Some(503), Duration::from_millis(20));
        metrics.attempt_finished(None, Duration::from_millis(20));
        metrics.delivery_completed(DeliveryOutcome::Succeeded, Some(Duration::from_millis(40)));
        let in_flight = metrics.attempt_in_flight();
        let text = metrics.render().await;
        assert!(text.contains(r#"hookline_events_ingested_total{source="amqp"} 2"#), "{text}");
        assert!(text.contains(r#"hookline_messages_rejected_total{queue="p.ingest",reason="malformed"} 1"#));
        assert!(text.contains(r#"hookline_attempts_total{status_class="5xx"} 1"#));
        assert!(text.contains(r#"hookline_attempts_total{status_class="none"} 1"#));
        assert!(text.contains(r#"hookline_deliveries_completed_total{outcome="succeeded"} 1"#));
        assert!(text.contains("hookline_delivery_latency_seconds_count 1"));
        assert!(text.contains("hookline_attempts_in_flight 1"));
        drop(in_flight);
        assert!(metrics.render().await.contains("hookline_attempts_in_flight 0"));
    }

    pub(super) struct FixedDepths;

    impl QueueDepths for FixedDepths {
        fn depths(&self) -> DepthsFuture<'_> {
            Box::pin(async { vec![("p.deliver".to_owned(), 7)] })
        }
    }

    #[tokio::test]
    async fn queue_depths_are_read_at_scrape_time() {
        let metrics = Metrics::new();
        metrics.set_queue_depths(Arc::new(FixedDepths));
        assert!(metrics.render().await.contains(r#"hookline_queue_messages{queue="p.deliver"} 7"#));
    }
}

#[cfg(test)]
mod dashboard_tests {
    use super::*;

    /// The Grafana dashboard shipped in `deploy/` queries only metrics that exist.
    #[tokio::test]
    async fn the_dashboard_queries_only_metrics_hookline_exposes() {
        let dashboard = include_str!("../../../deploy/grafana/dashboards/hookline.json");
        // A family is rendered once it has a sample: record one of each.
        let metrics = Metrics::new();
        metrics.event_ingested(EventSource::Http);
        metrics.message_rejected("q", "malformed");
        metrics.deliveries_created(1);
        metrics.delivery_completed(DeliveryOutcome::Succeeded, Some(Duration::from_secs(1)));
        metrics.attempt_finished(Some(200), Duration::from_millis(5));
        metrics.retry_scheduled("5m");
        metrics.set_queue_depths(Arc::new(tests::FixedDepths));
        let _in_flight = metrics.attempt_in_flight();
        let exposed = metrics.render().await;
        let mut queried = dashboard
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|word| word.starts_with("hookline_"))
            .collect::<Vec<_>>();
        queried.sort_unstable();
        queried.dedup();
        assert!(queried.len() >= 8, "the dashboard queries {queried:?}");
        for name in queried {
            let family = ["_bucket", "_count", "_sum", "_total"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name);
            assert!(
                exposed.contains(&format!("# TYPE {family} ")),
                "the dashboard queries `{name}`, which is not exposed:\n{exposed}"
            );
        }
    }
}
