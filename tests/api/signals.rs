use hookline_tests::{Reply, Running, eventually};
use serde_json::json;

use crate::WAIT;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_gone_deactivates_the_webhook_and_says_why() {
    let running = Running::start(&[]).await;
    let Running { env, receiver, api, org, .. } = &running;
    receiver.script("/gone", &[Reply::Status(410)]);
    let key = running.key();
    let (_, created) = api
        .call("POST", "/v1/webhooks", key, Some(json!({"name": "w", "active": true, "events": ["job.created"], "endpoints": [{"url": receiver.url("/gone")}]})))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();

    let disabled = eventually(WAIT, || async {
        let (_, webhook) = api.call("GET", &format!("/v1/webhooks/{id}"), key, None).await;
        webhook["active"] == false && webhook["disabled_reason"].as_str().is_some_and(|r| r.contains("410 Gone"))
    })
    .await;
    assert!(disabled, "the ping's 410 deactivates the webhook with a reason");
    let (_, log) = api.call("GET", &format!("/v1/webhooks/{id}/deliveries"), key, None).await;
    let delivery = log["data"][0]["id"].as_str().unwrap().to_owned();
    let settled = eventually(WAIT, || async {
        let (_, detail) = api.call("GET", &format!("/v1/deliveries/{delivery}"), key, None).await;
        detail["status"] == "failed"
    })
    .await;
    assert!(settled, "not retried");
    let (_, detail) = api.call("GET", &format!("/v1/deliveries/{delivery}"), key, None).await;
    assert_eq!(detail["attempts"].as_array().unwrap().len(), 1);
    assert!(detail["attempts"][0]["error_message"].as_str().unwrap().contains("deactivated"));

    env.publish(json!({"type": "job.created", "organization": org.id})).await;
    let routed = eventually(WAIT, || async {
        env.scalar::<i64>("SELECT count(*) FROM events WHERE routed_at IS NOT NULL AND origin = 'upstream'", &[]).await
            == 1
    })
    .await;
    assert!(routed);
    assert_eq!(receiver.requests("/gone").len(), 1, "a deactivated webhook receives nothing");

    let (_, reactivated) = api.call("POST", &format!("/v1/webhooks/{id}/activate"), key, None).await;
    assert_eq!((reactivated["active"].as_bool(), reactivated["disabled_reason"].as_str()), (Some(true), None));
    receiver.wait_for("/gone", 2, WAIT).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_auto_disable_the_webhook_and_announce_it() {
    let running = Running::start(&[("HOOKLINE__DELIVERY__AUTO_DISABLE_AFTER", "3")]).await;
    let Running { env, receiver, api, org, .. } = &running;
    receiver.always("/bad", Reply::Status(500));
    let key = running.key();
    let (_, watcher) = api
        .call("POST", "/v1/webhooks", key, Some(json!({"name": "ops", "active": true, "events": ["webhook.disabled"], "endpoints": [{"url": receiver.url("/ops")}]})))
        .await;
    assert!(watcher["id"].is_string(), "{watcher}");
    // One attempt per delivery, so every failure is final at once.
    let (_, failing) = api
        .call(
            "POST",
            "/v1/webhooks",
            key,
            Some(json!({"name": "crm", "active": true, "events": ["job.created"], "retry_policy": {"delays": []},
                "endpoints": [{"url": receiver.url("/bad")}]})),
        )
        .await;
    let id = failing["id"].as_str().unwrap().to_owned();
    receiver.wait_for("/bad", 1, WAIT).await; // the ping: failure 1
    for n in 0..2 {
        env.publish(json!({"type": "job.created", "organization": org.id, "data": {"n": n}})).await;
    }

    let announced = receiver.wait_for("/ops", 2, WAIT).await; // its own ping, then the announcement
    let event = announced.iter().map(|r| r.json()).find(|b| b["eventCode"] == "webhook.disabled").unwrap();
    assert_eq!(event["payload"]["webhookId"], id.as_str());
    assert!(event["payload"]["reason"].as_str().unwrap().starts_with("3 deliveries in a row"));
    let (_, webhook) = api.call("GET", &format!("/v1/webhooks/{id}"), key, None).await;
    assert_eq!(webhook["active"], false);
    assert!(webhook["disabled_reason"].as_str().unwrap().contains("in a row"));
    assert_eq!(receiver.requests("/bad").len(), 3);
    running.stop().await;
}

/// An endpoint that keeps failing opens its circuit, and its jobs wait parked instead of
/// being attempted; a failed probe fails for good those that have outlived their retry
/// schedule meanwhile, so the webhook is still switched off about when it would have
/// been without the circuit (not after a probe of every attempt of every delivery, one
/// at a time and further and further apart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_whose_circuit_stays_open_is_still_auto_disabled() {
    let running = Running::start(&[
        ("HOOKLINE__DELIVERY__AUTO_DISABLE_AFTER", "3"),
        ("HOOKLINE__DELIVERY__CIRCUIT_OPEN_AFTER", "2"),
        ("HOOKLINE__DELIVERY__CIRCUIT_FIRST_PROBE", "2s"),
        ("HOOKLINE__DELIVERY__CIRCUIT_MAX_PROBE", "1h"),
    ])
    .await;
    let Running { env, receiver, api, org, .. } = &running;
    receiver.always("/bad", Reply::Status(500));
    let key = running.key();
    // The sandbox's schedule: three attempts over 3 s. Probes come 2 s after the
    // circuit opens, then 4 s after that, 8 s, ...: probing every attempt of these
    // deliveries would take minutes.
    let (_, failing) = api
        .call(
            "POST",
            "/v1/webhooks",
            key,
            Some(json!({"name": "crm", "active": true, "events": ["job.created"],
                "endpoints": [{"url": receiver.url("/bad")}]})),
        )
        .await;
    let id = failing["id"].as_str().unwrap().to_owned();
    for n in 0..6 {
        env.publish(json!({"type": "job.created", "organization": org.id, "data": {"n": n}})).await;
    }

    let disabled = eventually(WAIT, || async {
        let (_, webhook) = api.call("GET", &format!("/v1/webhooks/{id}"), key, None).await;
        webhook["active"] == false
    })
    .await;
    assert!(disabled, "the webhook is switched off while its circuit is open");
    let (_, webhook) = api.call("GET", &format!("/v1/webhooks/{id}"), key, None).await;
    assert!(webhook["disabled_reason"].as_str().unwrap().contains("in a row"), "{webhook}");
    let settled = eventually(WAIT, || async {
        env.scalar::<i64>("SELECT count(*) FROM deliveries WHERE webhook_id = $1 AND open", &[&id]).await == 0
    })
    .await;
    assert!(settled, "nothing of the webhook's stays parked or open");
    let failed: i64 =
        env.scalar("SELECT count(*) FROM deliveries WHERE webhook_id = $1 AND status = 'failed'", &[&id]).await;
    assert!(failed >= 3, "{failed} deliveries failed for good");
    // The ping and six events, three attempts each on the schedule: far fewer were sent.
    let sent = receiver.requests("/bad").len();
    assert!(sent < 7 * 3, "{sent} requests: the parked deliveries were not attempted");
    running.stop().await;
}
