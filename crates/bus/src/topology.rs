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

/// How long a job waits in its delay queue when a worker is already at its endpoint's
/// in-flight cap. Part of every deployment's topology.
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

    /// Queue where a job waits `delay` before returning to the delivery exchange.
    pub fn delay_queue(&self, delay: Duration) -> String {
        format!("{}.retry.{}", self.prefix, format_delay(delay))
    }

    /// Every queue but the delay queues: ingest, route, delivery, failed, rejected.
    pub fn work_queues(&self) -> [String; 5] {
        [self.ingest_queue(), self.route_queue(), self.delivery_queue(), self.failed_queue(), self.rejected_queue()]
    }

    /// The delays whose queues always exist: the configured ones and the deferral.
    pub fn standing_delays(configured: &[Duration]) -> Vec<Duration> {
        let mut delays: Vec<Duration> = configured.iter().copied().chain([DEFER_DELAY]).collect();
        delays.sort();
        delays.dedup();
        delays
    }

    /// Every delay a delay queue of this deployment can have: the configured ones and every
    /// step a receiver's Retry-After is rounded to (the worker's 1 s deferral among them).
    pub fn possible_delays(configured: &[Duration]) -> Vec<Duration> {
        let mut delays: Vec<Duration> =
            configured.iter().copied().chain(RETRY_AFTER_LADDER.map(Duration::from_secs)).collect();
        delays.sort();
        delays.dedup();
        delays
    }

    /// Declares every exchange and queue, one delay queue per distinct delay, and the
    /// deferral queue.
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
        Ok(())
    }

    /// Declares the delay queue for `delay` and returns its name. Messages published to
    /// it wait `delay`, then are dead-lettered to the delivery exchange. Dead-lettering
    /// is at-least-once, so a job is never dropped between the two queues.
    pub async fn declare_delay_queue(&self, channel: &Channel, delay: Duration) -> Result<String> {
        let name = self.delay_queue(delay);
        let mut arguments = work_queue_arguments();
        let ttl_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl_ms));
        arguments.insert("x-dead-letter-exchange".into(), long_string(&self.delivery_exchange()));
        arguments.insert("x-dead-letter-routing-key".into(), long_string(JOB_ROUTING_KEY));
        arguments.insert("x-dead-letter-strategy".into(), long_string("at-least-once"));
        arguments.insert("x-overflow".into(), long_string("reject-publish"));
        declare_queue(channel, &name, arguments).await?;
        Ok(name)
    }

    /// Deletes every exchange and queue of this prefix (tests and teardown).
    pub async fn delete(&self, channel: &Channel, delays: &[Duration]) -> Result<()> {
        let mut queues = self.work_queues().to_vec();
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
