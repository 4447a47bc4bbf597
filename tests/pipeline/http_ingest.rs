use hookline_tests::{Receiver, TestEnv};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::WAIT;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_posted_over_http_are_delivered_and_bad_requests_get_coded_errors() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start().await;
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/hook")], &["estimate.created"])).await;
    let services = env.start();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let api_shutdown = CancellationToken::new();
    let api =
        tokio::spawn(hookline_api::run(env.settings.clone(), env.metrics.clone(), listener, api_shutdown.clone()));
    let client = reqwest::Client::new();
    let post = |body: serde_json::Value, key: Option<&str>| {
        let mut request =
            client.post(format!("{base}/v1/events")).header("content-type", "application/json").body(body.to_string());
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send()
    };
    let ready = hookline_tests::eventually(WAIT, || async {
        client.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(ready);

    let accepted =
        post(json!({"type": "estimate.created", "data": {"estimateId": "E-1"}}), Some(&org.api_key)).await.unwrap();
    assert_eq!(accepted.status(), 202);
    let body: serde_json::Value = serde_json::from_slice(&accepted.bytes().await.unwrap()).unwrap();
    let event_id = body["id"].as_str().unwrap().to_owned();
    let request = receiver.wait_for("/hook", 1, WAIT).await.remove(0);
    assert_eq!(request.json()["messageId"], event_id.as_str());

    let unauthorized = post(json!({"type": "estimate.created"}), None).await.unwrap();
    assert_eq!(unauthorized.status(), 401);
    let wrong_key = post(json!({"type": "estimate.created"}), Some("hk_not-a-key")).await.unwrap();
    assert_eq!(wrong_key.status(), 401);

    let other = env.organization().await;
    for (body, code, field) in [
        (json!({"type": "estimate.exploded"}), "unknown_type", "type"),
        (json!({"data": {}}), "missing_type", "type"),
        (json!({"type": "estimate.created", "organization": other.id}), "unknown_organization", "organization"),
        (json!({"type": "estimate.created", "occurred_at": "noon"}), "invalid_field", "occurred_at"),
    ] {
        let response = post(body.clone(), Some(&org.api_key)).await.unwrap();
        assert_eq!(response.status(), 422, "for {body}");
        let error: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert_eq!((error["error"]["code"].as_str(), error["error"]["field"].as_str()), (Some(code), Some(field)));
    }
    assert_eq!(receiver.requests("/hook").len(), 1);
    api_shutdown.cancel();
    api.await.unwrap().unwrap();
    services.stop().await;
    env.cleanup().await;
}
