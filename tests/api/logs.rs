use hookline_tests::{Reply, Running, eventually};
use serde_json::json;

use crate::WAIT;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_history_shows_every_attempt_and_redeliver_and_recover_requeue_failures() {
    let running = Running::start(&[("HOOKLINE__RETRY__DELAYS", "1s")]).await; // 2 attempts in all
    let Running { env, receiver, api, org, .. } = &running;
    receiver.always("/hook", Reply::Status(500));
    let key = running.key();
    let started = chrono::Utc::now();
    let (_, webhook) = api
        .call(
            "POST",
            "/v1/webhooks",
            key,
            Some(json!({"name": "w", "endpoints": [{"url": receiver.url("/hook")}], "events": ["job.*"]})),
        )
        .await;
    let webhook_id = webhook["id"].as_str().unwrap().to_owned();
    let log = format!("/v1/webhooks/{webhook_id}/deliveries");
    env.publish(json!({"type": "job.created", "organization": org.id, "data": {"jobId": "J-1"}})).await;
    // Routed while the webhook is inactive: never delivered to it.
    let routed = eventually(WAIT, || async {
        env.scalar::<i64>("SELECT count(*) FROM events WHERE routed_at IS NOT NULL", &[]).await == 1
    })
    .await;
    assert!(routed);
    api.call("POST", &format!("/v1/webhooks/{webhook_id}/activate"), key, None).await;
    env.publish(json!({"type": "job.updated", "organization": org.id, "data": {"jobId": "J-1"}})).await;
    env.publish(json!({"type": "job.assigned", "organization": org.id, "data": {"jobId": "J-1"}})).await;

    let all_failed = eventually(WAIT, || async {
        let (_, page) = api.call("GET", &format!("{log}?status=failed"), key, None).await;
        page["data"].as_array().is_some_and(|d| d.len() == 3)
    })
    .await;
    let (_, everything) = api.call("GET", &log, key, None).await;
    assert!(all_failed, "ping and two events fail after 2 attempts each: {everything}");
    let (_, page) = api.call("GET", &format!("{log}?event_type=job.updated"), key, None).await;
    let line = &page["data"][0];
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert_eq!((line["status"].as_str(), line["attempt_count"].as_i64()), (Some("failed"), Some(2)));
    assert_eq!(
        (line["latest_status_code"].as_i64(), line["endpoint_url"].as_str()),
        (Some(500), Some(receiver.url("/hook").as_str()))
    );
    let (_, paged) = api.call("GET", &format!("{log}?limit=2"), key, None).await;
    let cursor = paged["next_cursor"].as_str().unwrap();
    let (_, rest) = api.call("GET", &format!("{log}?limit=2&cursor={cursor}"), key, None).await;
    assert_eq!((paged["data"].as_array().unwrap().len(), rest["data"].as_array().unwrap().len()), (2, 1));
    assert!(rest["next_cursor"].is_null());
    assert_eq!(api.call("GET", &format!("{log}?status=lost"), key, None).await.0, 400);
    // A cursor no page gave, or a code no event has, is refused, not taken for the start.
    for (query, code) in [
        ("cursor=not%20a%20cursor", "invalid_cursor"),
        ("cursor=dlv_%00", "invalid_cursor"),
        ("event_type=job.%00", "invalid_event_type"),
    ] {
        let (status, error) = api.call("GET", &format!("{log}?{query}"), key, None).await;
        assert_eq!((status, error["error"]["code"].as_str()), (400, Some(code)), "{query}: {error}");
    }
    let (status, error) = api.call("GET", "/v1/webhooks?cursor=%00", key, None).await;
    assert_eq!((status, error["error"]["field"].as_str()), (400, Some("cursor")), "{error}");
    // Unknown routes and wrong methods answer JSON errors too.
    let (status, error) = api.call("GET", "/v1/nothing-here", key, None).await;
    assert_eq!((status, error["error"]["code"].as_str()), (404, Some("not_found")), "{error}");
    let (status, error) = api.call("PUT", &log, key, None).await;
    assert_eq!((status, error["error"]["code"].as_str()), (405, Some("method_not_allowed")), "{error}");
    // A body over the limit is a JSON 413.
    let huge = json!({"name": "x".repeat(3 << 20), "endpoints": [], "events": ["job.*"]});
    let (status, error) = api.call("POST", "/v1/webhooks", key, Some(huge)).await;
    assert_eq!((status, error["error"]["code"].as_str()), (413, Some("body_too_large")), "{error}");
    // The scheme of `Authorization` is case-insensitive.
    let lower = reqwest::Client::new()
        .get(format!("{}/v1/webhooks", api.base))
        .header("authorization", format!("bearer {}", key.unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(lower.status(), 200);

    let delivery_id = line["id"].as_str().unwrap().to_owned();
    let (status, detail) = api.call("GET", &format!("/v1/deliveries/{delivery_id}"), key, None).await;
    assert_eq!(status, 200);
    assert_eq!(detail["payload"], json!({"jobId": "J-1"}));
    let attempts = detail["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!((attempts[0]["status_code"].as_i64(), attempts[0]["trigger"].as_str()), (Some(500), Some("scheduled")));
    assert!(attempts[1]["response_headers"].is_object());
    assert!(attempts[0]["request_headers"]["webhook-signature"].as_str().unwrap().starts_with("v1,"), "admins see it");
    // A reader could replay a request with its signature: not shown below admin.
    for scope in ["webhooks:read", "webhooks:write"] {
        let (_, lesser) = api.call("POST", "/v1/api-keys", key, Some(json!({"label": scope, "scopes": [scope]}))).await;
        let (status, seen) =
            api.call("GET", &format!("/v1/deliveries/{delivery_id}"), lesser["key"].as_str(), None).await;
        assert_eq!(status, 200);
        for attempt in seen["attempts"].as_array().unwrap() {
            assert_eq!(attempt["request_headers"]["webhook-signature"], "[redacted]", "{scope}: {attempt}");
            assert!(attempt["request_headers"]["webhook-id"].is_string(), "the rest stays");
        }
    }
    let other = env.organization().await;
    assert_eq!(api.call("GET", &format!("/v1/deliveries/{delivery_id}"), Some(&other.api_key), None).await.0, 404);
    assert_eq!(
        api.call("POST", &format!("/v1/deliveries/{delivery_id}/redeliver"), Some(&other.api_key), None).await.0,
        404
    );

    // The receiver recovers: a manual redelivery succeeds, then recover re-queues the rest.
    receiver.always("/hook", Reply::Status(200));
    let (status, _) = api.call("POST", &format!("/v1/deliveries/{delivery_id}/redeliver"), key, None).await;
    assert_eq!(status, 202);
    let redelivered = eventually(WAIT, || async {
        let (_, detail) = api.call("GET", &format!("/v1/deliveries/{delivery_id}"), key, None).await;
        detail["status"] == "succeeded"
    })
    .await;
    assert!(redelivered);
    let (_, detail) = api.call("GET", &format!("/v1/deliveries/{delivery_id}"), key, None).await;
    assert_eq!(
        (detail["attempts"][2]["trigger"].as_str(), detail["attempts"][2]["status_code"].as_i64()),
        (Some("manual"), Some(200))
    );

    let (status, recovered) = api
        .call("POST", &format!("/v1/webhooks/{webhook_id}/recover"), key, Some(json!({"since": started.to_rfc3339()})))
        .await;
    assert_eq!((status, recovered["requeued"].as_i64()), (202, Some(2)));
    let all_succeeded = eventually(WAIT, || async {
        let (_, page) = api.call("GET", &format!("{log}?status=succeeded"), key, None).await;
        page["data"].as_array().is_some_and(|d| d.len() == 3)
    })
    .await;
    assert!(all_succeeded);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_requeues_only_the_failures_since_the_time_given() {
    let running = Running::start(&[]).await;
    let Running { env, receiver, api, org, .. } = &running;
    receiver.always("/hook", Reply::Status(500));
    let key = running.key();
    // One attempt per delivery, so each fails for good at once.
    let (_, webhook) = api
        .call(
            "POST",
            "/v1/webhooks",
            key,
            Some(json!({"name": "w", "endpoints": [{"url": receiver.url("/hook")}], "events": ["job.*"],
                "retry_policy": {"delays": []}})),
        )
        .await;
    let webhook_id = webhook["id"].as_str().unwrap().to_owned();
    api.call("POST", &format!("/v1/webhooks/{webhook_id}/activate"), key, None).await;
    let failed_count = || async {
        let (_, page) =
            api.call("GET", &format!("/v1/webhooks/{webhook_id}/deliveries?status=failed"), key, None).await;
        page["data"].as_array().map_or(0, Vec::len)
    };
    env.publish(json!({"type": "job.created", "organization": org.id, "data": {"jobId": "before"}})).await;
    assert!(eventually(WAIT, || async { failed_count().await == 2 }).await, "the ping and the first event failed");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let since = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    env.publish(json!({"type": "job.updated", "organization": org.id, "data": {"jobId": "after"}})).await;
    assert!(eventually(WAIT, || async { failed_count().await == 3 }).await, "the second event failed");

    receiver.always("/hook", Reply::Status(200));
    let (status, recovered) = api
        .call("POST", &format!("/v1/webhooks/{webhook_id}/recover"), key, Some(json!({"since": since.to_rfc3339()})))
        .await;
    assert_eq!((status, recovered["requeued"].as_i64()), (202, Some(1)), "only the failure since then: {recovered}");
    let recovered = eventually(WAIT, || async {
        let (_, page) =
            api.call("GET", &format!("/v1/webhooks/{webhook_id}/deliveries?status=succeeded"), key, None).await;
        page["data"].as_array().is_some_and(|d| d.len() == 1 && d[0]["event_type"] == "job.updated")
    })
    .await;
    assert!(recovered, "the delivery after `since` succeeded");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(failed_count().await, 2, "the ping and the delivery before `since` stay failed");
    let payloads: Vec<serde_json::Value> =
        receiver.requests("/hook").iter().map(|r| r.json()["payload"]["jobId"].clone()).collect();
    assert_eq!(payloads.iter().filter(|p| **p == "before").count(), 1, "the earlier delivery was not sent again");
    assert_eq!(payloads.iter().filter(|p| **p == "after").count(), 2, "the later one was: {payloads:?}");
    running.stop().await;
}
