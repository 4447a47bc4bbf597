#![doc = include_str!("../README.md")]

mod acks;
pub mod codec;
pub mod consumer;
pub mod depths;
pub mod failed;
pub mod jobs;
mod link;
pub mod message;
pub mod publisher;
pub mod route;
pub mod topology;
pub mod trace;

pub use consumer::{ConsumerOptions, Incoming, Outcome, RejectedPart};
pub use message::Traced;
pub use publisher::Publisher;
pub use topology::Topology;

/// What can go wrong talking to the broker. Cloneable, so one failed publish can answer
/// every caller whose work it carried.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The connection, a channel or an operation on it failed.
    #[error("RabbitMQ: {context}: {source}")]
    Amqp {
        /// What hookline was doing.
        context: String,
        /// The client's error.
        source: lapin::Error,
    },
    /// The broker refused to take responsibility for a published message.
    #[error("RabbitMQ did not confirm a message published to `{exchange}` with key `{routing_key}`")]
    NotConfirmed {
        /// Exchange published to (empty: the default exchange).
        exchange: String,
        /// Routing key used.
        routing_key: String,
    },
    /// A published message matched no queue, so it would have been lost.
    #[error("a message published to `{exchange}` with key `{routing_key}` reached no queue")]
    Unroutable {
        /// Exchange published to (empty: the default exchange).
        exchange: String,
        /// Routing key used.
        routing_key: String,
    },
    /// The broker cancelled a consumer (its queue was deleted, say).
    #[error("consumer on `{0}` was cancelled by the broker")]
    ConsumerCancelled(String),
    /// There is no connection to the broker now (it is being re-established).
    #[error("RabbitMQ is not connected")]
    Disconnected,
}

/// Result of bus operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) trait AmqpContext<T> {
    fn context(self, context: impl Into<String>) -> Result<T>;
}

impl<T> AmqpContext<T> for std::result::Result<T, lapin::Error> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|source| Error::Amqp { context: context.into(), source })
    }
}

/// Opens a connection to one broker node, naming it after the service so operators see
/// who is connected.
pub async fn connect(url: &str, connection_name: &str) -> Result<lapin::Connection> {
    let properties = lapin::ConnectionProperties::default().with_connection_name(connection_name.to_owned().into());
    lapin::Connection::connect(url, properties).await.context(format!("connecting as {connection_name}"))
}

/// The nodes a `amqp.url` names: one URL, or several separated by commas (the nodes of a
/// cluster, connected to in turn).
pub fn node_urls(urls: &str) -> Vec<String> {
    urls.split(',').map(str::trim).filter(|url| !url.is_empty()).map(str::to_owned).collect()
}

/// A service's broker: a connection that comes back after every loss (see the `link`
/// module), a confirming publisher on it, and the topology, declared on every connection.
/// The connection is kept up until the `Bus` is dropped.
pub struct Bus {
    shared: std::sync::Arc<link::Shared>,
    /// Confirming publisher shared by the service's tasks.
    pub publisher: Publisher,
    /// Exchange and queue names.
    pub topology: Topology,
    _supervisor: tokio_util::sync::DropGuard,
}

impl Bus {
    /// Connects to a node of `urls` (see [`node_urls`]) as `connection_name`, declares the
    /// whole topology with a delay queue per retry delay, and keeps the connection up.
    /// Waits for the broker as long as it takes, logging once; fails only when `stop` is
    /// cancelled first. The connection is closed when the `Bus` is dropped.
    pub async fn open(
        urls: &str,
        prefix: &str,
        connection_name: &str,
        delays: &[std::time::Duration],
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<Self> {
        let nodes = node_urls(urls);
        if nodes.is_empty() {
            return Err(Error::Disconnected);
        }
        let topology = Topology::new(prefix);
        let shared = std::sync::Arc::new(link::Shared::new(topology.clone(), delays));
        // Not a child of `stop`: a service's consumers settle their messages after
        // shutdown starts, so the connection stays up until the `Bus` is dropped.
        let supervisor = tokio_util::sync::CancellationToken::new();
        tokio::spawn(link::supervise(shared.clone(), nodes, connection_name.to_owned(), supervisor.clone()));
        let bus =
            Self { publisher: Publisher::new(shared.clone()), shared, topology, _supervisor: supervisor.drop_guard() };
        bus.shared.next_link(None, stop).await.ok_or(Error::Disconnected)?;
        Ok(bus)
    }

    /// Whether the broker is connected now.
    pub fn is_connected(&self) -> bool {
        self.publisher.is_connected()
    }

    /// The connection as it is now, for work of its own (a channel to read a queue, say).
    pub fn connection(&self) -> Result<std::sync::Arc<lapin::Connection>> {
        self.shared.current().map(|link| link.connection).ok_or(Error::Disconnected)
    }

    /// Consumes `options.queue` with `handler` until `shutdown` is cancelled, through
    /// every loss of the broker: when the connection goes, the messages in hand are
    /// settled as far as they can be (their acks go with the connection, and the broker
    /// delivers them again), and consuming resumes on the next connection.
    pub async fn consume<H, F>(
        &self,
        options: ConsumerOptions,
        shutdown: tokio_util::sync::CancellationToken,
        handler: H,
    ) -> Result<()>
    where
        H: Fn(std::sync::Arc<Incoming>) -> F + Clone + Send + Sync + 'static,
        F: std::future::Future<Output = Outcome> + Send + 'static,
    {
        let mut generation = None;
        while let Some(link) = self.shared.next_link(generation, &shutdown).await {
            generation = Some(link.generation);
            let consumed = consumer::consume(
                &link.connection,
                options.clone(),
                self.reject_target(),
                shutdown.clone(),
                handler.clone(),
            )
            .await;
            match consumed {
                Ok(()) => return Ok(()),
                // A connection lost while stopping ends the consumer as stopping would
                // have: whatever it had not acked goes back to the queue with the
                // connection, and the process exits cleanly.
                Err(err) if shutdown.is_cancelled() => {
                    tracing::info!(queue = %options.queue, error = %err, "connection lost while stopping; unacked messages return to the queue");
                    return Ok(());
                }
                Err(err) => {
                    tracing::warn!(queue = %options.queue, error = %err, "consuming stopped; resuming on a new connection");
                    // The connection may still be up (the broker cancelled the consumer,
                    // say): a new one declares the topology again and consumes afresh.
                    self.shared.report_broken(link.generation);
                }
            }
        }
        Ok(())
    }

    /// Where a consumer of this service sends messages it rejects.
    pub fn reject_target(&self) -> (Publisher, String) {
        (self.publisher.clone(), self.topology.rejected_queue())
    }

    /// Reads this deployment's queue depths, on whatever connection is up when asked.
    pub fn queue_depths(&self) -> depths::BrokerQueueDepths {
        depths::BrokerQueueDepths::new(self.shared.clone())
    }

    /// Makes `metrics` report this deployment's queue depths when scraped (unless another
    /// service of the process already does).
    pub fn report_queue_depths(&self, metrics: &hookline_telemetry::Metrics) {
        let depths = depths::BrokerQueueDepths::new(self.shared.clone());
        metrics.set_queue_depths(std::sync::Arc::new(depths));
    }
}
