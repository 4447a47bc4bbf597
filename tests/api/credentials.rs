use hookline_tests::{Running, TestEnv};
use serde_json::json;

use crate::WAIT;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_credential_type_is_stored_encrypted_and_never_shown() {
    let env = TestEnv::new().await;
    let api = env.start_api().await;
    let org = env.organization().await;
    let key = Some(org.api_key.as_str());
    let secret_values =
        ["hdr-secret-1", "basic-pass-2", "token-secret-3", "aws-secret-4", "hmac-secret-5", "per-org-secret-6"];
    let cases = [
        ("none", json!(null)),
        ("headers", json!({"headers": {"X-Api-Key": "hdr-secret-1"}})),
        ("basic", json!({"username": "u", "password": "basic-pass-2"})),
        ("token", json!({"key": "X-Token", "value": "token-secret-3"})),
        (
            "aws_sigv4",
            json!({"access_key": "AKID", "secret_key": "aws-secret-4", "region": "eu-west-1", "service": "execute-api", "base_endpoint": "https://api.example.com"}),
        ),
        ("hmac_sha256", json!({"client_id": "client", "client_secret": "hmac-secret-5"})),
    ];
    for (kind, values) in cases {
        let mut body = json!({"name": format!("{kind} cred"), "type": kind});
        if !values.is_null() {
            body["values"] = values;
        }
        if kind == "token" {
            body["per_organization"] = json!({org.id.as_str(): {"key": "X-Token", "value": "per-org-secret-6"}});
        }
        let (status, created) = api.call("POST", "/v1/credentials", key, Some(body)).await;
        assert_eq!(status, 201, "{kind}: {created}");
        assert_eq!(created["type"], kind);
        if kind == "basic" {
            assert_eq!(created["fields_set"], json!(["password", "username"]));
        }
        if kind == "token" {
            assert_eq!(created["organizations"], json!([org.id.as_str()]));
        }
        let id = created["id"].as_str().unwrap();
        let (_, fetched) = api.call("GET", &format!("/v1/credentials/{id}"), key, None).await;
        assert_eq!(fetched["id"], id);
    }
    let (_, list) = api.call("GET", "/v1/credentials", key, None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 6);
    let shown = list.to_string();
    let stored: Vec<Vec<u8>> = env
        .pool
        .get()
        .await
        .unwrap()
        .query("SELECT secret FROM credentials", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for secret in secret_values {
        assert!(!shown.contains(secret), "{secret} was shown");
        assert!(
            !stored.iter().any(|s| s.windows(secret.len()).any(|w| w == secret.as_bytes())),
            "{secret} stored in clear"
        );
    }
    drop(api);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_and_mismatched_environments_are_refused_and_used_ones_cannot_be_deleted() {
    let env = TestEnv::new().await;
    let api = env.start_api().await;
    let org = env.organization().await;
    let key = Some(org.api_key.as_str());
    for (body, code, field) in [
        (json!({"name": "x", "type": "kerberos"}), "invalid_type", "type"),
        (json!({"name": "x", "type": "basic", "values": {"username": "u"}}), "invalid_credential", "values"),
        (json!({"name": "x", "type": "basic"}), "missing_values", "values"),
        (json!({"type": "none"}), "invalid_name", "name"),
        (
            json!({"name": "x", "type": "token", "per_organization": {"acme": {"key": "K", "value": "v"}}}),
            "invalid_organization",
            "per_organization",
        ),
    ] {
        let (status, error) = api.call("POST", "/v1/credentials", key, Some(body.clone())).await;
        assert_eq!(
            (status, error["error"]["code"].as_str(), error["error"]["field"].as_str()),
            (422, Some(code), Some(field)),
            "{body}"
        );
    }
    let (_, test_cred) =
        api.call("POST", "/v1/credentials", key, Some(json!({"name": "t", "type": "none", "test": true}))).await;
    let test_id = test_cred["id"].as_str().unwrap();
    let webhook = |test: bool, credential: &str| json!({"name": "w", "test": test, "events": ["job.*"], "endpoints": [{"url": "https://a.example.com/h", "credential_id": credential}]});
    let (status, error) = api.call("POST", "/v1/webhooks", key, Some(webhook(false, test_id))).await;
    assert_eq!((status, error["error"]["code"].as_str()), (422, Some("credential_environment_mismatch")));
    let other = env.organization().await;
    let (status, error) = api.call("POST", "/v1/webhooks", Some(&other.api_key), Some(webhook(true, test_id))).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (422, Some("unknown_credential")),
        "another organisation's credential"
    );
    let (status, created) = api.call("POST", "/v1/webhooks", key, Some(webhook(true, test_id))).await;
    assert_eq!(status, 201, "{created}");
    let webhook_id = created["id"].as_str().unwrap();

    let (status, error) = api.call("DELETE", &format!("/v1/credentials/{test_id}"), key, None).await;
    assert_eq!((status, error["error"]["code"].as_str()), (409, Some("credential_in_use")));
    assert!(error["error"]["message"].as_str().unwrap().contains(webhook_id));
    api.call("DELETE", &format!("/v1/webhooks/{webhook_id}"), key, None).await;
    assert_eq!(api.call("DELETE", &format!("/v1/credentials/{test_id}"), key, None).await.0, 204);
    assert_eq!(api.call("GET", &format!("/v1/credentials/{test_id}"), key, None).await.0, 404);
    drop(api);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_hmac_and_sigv4_credentials_go_on_the_wire_as_receivers_verify_them() {
    let running = Running::start(&[]).await;
    let Running { env, receiver, api, org, .. } = &running;
    let key = running.key();
    let (_, token) = api
        .call(
            "POST",
            "/v1/credentials",
            key,
            Some(json!({"name": "t", "type": "token", "values": {"key": "X-Api-Key", "value": "default-v"},
                "per_organization": {org.id.as_str(): {"key": "X-Api-Key", "value": "mine-v"}}})),
        )
        .await;
    let (_, hmac) = api
        .call(
            "POST",
            "/v1/credentials",
            key,
            Some(json!({"name": "h", "type": "hmac_sha256", "values": {"client_id": "crm-client", "client_secret": "hmac-key"}})),
        )
        .await;
    let (_, aws) = api
        .call(
            "POST",
            "/v1/credentials",
            key,
            Some(json!({"name": "a", "type": "aws_sigv4", "values": {"access_key": "AK", "secret_key": "SK",
                "region": "eu-west-1", "service": "execute-api", "base_endpoint": receiver.url("/aws")}})),
        )
        .await;
    // A literal `+` in a SigV4 endpoint's query is a plus to a SigV4 receiver (RFC 3986),
    // and must be signed as one.
    for (path, credential) in [("/token", &token), ("/hmac", &hmac), ("/aws?q=a+b&z=1&a=x%2By&e=", &aws)] {
        let body = json!({"name": "w", "active": true, "events": ["job.created"],
            "endpoints": [{"url": receiver.url(path), "credential_id": credential["id"]}]});
        assert_eq!(api.call("POST", "/v1/webhooks", key, Some(body)).await.0, 201);
    }
    env.publish(json!({"type": "job.created", "organization": org.id})).await;
    let requests = receiver.wait_for("/token", 2, WAIT).await; // the activation ping, then the event
    assert!(requests.iter().all(|r| r.header("x-api-key") == Some("mine-v")));
    // The attempt is recorded once its answer is in: a moment after the receiver has it.
    let token_attempts = "FROM attempts a JOIN deliveries d ON d.id = a.delivery_id JOIN endpoints e ON e.id = d.endpoint_id WHERE e.url LIKE '%/token'";
    let recorded_at_all = hookline_tests::eventually(WAIT, || async {
        env.scalar::<i64>(&format!("SELECT count(*) {token_attempts}"), &[]).await > 0
    })
    .await;
    assert!(recorded_at_all, "the token endpoint's attempts are recorded");
    let recorded: serde_json::Value =
        env.scalar(&format!("SELECT request_headers {token_attempts} LIMIT 1"), &[]).await;
    assert_eq!(recorded["x-api-key"], "[redacted]");

    // The HMAC receiver checks the scheme documented in the README, with its own HMAC code.
    for request in receiver.wait_for("/hmac", 2, WAIT).await {
        assert_eq!(request.header("x-hookline-client-id"), Some("crm-client"));
        let timestamp = request.header("x-hookline-timestamp").unwrap();
        let mut signed = format!("{timestamp}.").into_bytes();
        signed.extend_from_slice(&request.body);
        let expected = hex::encode(mac(b"hmac-key", &signed));
        assert_eq!(request.header("x-hookline-signature"), Some(format!("sha256={expected}").as_str()));
    }
    // The SigV4 receiver recomputes the signature from the canonical request, per AWS's
    // specification, without the signer hookline uses.
    for request in receiver.wait_for("/aws", 2, WAIT).await {
        assert!(sigv4_verifies(&request, "SK", "eu-west-1", "execute-api"), "{} {:?}", request.query, request.headers);
        assert_eq!(query_pairs(&request.query)[2], ("q".to_owned(), "a+b".to_owned()), "the plus is still a plus");
        assert!(!sigv4_verifies(&request, "wrong-secret", "eu-west-1", "execute-api"), "the check can fail");
        assert!(request.header("authorization").unwrap().starts_with("AWS4-HMAC-SHA256 Credential=AK/"));
    }
    running.stop().await;
}

/// HMAC-SHA256 of `data` keyed with `key`.
fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::{KeyInit as _, Mac as _};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// SHA-256 of `data`, in hex.
fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
}

/// AWS Signature Version 4, computed from the received request as an AWS service would.
/// A query string read as RFC 3986 (and SigV4) read it: `%XX` decoded, `+` a plus;
/// pairs sorted by name.
fn query_pairs(query: &str) -> Vec<(String, String)> {
    let decode = |text: &str| {
        let bytes = text.as_bytes();
        let (mut out, mut i) = (Vec::new(), 0);
        while i < bytes.len() {
            let hex = bytes.get(i + 1..i + 3).and_then(|hex| std::str::from_utf8(hex).ok());
            if let (b'%', Some(Ok(byte))) = (bytes[i], hex.map(|hex| u8::from_str_radix(hex, 16))) {
                out.push(byte);
                i += 3;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8(out).unwrap()
    };
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect();
    pairs.sort();
    pairs
}

/// SigV4's URI encoding: unreserved characters as they are, every other byte `%XX`.
fn aws_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn sigv4_verifies(request: &hookline_tests::Recorded, secret: &str, region: &str, service: &str) -> bool {
    let authorization = request.header("authorization").unwrap();
    let field = |name: &str| {
        authorization.split([' ', ',']).find_map(|part| part.strip_prefix(&format!("{name}="))).unwrap().to_owned()
    };
    let (credential, signed_headers, signature) = (field("Credential"), field("SignedHeaders"), field("Signature"));
    let scope: Vec<&str> = credential.split_once('/').unwrap().1.split('/').collect();
    assert_eq!((scope[1], scope[2], scope[3]), (region, service, "aws4_request"));
    let amz_date = request.header("x-amz-date").unwrap();
    let canonical_headers: String = signed_headers
        .split(';')
        .map(|name| format!("{name}:{}\n", request.header(name).unwrap_or_default().trim()))
        .collect();
    let mut pairs = query_pairs(&request.query);
    pairs.iter_mut().for_each(|(name, value)| (*name, *value) = (aws_encode(name), aws_encode(value)));
    pairs.sort();
    let canonical_query = pairs.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join("&");
    let canonical_request = format!(
        "{}\n{}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{}",
        request.method,
        request.path,
        sha256_hex(&request.body)
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{}/{region}/{service}/aws4_request\n{}",
        scope[0],
        sha256_hex(canonical_request.as_bytes())
    );
    let date_key = mac(format!("AWS4{secret}").as_bytes(), scope[0].as_bytes());
    let region_key = mac(&date_key, region.as_bytes());
    let service_key = mac(&region_key, service.as_bytes());
    let signing_key = mac(&service_key, b"aws4_request");
    hex::encode(mac(&signing_key, string_to_sign.as_bytes())) == signature
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_without_values_for_the_events_organisation_fails_clearly_and_is_not_retried() {
    let running = Running::start(&[]).await;
    let Running { receiver, api, .. } = &running;
    let key = running.key();
    let someone_else = hookline_core::ids::OrganizationId::generate();
    let (_, credential) = api
        .call(
            "POST",
            "/v1/credentials",
            key,
            Some(json!({"name": "t", "type": "token", "per_organization": {someone_else.as_str(): {"key": "X-Key", "value": "v"}}})),
        )
        .await;
    let body = json!({"name": "w", "active": true, "events": ["job.created"],
        "endpoints": [{"url": receiver.url("/hook"), "credential_id": credential["id"]}]});
    let (_, webhook) = api.call("POST", "/v1/webhooks", key, Some(body)).await;
    let id = webhook["id"].as_str().unwrap();

    let failed = hookline_tests::eventually(WAIT, || async {
        let (_, log) = api.call("GET", &format!("/v1/webhooks/{id}/deliveries?status=failed"), key, None).await;
        log["data"].as_array().is_some_and(|d| d.len() == 1)
    })
    .await;
    assert!(failed, "the ping fails for good at once");
    let (_, log) = api.call("GET", &format!("/v1/webhooks/{id}/deliveries"), key, None).await;
    let (_, detail) =
        api.call("GET", &format!("/v1/deliveries/{}", log["data"][0]["id"].as_str().unwrap()), key, None).await;
    let attempts = detail["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "not retried");
    assert_eq!(attempts[0]["error_kind"], "invalid_endpoint");
    assert!(attempts[0]["error_message"].as_str().unwrap().contains("no values for organisation"));
    assert!(receiver.requests("/hook").is_empty(), "nothing was sent unauthenticated");
    running.stop().await;
}

/// Where a credential is sent is an admin's decision: a write key cannot attach one to a
/// URL of its choosing (hookline would send the secret there), nor move an endpoint
/// that has one; it can still change everything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_admin_decides_where_a_credential_is_sent() {
    let env = TestEnv::new().await;
    let api = env.start_api().await;
    let org = env.organization().await;
    let admin = Some(org.api_key.as_str());
    let (_, credential) = api
        .call(
            "POST",
            "/v1/credentials",
            admin,
            Some(json!({"name": "crm", "type": "basic", "values": {"username": "u", "password": "p"}})),
        )
        .await;
    let credential = credential["id"].as_str().unwrap().to_owned();
    let (_, writer) =
        api.call("POST", "/v1/api-keys", admin, Some(json!({"label": "w", "scopes": ["webhooks:write"]}))).await;
    let writer = writer["key"].as_str();
    let with = |url: &str| json!({"name": "w", "events": ["job.created"], "endpoints": [{"url": url, "credential_id": credential}]});

    let (status, error) = api.call("POST", "/v1/webhooks", writer, Some(with("https://attacker.example/x"))).await;
    assert_eq!((status, error["error"]["code"].as_str()), (403, Some("credential_needs_admin")), "{error}");
    let (status, webhook) = api.call("POST", "/v1/webhooks", admin, Some(with("https://crm.example.com/h"))).await;
    assert_eq!(status, 201, "{webhook}");
    let path = format!("/v1/webhooks/{}", webhook["id"].as_str().unwrap());
    let (status, error) = api
        .call(
            "PATCH",
            &path,
            writer,
            Some(json!({"endpoints": [{"url": "https://attacker.example/x", "credential_id": credential}]})),
        )
        .await;
    assert_eq!((status, error["error"]["code"].as_str()), (403, Some("credential_needs_admin")), "{error}");
    // The same URL and credential, or anything else about the webhook: a write key's.
    let (status, _) = api.call("PATCH", &path, writer, Some(json!({"name": "renamed"}))).await;
    assert_eq!(status, 200);
    let (status, _) = api
        .call(
            "PATCH",
            &path,
            writer,
            Some(json!({"endpoints": [{"url": "https://crm.example.com/h", "credential_id": credential}]})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = api
        .call(
            "PATCH",
            &path,
            admin,
            Some(json!({"endpoints": [{"url": "https://crm2.example.com/h", "credential_id": credential}]})),
        )
        .await;
    assert_eq!(status, 200, "an admin may");
    drop(api);
    env.cleanup().await;
}

/// A credential goes only where it may be sent: its `allowed_hosts`, and for SigV4,
/// under its `base_endpoint`. Checked when a webhook is created or changed, when the
/// credential is changed, and by the worker before each request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_goes_only_where_it_may_be_sent() {
    let running = Running::start(&[]).await;
    let Running { env, receiver, api, org, .. } = &running;
    let key = running.key();
    let webhook = |url: &str, credential: &serde_json::Value| json!({"name": "w", "events": ["job.created"], "endpoints": [{"url": url, "credential_id": credential["id"]}]});
    let (status, bound) = api
        .call(
            "POST",
            "/v1/credentials",
            key,
            Some(json!({"name": "t", "type": "token", "values": {"key": "X-K", "value": "v"}, "allowed_hosts": ["*.example.com", "*.example.com"]})),
        )
        .await;
    assert_eq!((status, &bound["allowed_hosts"]), (201, &json!(["*.example.com"])), "{bound}");
    let bound_id = bound["id"].as_str().unwrap().to_owned();
    for (method, path, body, status, code, field) in [
        (
            "POST",
            "/v1/webhooks".to_owned(),
            webhook("https://attacker.example.net/h", &bound),
            422,
            "host_not_allowed",
            "endpoints.url",
        ),
        (
            "POST",
            "/v1/webhooks".to_owned(),
            webhook("https://example.com.attacker.net/h", &bound),
            422,
            "host_not_allowed",
            "endpoints.url",
        ),
        (
            "POST",
            "/v1/credentials".to_owned(),
            json!({"name": "x", "type": "token", "values": {"key": "X-K", "value": "v"}, "allowed_hosts": ["https://a.example.com"]}),
            422,
            "invalid_allowed_hosts",
            "allowed_hosts",
        ),
        (
            "POST",
            "/v1/credentials".to_owned(),
            json!({"name": "x", "type": "aws_sigv4", "values": {"access_key": "AK", "secret_key": "SK", "region": "r", "service": "s", "base_endpoint": "x.example.com"}}),
            422,
            "invalid_credential",
            "values",
        ),
    ] {
        let (got, error) = api.call(method, &path, key, Some(body.clone())).await;
        assert_eq!(got, status, "{body}: {error}");
        assert_eq!(
            (error["error"]["code"].as_str(), error["error"]["field"].as_str()),
            (Some(code), Some(field)),
            "{error}"
        );
    }
    let (status, created) =
        api.call("POST", "/v1/webhooks", key, Some(webhook("https://hooks.example.com/h", &bound))).await;
    assert_eq!(status, 201, "{created}");
    let webhook_path = format!("/v1/webhooks/{}", created["id"].as_str().unwrap());
    let moved = json!({"endpoints": [{"url": "https://attacker.example.net/h", "credential_id": bound_id}]});
    let (status, error) = api.call("PATCH", &webhook_path, key, Some(moved)).await;
    assert_eq!((status, error["error"]["code"].as_str()), (422, Some("host_not_allowed")), "{error}");
    // Narrowing the hosts under an endpoint that uses them is refused, naming it.
    let narrowed = json!({"allowed_hosts": ["other.example.org"]});
    let (status, error) = api.call("PATCH", &format!("/v1/credentials/{bound_id}"), key, Some(narrowed)).await;
    assert_eq!((status, error["error"]["code"].as_str()), (409, Some("host_not_allowed")), "{error}");
    assert!(error["error"]["message"].as_str().unwrap().contains("hooks.example.com"), "{error}");
    let (_, kept) = api.call("GET", &format!("/v1/credentials/{bound_id}"), key, None).await;
    assert_eq!(kept["allowed_hosts"], json!(["*.example.com"]));

    // SigV4: the signature is scoped to the base endpoint, and so is the credential.
    let (_, aws) = api
        .call(
            "POST",
            "/v1/credentials",
            key,
            Some(json!({"name": "a", "type": "aws_sigv4", "values": {"access_key": "AK", "secret_key": "SK",
                "region": "eu-west-1", "service": "execute-api", "base_endpoint": "https://abc.execute-api.eu-west-1.amazonaws.com/prod"}})),
        )
        .await;
    let base = "https://abc.execute-api.eu-west-1.amazonaws.com";
    for (url, status) in [
        (format!("{base}/dev/h"), 422),
        ("https://attacker.example/prod/h".to_owned(), 422),
        (format!("{base}/prod/h"), 201),
    ] {
        let (got, answer) = api.call("POST", "/v1/webhooks", key, Some(webhook(&url, &aws))).await;
        assert_eq!(got, status, "{url}: {answer}");
    }

    // The worker checks again: an endpoint moved behind the API's back (here, straight in
    // the database) to a host the credential does not allow gets no request.
    receiver.always("/h", hookline_tests::Reply::Status(200));
    let (_, local) = api
        .call(
            "POST",
            "/v1/credentials",
            key,
            Some(json!({"name": "l", "type": "token", "values": {"key": "X-K", "value": "v"}, "allowed_hosts": ["127.0.0.1"]})),
        )
        .await;
    let body = json!({"name": "w", "active": true, "events": ["job.created"], "endpoints": [{"url": receiver.url("/h"), "credential_id": local["id"]}]});
    let (status, moved) = api.call("POST", "/v1/webhooks", key, Some(body)).await;
    assert_eq!(status, 201, "{moved}");
    receiver.wait_for("/h", 1, WAIT).await; // the activation ping, allowed
    let id = moved["id"].as_str().unwrap().to_owned();
    env.pool
        .get()
        .await
        .unwrap()
        .execute("UPDATE endpoints SET url = replace(url, '127.0.0.1', 'localhost') WHERE webhook_id = $1", &[&id])
        .await
        .unwrap();
    let (_, webhook_now) = api.call("GET", &format!("/v1/webhooks/{id}"), key, None).await;
    assert!(webhook_now["endpoints"][0]["url"].as_str().unwrap().contains("localhost"), "{webhook_now}");
    env.publish(json!({"type": "job.created", "organization": org.id})).await;
    let log = format!("/v1/webhooks/{id}/deliveries?status=failed");
    let refused = hookline_tests::eventually(WAIT, || async {
        api.call("GET", &log, key, None).await.1["data"].as_array().is_some_and(|d| d.len() == 1)
    })
    .await;
    assert!(refused, "the event's delivery fails for good");
    let (_, page) = api.call("GET", &log, key, None).await;
    let (_, detail) =
        api.call("GET", &format!("/v1/deliveries/{}", page["data"][0]["id"].as_str().unwrap()), key, None).await;
    let attempt = &detail["attempts"][0];
    assert_eq!(attempt["error_kind"], "invalid_endpoint", "{detail}");
    assert!(attempt["error_message"].as_str().unwrap().contains("may be sent only to 127.0.0.1"), "{detail}");
    assert_eq!(receiver.requests("/h").len(), 1, "only the ping reached the receiver");
    running.stop().await;
}
