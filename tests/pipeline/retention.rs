//! Bounded tables: events, deliveries and attempts older than the window are removed
//! (attempts a day's partition at a time), those inside it stay, response bodies go
//! first, and a webhook's log history still reads across partitions.
//!
//! The clock is moved, not waited for: one delivery made by the pipeline today is copied
//! as if made on later days (ids are ULIDs, so an id says when its row was made and
//! which day's partition it lands in), and retention runs as it would weeks from now.

use chrono::{DateTime, Duration, Utc};
use hookline_store::repo::retention;
use hookline_tests::{Receiver, Reply, Running};
use serde_json::json;

use crate::WAIT;

/// Copies the pipeline's delivery of event `source` (its event, delivery and attempt) as
/// if made at `at`; answers the copy's delivery id.
async fn copy_at(running: &Running, source: &str, at: DateTime<Utc>) -> String {
    copy_straddling(running, source, at, at).await
}

/// [`copy_at`] with the event received at `received` and its delivery made at `at`.
async fn copy_straddling(running: &Running, source: &str, received: DateTime<Utc>, at: DateTime<Utc>) -> String {
    let client = running.env.pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT 'evt_' || hookline_ulid_floor($1) AS event, 'dlv_' || hookline_ulid_floor($2) AS delivery",
            &[&received, &at],
        )
        .await
        .unwrap();
    let (event, delivery): (String, String) = (row.get("event"), row.get("delivery"));
    client
        .execute(
            "INSERT INTO events (id, organization_id, message_id, event_type, environment, occurred_at, received_at,
                 actor, team, data, routed_at, origin)
             SELECT $1, organization_id, $1, event_type, environment, $3, $3, actor, team, data, $3, origin
             FROM events WHERE id = $2",
            &[&event, &source, &received],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO deliveries (id, event_id, endpoint_id, webhook_id, organization_id, status, attempt_count,
                 last_status_code, last_error_kind, created_at, updated_at, completed_at)
             SELECT $1, $2, endpoint_id, webhook_id, organization_id, status, attempt_count, last_status_code,
                 last_error_kind, $4, $4, $4
             FROM deliveries WHERE event_id = $3",
            &[&delivery, &event, &source, &at],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO attempts (delivery_id, attempt_number, trigger, started_at, duration_ms, request_method,
                 request_url, request_headers, status_code, response_headers, response_body, response_body_truncated,
                 error_kind, error_message)
             SELECT $1, attempt_number, trigger, $3, duration_ms, request_method, request_url, request_headers,
                 status_code, response_headers, response_body, response_body_truncated, error_kind, error_message
             FROM attempts WHERE delivery_id = (SELECT id FROM deliveries WHERE event_id = $2)",
            &[&delivery, &source, &at],
        )
        .await
        .unwrap();
    delivery
}

/// The table (partition) holding a delivery's attempts.
async fn partition_of(running: &Running, delivery: &str) -> String {
    running.env.scalar("SELECT tableoid::regclass::text FROM attempts WHERE delivery_id = $1", &[&delivery]).await
}

