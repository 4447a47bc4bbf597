//! The statements that store, route and record many messages at once (group commit),
//! against the real database: each item gets its own answer, as if stored alone.

use std::collections::BTreeMap;

use chrono::Utc;
use hookline_core::Environment;
use hookline_core::delivery::Trigger;
use hookline_core::envelope::{Origin, UpstreamEvent};
use hookline_core::ids::{DeliveryId, EventId, OrganizationId};
use hookline_core::lifecycle::{FailedBecause, Transition};
use hookline_core::payload::Payload;
use hookline_store::repo::deliveries::{self, AttemptRecord, Settle};
use hookline_store::repo::events::{self, Stored};
use hookline_store::repo::jobs::{self, TargetCache};
use hookline_store::repo::webhooks::{self, routing};
use hookline_store::{ConfigWatch, config_watch};
use hookline_tests::TestEnv;
use serde_json::json;

pub(crate) fn event(organization: &OrganizationId, key: Option<&str>) -> UpstreamEvent {
    UpstreamEvent {
        message_id: key.map(str::to_owned),
        event_type: "job.created".into(),
        organization: organization.clone(),
        environment: Environment::Live,
        occurred_at: Utc::now(),
        actor: None,
        team: None,
        data: Payload::from_value(&json!({"key": key})).unwrap(),
    }
}

fn attempt(delivery: &DeliveryId, number: u32, status: u16) -> AttemptRecord {
    AttemptRecord {
        delivery_id: delivery.clone(),
        attempt_number: number,
        trigger: Trigger::Scheduled,
        started_at: Utc::now(),
        duration_ms: 3,
        request_method: "POST".into(),
        request_url: "http://127.0.0.1:9/hook".into(),
        request_headers: BTreeMap::from([("content-type".to_owned(), "application/json".to_owned())]),
        status_code: Some(status),
        response_headers: Some(BTreeMap::new()),
        response_body: Some(String::new()),
        response_body_truncated: false,
        error_kind: (status >= 300).then_some(hookline_core::delivery::ErrorKind::HttpStatus),
        error_message: (status >= 300).then(|| format!("receiver answered {status}")),
    }
}

/// The organisation's one live webhook, as the router reads it.
pub(crate) async fn live_webhook(env: &TestEnv, organization: &OrganizationId) -> webhooks::RoutableWebhook {
    let live = (organization.clone(), Environment::Live);
    routing::routable(&env.pool, std::slice::from_ref(&live)).await.unwrap().remove(&live).unwrap().remove(0)
}

/// A cache that never keeps anything: every load reads the tables.
fn uncached() -> TargetCache {
    TargetCache::new(ConfigWatch::unwatched(), config_watch::MAX_AGE, config_watch::CAPACITY)
}

