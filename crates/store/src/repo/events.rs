//! Accepted upstream events.

use std::borrow::Borrow;

use deadpool_postgres::Pool;
use hookline_core::envelope::UpstreamEvent;
use hookline_core::ids::EventId;
use tokio_postgres::types::Type;

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
    let mut stored = insert_all(pool, std::slice::from_ref(event), "upstream").await?;
    stored.pop().ok_or_else(|| crate::Error::Corrupt("an event insert answered nothing".into()))
}

/// Stores an event made by hookline itself: `ping` and `test` events are stored as
/// already routed (they go to one webhook only); `system` events are routed normally.
pub async fn insert_synthetic(pool: &Pool, event: &UpstreamEvent, origin: &str) -> Result<EventId> {
    match insert_all(pool, std::slice::from_ref(event), origin).await?.pop() {
        Some(Stored::Inserted(id)) => Ok(id),
        other => Err(crate::Error::Corrupt(format!("synthetic event not stored: {other:?}"))),
    }
}

/// Stores several events in one statement (one commit), each as [`insert`] would, and
/// answers for each in order.
///
/// `events` may be the events themselves or anything holding one (a caller's own
/// record of what to do once its event is stored).
pub async fn insert_all<E: Borrow<UpstreamEvent> + Sync>(
    pool: &Pool,
    events: &[E],
    origin: &str,
) -> Result<Vec<Stored>> {
    let events: Vec<&UpstreamEvent> = events.iter().map(Borrow::borrow).collect();
    let client = pool.get().await?;
    const STORE_EVENTS: &str = "WITH input AS (
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
                                      $7::text[], $8::text[], $9::jsonb[])
                     WITH ORDINALITY AS i (id, organization_id, message_id, event_type, environment, occurred_at,
                                           actor, team, data, n)),
             ins AS (
                 INSERT INTO events (id, organization_id, message_id, event_type, environment, occurred_at, actor, team,
                     data, origin, routed_at)
                 SELECT i.id, i.organization_id, i.message_id, i.event_type, i.environment, i.occurred_at, i.actor,
                     i.team, i.data, $10::text, CASE WHEN $10::text IN ('upstream', 'system') THEN NULL ELSE now() END
                 FROM input i JOIN organizations o ON o.id = i.organization_id
                 ORDER BY i.n
                 ON CONFLICT (organization_id, message_id) DO NOTHING
                 RETURNING id)
             SELECT o.id IS NOT NULL, ins.id, prior.id, prior.routed_at IS NOT NULL
             FROM input i
             LEFT JOIN organizations o ON o.id = i.organization_id
             LEFT JOIN ins ON ins.id = i.id
             LEFT JOIN events prior ON prior.organization_id = i.organization_id AND prior.message_id = i.message_id
             ORDER BY i.n";
    let mut answers: Vec<Option<Stored>> = vec![None; events.len()];
    // The same key twice in one statement, or a concurrent insert of a key, can leave a
    // row seeing neither its own insert nor the other one; the next pass sees the
    // committed row.
    for _ in 0..3 {
        let open: Vec<usize> = (0..events.len()).filter(|&i| answers[i].is_none()).collect();
        if open.is_empty() {
            break;
        }
        let ids: Vec<String> = open.iter().map(|_| EventId::generate().to_string()).collect();
        let message_ids: Vec<String> =
            open.iter().zip(&ids).map(|(&i, id)| events[i].message_id.clone().unwrap_or_else(|| id.clone())).collect();
        let column = |get: fn(&UpstreamEvent) -> &str| open.iter().map(|&i| get(events[i])).collect::<Vec<_>>();
        let organizations = column(|e| e.organization.as_str());
        let event_types = column(|e| e.event_type.as_str());
        let environments = column(|e| e.environment.as_str());
        let occurred_at = open.iter().map(|&i| events[i].occurred_at).collect::<Vec<_>>();
        let actors = open.iter().map(|&i| events[i].actor.as_deref()).collect::<Vec<_>>();
        let teams = open.iter().map(|&i| events[i].team.as_deref()).collect::<Vec<_>>();
        let data = open.iter().map(|&i| &events[i].data).collect::<Vec<_>>();
        let rows = client
            .query_typed(
                STORE_EVENTS,
                &[
                    (&ids, Type::TEXT_ARRAY),
                    (&organizations, Type::TEXT_ARRAY),
                    (&message_ids, Type::TEXT_ARRAY),
                    (&event_types, Type::TEXT_ARRAY),
                    (&environments, Type::TEXT_ARRAY),
                    (&occurred_at, Type::TIMESTAMPTZ_ARRAY),
                    (&actors, Type::TEXT_ARRAY),
                    (&teams, Type::TEXT_ARRAY),
                    (&data, Type::JSONB_ARRAY),
                    (&origin, Type::TEXT),
                ],
            )
            .await
            .context("storing events")?;
        for (&i, row) in open.iter().zip(rows) {
            let inserted: Option<String> = row.get(1);
            let prior: Option<String> = row.get(2);
            answers[i] = if !row.get::<_, bool>(0) {
                Some(Stored::UnknownOrganization)
            } else if let Some(inserted) = inserted {
                Some(Stored::Inserted(parse_id(&inserted)?))
            } else if let Some(prior) = prior {
                Some(Stored::Duplicate {
                    id: parse_id(&prior)?,
                    routed: row.get::<_, Option<bool>>(3).unwrap_or(false),
                })
            } else {
                None
            };
        }
        if answers.iter().any(Option::is_none) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    answers
        .into_iter()
        .map(|answer| answer.ok_or_else(|| crate::Error::Corrupt("an event key was neither inserted nor found".into())))
        .collect()
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
