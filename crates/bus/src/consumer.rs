//! The consume loop every service shares: manual acks, bounded concurrency, a rejected
//! queue for messages that cannot be processed, and graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::StreamExt as _;
use hookline_core::envelope::Rejection;
use hookline_telemetry::Metrics;
use lapin::Acker;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::acks::Acks;
use crate::{AmqpContext as _, Error, Publisher, Result, trace};

/// Header of a rejected message holding the reason code.
pub const REJECT_REASON_HEADER: &str = "x-hookline-reject-reason";
/// Header of a rejected message holding the human explanation.
pub const REJECT_DETAIL_HEADER: &str = "x-hookline-reject-detail";
/// Header of a rejected message naming the queue it was taken from.
pub const REJECT_QUEUE_HEADER: &str = "x-hookline-rejected-from";

/// One message taken from a queue, without its acknowledgement handle (the loop settles
/// it from the handler's [`Outcome`]).
#[derive(Debug)]
pub struct Incoming {
    /// Message body.
    pub data: Vec<u8>,
    /// Properties and headers as published.
    pub properties: BasicProperties,
    /// Whether the broker delivered it before to a consumer that did not ack it (that
    /// consumer crashed or lost its connection mid-processing).
    pub redelivered: bool,
}

impl Incoming {
    /// The message's content type, if the publisher set one.
    pub fn content_type(&self) -> Option<&str> {
        self.properties.content_type().as_ref().map(|ct| ct.as_str())
    }
}

/// What to do with a message once its handler is done.
#[derive(Debug)]
pub enum Outcome {
    /// Processed; everything it caused is committed and confirmed.
    Ack,
    /// Can never be processed: moved to the rejected queue with the rejection's reason.
    Reject(Rejection),
    /// Processed, except for parts of it that can never be (events of a batch naming
    /// no stored event, say): each part goes to the rejected queue as a message of its
    /// own, with the original's properties and its own reason, then the message is
    /// acked.
    AckRejecting(Vec<RejectedPart>),
    /// A transient failure (database unreachable, say): returned to the queue to be
    /// tried again after a pause.
    Retry,
}

/// One part of a message that can never be processed, as a message of its own.
#[derive(Debug)]
pub struct RejectedPart {
    /// The part's body, in the original message's encoding.
    pub body: Vec<u8>,
    /// Why it cannot be processed.
    pub rejection: Rejection,
}

/// How one consumer runs.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// The service consuming (`hookline-worker`, ...): its spans carry it as
    /// `service.name`.
    pub service: &'static str,
    /// Where rejected messages are counted.
    pub metrics: Metrics,
    /// Queue to consume.
    pub queue: String,
    /// Consumer tag, shown by the broker's management tools.
    pub tag: String,
    /// Messages processed at the same time.
    pub concurrency: usize,
    /// How long in-flight messages may take to finish once shutdown starts; those still
    /// running then are returned to the queue unacknowledged.
    pub shutdown_grace: Duration,
    /// Told when the loop takes a message, when a handler finishes, and whether every
    /// handler place is taken: what `/healthz` reads.
    pub watchdog: hookline_telemetry::Watchdog,
}

/// Pause before a message that hit a transient failure is returned to the queue, so a
/// database outage does not turn into a hot loop.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// How long the way out of a consumer waits for the broker to answer one request.
const BROKER_ANSWER: Duration = Duration::from_secs(2);

