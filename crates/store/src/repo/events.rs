//! Accepted upstream events.

use std::borrow::Borrow;

use deadpool_postgres::Pool;
use hookline_core::envelope::{Origin, UpstreamEvent};
use hookline_core::environment::Environment;
use hookline_core::ids::{EventId, OrganizationId};
use tokio_postgres::types::Type;

use crate::error::{QueryContext as _, Result};

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
    let mut stored = insert_all(pool, std::slice::from_ref(event), Origin::Upstream).await?;
    stored.pop().ok_or_else(|| crate::Error::Corrupt("an event insert answered nothing".into()))
}

/// Stores an event made by hookline itself: `ping` and `test` events are stored as
/// already routed (they go to one webhook only); `system` events are routed normally.
pub async fn insert_synthetic(pool: &Pool, event: &UpstreamEvent, origin: Origin) -> Result<EventId> {
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
    origin: Origin,
) -> Result<Vec<Stored>> {
    let events: Vec<&UpstreamEvent> = events.iter().map(Borrow::borrow).collect();
    let client = pool.get().await?;
    let mut answers: Vec<Option<Stored>> = vec![None; events.len()];
    // The same key twice in one statement, or a concurrent insert of a key, can leave a
    // row seeing neither its own insert nor the other one; the next pass sees the
    // committed row.
    for _ in 0..3 {
        let open: Vec<&UpstreamEvent> =
            (0..events.len()).filter(|&i| answers[i].is_none()).map(|i| events[i]).collect();
        if open.is_empty() {
            break;
        }
        let stored = store(&client, &open, origin).await?;
        let mut stored = stored.into_iter();
        for answer in answers.iter_mut().filter(|answer| answer.is_none()) {
            *answer = stored.next().flatten();
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

/// Stores the events of one pass, each once per (organisation, idempotency key): an
/// event with a key of its own is stored only if its key is new (V12), one without is
/// keyed by its own id and always new.
const STORE_EVENTS: &str = "WITH input AS (
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
                              $7::text[], $8::text[], $9::json[])
             WITH ORDINALITY AS i (id, organization_id, message_id, event_type, environment, occurred_at,
                                   actor, team, data, n)),
     known AS (
         SELECT i.* FROM input i JOIN organizations o ON o.id = i.organization_id),
     keyed AS (
         INSERT INTO event_keys (organization_id, message_id, event_id)
         SELECT k.organization_id, k.message_id, k.id FROM known k WHERE k.message_id <> k.id
         ORDER BY k.n
         ON CONFLICT (organization_id, message_id) DO NOTHING
         RETURNING event_id),
     ins AS (
         INSERT INTO events (id, organization_id, message_id, event_type, environment, occurred_at, actor, team,
             data, origin, routed_at)
         SELECT k.id, k.organization_id, k.message_id, k.event_type, k.environment, k.occurred_at, k.actor,
             k.team, k.data, $10::text, CASE WHEN $11 THEN NULL ELSE now() END
         FROM known k
         WHERE k.message_id = k.id OR k.id IN (SELECT event_id FROM keyed)
         ORDER BY k.n
         RETURNING id)
     SELECT o.id IS NOT NULL AS organization_exists, ins.id AS inserted, key.event_id AS prior
     FROM input i
     LEFT JOIN organizations o ON o.id = i.organization_id
     LEFT JOIN ins ON ins.id = i.id
     LEFT JOIN event_keys key ON key.organization_id = i.organization_id AND key.message_id = i.message_id
     ORDER BY i.n";

/// Whether each of the events stored before under a key seen again has been routed.
///
/// Asked apart from [`STORE_EVENTS`], only when a pass met such keys: a join to events
/// there would be planned over every daily partition on every statement, and repeated
/// keys are rare.
const PRIOR_ROUTED: &str = "SELECT id, routed_at IS NOT NULL AS routed FROM events WHERE id = ANY($1::text[])";

/// One pass of [`insert_all`]: what became of each event, `None` for one whose key it
/// could see neither inserted nor stored before (the next pass will).
async fn store(
    client: &deadpool_postgres::Client,
    events: &[&UpstreamEvent],
    origin: Origin,
) -> Result<Vec<Option<Stored>>> {
    let ids: Vec<EventId> = events.iter().map(|_| EventId::generate()).collect();
    let message_ids: Vec<&str> =
        events.iter().zip(&ids).map(|(event, id)| event.message_id.as_deref().unwrap_or(id.as_str())).collect();
    let organizations: Vec<&OrganizationId> = events.iter().map(|event| &event.organization).collect();
    let event_types: Vec<&str> = events.iter().map(|event| event.event_type.as_str()).collect();
    let environments: Vec<Environment> = events.iter().map(|event| event.environment).collect();
    let occurred_at: Vec<_> = events.iter().map(|event| event.occurred_at).collect();
    let actors: Vec<_> = events.iter().map(|event| event.actor.as_deref()).collect();
    let teams: Vec<_> = events.iter().map(|event| event.team.as_deref()).collect();
    let data: Vec<_> = events.iter().map(|event| &event.data).collect();
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
                (&data, Type::JSON_ARRAY),
                (&origin, Type::TEXT),
                (&origin.is_routed(), Type::BOOL),
            ],
        )
        .await
        .context("storing events")?;
    let mut priors = Vec::new();
    let mut answers = Vec::with_capacity(rows.len());
    for row in &rows {
        if !row.try_get::<_, bool>("organization_exists")? {
            answers.push(Some(Stored::UnknownOrganization));
        } else if let Some(inserted) = row.try_get::<_, Option<EventId>>("inserted")? {
            answers.push(Some(Stored::Inserted(inserted)));
        } else if let Some(prior) = row.try_get::<_, Option<EventId>>("prior")? {
            priors.push(prior.clone());
            answers.push(Some(Stored::Duplicate { id: prior, routed: false }));
        } else {
            answers.push(None);
        }
    }
    if !priors.is_empty() {
        mark_prior_routed(client, &priors, &mut answers).await?;
    }
    Ok(answers)
}

