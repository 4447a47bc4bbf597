//! `Idempotency-Key`: a retried create does its work once.

use hookline_tests::TestEnv;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_the_same_idempotency_key_gets_the_first_answer_and_creates_nothing_more() {
    let env = TestEnv::new().await;
    let api = env.start_api().await;
    let (org, other) = (env.organization().await, env.organization().await);
    let client = reqwest::Client::new();
    let post = |key: &str, path: &str, idempotency: &str, body: serde_json::Value| {
        client
            .post(format!("{}{path}", api.base))
            .bearer_auth(key.to_owned())
            .header("idempotency-key", idempotency.to_owned())
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let webhook = json!({"name": "w", "events": ["job.*"], "endpoints": [{"url": "https://a.example.com/h"}]});
    let first = post(&org.api_key, "/v1/webhooks", "create-w-1", webhook.clone()).await.unwrap();
    assert_eq!((first.status().as_u16(), first.headers()["idempotent-replayed"].to_str().unwrap()), (201, "false"));
    let first: serde_json::Value = serde_json::from_slice(&first.bytes().await.unwrap()).unwrap();
    let again = post(&org.api_key, "/v1/webhooks", "create-w-1", webhook.clone()).await.unwrap();
    assert_eq!((again.status().as_u16(), again.headers()["idempotent-replayed"].to_str().unwrap()), (201, "true"));
    assert_eq!(again.headers()["content-type"], "application/json");
    let again: serde_json::Value = serde_json::from_slice(&again.bytes().await.unwrap()).unwrap();
    assert_eq!(again, first, "the same answer, signing secret included");
    assert_eq!(env.scalar::<i64>("SELECT count(*) FROM webhooks", &[]).await, 1, "one webhook, not two");
    // The stored answer holds the signing secret: it is sealed, not kept in clear.
    let secret = first["signing_secret"].as_str().unwrap().to_owned();
    let stored: Vec<u8> = env.scalar("SELECT sealed_body FROM idempotency_keys", &[]).await;
    assert!(!String::from_utf8_lossy(&stored).contains(&secret));

    // The same key for another request is refused; another organisation's keys are its own.
    let mut changed = webhook.clone();
    changed["name"] = json!("other");
    let reused = post(&org.api_key, "/v1/webhooks", "create-w-1", changed).await.unwrap();
    assert_eq!(reused.status(), 422);
    let error: serde_json::Value = serde_json::from_slice(&reused.bytes().await.unwrap()).unwrap();
    assert_eq!(error["error"]["code"], "idempotency_key_reused");
    let theirs = post(&other.api_key, "/v1/webhooks", "create-w-1", webhook.clone()).await.unwrap();
    assert_eq!((theirs.status().as_u16(), theirs.headers()["idempotent-replayed"].to_str().unwrap()), (201, "false"));
    // A refusal is an answer too: replayed, not re-validated.
    let bad = json!({"name": "", "events": ["job.*"], "endpoints": [{"url": "https://a.example.com/h"}]});
    assert_eq!(post(&org.api_key, "/v1/webhooks", "bad-1", bad.clone()).await.unwrap().status(), 422);
    let replayed = post(&org.api_key, "/v1/webhooks", "bad-1", bad).await.unwrap();
    assert_eq!(
        (replayed.status().as_u16(), replayed.headers()["idempotent-replayed"].to_str().unwrap()),
        (422, "true")
    );
    // A key that is not one is refused.
    let blank = post(&org.api_key, "/v1/webhooks", "", webhook.clone()).await.unwrap();
    assert_eq!(blank.status(), 400);
    // Without the header, every POST is its own.
    let (status, _) = api.call("POST", "/v1/webhooks", Some(&org.api_key), Some(webhook)).await;
    assert_eq!(status, 201);
    assert_eq!(env.scalar::<i64>("SELECT count(*) FROM webhooks WHERE organization_id = $1", &[&org.id]).await, 2);
    drop(api);
    env.cleanup().await;
}
