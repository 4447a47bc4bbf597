//! What routers and workers keep of webhooks, endpoints and credentials in memory: kept
//! while nothing changes, dropped when a change is notified, and never trusted while the
//! listening connection is down.

use hookline_core::Environment;
use hookline_core::ids::{DeliveryId, OrganizationId};
use hookline_store::repo::deliveries;
use hookline_store::repo::events;
use hookline_store::repo::jobs::{self, TargetCache};
use hookline_store::repo::webhooks::{RoutableCache, changes, routing};
use hookline_store::{ConfigWatch, config_watch};
use hookline_tests::{TestEnv, eventually};

use crate::WAIT;
use crate::batching::{event, inserted, live_webhook};

/// A webhook with one endpoint at `url` and one delivery to it.
async fn one_delivery(env: &TestEnv, organization: &OrganizationId, url: &str) -> DeliveryId {
    env.create_webhook(TestEnv::webhook(organization, &[url.to_owned()], &["job.created"])).await;
    let stored = events::insert(&env.pool, &event(organization, None)).await.unwrap();
    let webhook = live_webhook(env, organization).await;
    let target = [(webhook.id.clone(), webhook.endpoints[0].clone())];
    deliveries::create_for_event(&env.pool, &inserted(&stored), organization, &target).await.unwrap().remove(0)
}

/// Runs `sql` with triggers off, as a change that bypasses them would: nothing notifies.
async fn change_silently(env: &TestEnv, sql: &str) {
    env.pool
        .get()
        .await
        .unwrap()
        .batch_execute(&format!("BEGIN; SET LOCAL session_replication_role = replica; {sql}; COMMIT"))
        .await
        .unwrap();
}

async fn execute(env: &TestEnv, sql: &str) {
    env.pool.get().await.unwrap().batch_execute(sql).await.unwrap();
}

async fn loaded_url(env: &TestEnv, cache: &TargetCache, delivery: &DeliveryId) -> String {
    let contexts = jobs::job_contexts(&env.pool, &env.secrets, cache, std::slice::from_ref(delivery)).await.unwrap();
    contexts[0].as_ref().unwrap().target.url.clone()
}

