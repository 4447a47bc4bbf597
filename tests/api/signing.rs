use std::time::Duration;

use hookline_tests::{Receiver, TestEnv};
use serde_json::json;

use crate::WAIT;

fn verifies(secret: &str, request: &hookline_tests::Recorded) -> bool {
    standardwebhooks::Webhook::new(secret).unwrap().verify(&request.body, &request.headers).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_signs_alongside_the_old_one_for_the_overlap_only() {
    let env = TestEnv::with(&[("HOOKLINE__SIGNING__ROTATION_OVERLAP", "3s")]).await;
    let receiver = Receiver::start().await;
    let api = env.start_api().await;
    let services = env.start();
    let org = env.organization().await;
    let key = Some(org.api_key.as_str());
    let (_, created) = api
        .call("POST", "/v1/webhooks", key, Some(json!({"name": "w", "active": true, "events": ["job.*"], "endpoints": [{"url": receiver.url("/hook")}]})))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let old = created["signing_secret"].as_str().unwrap().to_owned();
    let ping = receiver.wait_for("/hook", 1, WAIT).await.remove(0);
    assert!(verifies(&old, &ping));

    let (_, writer) =
        api.call("POST", "/v1/api-keys", key, Some(json!({"label": "w", "scopes": ["webhooks:write"]}))).await;
    let writer = writer["key"].as_str().unwrap().to_owned();
    assert_eq!(api.call("POST", &format!("/v1/webhooks/{id}/rotate-secret"), Some(&writer), None).await.0, 403);
    assert_eq!(api.call("GET", &format!("/v1/webhooks/{id}/secret"), Some(&writer), None).await.0, 403);
    let (status, rotated) = api.call("POST", &format!("/v1/webhooks/{id}/rotate-secret"), key, None).await;
    assert_eq!(status, 200);
    let new = rotated["signing_secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    let (_, shown) = api.call("GET", &format!("/v1/webhooks/{id}/secret"), key, None).await;
    assert_eq!(shown["signing_secret"], new.as_str());

    let (status, _) = api
        .call("POST", &format!("/v1/webhooks/{id}/test"), Some(&writer), Some(json!({"event_type": "report.created"})))
        .await;
    assert_eq!(status, 202);
    let during = receiver.wait_for("/hook", 2, WAIT).await.remove(1);
    assert!(verifies(&new, &during) && verifies(&old, &during), "both secrets verify during the overlap");
    assert_eq!(during.json()["payload"], json!({"resourceId": 12301, "path": "/reports/12301"}), "the catalog example");

    tokio::time::sleep(Duration::from_secs(3)).await;
    api.call("POST", &format!("/v1/webhooks/{id}/test"), key, Some(json!({"event_type": "job.created"}))).await;
    let after = receiver.wait_for("/hook", 3, WAIT).await.remove(2);
    assert!(verifies(&new, &after), "the new secret verifies");
    assert!(!verifies(&old, &after), "the old secret no longer verifies after the overlap");

    let (_, log) = api.call("GET", &format!("/v1/webhooks/{id}/deliveries"), key, None).await;
    let origins: Vec<&str> = log["data"].as_array().unwrap().iter().map(|d| d["origin"].as_str().unwrap()).collect();
    assert_eq!(origins, vec!["test", "test", "ping"]);
    let (status, error) =
        api.call("POST", &format!("/v1/webhooks/{id}/test"), key, Some(json!({"event_type": "job.exploded"}))).await;
    assert_eq!((status, error["error"]["field"].as_str()), (422, Some("event_type")));
    // An inactive webhook would close the test delivery unattempted: refused instead.
    let (status, _) = api.call("POST", &format!("/v1/webhooks/{id}/deactivate"), key, None).await;
    assert_eq!(status, 200);
    let (status, error) =
        api.call("POST", &format!("/v1/webhooks/{id}/test"), key, Some(json!({"event_type": "job.created"}))).await;
    assert_eq!((status, error["error"]["code"].as_str()), (409, Some("webhook_inactive")), "{error}");
    services.stop().await;
    drop(api);
    env.cleanup().await;
}
