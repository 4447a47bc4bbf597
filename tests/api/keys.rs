use hookline_tests::TestEnv;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_shown_once_listed_by_prefix_scoped_and_revocable() {
    let env = TestEnv::new().await;
    let api = env.start_api().await;
    let org = env.organization().await;
    let admin = Some(org.api_key.as_str());

    let (status, created) =
        api.call("POST", "/v1/api-keys", admin, Some(json!({"label": "ci", "scopes": ["webhooks:read"]}))).await;
    assert_eq!(status, 201);
    let read_key = created["key"].as_str().unwrap().to_owned();
    assert!(read_key.starts_with(created["prefix"].as_str().unwrap()));

    let (status, list) = api.call("GET", "/v1/api-keys", admin, None).await;
    assert_eq!(status, 200);
    let text = list.to_string();
    assert!(!text.contains(&read_key) && !text.contains(&org.api_key), "a key secret was listed");
    let labels: Vec<&str> = list["data"].as_array().unwrap().iter().map(|k| k["label"].as_str().unwrap()).collect();
    assert_eq!(labels, vec!["bootstrap", "ci"]);

    // Read-only: may read, may not write, may not manage keys.
    assert_eq!(api.call("GET", "/v1/webhooks", Some(&read_key), None).await.0, 200);
    let (status, error) = api.call("POST", "/v1/webhooks", Some(&read_key), Some(json!({"name": "x"}))).await;
    assert_eq!((status, error["error"]["code"].as_str()), (403, Some("forbidden")));
    assert_eq!(api.call("GET", "/v1/api-keys", Some(&read_key), None).await.0, 403);

    let id = created["id"].as_str().unwrap();
    assert_eq!(api.call("DELETE", &format!("/v1/api-keys/{id}"), admin, None).await.0, 204);
    let (status, error) = api.call("GET", "/v1/webhooks", Some(&read_key), None).await;
    assert_eq!((status, error["error"]["code"].as_str()), (401, Some("unauthorized")));
    assert_eq!(api.call("DELETE", &format!("/v1/api-keys/{id}"), admin, None).await.0, 404);

    let (status, error) =
        api.call("POST", "/v1/api-keys", admin, Some(json!({"label": "x", "scopes": ["root"]}))).await;
    assert_eq!((status, error["error"]["field"].as_str()), (422, Some("scopes")));
    drop(api);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_is_listed_by_component_with_examples() {
    let env = TestEnv::new().await;
    let api = env.start_api().await;
    let org = env.organization().await;
    let (status, catalog) = api.call("GET", "/v1/event-types", Some(&org.api_key), None).await;
    assert_eq!(status, 200);
    let report = catalog["data"].as_array().unwrap().iter().find(|c| c["component"] == "report").unwrap();
    let created = report["event_types"].as_array().unwrap().iter().find(|t| t["code"] == "report.created").unwrap();
    assert_eq!(created["name"], "An Inspection report is uploaded");
    assert_eq!(created["example"]["resourceId"], 12301);
    assert_eq!(api.call("GET", "/v1/event-types", None, None).await.0, 401);
    drop(api);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_openapi_document_is_the_committed_one() {
    let env = TestEnv::new().await;
    let api = env.start_api().await;
    let (status, served) = api.call("GET", "/v1/openapi.json", None, None).await;
    assert_eq!(status, 200);
    let committed: serde_json::Value = serde_json::from_str(include_str!("../../crates/api/openapi.json")).unwrap();
    assert_eq!(served, committed);
    drop(api);
    env.cleanup().await;
}