/// Loads the delivery until its URL is `wanted`; the URL it last loaded if it never is.
async fn until_loaded(env: &TestEnv, cache: &TargetCache, delivery: &DeliveryId, wanted: &str) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let seen = loaded_url(env, cache, delivery).await;
        if seen == wanted {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(seen);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_targets_are_kept_until_a_change_is_notified() {
    let env = TestEnv::new().await;
    let org = env.organization().await;
    let delivery = one_delivery(&env, &org.id, "http://127.0.0.1:9/first").await;
    let watch = ConfigWatch::listen(env.settings.database_url()).unwrap();
    watch.until_listening().await;
    let cache = TargetCache::new(watch, config_watch::MAX_AGE, config_watch::CAPACITY);
    assert_eq!(loaded_url(&env, &cache, &delivery).await, "http://127.0.0.1:9/first");

    // A change no trigger reports is not seen: the target came from memory.
    change_silently(&env, "UPDATE endpoints SET url = 'http://127.0.0.1:9/unseen'").await;
    assert_eq!(loaded_url(&env, &cache, &delivery).await, "http://127.0.0.1:9/first");

    // A change made as the API makes it is seen once its notification arrives.
    execute(&env, "UPDATE endpoints SET url = 'http://127.0.0.1:9/second'").await;
    until_loaded(&env, &cache, &delivery, "http://127.0.0.1:9/second").await.unwrap();

    // Deactivating the webhook reaches waiting jobs the same way.
    let webhook = live_webhook(&env, &org.id).await;
    assert!(changes::deactivate(&env.pool, &org.id, &webhook.id).await.unwrap());
    let disabled = eventually(WAIT, || async {
        let contexts = jobs::job_contexts(&env.pool, &env.secrets, &cache, std::slice::from_ref(&delivery)).await;
        !contexts.unwrap()[0].as_ref().unwrap().target.webhook_enabled
    })
    .await;
    assert!(disabled, "the deactivated webhook's delivery still loads as enabled");
    drop(cache);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routable_webhooks_are_kept_until_a_webhook_changes() {
    let env = TestEnv::new().await;
    let org = env.organization().await;
    let live = (org.id.clone(), Environment::Live);
    let test = (org.id.clone(), Environment::Test);
    env.create_webhook(TestEnv::webhook(&org.id, &["http://127.0.0.1:9/a".to_owned()], &["job.created"])).await;
    let watch = ConfigWatch::listen(env.settings.database_url()).unwrap();
    watch.until_listening().await;
    let cache = RoutableCache::new(watch, config_watch::MAX_AGE, config_watch::CAPACITY);
    let count = |scope: &(OrganizationId, Environment)| {
        let scope = scope.clone();
        let (pool, cache) = (&env.pool, &cache);
        async move {
            let found = routing::routable_cached(pool, cache, std::slice::from_ref(&scope)).await.unwrap();
            found[&scope].len()
        }
    };
    assert_eq!((count(&live).await, count(&test).await), (1, 0), "one live webhook, none in test");

    // Deactivated without a notification: still routed to, from memory; the empty test
    // scope is kept too.
    change_silently(&env, "UPDATE webhooks SET active = false").await;
    assert_eq!((count(&live).await, count(&test).await), (1, 0));

    // A new webhook, created as the API creates it, empties the cache: the silent
    // deactivation now shows as well.
    let mut input = TestEnv::webhook(&org.id, &["http://127.0.0.1:9/b".to_owned()], &["job.created"]);
    input.test = true;
    env.create_webhook(input).await;
    let changed = eventually(WAIT, || async { (count(&live).await, count(&test).await) == (0, 1) }).await;
    assert!(changed, "live and test webhooks routed to: {:?}", (count(&live).await, count(&test).await));
    drop(cache);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_kept_from_memory_while_the_listening_connection_is_down() {
    let env = TestEnv::new().await;
    let org = env.organization().await;
    let delivery = one_delivery(&env, &org.id, "http://127.0.0.1:9/first").await;
    let watch = ConfigWatch::listen(env.settings.database_url()).unwrap();
    watch.until_listening().await;
    let cache = TargetCache::new(watch.clone(), config_watch::MAX_AGE, config_watch::CAPACITY);
    assert_eq!(loaded_url(&env, &cache, &delivery).await, "http://127.0.0.1:9/first");
    change_silently(&env, "UPDATE endpoints SET url = 'http://127.0.0.1:9/missed'").await;

    // The listener loses its connection: a change could now go unheard, so nothing kept
    // before is used, during the outage or after it.
    execute(
        &env,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND query LIKE 'LISTEN hookline_config%'",
    )
    .await;
    until_loaded(&env, &cache, &delivery, "http://127.0.0.1:9/missed").await.unwrap();

    // It listens again, and changes are heard again.
    assert!(eventually(WAIT, || async { watch.current().is_some() }).await, "the watch never listened again");
    assert_eq!(loaded_url(&env, &cache, &delivery).await, "http://127.0.0.1:9/missed");
    execute(&env, "UPDATE endpoints SET url = 'http://127.0.0.1:9/after'").await;
    until_loaded(&env, &cache, &delivery, "http://127.0.0.1:9/after").await.unwrap();
    drop((cache, watch));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_changes_a_delivery_would_see_notify() {
    let env = TestEnv::new().await;
    let org = env.organization().await;
    one_delivery(&env, &org.id, "http://127.0.0.1:9/first").await;
    let client = env.pool.get().await.unwrap();
    // Counts this transaction's calls of the trigger function, without waiting for any
    // notification to arrive.
    client.batch_execute("BEGIN; SET LOCAL track_functions = 'pl'").await.unwrap();
    let calls_after = |sql: &'static str| {
        let client = &client;
        async move {
            client.batch_execute(sql).await.unwrap();
            let row = client
                .query_one("SELECT pg_stat_get_xact_function_calls('hookline_config_changed'::regproc)", &[])
                .await
                .unwrap();
            row.get::<_, Option<i64>>(0).unwrap_or(0)
        }
    };
    // What recording deliveries does to endpoints.
    assert_eq!(calls_after("UPDATE endpoints SET consecutive_failures = consecutive_failures + 1").await, 0);
    assert_eq!(calls_after("UPDATE endpoints SET consecutive_failures = 0").await, 0);
    // What the API does.
    assert_eq!(calls_after("UPDATE endpoints SET headers = '{\"x-extra\": \"1\"}'").await, 1);
    assert_eq!(calls_after("UPDATE webhooks SET retry_delays_ms = '{1000}'").await, 2);
    assert_eq!(calls_after("UPDATE credentials SET name = 'unchanged rows still notify'").await, 3);
    client.batch_execute("ROLLBACK").await.unwrap();
    drop(client);
    env.cleanup().await;
}
