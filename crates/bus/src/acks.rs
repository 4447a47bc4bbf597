//! Acknowledging many messages with one frame.
//!
//! A consumer's messages finish out of order, but mostly close to it: a batch of them
//! is committed by one statement and acked at the same moment. Acking each one costs
//! the broker a frame and, for a quorum queue, a settle command through its Raft log;
//! one ack with `multiple` settles every message delivered up to it. So a consumer
//! hands its finished messages to an [`Acks`] task, which acks the longest run of
//! settled messages from the oldest outstanding one with a single `multiple` ack. A
//! message finished behind one still running (a slow endpoint, say) is not held for
//! long: after [`GAP_WAIT`] it is acked on its own.

use std::collections::VecDeque;
use std::time::Duration;

use lapin::Acker;
use lapin::options::BasicAckOptions;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long a finished message may wait for the ones delivered before it to finish, so
/// they can be acked together.
pub(crate) const GAP_WAIT: Duration = Duration::from_millis(10);

/// What the consumer tells the task, in the order it happens.
#[derive(Debug)]
enum Event {
    /// The broker delivered the message with this tag (sent in delivery order).
    Delivered(u64),
    /// Its handler finished and everything it caused is committed: ack it.
    Finished(u64, Acker),
    /// It was settled on its own (nacked, say): nothing more to send for it.
    Settled(u64),
}

#[derive(Debug)]
enum State {
    Running,
    Finished { acker: Acker, since: Instant },
    Settled,
}

/// Acks a consumer's finished messages, many at a time. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Acks {
    events: mpsc::UnboundedSender<Event>,
}

/// The task behind [`Acks`]; [`AcksTask::finish`] waits for it to ack what it holds.
#[derive(Debug)]
pub(crate) struct AcksTask(JoinHandle<()>);

impl Acks {
    /// Starts the task acking the messages of the consumer on `queue`.
    pub(crate) fn start(queue: String) -> (Self, AcksTask) {
        let (events, receiver) = mpsc::unbounded_channel();
        (Self { events }, AcksTask(tokio::spawn(run(receiver, queue))))
    }

    /// The broker delivered `tag`; call in delivery order, before its handler runs.
    pub(crate) fn delivered(&self, tag: u64) {
        let _ = self.events.send(Event::Delivered(tag));
    }

    /// `tag` is done: ack it (with others, if they are done too).
    pub(crate) fn finished(&self, tag: u64, acker: Acker) {
        let _ = self.events.send(Event::Finished(tag, acker));
    }

    /// `tag` was settled by the caller (nacked): it no longer holds others back.
    pub(crate) fn settled(&self, tag: u64) {
        let _ = self.events.send(Event::Settled(tag));
    }
}

impl AcksTask {
    /// Waits until every message finished before the last [`Acks`] handle was dropped
    /// has been acked.
    pub(crate) async fn finish(self) {
        let _ = self.0.await;
    }
}

async fn run(mut events: mpsc::UnboundedReceiver<Event>, queue: String) {
    let mut outstanding = Outstanding { queue, messages: VecDeque::new() };
    loop {
        let next = if outstanding.has_finished() {
            match tokio::time::timeout(GAP_WAIT, events.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    outstanding.ack_held_longer_than(GAP_WAIT).await;
                    continue;
                }
            }
        } else {
            events.recv().await
        };
        let Some(event) = next else { break };
        outstanding.apply(event);
        while let Ok(event) = events.try_recv() {
            outstanding.apply(event);
        }
        outstanding.ack_settled_prefix().await;
        outstanding.ack_held_longer_than(GAP_WAIT).await;
    }
    // The consumer is gone: ack whatever finished, held back or not.
    outstanding.ack_settled_prefix().await;
    outstanding.ack_held_longer_than(Duration::ZERO).await;
}

/// The messages delivered and not yet acked, oldest first.
struct Outstanding {
    queue: String,
    messages: VecDeque<(u64, State)>,
}

impl Outstanding {
    fn apply(&mut self, event: Event) {
        let (tag, state) = match event {
            Event::Delivered(tag) => return self.messages.push_back((tag, State::Running)),
            Event::Finished(tag, acker) => (tag, State::Finished { acker, since: Instant::now() }),
            Event::Settled(tag) => (tag, State::Settled),
        };
        // Tags grow with every delivery on a channel, so the queue is sorted by tag.
        if let Ok(index) = self.messages.binary_search_by_key(&tag, |(tag, _)| *tag) {
            self.messages[index].1 = state;
        }
    }

    fn has_finished(&self) -> bool {
        self.messages.iter().any(|(_, state)| matches!(state, State::Finished { .. }))
    }

    /// Acks, with one `multiple` ack, the run of settled messages at the front.
    async fn ack_settled_prefix(&mut self) {
        let mut last_finished = None;
        while let Some((_, state)) = self.messages.front() {
            if matches!(state, State::Running) {
                break;
            }
            if let Some((_, State::Finished { acker, .. })) = self.messages.pop_front() {
                last_finished = Some(acker);
            }
        }
        if let Some(acker) = last_finished {
            report(acker.ack(BasicAckOptions { multiple: true }).await, &self.queue);
        }
    }

    /// Acks on its own each finished message held back longer than `wait` by one
    /// delivered before it that is still running.
    async fn ack_held_longer_than(&mut self, wait: Duration) {
        for (_, state) in self.messages.iter_mut() {
            if let State::Finished { acker, since } = state
                && since.elapsed() >= wait
            {
                report(acker.ack(BasicAckOptions::default()).await, &self.queue);
                *state = State::Settled;
            }
        }
        self.ack_settled_prefix().await;
    }
}

fn report(acked: lapin::Result<bool>, queue: &str) {
    if let Err(err) = acked {
        // The channel is gone; the broker returns the messages to the queue by itself.
        hookline_telemetry::warn_throttled!(error = %err, %queue, "could not ack messages");
    }
}
