//! Secrets never reach the logs: a `hookline all` process at debug level creates and
//! uses every credential type, an API key and signing secrets, and its whole output is
//! searched for them.
#![allow(clippy::unwrap_used, missing_docs)]
#![allow(clippy::too_many_lines, reason = "an end-to-end test reads best as one story, setup to last check")]

use std::process::{Command, Stdio};
use std::time::Duration;

use hookline_tests::{Receiver, TestEnv, eventually};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_any_log_line() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log_path = std::env::temp_dir().join(format!("hookline-logs-{}.txt", env.id));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut process = env
        .command(env!("CARGO_BIN_EXE_hookline"))
        .arg("all")
        .env("HOOKLINE__API__LISTEN", format!("127.0.0.1:{port}"))
        .env("HOOKLINE__TELEMETRY__LOG_LEVEL", "debug")
        .env("HOOKLINE__TELEMETRY__LOG_FORMAT", "json")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let ready = eventually(Duration::from_secs(30), || async {
        client.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(ready, "hookline all did not become ready");
    let call = |method: &str, path: &str, key: &str, body: Option<serde_json::Value>| {
        let mut request = client
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .bearer_auth(key)
            .header("content-type", "application/json");
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, serde_json::from_slice::<serde_json::Value>(&response.bytes().await.unwrap()).unwrap_or_default())
        }
    };

    let org = env.organization().await;
    let mut secrets = vec![org.api_key.clone()];
    let credentials = [
        ("headers", json!({"headers": {"X-Api-Key": "log-secret-headers"}})),
        ("basic", json!({"username": "u", "password": "log-secret-basic"})),
        ("token", json!({"key": "X-Token", "value": "log-secret-token"})),
        (
            "aws_sigv4",
            json!({"access_key": "AKID", "secret_key": "log-secret-aws", "region": "eu-west-1", "service": "execute-api", "base_endpoint": receiver.url("/aws_sigv4")}),
        ),
        ("hmac_sha256", json!({"client_id": "c", "client_secret": "log-secret-hmac"})),
    ];
    for (kind, values) in credentials {
        secrets.extend(values.to_string().split('"').filter(|s| s.starts_with("log-secret-")).map(String::from));
        let (status, credential) =
            call("POST", "/v1/credentials", &org.api_key, Some(json!({"name": kind, "type": kind, "values": values})))
                .await;
        assert_eq!(status, 201);
        let body = json!({"name": kind, "active": true, "events": ["job.created"],
            "endpoints": [{"url": receiver.url(&format!("/{kind}")), "credential_id": credential["id"]}]});
        let (status, webhook) = call("POST", "/v1/webhooks", &org.api_key, Some(body)).await;
        assert_eq!(status, 201);
        secrets.push(webhook["signing_secret"].as_str().unwrap().to_owned());
        let (_, rotated) = call(
            "POST",
            &format!("/v1/webhooks/{}/rotate-secret", webhook["id"].as_str().unwrap()),
            &org.api_key,
            None,
        )
        .await;
        secrets.push(rotated["signing_secret"].as_str().unwrap().to_owned());
    }
    let (status, _) =
        call("POST", "/v1/events", &org.api_key, Some(json!({"type": "job.created", "data": {"n": 1}}))).await;
    assert_eq!(status, 202);
    // Pings and the event reach every receiver, each authenticated as its type says.
    let expected = [
        ("headers", "x-api-key", "log-secret-headers".to_owned()),
        ("basic", "authorization", "Basic dTpsb2ctc2VjcmV0LWJhc2lj".to_owned()), // base64("u:log-secret-basic")
        ("token", "x-token", "log-secret-token".to_owned()),
        ("hmac_sha256", "x-hookline-client-id", "c".to_owned()),
    ];
    for (kind, header, value) in expected {
        for request in receiver.wait_for(&format!("/{kind}"), 2, Duration::from_secs(20)).await {
            assert_eq!(request.header(header), Some(value.as_str()), "{kind}");
        }
    }
    for request in receiver.wait_for("/aws_sigv4", 2, Duration::from_secs(20)).await {
        assert!(request.header("authorization").unwrap().starts_with("AWS4-HMAC-SHA256 Credential=AKID/"));
    }
    let all_recorded = eventually(Duration::from_secs(20), || async {
        env.scalar::<i64>("SELECT count(*) FROM attempts", &[]).await == 10
    })
    .await;
    assert!(all_recorded);

    Command::new("kill").arg("-TERM").arg(process.id().to_string()).status().unwrap();
    let exited = tokio::task::spawn_blocking(move || process.wait().unwrap()).await.unwrap();
    assert!(exited.success(), "hookline all did not shut down cleanly on SIGTERM");
    let logs = std::fs::read_to_string(&log_path).unwrap();
    std::fs::remove_file(&log_path).unwrap();
    assert!(logs.lines().count() > 20, "too little was logged to prove anything:\n{logs}");
    assert!(logs.contains("delivered"), "the run's deliveries were not logged");
    let whsec_bodies: Vec<String> = secrets.iter().filter_map(|s| s.strip_prefix("whsec_").map(String::from)).collect();
    for secret in secrets.iter().chain(&whsec_bodies) {
        assert!(!logs.contains(secret.as_str()), "a secret appears in the logs: {secret}");
    }
    env.cleanup().await;
}
