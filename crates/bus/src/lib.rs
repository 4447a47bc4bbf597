#![doc = include_str!("../README.md")]

mod acks;
pub mod codec;
pub mod consumer;
pub mod depths;
pub mod failed;
pub mod jobs;
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

/// Opens a connection, naming it after the service so operators see who is connected.
pub async fn connect(url: &str, connection_name: &str) -> Result<lapin::Connection> {
    let properties = lapin::ConnectionProperties::default().with_connection_name(connection_name.to_owned().into());
    lapin::Connection::connect(url, properties).await.context(format!("connecting as {connection_name}"))
}

/// A service's broker handles: its connection, a confirming publisher and the topology
/// (declared on open).
pub struct Bus {
    /// The connection; consumers open their own channels on it.
    pub connection: std::sync::Arc<lapin::Connection>,
    /// Confirming publisher shared by the service's tasks.
    pub publisher: Publisher,
    /// Exchange and queue names.
    pub topology: Topology,
    /// Delays whose queues were declared on open.
    delays: Vec<std::time::Duration>,
}

impl Bus {
    /// Connects, opens a confirming publisher and declares the whole topology with one
    /// delay queue per retry delay.
    pub async fn open(url: &str, prefix: &str, connection_name: &str, delays: &[std::time::Duration]) -> Result<Self> {
        let connection = connect(url, connection_name).await?;
        let publisher = Publisher::new(&connection).await?;
        let topology = Topology::new(prefix);
        topology.declare(publisher.channel(), delays).await?;
        Ok(Self { connection: std::sync::Arc::new(connection), publisher, topology, delays: delays.to_vec() })
    }

    /// Where a consumer of this service sends messages it rejects.
    pub fn reject_target(&self) -> (Publisher, String) {
        (self.publisher.clone(), self.topology.rejected_queue())
    }

    /// Makes `metrics` report this deployment's queue depths when scraped (unless another
    /// service of the process already does).
    pub fn report_queue_depths(&self, metrics: &hookline_telemetry::Metrics) {
        let depths = depths::BrokerQueueDepths::new(self.connection.clone(), self.topology.clone(), &self.delays);
        metrics.set_queue_depths(std::sync::Arc::new(depths));
    }
}
