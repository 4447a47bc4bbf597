//! How many messages wait in each queue, read from the broker when metrics are scraped.

use std::sync::Arc;
use std::time::Duration;

use hookline_core::retry::RETRY_AFTER_LADDER;
use hookline_telemetry::metrics::{DepthsFuture, QueueDepths};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;

use crate::Topology;

/// Reads queue depths with passive declarations on a channel of its own (a passive
/// declaration of a missing queue closes its channel, so it must not be a working one).
pub struct BrokerQueueDepths {
    connection: Arc<lapin::Connection>,
    topology: Topology,
    delays: Vec<Duration>,
}

impl BrokerQueueDepths {
    /// Depths of the work queues, the rejected queue and the delay queues for `delays`
    /// and for every step a receiver's Retry-After can be rounded to.
    pub fn new(connection: Arc<lapin::Connection>, topology: Topology, delays: &[Duration]) -> Self {
        let mut delays: Vec<Duration> =
            delays.iter().copied().chain(RETRY_AFTER_LADDER.map(Duration::from_secs)).collect();
        delays.sort();
        delays.dedup();
        Self { connection, topology, delays }
    }

    fn queues(&self) -> Vec<String> {
        let t = &self.topology;
        let mut queues =
            vec![t.ingest_queue(), t.route_queue(), t.delivery_queue(), t.failed_queue(), t.rejected_queue()];
        queues.extend(self.delays.iter().map(|delay| t.delay_queue(*delay)));
        queues
    }

    async fn read(&self) -> Vec<(String, u64)> {
        let passive = QueueDeclareOptions { passive: true, ..Default::default() };
        let mut channel = None;
        let mut depths = Vec::new();
        for queue in self.queues() {
            if channel.is_none() {
                channel = self.connection.create_channel().await.ok();
            }
            let Some(open) = &channel else { break };
            match open.queue_declare(queue.as_str().into(), passive, FieldTable::default()).await {
                Ok(declared) => depths.push((queue, u64::from(declared.message_count()))),
                // Not declared (a delay nobody has used yet): the broker closed the channel.
                Err(_) => channel = None,
            }
        }
        if let Some(channel) = channel {
            let _ = channel.close(200, "depths read".into()).await;
        }
        depths
    }
}

impl QueueDepths for BrokerQueueDepths {
    fn depths(&self) -> DepthsFuture<'_> {
        Box::pin(self.read())
    }
}
