//! How many messages wait in each queue, read from the broker when metrics are scraped.

use std::sync::Arc;
use std::time::Duration;

use hookline_telemetry::metrics::{DepthsFuture, QueueDepths};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;

use crate::link::Shared;

/// Reads queue depths with passive declarations on a channel of its own (a passive
/// declaration of a missing queue closes its channel, so it must not be a working one).
pub struct BrokerQueueDepths {
    shared: Arc<Shared>,
}

impl BrokerQueueDepths {
    /// Depths of the work queues, the rejected queue, the defer queue and the retry
    /// queues this process declares (the configured delays', and those it declared on
    /// demand since). Queues others made on demand for a receiver's Retry-After are left
    /// out: reading a queue that does not exist yet is an error the broker client logs,
    /// on every scrape. Nothing is read while the broker is away.
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    fn queues(&self, delays: &[Duration]) -> Vec<String> {
        let topology = &self.shared.topology;
        let mut queues = topology.work_queues().to_vec();
        queues.push(topology.defer_queue());
        queues.extend(delays.iter().map(|delay| topology.delay_queue(*delay)));
        queues
    }

    async fn read(&self) -> Vec<(String, u64)> {
        let Some(link) = self.shared.current() else { return Vec::new() };
        let passive = QueueDeclareOptions { passive: true, ..Default::default() };
        let mut channel = None;
        let mut depths = Vec::new();
        for queue in self.queues(&self.shared.delays()) {
            if channel.is_none() {
                channel = link.connection.create_channel().await.ok();
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

/// How long reading one queue's depth may take: the broker answers at once, or is away.
const READ_BOUND: Duration = Duration::from_secs(2);

impl BrokerQueueDepths {
    /// How many messages wait in `queue` for a consumer (those delivered to one and not
    /// yet acked are not counted); `None` while the broker is away or the queue is
    /// missing.
    pub async fn waiting(&self, queue: &str) -> Option<u64> {
        let link = self.shared.current()?;
        let read = async {
            let channel = link.connection.create_channel().await.ok()?;
            let passive = QueueDeclareOptions { passive: true, ..Default::default() };
            let declared = channel.queue_declare(queue.into(), passive, FieldTable::default()).await.ok();
            let _ = channel.close(200, "depth read".into()).await;
            declared.map(|declared| u64::from(declared.message_count()))
        };
        tokio::time::timeout(READ_BOUND, read).await.ok().flatten()
    }
}

impl QueueDepths for BrokerQueueDepths {
    fn depths(&self) -> DepthsFuture<'_> {
        Box::pin(self.read())
    }
}
