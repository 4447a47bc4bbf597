//! Every route × no key, a revoked key, another organisation's key, each scope and the
//! operator token.

use hookline_tests::TestEnv;
use serde_json::json;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Needs {
    Read,
    Write,
    Admin,
    /// The platform operator's token, and nothing else.
    Operator,
}

struct Route {
    method: &'static str,
    /// `{webhook}`, `{delivery}`, `{credential}`, `{key}` are replaced by ids.
    path: &'static str,
    needs: Needs,
    /// A body that passes authorization but not validation, for routes that take one.
    body: Option<serde_json::Value>,
}

const fn route(method: &'static str, path: &'static str, needs: Needs) -> Route {
    Route { method, path, needs, body: None }
}

fn routes() -> Vec<Route> {
    let invalid = Some(json!({"unexpected": true}));
    vec![
        route("GET", "/v1/event-types", Needs::Read),
        Route { body: Some(json!({"type": "job.exploded"})), ..route("POST", "/v1/events", Needs::Write) },
        Route { body: invalid.clone(), ..route("POST", "/v1/api-keys", Needs::Admin) },
        route("GET", "/v1/api-keys", Needs::Admin),
        route("DELETE", "/v1/api-keys/{key}", Needs::Admin),
        Route { body: invalid.clone(), ..route("POST", "/v1/credentials", Needs::Admin) },
        route("GET", "/v1/credentials", Needs::Read),
        route("GET", "/v1/credentials/{credential}", Needs::Read),
        Route { body: Some(json!({"name": ""})), ..route("PATCH", "/v1/credentials/{credential}", Needs::Admin) },
        route("DELETE", "/v1/credentials/{credential}", Needs::Admin),
        Route { body: invalid.clone(), ..route("POST", "/v1/webhooks", Needs::Write) },
        route("GET", "/v1/webhooks", Needs::Read),
        route("GET", "/v1/webhooks/{webhook}", Needs::Read),
        Route { body: Some(json!({"name": ""})), ..route("PATCH", "/v1/webhooks/{webhook}", Needs::Write) },
        route("DELETE", "/v1/webhooks/{webhook}", Needs::Write),
        route("POST", "/v1/webhooks/{webhook}/activate", Needs::Write),
        route("POST", "/v1/webhooks/{webhook}/deactivate", Needs::Write),
        route("GET", "/v1/webhooks/{webhook}/secret", Needs::Admin),
        route("POST", "/v1/webhooks/{webhook}/rotate-secret", Needs::Admin),
        Route {
            body: Some(json!({"event_type": "job.exploded"})),
            ..route("POST", "/v1/webhooks/{webhook}/test", Needs::Write)
        },
        route("GET", "/v1/webhooks/{webhook}/deliveries", Needs::Read),
        Route {
            body: Some(json!({"since": "not a time"})),
            ..route("POST", "/v1/webhooks/{webhook}/recover", Needs::Write)
        },
        route("GET", "/v1/deliveries/{delivery}", Needs::Read),
        route("POST", "/v1/deliveries/{delivery}/redeliver", Needs::Write),
        Route { body: Some(json!({"name": ""})), ..route("POST", "/v1/organizations", Needs::Operator) },
        route("GET", "/v1/organizations", Needs::Operator),
        route("GET", "/v1/organizations/{org}", Needs::Operator),
        Route { body: Some(json!({"name": ""})), ..route("PATCH", "/v1/organizations/{org}", Needs::Operator) },
        route("DELETE", "/v1/organizations/{org}", Needs::Operator),
        Route { body: invalid.clone(), ..route("POST", "/v1/organizations/{org}/api-keys", Needs::Operator) },
    ]
}

struct Ids {
    webhook: String,
    delivery: String,
    credential: String,
    key: String,
    org: String,
}

fn fill(path: &str, ids: &Ids) -> String {
    path.replace("{webhook}", &ids.webhook)
        .replace("{delivery}", &ids.delivery)
        .replace("{credential}", &ids.credential)
        .replace("{key}", &ids.key)
        .replace("{org}", &ids.org)
}

