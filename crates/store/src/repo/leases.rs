//! Delivery leases: a worker claims the attempt a job is due before it sends it, so two
//! copies of one job (a redelivery, the reconciliation sweep, a recovery path) can never
//! both send. The lease is taken atomically with the check that the attempt is not
//! recorded yet, and recording the attempt (`deliveries::settle`) releases it.

use std::collections::HashSet;

use deadpool_postgres::Pool;
use hookline_core::ids::DeliveryId;
use tokio_postgres::types::Type;

use crate::error::{QueryContext as _, Result};

/// A claim on the attempt after `attempts_before` of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// The attempts recorded when the job was admitted: the lease is granted only while
    /// the delivery still has exactly these.
    pub attempts_before: u32,
}

/// What asking for a [`Lease`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leased {
    /// The caller may send the attempt; no one else can until it is recorded or the
    /// lease runs out.
    Granted,
    /// The delivery has other attempts recorded than the job was admitted on: another
    /// copy of the job already sent it.
    Recorded,
    /// Another worker holds the delivery's lease: its copy is being sent now.
    Held,
    /// No such delivery.
    Missing,
}

const LEASE: &str = "WITH i AS (SELECT * FROM unnest($1::text[], $2::int[]) AS i (delivery_id, attempts_before)),
     granted AS (
         UPDATE deliveries d SET leased_until = now() + make_interval(secs => $3), updated_at = now()
         FROM i
         WHERE d.id = i.delivery_id AND d.attempt_count = i.attempts_before
           AND (d.leased_until IS NULL OR d.leased_until < now())
         RETURNING d.id)
     SELECT i.delivery_id, g.id IS NOT NULL AS granted, d.attempt_count,
         coalesce(d.leased_until >= now(), false) AS held
     FROM i LEFT JOIN granted g ON g.id = i.delivery_id LEFT JOIN deliveries d ON d.id = i.delivery_id";

/// Asks for each lease, for `duration`, in one statement; answers each in order. A
/// delivery asked for twice in one call is granted at most once (the later asks are
/// [`Leased::Held`]).
pub async fn lease(pool: &Pool, leases: &[Lease], duration: std::time::Duration) -> Result<Vec<Leased>> {
    let mut seen = HashSet::new();
    let first: Vec<&Lease> = leases.iter().filter(|lease| seen.insert(&lease.delivery_id)).collect();
    let ids: Vec<&DeliveryId> = first.iter().map(|lease| &lease.delivery_id).collect();
    let attempts: Vec<i32> =
        first.iter().map(|lease| i32::try_from(lease.attempts_before).unwrap_or(i32::MAX)).collect();
    let client = pool.get().await?;
    let rows = client
        .query_typed(
            LEASE,
            &[(&ids, Type::TEXT_ARRAY), (&attempts, Type::INT4_ARRAY), (&duration.as_secs_f64(), Type::FLOAT8)],
        )
        .await
        .context("leasing deliveries")?;
    let mut answers = std::collections::HashMap::with_capacity(rows.len());
    for row in &rows {
        let id: DeliveryId = row.try_get("delivery_id")?;
        let answer = match (row.try_get("granted")?, row.try_get::<_, Option<i32>>("attempt_count")?) {
            (true, _) => Leased::Granted,
            (false, None) => Leased::Missing,
            (false, Some(_)) if row.try_get("held")? => Leased::Held,
            (false, Some(_)) => Leased::Recorded,
        };
        answers.insert(id, answer);
    }
    let mut granted = HashSet::new();
    Ok(leases
        .iter()
        .map(|lease| match answers.get(&lease.delivery_id).copied().unwrap_or(Leased::Missing) {
            // The first ask of a delivery holds what the statement gave; a repeat in
            // the same call waits like any other copy.
            Leased::Granted if !granted.insert(&lease.delivery_id) => Leased::Held,
            answer => answer,
        })
        .collect())
}

/// Gives back a lease taken by [`lease`] without recording an attempt (the job is sent
/// round again instead of now), so its next copy need not wait for it to run out.
pub async fn release(pool: &Pool, delivery: &DeliveryId) -> Result<()> {
    let client = pool.get().await?;
    client
        .execute("UPDATE deliveries SET leased_until = NULL WHERE id = $1", &[delivery])
        .await
        .context("giving back a delivery lease")?;
    Ok(())
}
