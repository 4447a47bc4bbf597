//! One error shape: every refusal, whatever layer makes it, is JSON
//! `{"error": {"code", "field", "message"}}` and names the field it concerns.

use hookline_tests::TestEnv;
use serde_json::json;

/// Bodies of the wrong shape (missing, mistyped, unknown and nested fields) and query
/// strings that do not parse are answered with the field named, never `null`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shape_errors_in_bodies_and_query_strings_name_their_field() {
    let env = TestEnv::new().await;
    let api = env.start_api().await;
    let org = env.organization().await;
    let key = Some(org.api_key.as_str());
    let url = "https://a.example.com/h";
    let (status, created) = api
        .call("POST", "/v1/webhooks", key, Some(json!({"name": "x", "endpoints": [{"url": url}], "events": ["job.*"]})))
        .await;
    assert_eq!(status, 201, "{created}");
    let webhook = created["id"].as_str().unwrap();
    for (method, path, body, field) in [
        ("POST", "/v1/webhooks".to_owned(), json!({"endpoints": [{"url": url}], "events": ["job.*"]}), "name"),
        (
            "POST",
            "/v1/webhooks".to_owned(),
            json!({"name": 5, "endpoints": [{"url": url}], "events": ["job.*"]}),
            "name",
        ),
        ("POST", "/v1/webhooks".to_owned(), json!({"name": "x", "colour": "red"}), "colour"),
        (
            "POST",
            "/v1/webhooks".to_owned(),
            json!({"name": "x", "endpoints": [{"url": url}, {"url": url, "colour": 1}], "events": ["job.*"]}),
            "endpoints[1].colour",
        ),
        (
            "POST",
            "/v1/webhooks".to_owned(),
            json!({"name": "x", "endpoints": [{"url": 7}], "events": ["job.*"]}),
            "endpoints[0].url",
        ),
        ("PATCH", format!("/v1/webhooks/{webhook}"), json!({"test": "yes"}), "test"),
        ("POST", "/v1/credentials".to_owned(), json!({"type": "basic"}), "name"),
        ("POST", "/v1/api-keys".to_owned(), json!({"label": "x", "scopes": "all"}), "scopes"),
        ("POST", format!("/v1/webhooks/{webhook}/recover"), json!({}), "since"),
        ("POST", format!("/v1/webhooks/{webhook}/recover"), json!({"since": "yesterday"}), "since"),
        // The event envelope refuses a field it does not have, like every other route.
        (
            "POST",
            "/v1/events".to_owned(),
            json!({"type": "job.created", "ocurred_at": "2026-01-01T00:00:00Z"}),
            "ocurred_at",
        ),
    ] {
        let (status, error) = api.call(method, &path, key, Some(body.clone())).await;
        assert_eq!(status, 422, "{method} {path} {body}: {error}");
        assert_eq!(error["error"]["field"], field, "{method} {path} {body}: {error}");
        assert!(error["error"]["code"].is_string() && error["error"]["message"].is_string(), "{error}");
    }
    // A body is an object, though serde would read a struct from an array field by field.
    let (status, error) = api.call("PATCH", &format!("/v1/webhooks/{webhook}"), key, Some(json!(["renamed"]))).await;
    assert_eq!((status, error["error"]["code"].as_str()), (422, Some("invalid_body")), "{error}");
    let (_, unchanged) = api.call("GET", &format!("/v1/webhooks/{webhook}"), key, None).await;
    assert_eq!(unchanged["name"], "x");
    let (_, error) =
        api.call("POST", &format!("/v1/webhooks/{webhook}/recover"), key, Some(json!({"since": "yesterday"}))).await;
    assert!(
        error["error"]["message"].as_str().unwrap().contains("RFC 3339"),
        "a bad time says what a good one is: {error}"
    );

    let log = format!("/v1/webhooks/{webhook}/deliveries");
    for (path, field) in [
        ("/v1/webhooks?limit=ten".to_owned(), "limit"),
        ("/v1/credentials?limit=1.5".to_owned(), "limit"),
        ("/v1/api-keys?limit=".to_owned(), "limit"),
        (format!("{log}?since=yesterday"), "since"),
        (format!("{log}?until=2026-02-30T00:00:00Z"), "until"),
    ] {
        let response =
            reqwest::Client::new().get(format!("{}{path}", api.base)).bearer_auth(&org.api_key).send().await.unwrap();
        assert_eq!(response.status(), 400, "{path}");
        let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
        assert_eq!(content_type, "application/json", "{path}");
        let error: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert_eq!(
            (error["error"]["code"].as_str(), error["error"]["field"].as_str()),
            (Some("invalid_query"), Some(field)),
            "{path}: {error}"
        );
    }
    let (_, error) = api.call("GET", &format!("{log}?since=yesterday"), key, None).await;
    assert!(error["error"]["message"].as_str().unwrap().contains("RFC 3339"), "{error}");

    // Over the body limit on the event door too, and a path id that is not UTF-8: JSON.
    let huge = format!("{{\"type\": \"job.created\", \"data\": {{\"x\": \"{}\"}}}}", "x".repeat(3 << 20));
    for (method, path, body, status) in [
        ("POST", "/v1/events".to_owned(), Some(huge), 413),
        ("GET", "/v1/webhooks/%FF%FE".to_owned(), None, 404),
        ("GET", format!("/v1/webhooks/{webhook}/deliveries/%FF"), None, 404),
    ] {
        let mut request = reqwest::Client::new()
            .request(method.parse().unwrap(), format!("{}{path}", api.base))
            .bearer_auth(&org.api_key);
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{method} {path}");
        let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(content_type.as_deref(), Some("application/json"), "{method} {path}");
        let error: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert!(error["error"]["code"].is_string(), "{method} {path}: {error}");
    }
    drop(api);
    env.cleanup().await;
}

