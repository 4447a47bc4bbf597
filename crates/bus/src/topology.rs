//! Exchange and queue names, and their declaration.
//!
//! Every service declares the whole topology at start-up (declarations are
//! idempotent), so services can start in any order. Every name starts with the
//! configured prefix, which lets tests and several deployments share one broker.

use std::time::Duration;

use hookline_core::retry::{RETRY_AFTER_LADDER, format_delay};
use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

use crate::{AmqpContext as _, Result};

/// How long a job set aside by a worker waits in the defer queue before it is tried
/// again: one whose endpoint is at its in-flight cap, or one that hit a transient
/// failure. Kept apart from the retry queues, which hold only scheduled retries.
pub const DEFER_DELAY: Duration = Duration::from_secs(1);

/// Routing key of delivery jobs on the delivery exchange (and of dead-lettered retries).
pub const JOB_ROUTING_KEY: &str = "job";

/// The names of every exchange and queue of one hookline deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    prefix: String,
}

impl Topology {
    /// The topology for a prefix (`hookline` by default).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into() }
    }

    /// Topic exchange upstream applications publish events to.
    pub fn events_exchange(&self) -> String {
        format!("{}.events", self.prefix)
    }

    /// Queue ingest consumes, bound to every event type.
    pub fn ingest_queue(&self) -> String {
        format!("{}.ingest", self.prefix)
    }

    /// Queue of accepted events waiting to be routed.
    pub fn route_queue(&self) -> String {
        format!("{}.route", self.prefix)
    }

    /// Exchange of delivery jobs; delay queues dead-letter back into it.
    pub fn delivery_exchange(&self) -> String {
        format!("{}.deliver", self.prefix)
    }

    /// Queue workers consume, as competing consumers.
    pub fn delivery_queue(&self) -> String {
        format!("{}.deliver", self.prefix)
    }

    /// Queue of failed attempts for the scheduler.
    pub fn failed_queue(&self) -> String {
        format!("{}.failed", self.prefix)
    }

    /// Queue holding messages that could not be processed, with their reason.
    pub fn rejected_queue(&self) -> String {
        format!("{}.rejected", self.prefix)
    }

    /// Queue where a scheduled retry waits `delay` before returning to the delivery
    /// exchange.
    pub fn delay_queue(&self, delay: Duration) -> String {
        format!("{}.retry.{}", self.prefix, format_delay(delay))
    }

    /// Queue where a job a worker set aside waits [`DEFER_DELAY`] before returning to
    /// the delivery exchange.
    pub fn defer_queue(&self) -> String {
        format!("{}.defer", self.prefix)
    }

    /// Every queue but the delay queues: ingest, route, delivery, failed, rejected.
    pub fn work_queues(&self) -> [String; 5] {
        [self.ingest_queue(), self.route_queue(), self.delivery_queue(), self.failed_queue(), self.rejected_queue()]
    }

    /// The delays whose retry queues always exist: the configured ones.
    pub fn standing_delays(configured: &[Duration]) -> Vec<Duration> {
        let mut delays = configured.to_vec();
        delays.sort();
        delays.dedup();
        delays
    }

    /// Every delay a retry queue of this deployment may have without a webhook's own
    /// policy: the configured ones and every step a receiver's Retry-After is rounded to.
    pub fn possible_delays(configured: &[Duration]) -> Vec<Duration> {
        let mut delays: Vec<Duration> =
            configured.iter().copied().chain(RETRY_AFTER_LADDER.map(Duration::from_secs)).collect();
        delays.sort();
        delays.dedup();
        delays
    }

    /// Declares every exchange and queue, one retry queue per distinct delay, and the
    /// defer queue.
    pub async fn declare(&self, channel: &Channel, delays: &[Duration]) -> Result<()> {
        let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
        channel
            .exchange_declare(self.events_exchange().into(), ExchangeKind::Topic, durable, FieldTable::default())
            .await
            .context("declaring the events exchange")?;
        channel
            .exchange_declare(self.delivery_exchange().into(), ExchangeKind::Direct, durable, FieldTable::default())
            .await
            .context("declaring the delivery exchange")?;
        for queue in self.work_queues() {
            declare_queue(channel, &queue, work_queue_arguments()).await?;
        }
        bind(channel, &self.ingest_queue(), &self.events_exchange(), "#").await?;
        bind(channel, &self.delivery_queue(), &self.delivery_exchange(), JOB_ROUTING_KEY).await?;
        for delay in Self::standing_delays(delays) {
            self.declare_delay_queue(channel, delay).await?;
        }
        declare_queue(channel, &self.defer_queue(), self.dead_letter_after(DEFER_DELAY)).await
    }

    /// Declares the delay queue for `delay` and returns its name. Messages published to
    /// it wait `delay`, then are dead-lettered to the delivery exchange. Dead-lettering
    /// is at-least-once, so a job is never dropped between the two queues.
    pub async fn declare_delay_queue(&self, channel: &Channel, delay: Duration) -> Result<String> {
        let name = self.delay_queue(delay);
        declare_queue(channel, &name, self.dead_letter_after(delay)).await?;
        Ok(name)
    }

    /// Arguments of a queue whose messages wait `delay`, then are dead-lettered to the
    /// delivery exchange.
    fn dead_letter_after(&self, delay: Duration) -> FieldTable {
        let mut arguments = work_queue_arguments();
        let ttl_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl_ms));
        arguments.insert("x-dead-letter-exchange".into(), long_string(&self.delivery_exchange()));
        arguments.insert("x-dead-letter-routing-key".into(), long_string(JOB_ROUTING_KEY));
        arguments.insert("x-dead-letter-strategy".into(), long_string("at-least-once"));
        arguments.insert("x-overflow".into(), long_string("reject-publish"));
        arguments
    }

    /// Deletes every exchange and queue of this prefix (tests and teardown).
    pub async fn delete(&self, channel: &Channel, delays: &[Duration]) -> Result<()> {
        let mut queues = self.work_queues().to_vec();
        queues.push(self.defer_queue());
        queues.extend(delays.iter().map(|d| self.delay_queue(*d)));
        for queue in queues {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await
                .context(format!("deleting {queue}"))?;
        }
        for exchange in [self.events_exchange(), self.delivery_exchange()] {
            channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await
                .context(format!("deleting {exchange}"))?;
        }
        Ok(())
    }
}

/// Replicated, durable queues: a broker node failing loses no job.
fn work_queue_arguments() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), long_string("quorum"));
    arguments
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(value.to_owned().into())
}

async fn declare_queue(channel: &Channel, name: &str, arguments: FieldTable) -> Result<()> {
    let options = QueueDeclareOptions { durable: true, ..Default::default() };
    channel.queue_declare(name.into(), options, arguments).await.context(format!("declaring queue {name}"))?;
    Ok(())
}

async fn bind(channel: &Channel, queue: &str, exchange: &str, key: &str) -> Result<()> {
    channel
        .queue_bind(queue.into(), exchange.into(), key.into(), QueueBindOptions::default(), FieldTable::default())
        .await
        .context(format!("binding {queue} to {exchange}"))
}
