use hookline_tests::{Receiver, Reply, TestEnv, eventually};
use serde_json::json;

use crate::WAIT;

/// The single attempt's (status code, error kind) once recorded.
async fn first_attempt(env: &TestEnv) -> (Option<i32>, Option<String>) {
    let recorded =
        eventually(WAIT, || async { env.scalar::<i64>("SELECT count(*) FROM attempts", &[]).await >= 1 }).await;
    assert!(recorded, "no attempt was recorded");
    let row = env
        .pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT status_code, error_kind FROM attempts WHERE attempt_number = 1", &[])
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_failures_and_are_not_followed() {
    let env = TestEnv::with(&[("HOOKLINE__RETRY__DELAYS", "1h")]).await;
    let receiver = Receiver::start().await;
    receiver.always("/moved", Reply::Redirect("/elsewhere"));
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/moved")], &["job.created"])).await;
    let services = env.start();
    env.publish(json!({"type": "job.created", "organization": org.id})).await;

    assert_eq!(first_attempt(&env).await, (Some(302), Some("http_status".into())));
    assert!(receiver.requests("/elsewhere").is_empty(), "the redirect was followed");
    services.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_a_failed_attempt() {
    let env = TestEnv::with(&[("HOOKLINE__RETRY__DELAYS", "1h")]).await;
    // A port that was just free: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[format!("http://{closed}/hook")], &["job.created"])).await;
    let services = env.start();
    env.publish(json!({"type": "job.created", "organization": org.id})).await;

    assert_eq!(first_attempt(&env).await, (None, Some("connect".into())));
    assert!(
        eventually(WAIT, || async { env.scalar::<String>("SELECT status FROM deliveries", &[]).await == "retrying" })
            .await
    );
    services.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_are_refused_by_default_and_not_retried() {
    let env = TestEnv::with(&[("HOOKLINE__DELIVERY__ALLOW_PRIVATE_NETWORKS", "false")]).await;
    let receiver = Receiver::start().await;
    let org = env.organization().await;
    // Both a literal loopback address and a name that resolves to one.
    let literal = receiver.url("/literal");
    let named = receiver.url("/named").replace("127.0.0.1", "localhost");
    env.create_webhook(TestEnv::webhook(&org.id, &[literal, named], &["job.created"])).await;
    let services = env.start();
    env.publish(json!({"type": "job.created", "organization": org.id})).await;

    let failed = eventually(WAIT, || async {
        env.scalar::<i64>("SELECT count(*) FROM deliveries WHERE status = 'failed'", &[]).await == 2
    })
    .await;
    assert!(failed, "both deliveries fail for good without retrying");
    let blocked: i64 = env.scalar("SELECT count(*) FROM attempts WHERE error_kind = 'blocked_address'", &[]).await;
    assert_eq!(blocked, 2);
    assert!(receiver.all_requests().is_empty(), "a blocked request reached the receiver");
    assert_eq!(env.scalar::<i64>("SELECT count(*) FROM attempts", &[]).await, 2, "no retry");
    services.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_credentials_are_sent_and_redacted_in_the_record() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start().await;
    let org = env.organization().await;
    let mut input = TestEnv::webhook(&org.id, &[receiver.url("/hook")], &["job.created"]);
    input.basic = Some(("crm-user".into(), "s3cret-pass".into()));
    env.create_webhook(input).await;
    let services = env.start();
    env.publish(json!({"type": "job.created", "organization": org.id})).await;

    let request = receiver.wait_for("/hook", 1, WAIT).await.remove(0);
    // base64("crm-user:s3cret-pass")
    assert_eq!(request.header("authorization"), Some("Basic Y3JtLXVzZXI6czNjcmV0LXBhc3M="));
    assert_eq!(first_attempt(&env).await, (Some(200), None));
    let recorded: serde_json::Value = env.scalar("SELECT request_headers FROM attempts", &[]).await;
    assert_eq!(recorded["authorization"], "[redacted]");
    let stored: Vec<u8> = env.scalar("SELECT secret FROM credentials", &[]).await;
    assert!(!stored.windows(11).any(|w| w == b"s3cret-pass"), "the password is stored in clear");
    services.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kept_response_body_is_capped_at_64_kib() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start().await;
    receiver.always("/big", Reply::Body(200, 200 * 1024));
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/big")], &["job.created"])).await;
    let services = env.start();
    env.publish(json!({"type": "job.created", "organization": org.id})).await;

    assert_eq!(first_attempt(&env).await, (Some(200), None));
    let kept: i32 = env.scalar("SELECT length(response_body) FROM attempts", &[]).await;
    let truncated: bool = env.scalar("SELECT response_body_truncated FROM attempts", &[]).await;
    assert_eq!((kept, truncated), (64 * 1024, true));
    services.stop().await;
    env.cleanup().await;
}
