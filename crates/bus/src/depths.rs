//! How many messages wait in each queue, read from the broker when metrics are scraped.

use std::sync::Arc;
use std::time::Duration;

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
    /// Depths of the work queues, the rejected queue, the defer queue and the retry
    /// queues that always exist (the configured delays'). Queues made on demand for a
    /// receiver's Retry-After are left out: reading a queue that does not exist yet is an
    /// error the broker client logs, on every scrape.
    pub fn new(connection: Arc<lapin::Connection>, topology: Topology, delays: &[Duration]) -> Self {
        Self { connection, topology, delays: Topology::standing_delays(delays) }
    }

    fn queues(&self) -> Vec<String> {
        let mut queues = self.topology.work_queues().to_vec();
        queues.push(self.topology.defer_queue());
        queues.extend(self.delays.iter().map(|delay| self.topology.delay_queue(*delay)));
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
                // Deleted under us: the broker closed the channel; go on with a new one.
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
