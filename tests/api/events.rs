//! `POST /v1/events`: what it refuses, with the field named, and that a refused event
//! leaves nothing behind.

use hookline_tests::TestEnv;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_holding_a_nul_is_refused_with_its_field_and_nothing_is_stored() {
    let env = TestEnv::new().await;
    let api = env.start_api().await;
    let org = env.organization().await;
    let key = Some(org.api_key.as_str());
    for (event, field) in [
        (json!({"type": "job.created", "data": {"items": [{"note": "a\u{0}b"}]}}), "data"),
        (json!({"type": "job.created", "actor": "u\u{0}", "data": {}}), "actor"),
        (json!({"type": "job.created", "id": "\u{0}", "data": {}}), "id"),
    ] {
        let (status, error) = api.call("POST", "/v1/events", key, Some(event.clone())).await;
        assert_eq!(status, 422, "{event}: {error}");
        assert_eq!(error["error"]["field"], field, "{error}");
        assert!(error["error"]["message"].as_str().unwrap().contains("NUL"), "{error}");
    }
    assert_eq!(env.scalar::<i64>("SELECT count(*) FROM events", &[]).await, 0);
    let (status, accepted) =
        api.call("POST", "/v1/events", key, Some(json!({"type": "job.created", "data": {"note": "fine"}}))).await;
    assert_eq!(status, 202, "{accepted}");
    drop(api);
    env.cleanup().await;
}
