//! Publishing with broker confirms.

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, PublisherConfirm};

use crate::codec::PROTOBUF;
use crate::{AmqpContext as _, Error, Result, trace};

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

    /// Publishes one of hookline's protobuf messages, carrying the current trace context.
    pub async fn publish_message<M: prost::Message>(
        &self,
        exchange: &str,
        routing_key: &str,
        message: &M,
    ) -> Result<()> {
        self.publish(exchange, routing_key, &message.encode_to_vec(), message_properties(&tracing::Span::current()))
            .await
    }

    /// Publishes several protobuf messages and then waits for all their confirms, which
    /// costs one broker round trip instead of one per message.
    pub async fn publish_all<M: prost::Message>(
        &self,
        exchange: &str,
        routing_key: &str,
        messages: &[M],
    ) -> Result<()> {
        let properties = message_properties(&tracing::Span::current());
        self.publish_each(exchange, routing_key, messages.iter().map(|message| (message, properties.clone()))).await
    }

    /// Like [`Self::publish_all`], each message carrying the trace context of the span
    /// given with it: for messages caused by different items of one batch.
    pub async fn publish_all_traced<M: prost::Message>(
        &self,
        exchange: &str,
        routing_key: &str,
        messages: &[(M, tracing::Span)],
    ) -> Result<()> {
        let messages = messages.iter().map(|(message, span)| (message, message_properties(span)));
        self.publish_each(exchange, routing_key, messages).await
    }

    async fn publish_each<'m, M: prost::Message + 'm>(
        &self,
        exchange: &str,
        routing_key: &str,
        messages: impl Iterator<Item = (&'m M, BasicProperties)>,
    ) -> Result<()> {
        let encoded: Vec<_> = messages.map(|(message, properties)| (message.encode_to_vec(), properties)).collect();
        self.publish_encoded(exchange, routing_key, encoded).await
    }

    /// Publishes encoded bodies, each with its own properties, then waits for all their
    /// confirms.
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

    /// Publishes a message straight to a queue through the default exchange.
    pub async fn send_to_queue<M: prost::Message>(&self, queue: &str, message: &M) -> Result<()> {
        self.publish_message("", queue, message).await
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

/// Properties of one of hookline's protobuf messages, carrying `span`'s trace context.
pub(crate) fn message_properties(span: &tracing::Span) -> BasicProperties {
    let mut headers = FieldTable::default();
    trace::inject(&mut headers, span);
    BasicProperties::default().with_content_type(PROTOBUF.into()).with_headers(headers)
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
