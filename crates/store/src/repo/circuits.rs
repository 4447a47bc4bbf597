//! Endpoint circuits and parked deliveries (see `hookline_core::circuit`): the state
//! every worker shares, so an endpoint opens once for all of them and only one probe
//! goes at a time; and the deliveries whose jobs left the delivery queue to wait for
//! their endpoint.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use hookline_core::circuit::{Breaker, Circuit};
use hookline_core::delivery::ErrorKind;
use hookline_core::ids::{DeliveryId, EndpointId};
use tokio_postgres::Row;
use tokio_postgres::types::Type;

use crate::error::{QueryContext as _, Result};
use crate::rows::count;

const COLUMNS: &str = "endpoint_id, failures, opened_at, probe_wait_ms, probe_at, probing_until";

fn circuit(row: &Row) -> Result<Circuit> {
    let wait: Option<i64> = row.try_get("probe_wait_ms")?;
    Ok(Circuit {
        failures: count(row, "failures")?,
        opened_at: row.try_get("opened_at")?,
        probe_wait: wait.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or_default())),
        probe_at: row.try_get("probe_at")?,
        probing_until: row.try_get("probing_until")?,
    })
}

/// Every circuit that is not closed with a clean run, by endpoint.
pub async fn troubled(pool: &Pool) -> Result<HashMap<EndpointId, Circuit>> {
    let client = pool.get().await?;
    let rows = client
        .query(&format!("SELECT {COLUMNS} FROM endpoint_circuits"), &[])
        .await
        .context("reading endpoint circuits")?;
    rows.iter().map(|row| Ok((row.try_get("endpoint_id")?, circuit(row)?))).collect()
}

/// An endpoint's circuit after a failed attempt was counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    /// The circuit now.
    pub circuit: Circuit,
    /// Whether this count opened it.
    pub opened: bool,
}

/// Counts failed attempts against their endpoints' circuits (with whether each was an
/// open circuit's probe), as `breaker` says; answers each endpoint's circuit after
/// them. One endpoint's row is locked while its new state is decided, so workers
/// counting at once each count.
pub async fn failed(
    pool: &Pool,
    failures: &[(EndpointId, bool)],
    breaker: &Breaker,
) -> Result<HashMap<EndpointId, Counted>> {
    let mut client = pool.get().await?;
    let mut after = HashMap::new();
    for (endpoint, probe) in failures {
        let transaction = client.transaction().await.context("counting a failed attempt")?;
        transaction
            .execute("INSERT INTO endpoint_circuits (endpoint_id) VALUES ($1) ON CONFLICT DO NOTHING", &[endpoint])
            .await
            .context("creating an endpoint circuit")?;
        let row = transaction
            .query_one(
                &format!("SELECT {COLUMNS} FROM endpoint_circuits WHERE endpoint_id = $1 FOR UPDATE"),
                &[endpoint],
            )
            .await
            .context("locking an endpoint circuit")?;
        let before = circuit(&row)?;
        let next = before.after_failure(*probe, breaker, Utc::now());
        let wait = next.probe_wait.map(|wait| i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
        transaction
            .execute(
                "UPDATE endpoint_circuits SET failures = $2, opened_at = $3, probe_wait_ms = $4, probe_at = $5,
                     probing_until = $6, updated_at = now()
                 WHERE endpoint_id = $1",
                &[
                    endpoint,
                    &i32::try_from(next.failures).unwrap_or(i32::MAX),
                    &next.opened_at,
                    &wait,
                    &next.probe_at,
                    &next.probing_until,
                ],
            )
            .await
            .context("updating an endpoint circuit")?;
        transaction.commit().await.context("counting a failed attempt")?;
        let opened = before.opened_at.is_none() && next.opened_at.is_some();
        after.insert(endpoint.clone(), Counted { circuit: next, opened });
    }
    Ok(after)
}

/// Closes the circuits of endpoints that answered; answers those that were open.
pub async fn succeeded(pool: &Pool, endpoints: &[EndpointId]) -> Result<Vec<EndpointId>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "DELETE FROM endpoint_circuits WHERE endpoint_id = ANY($1::text[]) RETURNING endpoint_id, opened_at",
            &[&endpoints],
        )
        .await
        .context("closing endpoint circuits")?;
    let mut opened = Vec::new();
    for row in &rows {
        if row.try_get::<_, Option<DateTime<Utc>>>("opened_at")?.is_some() {
            opened.push(row.try_get("endpoint_id")?);
        }
    }
    Ok(opened)
}

/// Claims the probe of an open circuit whose probe is due, for `duration`: true for
/// exactly one caller until that probe's attempt is counted or the claim runs out. (The
/// condition is `Circuit::gate`'s `Probe`, taken atomically.)
pub async fn claim_probe(pool: &Pool, endpoint: &EndpointId, duration: Duration) -> Result<bool> {
    let client = pool.get().await?;
    let claimed = client
        .execute(
            "UPDATE endpoint_circuits SET probing_until = now() + make_interval(secs => $2), updated_at = now()
             WHERE endpoint_id = $1 AND opened_at IS NOT NULL AND (probe_at IS NULL OR probe_at <= now())
               AND (probing_until IS NULL OR probing_until <= now())",
            &[endpoint, &duration.as_secs_f64()],
        )
        .await
        .context("claiming an endpoint's probe")?;
    Ok(claimed == 1)
}

/// A job to park: the attempt after `attempts_before` of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parking {
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// The attempts recorded when the job was admitted.
    pub attempts_before: u32,
    /// Whether the job holds the delivery's lease (given back by parking); one that does
    /// not parks only a delivery nobody holds.
    pub leased: bool,
}