/// Each key has its rate and each address its failed sign-ins; over either, 429 with
/// `Retry-After`, and other keys are not held back. (Rates of one request a second and
/// three failures a minute: the requests below come far faster than either refills.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after_per_key_and_per_address() {
    let env = TestEnv::with(&[
        ("HOOKLINE__API__REQUESTS_PER_SECOND_PER_KEY", "1"),
        ("HOOKLINE__API__FAILED_SIGN_INS_PER_MINUTE", "3"),
    ])
    .await;
    let api = env.start_api().await;
    let (busy, other) = (env.organization().await, env.organization().await);
    let client = reqwest::Client::new();
    let get = |key: &str| client.get(format!("{}/v1/webhooks", api.base)).bearer_auth(key.to_owned()).send();
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..10 {
        let response = get(&busy.api_key).await.unwrap();
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
    }
    let limited = limited.unwrap_or_else(|| panic!("never limited: {statuses:?}"));
    assert!(statuses.len() >= 3, "a burst of two is allowed: {statuses:?}");
    let retry_after: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let error: serde_json::Value = serde_json::from_slice(&limited.bytes().await.unwrap()).unwrap();
    assert_eq!(error["error"]["code"], "rate_limited", "{error}");
    assert_eq!(get(&other.api_key).await.unwrap().status(), 200, "another key is not held back");
    // The event door is not held back by the key's management rate.
    for n in 0..5 {
        let (status, answer) = api
            .call("POST", "/v1/events", Some(&busy.api_key), Some(json!({"type": "job.created", "data": {"n": n}})))
            .await;
        assert_eq!(status, 202, "{answer}");
    }

    // Guessing keys: three failures, then 429 before any key is looked up.
    for _ in 0..3 {
        assert_eq!(get("hk_not_a_key").await.unwrap().status(), 401);
    }
    let blocked = get("hk_not_a_key").await.unwrap();
    assert_eq!(blocked.status(), 429);
    assert!(blocked.headers().contains_key("retry-after"));
    drop(api);
    env.cleanup().await;
}
