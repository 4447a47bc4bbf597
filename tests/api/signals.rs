use hookline_tests::{Receiver, Reply, TestEnv, eventually};
use serde_json::json;

use crate::WAIT;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_gone_deactivates_the_webhook_and_says_why() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start().await;
    receiver.script("/gone", &[Reply::Status(410)]);
    let api = env.start_api().await;
    let services = env.start();
    let org = env.organization().await;
    let key = Some(org.api_key.as_str());
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
    services.stop().await;
    drop(api);
    env.cleanup().await;
}