/// Consumes `options.queue` until `shutdown` is cancelled, running `handler` on up to
/// `options.concurrency` messages at once. Messages are acked only after the handler
/// returns [`Outcome::Ack`], many at a time where they finish together (see
/// the `acks` module); rejected ones are first published (with confirm) to
/// `rejected_queue`. Returns an error only when the broker connection fails.
pub async fn consume<H, F>(
    connection: &Connection,
    options: ConsumerOptions,
    rejects: (Publisher, String),
    shutdown: CancellationToken,
    handler: H,
) -> Result<()>
where
    H: Fn(Arc<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Outcome> + Send + 'static,
{
    let (channel, mut consumer) = open(connection, &options).await?;
    let slots = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let (acks, acking) = Acks::start(options.queue.clone());
    let handling = Arc::new(Handling { handler, rejects, acks, options });
    let mut tasks = JoinSet::new();
    let result = loop {
        let next = tokio::select! {
            () = shutdown.cancelled() => break Ok(()),
            next = consumer.next() => next,
        };
        let queue = &handling.options.queue;
        let delivery = match next {
            Some(Ok(delivery)) => delivery,
            Some(Err(source)) => break Err(Error::Amqp { context: format!("consuming {queue}"), source }),
            None => break Err(Error::ConsumerCancelled(queue.clone())),
        };
        let Ok(permit) = slots.clone().acquire_owned().await else { break Ok(()) };
        let (task, span) = Handling::task(&handling, delivery, permit);
        let watchdog = handling.options.watchdog.clone();
        tasks.spawn(
            async move {
                task.await;
                watchdog.blocked(false);
            }
            .instrument(span),
        );
        // Every place taken: the loop makes progress again only when a handler finishes
        // (with the prefetch at the concurrency, no message even comes meanwhile).
        handling.options.watchdog.blocked(slots.available_permits() == 0);
        while tasks.try_join_next().is_some() {}
    };
    // Stop receiving, let in-flight messages finish for a while, then hand the rest back.
    let options = &handling.options;
    // Each await on the way out is bounded: on a connection that is gone but not yet
    // known to be, an answer may never come, and shutdown must still finish.
    let cancel = channel.basic_cancel(options.tag.as_str().into(), BasicCancelOptions::default());
    let _ = tokio::time::timeout(BROKER_ANSWER, cancel).await;
    let drained =
        tokio::time::timeout(options.shutdown_grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(queue = %options.queue, in_flight = tasks.len(), "shutdown grace over; returning unfinished messages to the queue");
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    // Every handler is done or gone: ack what finished before closing the channel.
    drop(handling);
    let _ = tokio::time::timeout(BROKER_ANSWER, acking.finish()).await;
    let _ = tokio::time::timeout(BROKER_ANSWER, channel.close(200, "shutdown".into())).await;
    result
}

/// A channel consuming `options.queue` with a prefetch of `options.concurrency`.
async fn open(connection: &Connection, options: &ConsumerOptions) -> Result<(lapin::Channel, lapin::Consumer)> {
    let channel = connection.create_channel().await.context("opening a consuming channel")?;
    let prefetch = u16::try_from(options.concurrency.max(1)).unwrap_or(u16::MAX);
    channel.basic_qos(prefetch, BasicQosOptions::default()).await.context("setting prefetch")?;
    let consumer = channel
        .basic_consume(
            options.queue.as_str().into(),
            options.tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .context(format!("consuming {}", options.queue))?;
    Ok((channel, consumer))
}

/// What every message's task shares.
struct Handling<H> {
    handler: H,
    rejects: (Publisher, String),
    acks: Acks,
    options: ConsumerOptions,
}

/// A message's task, boxed: a handler's future runs to kilobytes, and the runtime moves a
/// task's future (and later its output slot) several times; a box moves as a pointer.
type Task = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

impl<H, F> Handling<H>
where
    H: Fn(Arc<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Outcome> + Send + 'static,
{
    /// The task that handles and settles one delivered message, holding `permit` (a
    /// place in the consumer's concurrency) while it runs, and the span it runs in.
    fn task(
        this: &Arc<Self>,
        delivery: lapin::message::Delivery,
        permit: OwnedSemaphorePermit,
    ) -> (Task, tracing::Span) {
        let tag = delivery.delivery_tag;
        this.acks.delivered(tag);
        // Shared with the handler, so a rejected message can be moved to the rejected
        // queue as it came without copying every message in case.
        let incoming = Arc::new(Incoming {
            data: delivery.data,
            properties: delivery.properties,
            redelivered: delivery.redelivered,
        });
        let span = tracing::info_span!(
            "consume",
            otel.name = %format!("process {}", this.options.queue),
            otel.kind = "consumer",
            service.name = this.options.service,
            messaging.destination.name = %this.options.queue,
            redelivered = incoming.redelivered,
        );
        // Only upstream publishers put trace context in headers (hookline's own messages
        // carry it per item): an event published in a trace is ingested in it.
        trace::continue_from_headers(&span, incoming.properties.headers().as_ref());
        let (this, acker) = (this.clone(), delivery.acker);
        let task: Task = Box::pin(async move {
            let _permit = permit;
            let outcome = (this.handler)(incoming.clone()).await;
            let settling = Settling { acks: &this.acks, tag, acker };
            let Self { rejects, options, .. } = &*this;
            settle(settling, outcome, &incoming, &options.queue, rejects, &options.metrics).await;
        });
        (task, span)
    }
}

/// One delivered message's ways to be settled.
struct Settling<'a> {
    acks: &'a Acks,
    tag: u64,
    acker: Acker,
}

impl Settling<'_> {
    fn ack(self) {
        self.acks.finished(self.tag, self.acker);
    }

    /// Returns the message to the queue after a pause, so a failing dependency does not
    /// turn into a hot loop.
    async fn retry(self, queue: &str) {
        tokio::time::sleep(RETRY_PAUSE).await;
        report(self.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await, queue);
        self.acks.settled(self.tag);
    }
}

async fn settle(
    settling: Settling<'_>,
    outcome: Outcome,
    original: &Incoming,
    queue: &str,
    rejects: &(Publisher, String),
    metrics: &Metrics,
) {
    let parts = match outcome {
        Outcome::Ack => Vec::new(),
        Outcome::Retry => return settling.retry(queue).await,
        Outcome::Reject(rejection) => vec![RejectedPart { body: original.data.clone(), rejection }],
        Outcome::AckRejecting(parts) => parts,
    };
    for part in parts {
        if let Err(err) = move_to_rejected(part, original, queue, rejects, metrics).await {
            tracing::error!(error = %err, "could not move a message to the rejected queue; returning it");
            return settling.retry(queue).await;
        }
    }
    settling.ack();
}

/// Publishes `part` (with confirm) to the rejected queue, its reason in the headers.
async fn move_to_rejected(
    part: RejectedPart,
    original: &Incoming,
    queue: &str,
    (publisher, rejected_queue): &(Publisher, String),
    metrics: &Metrics,
) -> Result<()> {
    let RejectedPart { body, rejection } = part;
    let (reason, detail) = (rejection.reason.as_str(), rejection.message);
    let mut headers = original.properties.headers().clone().unwrap_or_default();
    headers.insert(REJECT_REASON_HEADER.into(), AMQPValue::LongString(reason.into()));
    headers.insert(REJECT_DETAIL_HEADER.into(), AMQPValue::LongString(detail.clone().into()));
    headers.insert(REJECT_QUEUE_HEADER.into(), AMQPValue::LongString(queue.to_owned().into()));
    let properties = original.properties.clone().with_headers(headers);
    publisher.publish("", rejected_queue, &body, properties).await?;
    let total = metrics.message_rejected(queue, reason);
    tracing::warn!(%queue, %reason, %detail, total, "message moved to the rejected queue");
    Ok(())
}

fn report(settled: lapin::Result<bool>, queue: &str) {
    if let Err(err) = settled {
        // The channel is gone; the broker returns the message to the queue by itself.
        hookline_telemetry::warn_throttled!(error = %err, %queue, "could not settle a message");
    }
}
