//! Publishing with broker confirms.

use std::sync::Arc;

use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Confirmation, PublisherConfirm};

use crate::link::{Link, Shared};
use crate::{AmqpContext as _, Error, Result};

/// Publishes on the service's broker connection, on a channel in confirm mode. A publish
/// returns only once the broker has taken responsibility for the message (persisted it to
/// a queue), which is what lets a consumer ack its input afterwards without ever losing
/// work. While the broker is away it fails at once with [`Error::Disconnected`]; it
/// publishes on the new connection once the broker is back.
///
/// Cheap to clone; clones share the connection, and concurrent publishes are confirmed
/// independently.
#[derive(Clone)]
pub struct Publisher {
    shared: Arc<Shared>,
}

impl Publisher {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Whether there is a connection to publish on now.
    pub fn is_connected(&self) -> bool {
        self.shared.current().is_some_and(|link| link.connection.status().connected())
    }

    /// The delay queue of `delay`, declared the first time it is asked for and on every
    /// connection from then on: for delays the configuration does not list (a webhook's
    /// own policy, a receiver's Retry-After).
    pub async fn ensure_delay_queue(&self, delay: std::time::Duration) -> Result<String> {
        crate::link::ensure_delay_queue(&self.shared, delay).await
    }

    /// Publishes a persistent message and waits for the broker's confirm. The message
    /// is mandatory: one that reaches no queue is an error, not a silent loss.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<()> {
        self.publish_encoded(exchange, routing_key, vec![(body.to_vec(), properties)]).await
    }

    /// Publishes encoded bodies, each with its own properties, then waits for all their
    /// confirms: one broker round trip instead of one per message.
    pub async fn publish_encoded(
        &self,
        exchange: &str,
        routing_key: &str,
        messages: Vec<(Vec<u8>, BasicProperties)>,
    ) -> Result<()> {
        let link = self.shared.current().ok_or(Error::Disconnected)?;
        let published = publish_on(&link, exchange, routing_key, messages).await;
        if published.is_err() && !link.channel.status().connected() {
            self.shared.report_broken(link.generation);
        }
        published
    }
}

async fn publish_on(
    link: &Link,
    exchange: &str,
    routing_key: &str,
    messages: Vec<(Vec<u8>, BasicProperties)>,
) -> Result<()> {
    let mut confirms = Vec::with_capacity(messages.len());
    for (body, properties) in messages {
        confirms.push(send(link, exchange, routing_key, &body, properties).await?);
    }
    let mut first_error = None;
    for confirm in confirms {
        if let Err(err) = confirmed(confirm, exchange, routing_key).await {
            first_error.get_or_insert(err);
        }
    }
    first_error.map_or(Ok(()), Err)
}

async fn send(
    link: &Link,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Result<PublisherConfirm> {
    link.channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions { mandatory: true, ..Default::default() },
            body,
            properties.with_delivery_mode(2),
        )
        .await
        .context(format!("publishing to `{exchange}` with key `{routing_key}`"))
}

async fn confirmed(confirm: PublisherConfirm, exchange: &str, routing_key: &str) -> Result<()> {
    let confirmation = confirm.await.context(format!("waiting for the confirm of a message to `{exchange}`"))?;
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) => {
            Err(Error::Unroutable { exchange: exchange.to_owned(), routing_key: routing_key.to_owned() })
        }
        Confirmation::Nack(_) | Confirmation::NotRequested => {
            Err(Error::NotConfirmed { exchange: exchange.to_owned(), routing_key: routing_key.to_owned() })
        }
    }
}
