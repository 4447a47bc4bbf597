//! Publishing with broker confirms.

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection};

use crate::codec::PROTOBUF;
use crate::{AmqpContext as _, Error, Result, trace};

/// A channel in confirm mode. `publish` returns only once the broker has taken
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
    pub async fn publish(&self, exchange: &str, routing_key: &str, body: &[u8], properties: BasicProperties) -> Result<()> {
        let properties = properties.with_delivery_mode(2);
        let confirm = self
            .channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions { mandatory: true, ..Default::default() },
                body,
                properties,
            )
            .await
            .context(format!("publishing to `{exchange}` with key `{routing_key}`"))?
            .await
            .context(format!("waiting for the confirm of a message to `{exchange}`"))?;
        match confirm {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_)) => {
                Err(Error::Unroutable { exchange: exchange.to_owned(), routing_key: routing_key.to_owned() })
            }
            Confirmation::Nack(_) | Confirmation::NotRequested => {
                Err(Error::NotConfirmed { exchange: exchange.to_owned(), routing_key: routing_key.to_owned() })
            }
        }
    }

    /// Publishes one of hookline's protobuf messages, carrying the current trace context.
    pub async fn publish_message<M: prost::Message>(&self, exchange: &str, routing_key: &str, message: &M) -> Result<()> {
        let mut headers = FieldTable::default();
        trace::inject_current(&mut headers);
        let properties = BasicProperties::default().with_content_type(PROTOBUF.into()).with_headers(headers);
        self.publish(exchange, routing_key, &message.encode_to_vec(), properties).await
    }

    /// Publishes a message straight to a queue through the default exchange.
    pub async fn send_to_queue<M: prost::Message>(&self, queue: &str, message: &M) -> Result<()> {
        self.publish_message("", queue, message).await
    }
}