pub(crate) fn inserted(stored: &Stored) -> EventId {
    match stored {
        Stored::Inserted(id) => id.clone(),
        other => panic!("expected a new event, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stored_together_each_get_their_own_answer() {
    let env = TestEnv::new().await;
    let org = env.organization().await;
    let stranger = OrganizationId::generate();
    let batch = [event(&org.id, Some("k1")), event(&org.id, Some("k1")), event(&stranger, None), event(&org.id, None)];

    let stored = events::insert_all(&env.pool, &batch, Origin::Upstream).await.unwrap();

    let first = inserted(&stored[0]);
    assert_eq!(stored[1], Stored::Duplicate { id: first, routed: false }, "the same key twice in one batch");
    assert_eq!(stored[2], Stored::UnknownOrganization);
    inserted(&stored[3]);
    assert_eq!(env.scalar::<i64>("SELECT count(*) FROM events", &[]).await, 2);
    env.cleanup().await;
}

/// What the database refused is logged with its SQLSTATE and message, not only the
/// driver's "db error" (the store is called directly here: the doors refuse a NUL first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_statement_says_why_with_its_sqlstate() {
    let env = TestEnv::new().await;
    let org = env.organization().await;
    let mut poisoned = event(&org.id, None);
    poisoned.actor = Some("a\u{0}b".into());
    let err = events::insert_all(&env.pool, &[poisoned], Origin::Upstream).await.unwrap_err();
    let said = err.to_string();
    assert!(said.contains("22021") && said.contains("storing events"), "{said}");
    assert!(!err.is_unavailable(), "a refused statement is not an outage: {said}");
    // A refused value is the message's fault: it is rejected, never retried.
    assert!(err.is_refused_value(), "{said}");
    let refusal = hookline_service::Error::from(err).refusal().expect("a refused value is a rejection");
    assert_eq!(refusal.reason, hookline_core::envelope::RejectReason::Unstorable);
    let other = hookline_store::Error::Config("unusable".into());
    assert!(hookline_service::Error::from(other).refusal().is_none(), "only a refused value is a rejection");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_created_together_mark_every_event_routed_once() {
    let env = TestEnv::new().await;
    let org = env.organization().await;
    let urls = ["http://127.0.0.1:9/a".to_owned(), "http://127.0.0.1:9/b".to_owned()];
    env.create_webhook(TestEnv::webhook(&org.id, &urls, &["job.created"])).await;
    let stored =
        events::insert_all(&env.pool, &[event(&org.id, None), event(&org.id, None)], Origin::Upstream).await.unwrap();
    let (first, second) = (inserted(&stored[0]), inserted(&stored[1]));

    let live = (org.id.clone(), Environment::Live);
    let test = (org.id.clone(), Environment::Test);
    let mut routable = routing::routable(&env.pool, &[live.clone(), test.clone()]).await.unwrap();
    assert!(routable[&test].is_empty(), "the organisation has no test webhooks");
    let webhook = routable.remove(&live).unwrap().remove(0);
    let targets: Vec<_> = webhook.endpoints.iter().map(|endpoint| (webhook.id.clone(), endpoint.clone())).collect();
    let plan = [(first.clone(), org.id.clone(), targets.clone()), (second.clone(), org.id.clone(), Vec::new())];

    let created = deliveries::create_for_events(&env.pool, &plan).await.unwrap();
    assert_eq!(created.iter().map(|c| c.as_ref().map(|r| r.deliveries.len())).collect::<Vec<_>>(), [Some(2), Some(0)]);
    let unrouted: i64 = env.scalar("SELECT count(*) FROM events WHERE routed_at IS NULL", &[]).await;
    assert_eq!(unrouted, 0, "an event with no targets is routed too");
    let again = deliveries::create_for_events(&env.pool, &plan).await.unwrap();
    let again: Vec<_> = again.iter().map(|c| c.as_ref().map(|r| r.deliveries.len())).collect();
    assert_eq!(again, [Some(0), Some(0)], "a repeated route creates nothing");
    assert_eq!(env.scalar::<i64>("SELECT count(*) FROM deliveries", &[]).await, 2);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_created_only_for_events_stored_under_the_organisation_named() {
    let env = TestEnv::new().await;
    let (org, other) = (env.organization().await, env.organization().await);
    let urls = ["http://127.0.0.1:9/a".to_owned()];
    env.create_webhook(TestEnv::webhook(&org.id, &urls, &["job.created"])).await;
    env.create_webhook(TestEnv::webhook(&other.id, &urls, &["job.created"])).await;
    let stored = events::insert(&env.pool, &event(&org.id, None)).await.unwrap();
    let known = inserted(&stored);
    let scopes = [(org.id.clone(), Environment::Live), (other.id.clone(), Environment::Live)];
    let mut routable = routing::routable(&env.pool, &scopes).await.unwrap();
    let targets_of = |webhook: webhooks::RoutableWebhook| vec![(webhook.id.clone(), webhook.endpoints[0].clone())];
    let ours = targets_of(routable.remove(&scopes[0]).unwrap().remove(0));
    let theirs = targets_of(routable.remove(&scopes[1]).unwrap().remove(0));
    let plan = [
        // An event that was never stored.
        (EventId::generate(), org.id.clone(), ours.clone()),
        // Our event, named as the other organisation's, to its webhook.
        (known.clone(), other.id.clone(), theirs),
        // Our event, twice in one call.
        (known.clone(), org.id.clone(), ours.clone()),
        (known.clone(), org.id.clone(), ours),
    ];

    let created = deliveries::create_for_events(&env.pool, &plan).await.unwrap();
    let counts: Vec<_> = created.iter().map(|c| c.as_ref().map(|r| r.deliveries.len())).collect();
    assert_eq!(counts, [None, None, Some(1), Some(0)]);
    let made: Vec<String> = env
        .pool
        .get()
        .await
        .unwrap()
        .query("SELECT organization_id FROM deliveries WHERE event_id = $1", &[&known])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(made, [org.id.to_string()], "one delivery, to our own webhook");
    let error = deliveries::create_for_event(&env.pool, &EventId::generate(), &org.id, &[]).await.unwrap_err();
    assert!(matches!(error, hookline_store::Error::UnknownEvent(_)), "{error}");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_loaded_and_attempts_recorded_together_each_answer_for_their_delivery() {
    let env = TestEnv::new().await;
    let org = env.organization().await;
    let urls = ["http://127.0.0.1:9/a".to_owned(), "http://127.0.0.1:9/b".to_owned()];
    env.create_webhook(TestEnv::webhook(&org.id, &urls, &["job.created"])).await;
    let stored = events::insert(&env.pool, &event(&org.id, None)).await.unwrap();
    let webhook = live_webhook(&env, &org.id).await;
    let targets: Vec<_> = webhook.endpoints.iter().map(|endpoint| (webhook.id.clone(), endpoint.clone())).collect();
    let created = deliveries::create_for_event(&env.pool, &inserted(&stored), &org.id, &targets).await.unwrap();
    let (a, b) = (created[0].clone(), created[1].clone());

    let contexts =
        jobs::job_contexts(&env.pool, &env.secrets, &uncached(), &[b.clone(), DeliveryId::generate(), a.clone()])
            .await
            .unwrap();
    let ids: Vec<_> = contexts.iter().map(|c| c.as_ref().map(|c| c.delivery_id.clone())).collect();
    assert_eq!(ids, [Some(b.clone()), None, Some(a.clone())]);

    // Two attempts of `a` in one call (an UPDATE changes a row once per statement), and
    // a repeat of an attempt already in the call.
    let retry = Transition::RetryAt { attempt: 2, delay: std::time::Duration::from_secs(1), at: Utc::now() };
    let settle = |delivery: &DeliveryId, attempts_before: u32, status: u16, transition: Transition| Settle {
        delivery_id: delivery.clone(),
        attempts_before,
        transition,
        attempt: Some(attempt(delivery, attempts_before + 1, status)),
    };
    let batch = [
        settle(&a, 0, 500, retry),
        settle(&b, 0, 200, Transition::Succeeded),
        settle(&a, 1, 200, Transition::Succeeded),
        settle(&b, 0, 200, Transition::Succeeded),
    ];
    let settled = deliveries::settle(&env.pool, &batch).await.unwrap();
    assert_eq!(settled.iter().map(|s| s.applied).collect::<Vec<_>>(), [true, true, true, false]);
    for (delivery, count) in [(&a, 2), (&b, 1)] {
        let (status, attempts): (String, i32) = {
            let client = env.pool.get().await.unwrap();
            let row = client
                .query_one("SELECT status::text, attempt_count FROM deliveries WHERE id = $1", &[delivery])
                .await
                .unwrap();
            (row.get(0), row.get(1))
        };
        assert_eq!((status.as_str(), attempts), ("succeeded", count), "delivery {delivery}");
    }
    assert_eq!(env.scalar::<i64>("SELECT count(*) FROM attempts", &[]).await, 3);
    env.cleanup().await;
}

/// The deliveries `count` events make to the organisation's one endpoint.
async fn deliveries_to_one_endpoint(env: &TestEnv, organization: &OrganizationId, count: usize) -> Vec<DeliveryId> {
    let webhook = live_webhook(env, organization).await;
    let target = [(webhook.id.clone(), webhook.endpoints[0].clone())];
    let mut created = Vec::new();
    for _ in 0..count {
        let event = inserted(&events::insert(&env.pool, &event(organization, None)).await.unwrap());
        created.extend(deliveries::create_for_event(&env.pool, &event, organization, &target).await.unwrap());
    }
    created
}

/// A delivery's status, attempts and next attempt time, and whether it is completed.
async fn delivery_row(env: &TestEnv, delivery: &DeliveryId) -> (String, i32, Option<chrono::DateTime<Utc>>, bool) {
    let client = env.pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT status::text, attempt_count, next_attempt_at, completed_at IS NOT NULL FROM deliveries WHERE id = $1",
            &[delivery],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transitions_persist_as_the_lifecycle_decided_them_and_only_on_the_state_they_were_decided_on() {
    let env = TestEnv::new().await;
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &["http://127.0.0.1:9/a".to_owned()], &["job.created"])).await;
    let Ok([retried, exhausted, closed, recovered]) =
        <[DeliveryId; 4]>::try_from(deliveries_to_one_endpoint(&env, &org.id, 4).await)
    else {
        panic!("four deliveries")
    };
    let at = Utc::now() + chrono::Duration::minutes(5);
    let retry = Transition::RetryAt { attempt: 2, delay: std::time::Duration::from_secs(300), at };
    let failed = Transition::Failed(FailedBecause::Exhausted);
    let settle = |delivery: &DeliveryId, attempts_before: u32, transition: Transition, status: Option<u16>| Settle {
        delivery_id: delivery.clone(),
        attempts_before,
        transition,
        attempt: status.map(|status| attempt(delivery, attempts_before + 1, status)),
    };
    let settled = deliveries::settle(
        &env.pool,
        &[
            settle(&retried, 0, retry, Some(503)),
            settle(&exhausted, 0, failed, Some(500)),
            settle(&closed, 0, Transition::Closed, None),
        ],
    )
    .await
    .unwrap();
    assert!(settled.iter().all(|s| s.applied), "{settled:?}");
    assert_eq!(
        settled.iter().map(|s| s.consecutive_failures).collect::<Vec<_>>(),
        [0, 1, 0],
        "only a final failure counts"
    );
    let (status, attempts, next, completed) = delivery_row(&env, &retried).await;
    assert_eq!((status.as_str(), attempts, completed), ("retrying", 1, false));
    assert_eq!(next.map(|n| n.timestamp_millis()), Some(at.timestamp_millis()), "the retry is due when decided");
    assert_eq!(delivery_row(&env, &exhausted).await, ("failed".to_owned(), 1, None, true));
    assert_eq!(delivery_row(&env, &closed).await, ("failed".to_owned(), 0, None, true), "closed without an attempt");
    assert_eq!(env.scalar::<i64>("SELECT count(*) FROM attempts WHERE delivery_id = $1", &[&closed]).await, 0);

    // A decision made on a state that has moved on changes nothing: `retried` has one
    // attempt recorded now, so closing it "with none made" is stale, as is its attempt 1
    // made again.
    let stale = deliveries::settle(&env.pool, &[settle(&retried, 0, Transition::Closed, None)]).await.unwrap();
    assert!(!stale[0].applied);
    let twice = deliveries::settle(&env.pool, &[settle(&retried, 0, Transition::Succeeded, Some(200))]).await.unwrap();
    assert!(!twice[0].applied, "attempt 1 recorded twice");
    assert_eq!(delivery_row(&env, &retried).await.0, "retrying");

    // An operator's failed attempt leaves a settled delivery as it was, attempt logged.
    let kept = deliveries::settle(&env.pool, &[settle(&exhausted, 1, Transition::Kept, Some(500))]).await.unwrap();
    assert!(kept[0].applied);
    assert_eq!(delivery_row(&env, &exhausted).await, ("failed".to_owned(), 2, None, true));

    // Another final failure to the endpoint makes two in a row; a success resets the run.
    let second = deliveries::settle(&env.pool, &[settle(&retried, 1, failed, Some(500))]).await.unwrap();
    assert_eq!(second[0].consecutive_failures, 2);
    deliveries::settle(&env.pool, &[settle(&recovered, 0, Transition::Succeeded, Some(204))]).await.unwrap();
    assert_eq!(env.scalar::<i32>("SELECT consecutive_failures FROM endpoints", &[]).await, 0);
    assert_eq!(delivery_row(&env, &recovered).await, ("succeeded".to_owned(), 1, None, true));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_connection_streams_many_rows_of_hookline_s_own_types_without_stalling() {
    // tokio-postgres looks up a result column's unknown type on the same connection
    // while the rows wait behind that lookup; with more rows than fit its buffers the
    // two wait for each other forever (rust-postgres#1348). The store's connections
    // know hookline's types before any statement streams them.
    let env = TestEnv::new().await;
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &["http://127.0.0.1:9/a".to_owned()], &["job.created"])).await;
    let webhook = live_webhook(&env, &org.id).await;
    bulk_deliveries(&env, &org.id, &webhook, 2000).await;
    let ids: Vec<DeliveryId> = {
        let client = env.pool.get().await.unwrap();
        client.query("SELECT id FROM deliveries", &[]).await.unwrap().iter().map(|row| row.get(0)).collect()
    };
    // A pool of its own: its one connection is new, and has looked nothing up yet.
    let pool = hookline_store::connect(env.settings.database_url(), 1).unwrap();
    let cache = uncached();
    let loading = jobs::job_contexts(&pool, &env.secrets, &cache, &ids);
    let loaded = tokio::time::timeout(std::time::Duration::from_secs(20), loading).await;
    let loaded = loaded.expect("loading 2,000 deliveries on a new connection stalled").unwrap();
    assert_eq!(loaded.iter().flatten().count(), 2000);
    // Every type the schema defines is one the connections learn first.
    let client = env.pool.get().await.unwrap();
    let defined: Vec<String> = client
        .query("SELECT typname::text FROM pg_type WHERE typnamespace = 'public'::regnamespace AND typtype = 'e'", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(defined.len(), 3, "{defined:?}");
    for name in defined {
        assert!(hookline_store::OWN_TYPES.contains(&format!("NULL::{name}")), "connections do not learn {name}");
    }
    env.cleanup().await;
}

/// Adds `count` events and a delivery of each to the webhook's first endpoint, in bulk.
async fn bulk_deliveries(env: &TestEnv, org: &OrganizationId, webhook: &webhooks::RoutableWebhook, count: usize) {
    env.pool
        .get()
        .await
        .unwrap()
        .batch_execute(&format!(
            "INSERT INTO events (id, organization_id, message_id, event_type, environment, occurred_at, data)
                 SELECT 'evt_01j' || lpad(g::text, 23, '0'), '{org}', 'bulk-' || g, 'job.created', 'live', now(), '{{}}'
                 FROM generate_series(1, {count}) g;
             INSERT INTO deliveries (id, event_id, endpoint_id, webhook_id, organization_id)
                 SELECT 'dlv_01j' || lpad(g::text, 23, '0'), 'evt_01j' || lpad(g::text, 23, '0'), '{endpoint}',
                     '{webhook}', '{org}'
                 FROM generate_series(1, {count}) g;",
            endpoint = webhook.endpoints[0],
            webhook = webhook.id,
        ))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_statements_planned_while_the_tables_were_empty_use_indexes_once_they_grow() {
    let env = TestEnv::new().await;
    let org = env.organization().await;
    let urls = ["http://127.0.0.1:9/a".to_owned()];
    env.create_webhook(TestEnv::webhook(&org.id, &urls, &["job.created"])).await;
    let stored = events::insert(&env.pool, &event(&org.id, None)).await.unwrap();
    let webhook = live_webhook(&env, &org.id).await;
    let target = [(webhook.id.clone(), webhook.endpoints[0].clone())];
    let delivery =
        deliveries::create_for_event(&env.pool, &inserted(&stored), &org.id, &target).await.unwrap().remove(0);
    // A batch as a busy worker loads it: the delivery and 99 others (that do not exist).
    let batch: Vec<DeliveryId> =
        std::iter::once(delivery.clone()).chain((0..99).map(|_| DeliveryId::generate())).collect();
    // One connection, so the statements it has cached are the ones measured below.
    let pool = hookline_store::connect(env.settings.database_url(), 1).unwrap();
    for _ in 0..10 {
        jobs::job_contexts(&pool, &env.secrets, &uncached(), &batch).await.unwrap();
    }
    // The tables grow by 20,000 events and deliveries, and nothing analyses them (as
    // with autovacuum off, or before it comes round).
    env.pool
        .get()
        .await
        .unwrap()
        .batch_execute(&format!(
            "INSERT INTO events (id, organization_id, message_id, event_type, environment, occurred_at, data)
                 SELECT 'evt_bulk_' || g, '{org}', 'bulk-' || g, 'job.created', 'live', now(), '{{}}'
                 FROM generate_series(1, 20000) g;
             INSERT INTO deliveries (id, event_id, endpoint_id, webhook_id, organization_id)
                 SELECT 'dlv_bulk_' || g, 'evt_bulk_' || g, '{endpoint}', '{webhook}', '{org}'
                 FROM generate_series(1, 20000) g;",
            org = org.id,
            endpoint = webhook.endpoints[0],
            webhook = webhook.id,
        ))
        .await
        .unwrap();
    let sequential_scans = || async {
        let client = pool.get().await.unwrap();
        // This connection's counts reach the shared statistics when its next statement ends.
        // Events are counted over their partitions, where the scans happen.
        client.execute("SELECT pg_stat_force_next_flush()", &[]).await.unwrap();
        let row = client
            .query_one(
                "SELECT pg_stat_get_numscans('deliveries'::regclass),
                     (SELECT sum(pg_stat_get_numscans(inhrelid))::int8 FROM pg_inherits
                      WHERE inhparent = 'events'::regclass)",
                &[],
            )
            .await
            .unwrap();
        (row.get::<_, i64>(0), row.get::<_, i64>(1))
    };
    let before = sequential_scans().await;
    // Ten deliveries of 20,000: an index lookup each, for deliveries and their events.
    for _ in 0..10 {
        let loaded = jobs::job_contexts(&pool, &env.secrets, &uncached(), &batch[..10]).await.unwrap();
        assert_eq!(loaded[0].as_ref().map(|job| &job.delivery_id), Some(&delivery));
    }
    assert_eq!(sequential_scans().await, before, "sequential scans of deliveries and events");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stored_in_one_statement_go_on_to_the_router_in_one_message() {
    use hookline_bus::codec::proto::RouteEvents;
    use lapin::options::BasicGetOptions;
    use prost::Message as _;

    let env = TestEnv::new().await;
    let org = env.organization().await;
    let metrics = hookline_telemetry::Metrics::new();
    let ingestor = hookline_ingest::Ingestor::new(
        env.pool.clone(),
        std::sync::Arc::new(env.settings.catalog().unwrap()),
        (env.bus.publisher.clone(), env.bus.topology.clone()),
        &env.settings.ingest,
        std::time::Duration::from_millis(20),
        metrics.clone(),
    );
    const EVENTS: usize = 40;
    let accepting: Vec<_> = (0..EVENTS)
        .map(|n| {
            let (ingestor, org) = (ingestor.clone(), org.id.clone());
            tokio::spawn(async move {
                let body = json!({"type": "job.created", "organization": org, "data": {"n": n}}).to_string();
                ingestor.accept(body.as_bytes(), Some("application/json"), None, false).await.unwrap()
            })
        })
        .collect();
    for accepted in accepting {
        assert!(!accepted.await.unwrap().duplicate);
    }

    let channel = env.bus.connection().unwrap().create_channel().await.unwrap();
    let queue = env.bus.topology.route_queue();
    let mut message_sizes = Vec::new();
    while let Some(message) = channel.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap()
    {
        message_sizes.push(RouteEvents::decode(message.delivery.data.as_slice()).unwrap().events.len());
    }
    message_sizes.sort_unstable();
    let rendered = metrics.render().await;
    let count = |line: &str| -> usize {
        let value = rendered.lines().find_map(|l| l.strip_prefix(line)).expect(line);
        value.trim().parse::<f64>().unwrap() as usize
    };
    let statements = count("hookline_batch_rows_count{statement=\"store_events\"}");
    assert_eq!(message_sizes.iter().sum::<usize>(), EVENTS, "every event went on once: {message_sizes:?}");
    assert!(statements < EVENTS, "the events were stored in batches ({statements} statements)");
    assert_eq!(message_sizes.len(), statements, "one route message per statement: {message_sizes:?}");
    env.cleanup().await;
}
