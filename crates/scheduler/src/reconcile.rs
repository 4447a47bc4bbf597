//! The reconciliation sweep: republishes work whose message was lost.

use hookline_bus::codec::proto;
use hookline_bus::{Publisher, Topology, Traced as _, jobs, route};
use hookline_service::Error;
use hookline_store::Pool;
use hookline_store::repo::{deliveries, events};
use hookline_telemetry::SchedulerSettings;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

const BATCH: i64 = 500;

/// Sweeps every `settings.reconcile_interval` until `shutdown` is cancelled.
pub(crate) async fn run(
    pool: Pool,
    publisher: Publisher,
    topology: Topology,
    settings: SchedulerSettings,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(settings.reconcile_interval) => {}
        }
        let span =
            tracing::info_span!("reconcile", service.name = "hookline-scheduler", republished = tracing::field::Empty);
        let swept = sweep(&pool, &publisher, &topology, settings.reconcile_after).instrument(span.clone()).await;
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
/// attempted, or its retry never came back from its delay queue). Returns how many
/// messages' work it republished.
async fn sweep(
    pool: &Pool,
    publisher: &Publisher,
    topology: &Topology,
    after: std::time::Duration,
) -> Result<usize, Error> {
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
    let lost: Vec<proto::DeliveryJob> = deliveries::claim_overdue(pool, after, BATCH)
        .await?
        .into_iter()
        .map(|overdue| jobs::resume(&overdue.id, overdue.attempts, &span))
        .collect();
    republished += lost.len();
    jobs::to_workers(publisher, topology, lost).await?;
    Ok(republished)
}
