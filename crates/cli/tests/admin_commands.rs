//! The bootstrap commands, run as the `hookline` binary against the real database and
//! broker: their JSON output is what an operator copies into the next command.
#![allow(clippy::unwrap_used, missing_docs)]
#![allow(clippy::too_many_lines, reason = "an end-to-end test reads best as one story, setup to last check")]

use std::process::Output;
use std::time::Duration;

use hookline_tests::{Receiver, TestEnv};

async fn hookline(env: &TestEnv, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
    let mut command = env.command(env!("CARGO_BIN_EXE_hookline"));
    command.args(args).envs(extra_env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap()
}

fn json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "command failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn org_webhook_and_publish_commands_bootstrap_a_working_delivery() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start().await;

    let org = json(&hookline(&env, &["org", "create", "Acme Solar"], &[]).await);
    let org_id = org["id"].as_str().unwrap().to_owned();
    assert!(org_id.starts_with("org_"));
    assert!(org["api_key"].as_str().unwrap().starts_with("hk_"));

    let url = receiver.url("/crm");
    let args =
        ["webhook", "create", "--org", &org_id, "--name", "CRM", "--url", &url, "--events", "job.*,estimate.created"];
    let inactive = json(&hookline(&env, &args, &[]).await);
    assert_eq!(inactive["active"], false, "webhooks start inactive");
    let mut active_args = args.to_vec();
    active_args.extend(["--active", "--method", "PATCH"]);
    let webhook = json(&hookline(&env, &active_args, &[]).await);
    let secret = webhook["signing_secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));

    let refused = hookline(
        &env,
        &["webhook", "create", "--org", &org_id, "--name", "x", "--url", "ftp://h/x", "--events", "job.created"],
        &[],
    )
    .await;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("endpoints.url"));

    let services = env.start();
    let published = json(
        &hookline(
            &env,
            &["publish", "--org", &org_id, "--type", "job.created", "--data", r#"{"jobId":"J-9"}"#, "--id", "k-1"],
            &[],
        )
        .await,
    );
    assert_eq!(published["published"]["id"], "k-1");
    let request = receiver.wait_for("/crm", 1, Duration::from_secs(20)).await.remove(0);
    assert_eq!(request.method, "PATCH");
    assert_eq!(request.json()["payload"]["jobId"], "J-9");
    standardwebhooks::Webhook::new(&secret).unwrap().verify(&request.body, &request.headers).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.requests("/crm").len(), 1, "the inactive webhook received nothing");
    services.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_configuration_stops_start_up_naming_the_key() {
    let env = TestEnv::new().await;
    let output = hookline(&env, &["migrate"], &[("HOOKLINE__RETRY__DELAYS", "5m,0s")]).await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("retry.delays"));
    let output = hookline(&env, &["worker"], &[("HOOKLINE__SECRETS__KEY", "")]).await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("secrets.key"));
    // A well-formed key that is not the one this database's secrets were sealed with.
    let settled = hookline(&env, &["org", "create", "first"], &[]).await;
    assert!(settled.status.success());
    hookline_store::repo::key_check::verify(&env.pool, &env.secrets).await.unwrap();
    let other_key = hookline_core::crypto::SecretBox::generate_key();
    for service in ["worker", "api"] {
        let output = hookline(&env, &[service], &[("HOOKLINE__SECRETS__KEY", other_key.as_str())]).await;
        assert!(!output.status.success(), "{service} started with the wrong key");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("secrets.key is not the key"), "{service}: {stderr}");
    }
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_signed_deliveries_and_a_retry_and_finishes() {
    // `scripts/dev` runs this: the README's first command. The demo retries after 3 s and
    // 6 s: the sandbox is told, so its cleanup removes those delay queues too.
    let env = TestEnv::with(&[("HOOKLINE__RETRY__DELAYS", "3s,6s")]).await;
    let output = hookline(&env, &["demo", "--timeout", "60s"], &[]).await;
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "the demo failed: {printed}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(printed.contains("demo finished: every delivery succeeded"), "{printed}");
    assert_eq!(printed.matches("signature=valid").count(), 4, "three deliveries and one retry, all signed: {printed}");
    assert!(!printed.contains("INVALID"), "{printed}");
    assert!(printed.contains("(delivery now retrying)") && printed.contains("#2 report.created"), "{printed}");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_admin_key_is_kept_and_the_operator_can_mint_a_key() {
    let env = TestEnv::new().await;
    let api = env.start_api().await;
    let org = json(&hookline(&env, &["org", "create", "Acme Solar"], &[]).await);
    let (org_id, first) = (org["id"].as_str().unwrap().to_owned(), org["api_key"].as_str().unwrap().to_owned());
    let key_ids = |listed: &serde_json::Value| -> Vec<String> {
        listed["data"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap().to_owned()).collect()
    };
    let (_, listed) = api.call("GET", "/v1/api-keys", Some(&first), None).await;
    let first_id = key_ids(&listed).remove(0);

    // The only admin key cannot revoke itself: the organisation would be locked out.
    let (status, error) = api.call("DELETE", &format!("/v1/api-keys/{first_id}"), Some(&first), None).await;
    assert_eq!((status, error["error"]["code"].as_str()), (409, Some("last_admin_key")), "{error}");
    // With a second admin key, either may go, but not both.
    let (status, second) = api
        .call("POST", "/v1/api-keys", Some(&first), Some(serde_json::json!({"label": "b", "scopes": ["admin"]})))
        .await;
    assert_eq!(status, 201, "{second}");
    let (second, second_id) = (second["key"].as_str().unwrap().to_owned(), second["id"].as_str().unwrap().to_owned());
    let (status, _) = api.call("DELETE", &format!("/v1/api-keys/{first_id}"), Some(&second), None).await;
    assert_eq!(status, 204);
    let (status, _) = api.call("DELETE", &format!("/v1/api-keys/{second_id}"), Some(&second), None).await;
    assert_eq!(status, 409);

    // The operator mints a key for the organisation from the command line.
    let minted = json(&hookline(&env, &["org", "key", "--org", &org_id, "--scopes", "webhooks:read"], &[]).await);
    let reader = minted["api_key"].as_str().unwrap();
    assert_eq!(minted["scopes"], serde_json::json!(["webhooks:read"]));
    assert_eq!(api.call("GET", "/v1/webhooks", Some(reader), None).await.0, 200);
    assert_eq!(api.call("GET", "/v1/api-keys", Some(reader), None).await.0, 403, "only what its scopes allow");
    let unknown =
        hookline(&env, &["org", "key", "--org", &hookline_core::ids::OrganizationId::generate().to_string()], &[])
            .await;
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("does not exist"));
    drop(api);
    env.cleanup().await;
}

