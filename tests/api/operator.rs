//! The host platform's side: an operator token manages organisations.

use hookline_tests::{Receiver, TestEnv};
use serde_json::json;

use crate::WAIT;

/// Create an organisation, mint its first key, turn its webhooks off (creation refused,
/// events not routed) and on again, delete it; organisation keys never reach these
/// routes, and the operator token is no organisation key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_creates_an_organisation_switches_its_webhooks_and_deletes_it() {
    let (token, hash) = hookline_core::apikey::generate_operator_token();
    let env = TestEnv::with(&[("HOOKLINE__API__OPERATOR_TOKEN_HASHES", hash.as_str())]).await;
    let receiver = Receiver::start().await;
    let api = env.start_api().await;
    let services = env.start();
    let operator = Some(token.as_str());

    let (status, org) = api.call("POST", "/v1/organizations", operator, Some(json!({"name": "Acme"}))).await;
    assert_eq!((status, &org["webhooks_enabled"]), (201, &json!(true)), "{org}");
    let org_id = org["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/organizations/{org_id}");
    let (status, minted) = api
        .call("POST", &format!("{path}/api-keys"), operator, Some(json!({"label": "first admin", "scopes": ["admin"]})))
        .await;
    assert_eq!(status, 201, "{minted}");
    let key = minted["key"].as_str().unwrap().to_owned();
    let (_, listed) = api.call("GET", "/v1/organizations", operator, None).await;
    assert!(listed["data"].as_array().unwrap().iter().any(|o| o["id"] == org_id.as_str()), "{listed}");

    // Who may not: an organisation key (403), no or a wrong token (401); and the
    // operator token is not an organisation's key.
    let (wrong, _) = hookline_core::apikey::generate_operator_token();
    for (credential, expected) in [(Some(key.as_str()), 403), (None, 401), (Some(wrong.as_str()), 401)] {
        let (status, error) = api.call("GET", &path, credential, None).await;
        assert_eq!(status, expected, "{error}");
    }
    assert_eq!(api.call("GET", "/v1/webhooks", operator, None).await.0, 401);

    // Webhooks off: none can be created, and events are routed to none.
    let webhook =
        json!({"name": "w", "active": true, "events": ["job.created"], "endpoints": [{"url": receiver.url("/hook")}]});
    let (status, created) = api.call("POST", "/v1/webhooks", Some(&key), Some(webhook.clone())).await;
    assert_eq!(status, 201, "{created}");
    receiver.wait_for("/hook", 1, WAIT).await; // the activation ping
    let (status, off) = api.call("PATCH", &path, operator, Some(json!({"webhooks_enabled": false}))).await;
    assert_eq!((status, &off["webhooks_enabled"]), (200, &json!(false)), "{off}");
    let (status, error) = api.call("POST", "/v1/webhooks", Some(&key), Some(webhook.clone())).await;
    assert_eq!((status, error["error"]["code"].as_str()), (409, Some("webhooks_disabled")), "{error}");
    let event = |n: u32| json!({"type": "job.created", "data": {"n": n}});
    let (status, unrouted) = api.call("POST", "/v1/events", Some(&key), Some(event(1))).await;
    assert_eq!(status, 202, "events are still accepted: {unrouted}");
    // Routing happens after the answer: wait for it before turning webhooks on again.
    let first = unrouted["id"].as_str().unwrap().to_owned();
    let routed = hookline_tests::eventually(WAIT, || async {
        env.scalar::<bool>("SELECT routed_at IS NOT NULL FROM events WHERE id = $1", &[&first]).await
    })
    .await;
    assert!(routed, "the event was routed");
    let (_, on) = api.call("PATCH", &path, operator, Some(json!({"webhooks_enabled": true}))).await;
    assert_eq!(on["webhooks_enabled"], true);
    api.call("POST", "/v1/events", Some(&key), Some(event(2))).await;
    let delivered = receiver.wait_for("/hook", 2, WAIT).await;
    let seen: Vec<_> = delivered.iter().map(|r| r.json()["payload"].clone()).collect();
    assert_eq!(delivered.len(), 2, "the event published once webhooks were on is delivered: {seen:?}");
    assert_eq!(delivered[1].json()["payload"], json!({"n": 2}));
    let routed_without_deliveries = env
        .scalar::<bool>(
            "SELECT e.routed_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id)
             FROM events e WHERE e.id = $1",
            &[&first],
        )
        .await;
    assert!(routed_without_deliveries, "the event published while webhooks were off went to no webhook");

    // Deleted: its keys stop working and it is gone from the operator's view.
    assert_eq!(api.call("DELETE", &path, operator, None).await.0, 204);
    assert_eq!(api.call("GET", "/v1/webhooks", Some(&key), None).await.0, 401);
    assert_eq!(api.call("GET", &path, operator, None).await.0, 404);
    services.stop().await;
    drop(api);
    env.cleanup().await;
}
