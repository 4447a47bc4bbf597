//! The worker → scheduler hop: failed attempts whose outcome asks the scheduler for a
//! retry in a delay queue or a webhook switched off.

use hookline_core::envelope::Rejection;

use crate::codec::proto;
use crate::consumer::Incoming;
use crate::message;
use crate::{Publisher, Result, Topology};

/// Publishes `failed` to the scheduler and waits for its confirm.
pub async fn send(publisher: &Publisher, topology: &Topology, failed: &proto::FailedAttempt) -> Result<()> {
    let (body, properties) = message::encoded(failed);
    publisher.publish("", &topology.failed_queue(), &body, properties).await
}

/// The failed attempt a message reports.
pub fn decode(message: &Incoming) -> Result<proto::FailedAttempt, Rejection> {
    message::decode(message)
}