/// `hookline operator token` makes a token that an API configured with the hash it
/// prints admits to the operator's routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_token_command_prints_a_token_and_the_hash_that_admits_it() {
    let env = TestEnv::new().await;
    let output = hookline(&env, &["operator", "token"], &[]).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed = json(&output);
    let (token, hash) = (printed["operator_token"].as_str().unwrap(), printed["hash"].as_str().unwrap());
    assert!(token.starts_with("hlop_"), "{printed}");
    assert_eq!(printed["configure"], format!("HOOKLINE__API__OPERATOR_TOKEN_HASHES={hash}"));
    assert!(hookline_core::apikey::is_operator_token(token, &[hash.to_owned()]));
    let again = json(&hookline(&env, &["operator", "token"], &[]).await);
    assert_ne!(again["operator_token"], printed["operator_token"], "a new token each time");
    // A first bootstrap can have both at once: the organisation and an operator token.
    let bootstrap = json(&hookline(&env, &["org", "create", "First", "--operator-token"], &[]).await);
    assert!(bootstrap["api_key"].as_str().unwrap().starts_with("hk_"), "{bootstrap}");
    let operator = &bootstrap["operator"];
    let token = operator["operator_token"].as_str().unwrap();
    assert!(hookline_core::apikey::is_operator_token(token, &[operator["hash"].as_str().unwrap().to_owned()]));
    env.cleanup().await;
}