async fn count(running: &Running, sql: &str, delivery: &str) -> i64 {
    running.env.scalar(sql, &[&delivery]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_older_than_the_window_go_a_partition_at_a_time_and_the_history_reads_across_partitions() {
    let running = Running::start(&[]).await;
    running.receiver.always("/hook", Reply::Body(200, 100));
    let receiver: &Receiver = &running.receiver;
    let (status, webhook) = running
        .api
        .call(
            "POST",
            "/v1/webhooks",
            running.key(),
            Some(json!({"name": "kept", "events": ["job.created"], "active": true,
                "endpoints": [{"url": receiver.url("/hook")}]})),
        )
        .await;
    assert_eq!(status, 201, "{webhook}");
    // With an idempotency key of its own, which goes with the event.
    running
        .env
        .publish(json!({"id": "e-1", "type": "job.created", "organization": running.org.id, "data": {"n": 1}}))
        .await;
    // The activation ping and the event.
    receiver.wait_for("/hook", 2, WAIT).await;
    let succeeded = hookline_tests::eventually(WAIT, || async {
        running.env.scalar::<i64>("SELECT count(*) FROM deliveries WHERE status = 'succeeded'", &[]).await == 2
    })
    .await;
    assert!(succeeded);
    let today: DateTime<Utc> = Utc::now().date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc();
    retention::prepare_partitions(&running.env.pool, Utc::now()).await.unwrap();
    let source: String = running.env.scalar("SELECT id FROM events WHERE origin = 'upstream'", &[]).await;
    let key: String = running.env.scalar("SELECT event_id FROM event_keys WHERE message_id = 'e-1'", &[]).await;
    assert_eq!(key, source, "the event's idempotency key names it");
    let today_delivery: String = running.env.scalar("SELECT id FROM deliveries WHERE event_id = $1", &[&source]).await;

    // Copies made on the second, fifth and sixth days from now, each in its day's partition.
    let old = copy_at(&running, &source, today + Duration::days(2) + Duration::hours(1)).await;
    let kept_bodyless = copy_at(&running, &source, today + Duration::days(5) + Duration::hours(1)).await;
    let kept = copy_at(&running, &source, today + Duration::days(6) + Duration::hours(1)).await;
    // An event of the fourth day's last hour whose delivery was made on the fifth day.
    let straddling = copy_straddling(
        &running,
        &source,
        today + Duration::days(4) + Duration::hours(23),
        today + Duration::days(5) + Duration::minutes(1),
    )
    .await;
    let day = |n: i64| format!("attempts_p{}", (today + Duration::days(n)).format("%Y%m%d"));
    let event_day = |n: i64| format!("events_p{}", (today + Duration::days(n)).format("%Y%m%d"));
    let event_table = "SELECT tableoid::regclass::text FROM events WHERE id = $1";
    assert_eq!(running.env.scalar::<String>(event_table, &[&source]).await, "events_before_partitions");
    let old_event = old.replace("dlv_", "evt_");
    assert_eq!(running.env.scalar::<String>(event_table, &[&old_event]).await, event_day(2));
    assert_eq!(partition_of(&running, &today_delivery).await, "attempts_before_partitions");
    assert_eq!(partition_of(&running, &old).await, day(2));
    assert_eq!(partition_of(&running, &kept_bodyless).await, day(5));
    assert_eq!(partition_of(&running, &kept).await, day(6));

    // Thirty days after the fifth day, 1 pm: everything made before the fifth day has aged
    // out (the window is cut at whole days); bodies are kept 30 days too, but cut at the
    // hour, so the fifth day's goes.
    let now = today + Duration::days(35) + Duration::hours(13);
    let month = std::time::Duration::from_secs(30 * 86_400);
    let pass = || retention::remove_expired(&running.env.pool, now, month, month);
    let removed = pass().await.unwrap();
    assert_eq!(removed.partitions, 5, "the pre-partition table and days 1 to 4 are dropped whole: {removed:?}");
    assert_eq!(removed.event_partitions, 5, "events likewise: {removed:?}");
    // Today's two (the ping's and the event's), the second day's copy, and the fifth
    // day's delivery of the fourth day's event with its attempt; no event row by row.
    assert_eq!((removed.attempts, removed.deliveries, removed.events), (1, 4, 0), "{removed:?}");
    assert_eq!((removed.keys, removed.bodies), (1, 1), "{removed:?}");
    let tables: i64 = running
        .env
        .scalar(
            "SELECT count(*) FROM pg_class WHERE relname IN ('attempts_before_partitions', 'events_before_partitions',
                 $1, $2)",
            &[&day(2), &event_day(2)],
        )
        .await;
    assert_eq!(tables, 0, "the expired partitions are gone");
    let keys: i64 = running.env.scalar("SELECT count(*) FROM event_keys", &[]).await;
    assert_eq!(keys, 0, "the expired event's idempotency key is gone");
    for gone in [&today_delivery, &old, &straddling] {
        assert_eq!(count(&running, "SELECT count(*) FROM deliveries WHERE id = $1", gone).await, 0);
        assert_eq!(count(&running, "SELECT count(*) FROM attempts WHERE delivery_id = $1", gone).await, 0);
    }
    assert_eq!(count(&running, "SELECT count(*) FROM events WHERE id = $1", &source).await, 0);
    assert_eq!(
        count(&running, "SELECT count(*) FROM events WHERE id < $1", &kept_bodyless.replace("dlv_", "evt_")).await,
        0
    );
    let bodies = "SELECT count(response_body) FROM attempts WHERE delivery_id = $1";
    assert_eq!(count(&running, bodies, &kept_bodyless).await, 0, "the older kept attempt lost its body");
    assert_eq!(count(&running, bodies, &kept).await, 1, "the newer one kept it");

    // The history reads across the two partitions left.
    let id = webhook["id"].as_str().unwrap();
    let (status, history) =
        running.api.call("GET", &format!("/v1/webhooks/{id}/deliveries"), running.key(), None).await;
    assert_eq!(status, 200, "{history}");
    let listed: Vec<&str> = history["data"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(listed, [kept.as_str(), kept_bodyless.as_str()], "newest first: {history}");
    for delivery in [&kept, &kept_bodyless] {
        let (status, detail) =
            running.api.call("GET", &format!("/v1/deliveries/{delivery}"), running.key(), None).await;
        assert_eq!(status, 200, "{detail}");
        assert_eq!(detail["attempts"].as_array().unwrap().len(), 1, "{detail}");
    }
    // A second pass finds nothing more to do.
    let again = pass().await.unwrap();
    assert_eq!(again, retention::Removed::default());
    // Redeliver and recover work across partitions: an operator's redelivery of the
    // newest, and a recovery of the older once it has failed; each new attempt lands in
    // its delivery's partition.
    let (status, _) = running.api.call("POST", &format!("/v1/deliveries/{kept}/redeliver"), running.key(), None).await;
    assert_eq!(status, 202);
    running
        .env
        .pool
        .get()
        .await
        .unwrap()
        .execute("UPDATE deliveries SET status = 'failed' WHERE id = $1", &[&kept_bodyless])
        .await
        .unwrap();
    let (status, recovered) = running
        .api
        .call(
            "POST",
            &format!("/v1/webhooks/{id}/recover"),
            running.key(),
            Some(json!({"since": "2020-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, 202, "{recovered}");
    for (delivery, day_of) in [(&kept, 6), (&kept_bodyless, 5)] {
        let attempted = hookline_tests::eventually(WAIT, || async {
            count(&running, "SELECT count(*) FROM attempts WHERE delivery_id = $1", delivery).await == 2
        })
        .await;
        assert!(attempted, "{delivery} attempted again");
        let in_partition: i64 = running
            .env
            .scalar(
                "SELECT count(*) FROM attempts WHERE delivery_id = $1 AND tableoid = $2::text::regclass",
                &[delivery, &day(day_of)],
            )
            .await;
        assert_eq!(in_partition, 2, "{delivery}'s attempts are in {}", day(day_of));
    }
    running.stop().await;
}
