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
