//! The reconciliation sweep: republishes work whose message was lost.
//!
//! A delivery that has made no progress for `scheduler.reconcile_after` may have lost
//! its job, or its job may still wait in the delivery queue behind a backlog. Only the
//! first is lost: the sweep republishes a delivery's job only if the delivery queue has
//! been seen empty since the job went in (every job queued before that moment has been
//! taken by a worker since), so a backlog is never doubled by copies of what it holds.

use chrono::{DateTime, Utc};
use hookline_bus::codec::proto;
use hookline_bus::depths::BrokerQueueDepths;
use hookline_bus::{Publisher, Topology, Traced as _, jobs, route};
use hookline_service::Error;
use hookline_store::Pool;
use hookline_store::repo::{deliveries, events};
use hookline_telemetry::SchedulerSettings;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

const BATCH: i64 = 500;

/// What the sweep needs of the broker.
pub(crate) struct Bus {
    /// Where republished work goes.
    pub publisher: Publisher,
    /// Its queues.
    pub topology: Topology,
    /// Reads whether the delivery queue is empty.
    pub depths: BrokerQueueDepths,
}

/// Sweeps every `settings.reconcile_interval` until `shutdown` is cancelled.
pub(crate) async fn run(pool: Pool, bus: Bus, settings: SchedulerSettings, shutdown: CancellationToken) {
    // The last moment the delivery queue was seen empty.
    let mut drained_at: Option<DateTime<Utc>> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(settings.reconcile_interval) => {}
        }
        let looked_at = Utc::now();
        if bus.depths.waiting(&bus.topology.delivery_queue()).await == Some(0) {
            drained_at = Some(looked_at);
        }
        let span =
            tracing::info_span!("reconcile", service.name = "hookline-scheduler", republished = tracing::field::Empty);
        let swept = sweep(&pool, &bus, settings.reconcile_after, drained_at).instrument(span.clone()).await;
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

/// One sweep: routes again the events stored but never routed, and publishes again the
/// next job of every open delivery that has made no progress for `after` (never
/// attempted, or its retry never came back from its delay queue) and whose job went in
/// before the delivery queue was last seen empty (`drained_at`; none: no job is known
/// lost yet). Returns how many messages' work it republished.
async fn sweep(
    pool: &Pool,
    bus: &Bus,
    after: std::time::Duration,
    drained_at: Option<DateTime<Utc>>,
) -> Result<usize, Error> {
    let Bus { publisher, topology, .. } = bus;
    let span = tracing::Span::current();
    let unrouted: Vec<proto::RouteEvent> = events::unrouted(pool, after, BATCH)
        .await?
        .into_iter()
        .map(|event| {
            proto::RouteEvent {
                event_id: event.id.to_string(),
                organization_id: event.organization_id.to_string(),
                event_type: event.event_type,
                environment: event.environment.as_str().to_owned(),
                actor: event.actor,
                team: event.team,
                ..Default::default()
            }
            .traced(&span)
        })
        .collect();
    let mut republished = unrouted.len();
    if !unrouted.is_empty() {
        route::send(publisher, topology, unrouted).await?;
    }
    let Some(drained_at) = drained_at else { return Ok(republished) };
    let lost: Vec<proto::DeliveryJob> = deliveries::claim_overdue(pool, after, drained_at, BATCH)
        .await?
        .into_iter()
        .map(|overdue| jobs::resume(&overdue.id, overdue.attempts, &span))
        .collect();
    republished += lost.len();
    jobs::to_workers(publisher, topology, lost).await?;
    Ok(republished)
}
