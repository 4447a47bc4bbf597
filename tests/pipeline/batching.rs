//! The statements that store, route and record many messages at once (group commit),
//! against the real database: each item gets its own answer, as if stored alone.

use std::collections::BTreeMap;

use chrono::Utc;
use hookline_core::Environment;
use hookline_core::envelope::UpstreamEvent;
use hookline_core::ids::{DeliveryId, EventId, OrganizationId};
use hookline_store::repo::deliveries::{self, AttemptRecord};
use hookline_store::repo::events::{self, Stored};
use hookline_store::repo::jobs::{self, TargetCache};
use hookline_store::repo::webhooks;
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
        data: json!({"key": key}),
    }
}

fn attempt(delivery: &DeliveryId, number: u32, status: u16) -> AttemptRecord {
    AttemptRecord {
        delivery_id: delivery.clone(),
        attempt_number: number,
        manual: false,
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
    webhooks::routable(&env.pool, std::slice::from_ref(&live)).await.unwrap().remove(&live).unwrap().remove(0)
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

    let stored = events::insert_all(&env.pool, &batch, "upstream").await.unwrap();

    let first = inserted(&stored[0]);
    assert_eq!(stored[1], Stored::Duplicate { id: first, routed: false }, "the same key twice in one batch");
    assert_eq!(stored[2], Stored::UnknownOrganization);
    inserted(&stored[3]);
    assert_eq!(env.scalar::<i64>("SELECT count(*) FROM events", &[]).await, 2);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_created_together_mark_every_event_routed_once() {
    let env = TestEnv::new().await;
    let org = env.organization().await;
    let urls = ["http://127.0.0.1:9/a".to_owned(), "http://127.0.0.1:9/b".to_owned()];
    env.create_webhook(TestEnv::webhook(&org.id, &urls, &["job.created"])).await;
    let stored =
        events::insert_all(&env.pool, &[event(&org.id, None), event(&org.id, None)], "upstream").await.unwrap();
    let (first, second) = (inserted(&stored[0]), inserted(&stored[1]));

    let live = (org.id.clone(), Environment::Live);
    let test = (org.id.clone(), Environment::Test);
    let mut routable = webhooks::routable(&env.pool, &[live.clone(), test.clone()]).await.unwrap();
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
    let mut routable = webhooks::routable(&env.pool, &scopes).await.unwrap();
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
        .query("SELECT organization_id FROM deliveries WHERE event_id = $1", &[&known.as_str()])
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
    let batch = [attempt(&a, 1, 500), attempt(&b, 1, 200), attempt(&a, 2, 200), attempt(&b, 1, 200)];
    let recorded = deliveries::record_attempts(&env.pool, &batch).await.unwrap();
    assert_eq!(recorded, [true, true, true, false]);
    for (delivery, count) in [(&a, 2), (&b, 1)] {
        let (status, attempts): (String, i32) = {
            let client = env.pool.get().await.unwrap();
            let row = client
                .query_one("SELECT status, attempt_count FROM deliveries WHERE id = $1", &[&delivery.as_str()])
                .await
                .unwrap();
            (row.get(0), row.get(1))
        };
        assert_eq!((status.as_str(), attempts), ("succeeded", count), "delivery {delivery}");
    }
    assert_eq!(env.scalar::<i64>("SELECT count(*) FROM attempts", &[]).await, 3);
    env.cleanup().await;
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
        client.execute("SELECT pg_stat_force_next_flush()", &[]).await.unwrap();
        let row = client
            .query_one(
                "SELECT pg_stat_get_numscans('deliveries'::regclass), pg_stat_get_numscans('events'::regclass)",
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
        env.settings.ingest.max_event_size,
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

    let channel = env.bus.connection.create_channel().await.unwrap();
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
