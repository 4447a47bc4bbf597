//! The reconciliation sweep: republishes work whose message was lost.

use std::time::Duration;

use hookline_bus::codec::proto;
use hookline_bus::topology::JOB_ROUTING_KEY;
use hookline_bus::{Publisher, Topology, route};
use hookline_core::delivery::DeliveryStatus;
use hookline_store::Pool;
use hookline_store::repo::{deliveries, events};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

const BATCH: i64 = 500;

/// Sweeps every `interval` until `shutdown` is cancelled.
pub async fn run(
    pool: Pool,
    publisher: Publisher,
    topology: Topology,
    interval: Duration,
    after: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        let span =
            tracing::info_span!("reconcile", service.name = "hookline-scheduler", republished = tracing::field::Empty);
        let swept = sweep(&pool, &publisher, &topology, after).instrument(span.clone()).await;
        if let Ok(count) = swept {
            span.record("republished", count);
        }
        match swept {
            Ok(0) => {}
            Ok(count) => tracing::warn!(count, "republished work whose message was lost"),
            Err(err) => tracing::warn!(error = %err, "reconciliation sweep failed"),
        }
    }
}

/// One sweep; returns how many messages it republished.
pub async fn sweep(
    pool: &Pool,
    publisher: &Publisher,
    topology: &Topology,
    after: Duration,
) -> Result<usize, crate::Error> {
    let mut republished = 0;
    let unrouted: Vec<proto::RouteEvent> = events::unrouted(pool, after, BATCH)
        .await?
        .into_iter()
        .map(|event| {
            route::traced(proto::RouteEvent {
                event_id: event.id.to_string(),
                organization_id: event.organization_id,
                event_type: event.event_type,
                environment: event.environment,
                actor: event.actor,
                team: event.team,
                ..Default::default()
            })
        })
        .collect();
    if !unrouted.is_empty() {
        republished += unrouted.len();
        route::send(publisher, topology, unrouted).await?;
    }
    for overdue in deliveries::claim_overdue(pool, after, BATCH).await? {
        let delivery_id = overdue.id.to_string();
        match (overdue.status, overdue.attempt_count, overdue.last_error_kind) {
            // An attempt failed but its report never reached the scheduler.
            (DeliveryStatus::Pending, count, Some(kind)) if count > 0 => {
                let failed = proto::FailedAttempt {
                    delivery_id,
                    attempt: count,
                    error_kind: kind.as_str().to_owned(),
                    retryable: kind.is_retryable(),
                    status_code: None,
                    retry_after_ms: None,
                };
                publisher.send_to_queue(&topology.failed_queue(), &failed).await?;
            }
            // Never attempted, or its retry never came back from the delay queue.
            (_, count, _) => {
                let job = proto::DeliveryJob { delivery_id, attempt: count + 1, manual: false, ..Default::default() };
                publisher.publish_message(&topology.delivery_exchange(), JOB_ROUTING_KEY, &job).await?;
            }
        }
        republished += 1;
    }
    Ok(republished)
}