/// Fills in whether each duplicate's prior event (one of `priors`) has been routed.
async fn mark_prior_routed(
    client: &deadpool_postgres::Client,
    priors: &[EventId],
    answers: &mut [Option<Stored>],
) -> Result<()> {
    let found = client
        .query_typed(PRIOR_ROUTED, &[(&priors, Type::TEXT_ARRAY)])
        .await
        .context("looking up events stored before under the same keys")?;
    let mut routed = std::collections::HashMap::new();
    for row in &found {
        routed.insert(row.try_get::<_, EventId>("id")?, row.try_get::<_, bool>("routed")?);
    }
    for answer in answers {
        if let Some(Stored::Duplicate { id, routed: prior_routed }) = answer {
            match routed.get(id) {
                Some(&was_routed) => *prior_routed = was_routed,
                // A key whose event retention removed between the two statements: the
                // next pass finds the key gone too and stores the event anew.
                None => *answer = None,
            }
        }
    }
    Ok(())
}

/// An event accepted but not routed for a while (its route message was lost).
#[derive(Debug, Clone)]
pub struct Unrouted {
    /// The event.
    pub id: EventId,
    /// Owner.
    pub organization_id: OrganizationId,
    /// Catalog code.
    pub event_type: String,
    /// Live or test.
    pub environment: Environment,
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
    rows.iter()
        .map(|row| {
            Ok(Unrouted {
                id: row.try_get("id")?,
                organization_id: row.try_get("organization_id")?,
                event_type: row.try_get("event_type")?,
                environment: row.try_get("environment")?,
                actor: row.try_get("actor")?,
                team: row.try_get("team")?,
            })
        })
        .collect()
}