/// Parks each job's delivery; answers, in order, whether it was parked (false when the
/// delivery moved on since the job was admitted: another copy attempted it, or it
/// closed). A parked job may be dropped: its delivery is released later.
pub async fn park(pool: &Pool, jobs: &[Parking]) -> Result<Vec<bool>> {
    let ids: Vec<&DeliveryId> = jobs.iter().map(|job| &job.delivery_id).collect();
    let attempts: Vec<i32> = jobs.iter().map(|job| i32::try_from(job.attempts_before).unwrap_or(i32::MAX)).collect();
    let leased: Vec<bool> = jobs.iter().map(|job| job.leased).collect();
    let client = pool.get().await?;
    let rows = client
        .query_typed(
            "UPDATE deliveries d SET parked_at = now(), updated_at = now(),
                 leased_until = CASE WHEN i.leased THEN NULL ELSE d.leased_until END
             FROM unnest($1::text[], $2::int[], $3::bool[]) AS i (delivery_id, attempts_before, leased)
             WHERE d.id = i.delivery_id AND d.attempt_count = i.attempts_before AND d.open
               AND (i.leased OR d.leased_until IS NULL OR d.leased_until < now())
             RETURNING d.id",
            &[(&ids, Type::TEXT_ARRAY), (&attempts, Type::INT4_ARRAY), (&leased, Type::BOOL_ARRAY)],
        )
        .await
        .context("parking deliveries")?;
    let parked: std::collections::HashSet<DeliveryId> =
        rows.iter().map(|row| row.try_get("id")).collect::<Result<_, _>>()?;
    Ok(jobs.iter().map(|job| parked.contains(&job.delivery_id)).collect())
}

/// Releases up to `limit` of an endpoint's parked deliveries, oldest first; answers each
/// with its recorded attempts (its job is for the one after). A released delivery whose
/// job is then lost is resumed by the reconciliation sweep, as any open delivery.
pub async fn release(pool: &Pool, endpoint: &EndpointId, limit: usize) -> Result<Vec<(DeliveryId, u32)>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "UPDATE deliveries d SET parked_at = NULL, updated_at = now()
             WHERE d.id IN (SELECT id FROM deliveries WHERE endpoint_id = $1 AND parked_at IS NOT NULL
                            ORDER BY parked_at LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING d.id, d.attempt_count",
            &[endpoint, &i64::try_from(limit).unwrap_or(i64::MAX)],
        )
        .await
        .context("releasing parked deliveries")?;
    rows.iter().map(|row| Ok((row.try_get("id")?, count(row, "attempt_count")?))).collect()
}

/// The endpoints that have parked deliveries (one index probe per endpoint, however
/// many deliveries each has parked).
pub async fn with_parked(pool: &Pool) -> Result<Vec<EndpointId>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "WITH RECURSIVE parked (endpoint_id) AS (
                 (SELECT endpoint_id FROM deliveries WHERE parked_at IS NOT NULL ORDER BY endpoint_id LIMIT 1)
                 UNION ALL
                 SELECT (SELECT d.endpoint_id FROM deliveries d
                         WHERE d.parked_at IS NOT NULL AND d.endpoint_id > p.endpoint_id
                         ORDER BY d.endpoint_id LIMIT 1)
                 FROM parked p WHERE p.endpoint_id IS NOT NULL)
             SELECT endpoint_id FROM parked WHERE endpoint_id IS NOT NULL",
            &[],
        )
        .await
        .context("finding endpoints with parked deliveries")?;
    rows.iter().map(|row| Ok(row.try_get("endpoint_id")?)).collect()
}

/// What [`expire_parked`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expired {
    /// Parked deliveries failed for good.
    pub deliveries: u32,
    /// The endpoint's run of deliveries failed for good in a row, these included.
    pub consecutive_failures: u32,
}

/// Fails for good the endpoint's parked deliveries made before `made_before` (they have
/// outlived their retry schedule while its circuit stayed open), recording `ended` (the
/// failed probe's error kind and status) as their last outcome, and counts them in the
/// endpoint's run of failures, as the settling of a delivery's last attempt would.
/// `None` when there were none.
pub async fn expire_parked(
    pool: &Pool,
    endpoint: &EndpointId,
    made_before: DateTime<Utc>,
    ended: (Option<ErrorKind>, Option<u16>),
) -> Result<Option<Expired>> {
    let client = pool.get().await?;
    let status = ended.1.map(i32::from);
    let row = client
        .query_opt(
            "WITH expired AS (
                 UPDATE deliveries d SET status = 'failed', parked_at = NULL, leased_until = NULL,
                     next_attempt_at = NULL, completed_at = now(), updated_at = now(),
                     last_error_kind = coalesce($3, d.last_error_kind), last_status_code = coalesce($4, d.last_status_code)
                 WHERE d.id IN (SELECT id FROM deliveries WHERE endpoint_id = $1 AND parked_at IS NOT NULL
                                  AND created_at < $2 AND open
                                FOR UPDATE SKIP LOCKED)
                 RETURNING d.id),
             counted AS (SELECT count(*)::int AS n FROM expired)
             UPDATE endpoints ep SET consecutive_failures = ep.consecutive_failures + c.n
             FROM counted c WHERE ep.id = $1 AND c.n > 0
             RETURNING c.n AS expired, ep.consecutive_failures",
            &[endpoint, &made_before, &ended.0, &status],
        )
        .await
        .context("failing parked deliveries that outlived their schedule")?;
    row.map(|row| {
        Ok(Expired { deliveries: count(&row, "expired")?, consecutive_failures: count(&row, "consecutive_failures")? })
    })
    .transpose()
}
