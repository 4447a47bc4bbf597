use hookline_tests::{Receiver, TestEnv};
use serde_json::json;

use crate::WAIT;

fn body(urls: &[String], events: &[&str]) -> serde_json::Value {
    json!({
        "name": "CRM",
        "endpoints": urls.iter().map(|u| json!({"url": u})).collect::<Vec<_>>(),
        "events": events,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_organisations_see_nothing_and_get_404() {
    let env = TestEnv::new().await;
    let api = env.start_api().await;
    let org = env.organization().await;
    let other = env.organization().await;
    let (status, created) = api
        .call("POST", "/v1/webhooks", Some(&org.api_key), Some(body(&["https://a.example.com/h".into()], &["job.*"])))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let path = format!("/v1/webhooks/{id}");
    for (method, path) in [
        ("GET", path.clone()),
        ("PATCH", path.clone()),
        ("DELETE", path.clone()),
        ("POST", format!("{path}/activate")),
        ("POST", format!("{path}/deactivate")),
        ("GET", format!("{path}/secret")),
    ] {
        let body = (method == "PATCH").then(|| json!({"name": "stolen"}));
        let (status, error) = api.call(method, &path, Some(&other.api_key), body).await;
        assert_eq!((status, error["error"]["code"].as_str()), (404, Some("not_found")), "{method} {path}");
    }
    let (_, list) = api.call("GET", "/v1/webhooks", Some(&other.api_key), None).await;
    assert_eq!(list["data"], json!([]));
    let (_, mine) = api.call("GET", &path, Some(&org.api_key), None).await;
    assert_eq!(mine["name"], "CRM", "nothing was changed by the other organisation");
    drop(api);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_a_code_and_the_field_and_save_nothing() {
    let env = TestEnv::with(&[("HOOKLINE__DELIVERY__ALLOW_HTTP", "false")]).await;
    let api = env.start_api().await;
    let org = env.organization().await;
    let key = Some(org.api_key.as_str());
    let https = vec!["https://a.example.com/h".to_owned()];
    for (request, code, field) in [
        (body(&["http://a.example.com/h".into()], &["job.*"]), "https_required", "endpoints.url"),
        (body(&https, &["job.exploded"]), "unknown_event", "events"),
        (body(&https, &[]), "missing_events", "events"),
        (json!({"name": "", "endpoints": [{"url": https[0]}], "events": ["job.*"]}), "invalid_name", "name"),
        (
            json!({"name": "x", "endpoints": [{"url": https[0], "method": "GET"}], "events": ["job.*"]}),
            "invalid_method",
            "endpoints.method",
        ),
        (json!({"name": "x", "endpoints": [{"url": "::nope"}], "events": ["job.*"]}), "invalid_url", "endpoints.url"),
        (
            json!({"name": "x", "endpoints": [{"url": https[0]}], "events": ["job.*"], "retry_policy": {"delays": ["0s"]}}),
            "invalid_retry_policy",
            "retry_policy.delays",
        ),
        // A NUL character (which PostgreSQL cannot store), wherever it is, named by path.
        (json!({"name": "a\u{0}b", "endpoints": [{"url": https[0]}], "events": ["job.*"]}), "invalid_body", "name"),
        (
            json!({"name": "x", "endpoints": [{"url": https[0]}, {"url": "https://x.example/\u{0}"}], "events": ["job.*"]}),
            "invalid_body",
            "endpoints[1].url",
        ),
        (
            json!({"name": "x", "endpoints": [{"url": https[0], "headers": {"x-a\u{0}": "1"}}], "events": ["job.*"]}),
            "invalid_body",
            "endpoints[0].headers.x-a\u{0}",
        ),
    ] {
        let (status, error) = api.call("POST", "/v1/webhooks", key, Some(request.clone())).await;
        assert_eq!(status, 422, "{request}");
        assert_eq!((error["error"]["code"].as_str(), error["error"]["field"].as_str()), (Some(code), Some(field)));
    }
    let (status, error) = api.call("POST", "/v1/webhooks", key, Some(json!({"name": "x", "colour": "red"}))).await;
    assert_eq!((status, error["error"]["code"].as_str()), (422, Some("invalid_body")));
    assert!(error["error"]["message"].as_str().unwrap().contains("colour"));
    assert_eq!(env.scalar::<i64>("SELECT count(*) FROM webhooks", &[]).await, 0, "something was half-saved");
    drop(api);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhooks_whole_life_drives_real_deliveries() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start().await;
    let api = env.start_api().await;
    let services = env.start();
    let org = env.organization().await;
    let key = Some(org.api_key.as_str());
    // A control webhook that is always active: once it has an event, so would the other.
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/control")], &["job.created"])).await;
    let publish = |n: u32| env.publish(json!({"type": "job.created", "organization": org.id, "data": {"n": n}}));
    let events_at = |path: &str| -> Vec<String> {
        receiver.requests(path).iter().map(|r| r.json()["eventCode"].as_str().unwrap().to_owned()).collect()
    };

    // Created inactive: nothing delivered.
    let (status, created) =
        api.call("POST", "/v1/webhooks", key, Some(body(&[receiver.url("/hook")], &["job.created"]))).await;
    assert_eq!((status, created["active"].as_bool()), (201, Some(false)));
    assert!(created["signing_secret"].as_str().unwrap().starts_with("whsec_"));
    let id = created["id"].as_str().unwrap().to_owned();
    publish(1).await;
    receiver.wait_for("/control", 1, WAIT).await;
    assert!(events_at("/hook").is_empty());

    // Activated: a ping, then events.
    let (status, active) = api.call("POST", &format!("/v1/webhooks/{id}/activate"), key, None).await;
    assert_eq!((status, active["active"].as_bool()), (200, Some(true)));
    receiver.wait_for("/hook", 1, WAIT).await;
    assert_eq!(events_at("/hook"), vec!["webhook.ping"]);
    publish(2).await;
    receiver.wait_for("/hook", 2, WAIT).await;
    assert_eq!(events_at("/hook"), vec!["webhook.ping", "job.created"]);

    // Deactivated: nothing.
    api.call("POST", &format!("/v1/webhooks/{id}/deactivate"), key, None).await;
    publish(3).await;
    receiver.wait_for("/control", 3, WAIT).await;
    assert_eq!(events_at("/hook").len(), 2);

    // Reactivated: another ping, and events again.
    api.call("POST", &format!("/v1/webhooks/{id}/activate"), key, None).await;
    publish(4).await;
    receiver.wait_for("/hook", 4, WAIT).await;
    let mut last_two = events_at("/hook")[2..].to_vec();
    last_two.sort();
    assert_eq!(last_two, vec!["job.created", "webhook.ping"]);

    // Updated through PATCH: a second endpoint, same first endpoint id.
    let first_endpoint = created["endpoints"][0]["id"].as_str().unwrap().to_owned();
    let (status, patched) = api
        .call(
            "PATCH",
            &format!("/v1/webhooks/{id}"),
            key,
            Some(json!({"name": "CRM v2", "endpoints": [{"id": first_endpoint, "url": receiver.url("/hook")}, {"url": receiver.url("/hook2"), "method": "PUT"}]})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["name"], "CRM v2");
    assert_eq!(patched["endpoints"][0]["id"], first_endpoint.as_str());
    publish(5).await;
    receiver.wait_for("/hook2", 1, WAIT).await;
    assert_eq!(receiver.requests("/hook2")[0].method, "PUT");

    // Deleted: gone from the API, nothing delivered, history kept.
    assert_eq!(api.call("DELETE", &format!("/v1/webhooks/{id}"), key, None).await.0, 204);
    assert_eq!(api.call("GET", &format!("/v1/webhooks/{id}"), key, None).await.0, 404);
    let hook_count = receiver.requests("/hook").len();
    publish(6).await;
    receiver.wait_for("/control", 6, WAIT).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(receiver.requests("/hook").len(), hook_count);
    let kept: i64 = env.scalar("SELECT count(*) FROM deliveries WHERE webhook_id = $1", &[&id]).await;
    assert_eq!(kept, 6, "2 pings and 4 events stay in the history");
    services.stop().await;
    drop(api);
    env.cleanup().await;
}

/// PATCH keeps what a body leaves out, clears what it sets to `null` (back to the
/// default: no description, no filter, the deployment's retry policy) and replaces the
/// rest; a credential's `allowed_hosts` likewise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_keeps_what_is_absent_and_clears_what_is_null() {
    let env = TestEnv::new().await;
    let api = env.start_api().await;
    let org = env.organization().await;
    let key = Some(org.api_key.as_str());
    let mut created = body(&["https://a.example.com/h".into()], &["job.*"]);
    created["description"] = json!("about it");
    created["filters"] = json!({"actor": "u1", "team": "t1"});
    created["retry_policy"] = json!({"delays": ["1m"]});
    let (status, webhook) = api.call("POST", "/v1/webhooks", key, Some(created)).await;
    assert_eq!(status, 201, "{webhook}");
    let path = format!("/v1/webhooks/{}", webhook["id"].as_str().unwrap());
    let (_, same) = api.call("PATCH", &path, key, Some(json!({"name": "renamed"}))).await;
    assert_eq!(
        (&same["name"], &same["description"], &same["filters"], &same["retry_delays_ms"]),
        (&json!("renamed"), &json!("about it"), &json!({"actor": "u1", "team": "t1"}), &json!([60_000])),
        "what is absent is kept: {same}"
    );
    let (_, one_filter) = api.call("PATCH", &path, key, Some(json!({"filters": {"actor": null}}))).await;
    assert_eq!(one_filter["filters"], json!({"actor": null, "team": "t1"}), "{one_filter}");
    let cleared = json!({"description": null, "retry_policy": null, "filters": {"team": null}});
    let (status, cleared) = api.call("PATCH", &path, key, Some(cleared)).await;
    assert_eq!(status, 200, "{cleared}");
    assert_eq!(
        (&cleared["description"], &cleared["filters"], &cleared["retry_delays_ms"]),
        (&json!(""), &json!({"actor": null, "team": null}), &json!(null)),
        "{cleared}"
    );

    let (_, credential) = api
        .call(
            "POST",
            "/v1/credentials",
            key,
            Some(json!({"name": "c", "type": "token", "values": {"key": "X-K", "value": "v"}, "allowed_hosts": ["a.example.com"]})),
        )
        .await;
    let credential_path = format!("/v1/credentials/{}", credential["id"].as_str().unwrap());
    let (_, kept) = api.call("PATCH", &credential_path, key, Some(json!({"name": "c2"}))).await;
    assert_eq!(kept["allowed_hosts"], json!(["a.example.com"]), "{kept}");
    let (_, open) = api.call("PATCH", &credential_path, key, Some(json!({"allowed_hosts": null}))).await;
    assert_eq!(open["allowed_hosts"], json!([]), "{open}");
    drop(api);
    env.cleanup().await;
}

/// Every version of a webhook or credential has an `ETag`; a PATCH with `If-Match`
/// applies only to that version, so a client working from a stale copy gets 412 and
/// does not undo another's change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_refuses_a_lost_update_with_412() {
    let env = TestEnv::new().await;
    let api = env.start_api().await;
    let org = env.organization().await;
    let key = Some(org.api_key.as_str());
    let (_, webhook) =
        api.call("POST", "/v1/webhooks", key, Some(body(&["https://a.example.com/h".into()], &["job.*"]))).await;
    let (_, credential) = api
        .call(
            "POST",
            "/v1/credentials",
            key,
            Some(json!({"name": "c", "type": "token", "values": {"key": "X-K", "value": "v"}})),
        )
        .await;
    let client = reqwest::Client::new();
    for path in [
        format!("/v1/webhooks/{}", webhook["id"].as_str().unwrap()),
        format!("/v1/credentials/{}", credential["id"].as_str().unwrap()),
    ] {
        let url = format!("{}{path}", api.base);
        let read = client.get(&url).bearer_auth(&org.api_key).send().await.unwrap();
        let first = read.headers()["etag"].to_str().unwrap().to_owned();
        let patch = |if_match: Option<String>, name: &str| {
            let mut request = client
                .patch(&url)
                .bearer_auth(&org.api_key)
                .header("content-type", "application/json")
                .body(json!({"name": name}).to_string());
            if let Some(tag) = if_match {
                request = request.header("if-match", tag);
            }
            request.send()
        };
        let changed = patch(Some(first.clone()), "mine").await.unwrap();
        assert_eq!(changed.status(), 200, "{path}");
        let second = changed.headers()["etag"].to_str().unwrap().to_owned();
        assert_ne!(first, second, "{path}: a change is a new version");
        for stale in [first.clone(), format!("W/{second}"), "\"nonsense\"".to_owned()] {
            let refused = patch(Some(stale.clone()), "theirs").await.unwrap();
            assert_eq!(refused.status(), 412, "{path} with If-Match {stale}");
            let error: serde_json::Value = serde_json::from_slice(&refused.bytes().await.unwrap()).unwrap();
            assert_eq!(error["error"]["code"], "precondition_failed");
        }
        let (_, now) = api.call("GET", &path, key, None).await;
        assert_eq!(now["name"], "mine", "{path}: the stale change was not applied");
        assert_eq!(patch(Some(second), "again").await.unwrap().status(), 200, "{path}: the current version applies");
        assert_eq!(patch(Some("*".into()), "any").await.unwrap().status(), 200);
        assert_eq!(patch(None, "unconditional").await.unwrap().status(), 200);
    }
    drop(api);
    env.cleanup().await;
}
