//! Publishing with broker confirms.

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection, PublisherConfirm};

use crate::{AmqpContext as _, Error, Result};

/// A channel in confirm mode. Publishing returns only once the broker has taken
/// responsibility for the message (persisted it to a queue), which is what lets a
/// consumer ack its input afterwards without ever losing work.
///
/// Cheap to clone; clones share the channel, and concurrent publishes are confirmed
/// independently.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
}

impl Publisher {
    /// Opens a channel on `connection` and puts it in confirm mode.
    pub async fn new(connection: &Connection) -> Result<Self> {
        let channel = connection.create_channel().await.context("opening a publishing channel")?;
        channel.confirm_select(ConfirmSelectOptions::default()).await.context("enabling publisher confirms")?;
        Ok(Self { channel })
    }

    /// The channel, for declaring topology.
    pub fn channel(&self) -> &Channel {
        &self.channel
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
        let confirm = self.send(exchange, routing_key, body, properties).await?;
        confirmed(confirm, exchange, routing_key).await
    }

    /// Publishes encoded bodies, each with its own properties, then waits for all their
    /// confirms: one broker round trip instead of one per message.
    pub async fn publish_encoded(
        &self,
        exchange: &str,
        routing_key: &str,
        messages: Vec<(Vec<u8>, BasicProperties)>,
    ) -> Result<()> {
        let mut confirms = Vec::new();
        for (body, properties) in messages {
            confirms.push(self.send(exchange, routing_key, &body, properties).await?);
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
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<PublisherConfirm> {
        self.channel
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
