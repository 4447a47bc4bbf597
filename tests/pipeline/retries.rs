use std::time::Duration;

use hookline_bus::Bus;
use hookline_core::delivery::DeliveryStatus;
use hookline_telemetry::Settings;
use hookline_tests::{Receiver, Reply, Running, TestEnv, eventually};
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::json;

use crate::WAIT;

async fn delivery_status(env: &TestEnv) -> DeliveryStatus {
    env.scalar("SELECT status FROM deliveries", &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_twice_gets_three_attempts_spaced_by_the_policy() {
    let env = TestEnv::new().await; // retry delays 1s, 2s
    let receiver = Receiver::start().await;
    receiver.script("/hook", &[Reply::Status(503), Reply::Status(500)]);
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/hook")], &["job.created"])).await;
    let services = env.start();
    env.publish(json!({"type": "job.created", "organization": org.id, "data": {}})).await;

    let requests = receiver.wait_for("/hook", 3, WAIT).await;
    let first_gap = requests[1].at - requests[0].at;
    let second_gap = requests[2].at - requests[1].at;
    assert!(first_gap >= Duration::from_millis(950), "attempt 2 came {first_gap:?} after attempt 1, not after 1s");
    assert!(second_gap >= Duration::from_millis(1950), "attempt 3 came {second_gap:?} after attempt 2, not after 2s");
    assert!(eventually(WAIT, || async { delivery_status(&env).await == DeliveryStatus::Succeeded }).await);
    let client = env.pool.get().await.unwrap();
    let codes: Vec<Option<i32>> = client
        .query("SELECT status_code FROM attempts ORDER BY attempt_number", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(codes, vec![Some(503), Some(500), Some(200)]);
    let ids: Vec<_> = requests.iter().map(|r| r.header("webhook-id").unwrap().to_owned()).collect();
    assert!(ids.iter().all(|id| id == &ids[0]), "retries keep the message id");
    services.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_always_fails_gets_exactly_three_attempts_then_the_delivery_fails() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start().await;
    receiver.always("/hook", Reply::Status(500));
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/hook")], &["job.created"])).await;
    let services = env.start();
    env.publish(json!({"type": "job.created", "organization": org.id, "data": {}})).await;

    receiver.wait_for("/hook", 3, WAIT).await;
    assert!(eventually(WAIT, || async { delivery_status(&env).await == DeliveryStatus::Failed }).await);
    // Longer than the last delay: a fourth attempt would have arrived by now.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(receiver.requests("/hook").len(), 3);
    assert_eq!(env.scalar::<i64>("SELECT count(*) FROM attempts", &[]).await, 3);
    assert_eq!(env.scalar::<i32>("SELECT attempt_count FROM deliveries", &[]).await, 3);
    services.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_hangs_yields_a_timeout_attempt() {
    let env = TestEnv::with(&[("HOOKLINE__DELIVERY__TIMEOUT", "1s"), ("HOOKLINE__RETRY__DELAYS", "1h")]).await;
    let receiver = Receiver::start().await;
    receiver.always("/slow", Reply::Hang);
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/slow")], &["job.created"])).await;
    let services = env.start();
    env.publish(json!({"type": "job.created", "organization": org.id, "data": {}})).await;

    let recorded = eventually(WAIT, || async {
        env.scalar::<i64>("SELECT count(*) FROM attempts WHERE error_kind = 'timeout'", &[]).await == 1
    })
    .await;
    assert!(recorded, "a timeout attempt is recorded");
    let duration: i32 = env.scalar("SELECT duration_ms FROM attempts", &[]).await;
    assert!(duration >= 1000, "the attempt gave up after {duration} ms, before the 1s timeout");
    assert!(eventually(WAIT, || async { delivery_status(&env).await == DeliveryStatus::Retrying }).await);
    services.stop().await;
    env.cleanup().await;
}

/// Whether the broker has a queue of this name: a passive declaration fails (404) when
/// it does not, and creates nothing.
async fn exists(bus: &Bus, name: &str) -> bool {
    let channel = bus.connection().unwrap().create_channel().await.unwrap();
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    let found = channel.queue_declare(name.into(), passive, FieldTable::default()).await.is_ok();
    let _ = channel.close(200, "checked".into()).await;
    found
}

/// Declares a queue with arguments; RabbitMQ refuses (406) when they differ from the
/// queue's, which is how the test reads what the broker holds.
async fn redeclare(bus: &Bus, name: &str, ttl_ms: i64, dead_letter_exchange: &str) -> bool {
    let channel = bus.connection().unwrap().create_channel().await.unwrap();
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".to_owned().into()));
    arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl_ms));
    arguments.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(dead_letter_exchange.to_owned().into()));
    arguments.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString("job".to_owned().into()));
    arguments.insert("x-dead-letter-strategy".into(), AMQPValue::LongString("at-least-once".to_owned().into()));
    arguments.insert("x-overflow".into(), AMQPValue::LongString("reject-publish".to_owned().into()));
    let options = QueueDeclareOptions { durable: true, ..Default::default() };
    channel.queue_declare(name.into(), options, arguments).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_default_policy_declares_5m_and_10m_delay_queues_for_3_attempts() {
    let prefix = format!("hookline-test-{}", ulid::Ulid::new().to_string().to_lowercase());
    let amqp =
        std::env::var("HOOKLINE_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let settings = Settings::load_with(
        None,
        [("HOOKLINE__AMQP__PREFIX".to_owned(), prefix), ("HOOKLINE__AMQP__URL".to_owned(), amqp)],
    )
    .unwrap();
    let policy = settings.retry_policy().unwrap();
    assert_eq!(policy.max_attempts(), 3);
    let bus = Bus::open(
        settings.amqp_url(),
        &settings.amqp.prefix,
        "hookline-tests",
        policy.delays(),
        &tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap();
    let topology = &bus.topology;
    let (five, ten) = (Duration::from_secs(300), Duration::from_secs(600));
    assert_eq!(topology.delay_queue(five), format!("{}.retry.5m", settings.amqp.prefix));
    let exchange = topology.delivery_exchange();
    // They exist: declared by the services' start, not by the checks below.
    assert!(exists(&bus, &topology.delay_queue(five)).await, "the 5m delay queue was declared");
    assert!(exists(&bus, &topology.delay_queue(ten)).await, "the 10m delay queue was declared");
    assert!(exists(&bus, &topology.defer_queue()).await, "the defer queue was declared");
    let one = Duration::from_secs(60);
    assert!(!exists(&bus, &topology.delay_queue(one)).await, "no delay queue the policy does not use");
    assert!(redeclare(&bus, &topology.delay_queue(five), 300_000, &exchange).await, "5m queue has a 300000 ms TTL");
    assert!(redeclare(&bus, &topology.delay_queue(ten), 600_000, &exchange).await, "10m queue has a 600000 ms TTL");
    assert!(!redeclare(&bus, &topology.delay_queue(five), 60_000, &exchange).await, "the broker checks the TTL");
    assert!(!redeclare(&bus, &topology.delay_queue(ten), 600_000, "elsewhere").await, "and the dead-letter exchange");
    let channel = bus.connection().unwrap().create_channel().await.unwrap();
    topology.delete(&channel, &[five, ten]).await.unwrap();
}

/// Creates a failing delivery, waits until its retry is scheduled, calls `stop` on the
/// webhook, and checks that the waiting retry is dropped.
async fn stopping_a_webhook_drops_its_waiting_retry(delete: bool) {
    let env = TestEnv::with(&[("HOOKLINE__RETRY__DELAYS", "2s")]).await;
    let receiver = Receiver::start().await;
    receiver.always("/hook", Reply::Status(500));
    let org = env.organization().await;
    let webhook = env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/hook")], &["job.created"])).await;
    let services = env.start();
    env.publish(json!({"type": "job.created", "organization": org.id, "data": {}})).await;

    receiver.wait_for("/hook", 1, WAIT).await;
    assert!(eventually(WAIT, || async { delivery_status(&env).await == DeliveryStatus::Retrying }).await);
    let stopped = if delete {
        hookline_store::repo::webhooks::changes::soft_delete(&env.pool, &org.id, &webhook.id).await.unwrap()
    } else {
        hookline_store::repo::webhooks::changes::deactivate(&env.pool, &org.id, &webhook.id).await.unwrap()
    };
    assert!(stopped);
    assert!(
        eventually(WAIT, || async { delivery_status(&env).await == DeliveryStatus::Failed }).await,
        "the waiting retry closed"
    );
    assert_eq!(receiver.requests("/hook").len(), 1, "no attempt after the webhook stopped");
    assert_eq!(env.scalar::<i64>("SELECT count(*) FROM attempts", &[]).await, 1);
    services.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivating_a_webhook_drops_its_waiting_retry() {
    stopping_a_webhook_drops_its_waiting_retry(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_webhook_drops_its_waiting_retry() {
    stopping_a_webhook_drops_its_waiting_retry(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_on_429_and_503_pushes_the_next_attempt_back() {
    let env = TestEnv::with(&[("HOOKLINE__RETRY__DELAYS", "1s,1s")]).await;
    let receiver = Receiver::start().await;
    // 429 asking for 2 s (delay-seconds), then 503 asking for 3 s (HTTP date), then 200.
    receiver.script("/hook", &[Reply::RetryAfter(429, 2, false), Reply::RetryAfter(503, 3, true)]);
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/hook")], &["job.created"])).await;
    let services = env.start();
    env.publish(json!({"type": "job.created", "organization": org.id, "data": {}})).await;

    let requests = receiver.wait_for("/hook", 3, WAIT).await;
    let (first_gap, second_gap) = (requests[1].at - requests[0].at, requests[2].at - requests[1].at);
    assert!(first_gap >= Duration::from_millis(1950), "attempt 2 came {first_gap:?} after a 429 asking for 2 s");
    // The date has one-second precision, so it asks for 2 to 3 s from when it was written.
    assert!(second_gap >= Duration::from_millis(1950), "attempt 3 came {second_gap:?} after a 503 asking for ~3 s");
    assert!(eventually(WAIT, || async { delivery_status(&env).await == DeliveryStatus::Succeeded }).await);
    services.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhooks_own_policy_of_60_seconds_three_times_makes_four_attempts_a_minute_apart() {
    // 004: "auto retry to send the request 3 times (each time separated by 60s)". The
    // deployment's own delays are 1 s and 2 s: only the webhook's policy can space the
    // attempts a minute apart, through a delay queue no configuration declares. The
    // endpoint's circuit is kept shut: the ping's and the event's failures would open it
    // after five and park the last attempts behind its probes, which is not this story.
    let running = Running::start(&[("HOOKLINE__DELIVERY__CIRCUIT_OPEN_AFTER", "100")]).await;
    let Running { env, receiver, api, org, .. } = &running;
    receiver.always("/hook", Reply::Status(500));
    let minute = env.bus.topology.delay_queue(Duration::from_secs(60));
    assert!(!exists(&env.bus, &minute).await, "no 1m delay queue before the webhook needs one");
    let (status, created) = api
        .call(
            "POST",
            "/v1/webhooks",
            Some(&org.api_key),
            Some(json!({"name": "inspections", "active": true, "events": ["job.created"],
                "endpoints": [{"url": receiver.url("/hook")}], "retry_policy": {"delays": ["60s", "60s", "60s"]}})),
        )
        .await;
    assert_eq!((status, created["retry_delays_ms"].clone()), (201, json!([60_000, 60_000, 60_000])), "{created}");
    receiver.wait_for("/hook", 1, WAIT).await; // the activation ping fails too
    env.publish(json!({"type": "job.created", "organization": org.id, "data": {}})).await;

    let four_minutes = Duration::from_secs(4 * 60);
    let attempts: Vec<_> = receiver
        .wait_for("/hook", 8, four_minutes)
        .await
        .into_iter()
        .filter(|request| request.json()["eventCode"] == "job.created")
        .collect();
    assert_eq!(attempts.len(), 4, "an attempt and three retries");
    for pair in attempts.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(59_900), "a retry came {gap:?} after the attempt before it");
    }
    assert!(exists(&env.bus, &minute).await, "the scheduler declared the 1m delay queue on demand");
    let failed = eventually(WAIT, || async {
        let client = env.pool.get().await.unwrap();
        let row = client
            .query_one(
                "SELECT d.status, d.attempt_count FROM deliveries d JOIN events e ON e.id = d.event_id
                 WHERE e.event_type = 'job.created'",
                &[],
            )
            .await
            .unwrap();
        (row.get::<_, DeliveryStatus>(0), row.get::<_, i32>(1)) == (DeliveryStatus::Failed, 4)
    })
    .await;
    assert!(failed, "the delivery failed after its fourth attempt");
    running.stop().await;
}