fn allowed(needs: Needs, has: Needs) -> bool {
    match has {
        _ if needs == Needs::Operator => has == Needs::Operator,
        Needs::Operator => false,
        Needs::Admin => true,
        Needs::Write => needs != Needs::Admin,
        Needs::Read => needs == Needs::Read,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_checks_the_key_its_scope_and_the_organisation() {
    let (operator, hash) = hookline_core::apikey::generate_operator_token();
    let env = TestEnv::with(&[("HOOKLINE__API__OPERATOR_TOKEN_HASHES", hash.as_str())]).await;
    let api = env.start_api().await;
    let org = env.organization().await;
    let admin = org.api_key.clone();
    let key = Some(admin.as_str());
    let mut scoped = Vec::new();
    for (scope, needs) in [("webhooks:read", Needs::Read), ("webhooks:write", Needs::Write), ("admin", Needs::Admin)] {
        let (_, created) =
            api.call("POST", "/v1/api-keys", key, Some(json!({"label": scope, "scopes": [scope]}))).await;
        scoped.push((needs, created["key"].as_str().unwrap().to_owned()));
    }
    let (_, revoked) = api.call("POST", "/v1/api-keys", key, Some(json!({"label": "old", "scopes": ["admin"]}))).await;
    let revoked_key = revoked["key"].as_str().unwrap().to_owned();
    api.call("DELETE", &format!("/v1/api-keys/{}", revoked["id"].as_str().unwrap()), key, None).await;
    let (_, credential) = api.call("POST", "/v1/credentials", key, Some(json!({"name": "c", "type": "none"}))).await;
    let (_, webhook) = api
        .call("POST", "/v1/webhooks", key, Some(json!({"name": "Secret Project", "active": true, "events": ["job.*"], "endpoints": [{"url": "https://a.example.com/h"}]})))
        .await;
    let webhook_id = webhook["id"].as_str().unwrap().to_owned();
    let (_, log) = api.call("GET", &format!("/v1/webhooks/{webhook_id}/deliveries"), key, None).await;
    let real = Ids {
        webhook: webhook_id.clone(),
        delivery: log["data"][0]["id"].as_str().unwrap().to_owned(),
        credential: credential["id"].as_str().unwrap().to_owned(),
        key: revoked["id"].as_str().unwrap().to_owned(),
        org: env.organization().await.id.to_string(),
    };
    // Well-formed ids that exist nowhere: reaching "not found" proves authorization passed.
    let ghost = Ids {
        webhook: hookline_core::ids::WebhookId::generate().to_string(),
        delivery: hookline_core::ids::DeliveryId::generate().to_string(),
        credential: hookline_core::ids::CredentialId::generate().to_string(),
        key: hookline_core::ids::ApiKeyId::generate().to_string(),
        org: hookline_core::ids::OrganizationId::generate().to_string(),
    };
    scoped.push((Needs::Operator, operator.clone()));
    let other = env.organization().await;

    for route in routes() {
        let real_path = fill(route.path, &real);
        let ghost_path = fill(route.path, &ghost);
        let label = format!("{} {}", route.method, route.path);
        let (forged_operator, _) = hookline_core::apikey::generate_operator_token();
        let operator_elsewhere = (route.needs != Needs::Operator).then_some(operator.as_str());
        for presented in
            [None, Some(revoked_key.as_str()), Some("hk_forged"), Some(forged_operator.as_str()), operator_elsewhere]
        {
            let (status, body) = api.call(route.method, &real_path, presented, route.body.clone()).await;
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (401, Some("unauthorized")),
                "{label} with {presented:?}"
            );
        }
        for (has, secret) in scoped.iter().filter(|(has, _)| *has != Needs::Operator || route.needs == Needs::Operator)
        {
            let (status, body) = api.call(route.method, &ghost_path, Some(secret), route.body.clone()).await;
            if allowed(route.needs, *has) {
                assert!(matches!(status, 200 | 404 | 422 | 400), "{label} as {has:?}: {status} {body}");
            } else {
                assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "{label} as {has:?}");
            }
        }
        // Another organisation's admin: resources of this one do not exist for it.
        // With a valid body, so only the organisation check can refuse.
        let valid = match route.path {
            "/v1/webhooks/{webhook}/recover" => Some(json!({"since": "2020-01-01T00:00:00Z"})),
            "/v1/webhooks/{webhook}/test" => Some(json!({"event_type": "job.created"})),
            "/v1/webhooks/{webhook}" | "/v1/credentials/{credential}" if route.method == "PATCH" => {
                Some(json!({"name": "stolen"}))
            }
            _ => route.body.clone(),
        };
        if route.needs == Needs::Operator {
            // An organisation's own admin is not the operator.
            let (status, _) = api.call(route.method, &real_path, Some(&other.api_key), valid).await;
            assert_eq!(status, 403, "{label} with an organisation key");
            continue;
        }
        let (status, body) = api.call(route.method, &real_path, Some(&other.api_key), valid).await;
        let text = body.to_string();
        assert!(
            !text.contains("Secret Project") && !text.contains(&webhook_id),
            "{label} leaked to another organisation: {text}"
        );
        if route.path.contains('{') {
            assert_eq!(status, 404, "{label} from another organisation");
        }
    }
    // The resources are all still there and unchanged.
    let (status, still) = api.call("GET", &format!("/v1/webhooks/{webhook_id}"), key, None).await;
    assert_eq!((status, still["name"].as_str()), (200, Some("Secret Project")));
    drop(api);
    env.cleanup().await;
}
