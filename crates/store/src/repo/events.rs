//! Accepted upstream events.

use deadpool_postgres::Pool;
use hookline_core::envelope::UpstreamEvent;
use hookline_core::ids::EventId;

use crate::error::{QueryContext as _, Result};
use crate::repo::webhooks::parse_id;

/// What storing an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// A new event.
    Inserted(EventId),
    /// The organisation already has an event with this idempotency key.
    Duplicate {
        /// The event stored the first time.
        id: EventId,
        /// Whether the router has already handled it.
        routed: bool,
    },
    /// The event names an organisation that does not exist.
    UnknownOrganization,
}

/// Stores an event unless the organisation already has one with the same idempotency
/// key (without a key, the event's own id is its key, so it is always new).
pub async fn insert(pool: &Pool, event: &UpstreamEvent) -> Result<Stored> {
    insert_from(pool, event, "upstream").await
}

/// Stores an event made by hookline itself: `ping` and `test` events are stored as
/// already routed (they go to one webhook only); `system` events are routed normally.
pub async fn insert_synthetic(pool: &Pool, event: &UpstreamEvent, origin: &str) -> Result<EventId> {
    match insert_from(pool, event, origin).await? {
        Stored::Inserted(id) => Ok(id),
        other => Err(crate::Error::Corrupt(format!("synthetic event not stored: {other:?}"))),
    }
}

async fn insert_from(pool: &Pool, event: &UpstreamEvent, origin: &str) -> Result<Stored> {
    let id = EventId::generate();
    let message_id = event.message_id.clone().unwrap_or_else(|| id.to_string());
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(
            "WITH org AS (SELECT id FROM organizations WHERE id = $2),
             ins AS (
                 INSERT INTO events (id, organization_id, message_id, event_type, environment, occurred_at, actor, team, data,
                     origin, routed_at)
                 SELECT $1, org.id, $3, $4, $5, $6, $7, $8, $9, $10,
                     CASE WHEN $10 IN ('upstream', 'system') THEN NULL ELSE now() END
                 FROM org
                 ON CONFLICT (organization_id, message_id) DO NOTHING
                 RETURNING id)
             SELECT EXISTS (SELECT 1 FROM org), (SELECT id FROM ins), prior.id, prior.routed_at IS NOT NULL
             FROM (SELECT 1) one
             LEFT JOIN events prior ON prior.organization_id = $2 AND prior.message_id = $3",
        )
        .await
        .context("preparing event insert")?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 10] = [
        &id.as_str(),
        &event.organization.as_str(),
        &message_id,
        &event.event_type,
        &event.environment.as_str(),
        &event.occurred_at,
        &event.actor,
        &event.team,
        &event.data,
        &origin,
    ];
    // A concurrent insert of the same key can leave this statement seeing neither its
    // own row nor the other one; the second pass then sees the committed row.
    for _ in 0..3 {
        let row = client.query_one(&statement, &params).await.context("storing an event")?;
        let org_exists: bool = row.get(0);
        let inserted: Option<String> = row.get(1);
        let prior: Option<String> = row.get(2);
        let routed: Option<bool> = row.get(3);
        if !org_exists {
            return Ok(Stored::UnknownOrganization);
        }
        if let Some(inserted) = inserted {
            return Ok(Stored::Inserted(parse_id(&inserted)?));
        }
        if let Some(prior) = prior {
            return Ok(Stored::Duplicate { id: parse_id(&prior)?, routed: routed.unwrap_or(false) });
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Err(crate::Error::Corrupt(format!("event key {message_id} neither inserted nor found")))
}

/// Records that the router created and published the event's deliveries.
pub async fn mark_routed(pool: &Pool, id: &EventId) -> Result<()> {
    let client = pool.get().await?;
    // Prepared once per connection: this runs for every event.
    let statement = client
        .prepare_cached("UPDATE events SET routed_at = now() WHERE id = $1 AND routed_at IS NULL")
        .await
        .context("preparing the routed mark")?;
    client.execute(&statement, &[&id.as_str()]).await.context("marking an event routed")?;
    Ok(())
}

/// An event accepted but not routed for a while (its route message was lost).
#[derive(Debug, Clone)]
pub struct Unrouted {
    /// The event.
    pub id: hookline_core::ids::EventId,
    /// Owner.
    pub organization_id: String,
    /// Catalog code.
    pub event_type: String,
    /// `live` or `test`.
    pub environment: String,
    /// Acting user.
    pub actor: Option<String>,
    /// Team.
    pub team: Option<String>,
}

/// Events received more than `after` ago that the router has not handled.
pub async fn unrouted(pool: &Pool, after: std::time::Duration, limit: i64) -> Result<Vec<Unrouted>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT id, organization_id, event_type, environment, actor, team FROM events
             WHERE routed_at IS NULL AND received_at < now() - make_interval(secs => $1)
             ORDER BY received_at LIMIT $2",
            &[&after.as_secs_f64(), &limit],
        )
        .await
        .context("loading unrouted events")?;
    rows.into_iter()
        .map(|row| {
            Ok(Unrouted {
                id: parse_id(row.get(0))?,
                organization_id: row.get(1),
                event_type: row.get(2),
                environment: row.get(3),
                actor: row.get(4),
                team: row.get(5),
            })
        })
        .collect()
}
