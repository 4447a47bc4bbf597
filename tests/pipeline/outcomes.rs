use std::time::Duration;

use hookline_core::delivery::DeliveryStatus;
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
        .query_one("SELECT status_code, error_kind::text FROM attempts WHERE attempt_number = 1", &[])
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
        eventually(WAIT, || async {
            env.scalar::<DeliveryStatus>("SELECT status FROM deliveries", &[]).await == DeliveryStatus::Retrying
        })
        .await
    );
    services.stop().await;
    env.cleanup().await;
}

/// Every form of a non-public address the guard must see through, with its path.
fn private_forms(receiver: &Receiver) -> Vec<String> {
    let port = receiver.url("/").trim_start_matches("http://127.0.0.1:").trim_end_matches('/').to_owned();
    vec![
        format!("http://127.0.0.1:{port}/literal"),
        format!("http://2130706433:{port}/decimal"),
        format!("http://0177.0.0.1:{port}/octal"),
        format!("http://[::ffff:127.0.0.1]:{port}/mapped"),
        format!("http://[::1]:{port}/v6-loopback"),
        format!("http://localhost:{port}/named"),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        format!("http://0x7f000001:{port}/hex"),
        format!("http://0x7f.0.0.1:{port}/hex-dotted"),
        format!("http://127.1:{port}/short"),
        format!("http://[0:0:0:0:0:ffff:7f00:1]:{port}/mapped-hex"),
        format!("http://[::ffff:0:127.0.0.1]:{port}/translated"),
        format!("http://[::127.0.0.1]:{port}/compatible"),
        format!("http://[64:ff9b::127.0.0.1]:{port}/nat64"),
        format!("http://[64:ff9b:1::7f00:1]:{port}/nat64-local"),
        format!("http://[2002:7f00:1::]:{port}/6to4"),
        format!("http://LocalHost:{port}/named-case"),
        format!("http://0.0.0.0:{port}/unspecified"),
        format!("http://[::]:{port}/v6-unspecified"),
        format!("http://192.88.99.1:{port}/6to4-relay"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_in_every_form_are_refused_by_default_and_not_retried() {
    let env = TestEnv::with(&[("HOOKLINE__DELIVERY__ALLOW_PRIVATE_NETWORKS", "false")]).await;
    let receiver = Receiver::start().await;
    let org = env.organization().await;
    let forms = private_forms(&receiver);
    for url in &forms {
        env.create_webhook(TestEnv::webhook(&org.id, std::slice::from_ref(url), &["job.created"])).await;
    }
    let services = env.start();
    env.publish(json!({"type": "job.created", "organization": org.id})).await;

    let total = forms.len() as i64;
    let failed = eventually(WAIT, || async {
        env.scalar::<i64>("SELECT count(*) FROM deliveries WHERE status = 'failed'", &[]).await == total
    })
    .await;
    assert!(failed, "every delivery fails for good without retrying");
    let others = env
        .pool
        .get()
        .await
        .unwrap()
        .query("SELECT request_url, error_kind::text FROM attempts WHERE error_kind <> 'blocked_address'", &[])
        .await
        .unwrap();
    let others: Vec<(String, Option<String>)> = others.iter().map(|row| (row.get(0), row.get(1))).collect();
    assert!(others.is_empty(), "attempts not refused as blocked_address: {others:?}");
    assert!(receiver.all_requests().is_empty(), "a blocked request reached the receiver");
    assert_eq!(env.scalar::<i64>("SELECT count(*) FROM attempts", &[]).await, total, "no retry");
    services.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_network_lets_a_chosen_private_address_through() {
    let env = TestEnv::with(&[
        ("HOOKLINE__DELIVERY__ALLOW_PRIVATE_NETWORKS", "false"),
        ("HOOKLINE__DELIVERY__ALLOWED_NETWORKS", "127.0.0.1/32"),
    ])
    .await;
    let receiver = Receiver::start().await;
    let org = env.organization().await;
    let forms = private_forms(&receiver);
    let (allowed, still_blocked) = (&forms[5], &forms[4]); // localhost resolves into 127.0.0.1; [::1] is outside
    env.create_webhook(TestEnv::webhook(&org.id, &[allowed.clone(), still_blocked.clone()], &["job.created"])).await;
    let services = env.start();
    env.publish(json!({"type": "job.created", "organization": org.id})).await;

    receiver.wait_for("/named", 1, WAIT).await;
    let blocked = eventually(WAIT, || async {
        env.scalar::<i64>("SELECT count(*) FROM attempts WHERE error_kind = 'blocked_address'", &[]).await == 1
    })
    .await;
    assert!(blocked, "[::1] stays blocked");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_endpoint_cannot_take_the_slots_of_a_healthy_one() {
    // 4 slots, at most 2 per endpoint; the hanging receiver holds its attempts for 10 s.
    let env = TestEnv::with(&[
        ("HOOKLINE__DELIVERY__CONCURRENCY", "4"),
        ("HOOKLINE__DELIVERY__MAX_IN_FLIGHT_PER_ENDPOINT", "2"),
        ("HOOKLINE__DELIVERY__TIMEOUT", "10s"),
        ("HOOKLINE__RETRY__DELAYS", "1h"),
    ])
    .await;
    let receiver = Receiver::start().await;
    receiver.always("/hang", Reply::Hang);
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/hang")], &["job.created"])).await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/ok")], &["job.updated"])).await;
    let services = env.start();
    for n in 0..6 {
        env.publish(json!({"type": "job.created", "organization": org.id, "data": {"n": n}})).await;
    }
    receiver.wait_for("/hang", 2, WAIT).await;
    for n in 0..10 {
        env.publish(json!({"type": "job.updated", "organization": org.id, "data": {"n": n}})).await;
    }

    // Without the cap the six hanging jobs would hold all four slots until they timed out.
    receiver.wait_for("/ok", 10, WAIT).await;
    let timed_out: i64 = env.scalar("SELECT count(*) FROM attempts WHERE error_kind = 'timeout'", &[]).await;
    assert_eq!(timed_out, 0, "the healthy deliveries waited for the hanging ones to time out");
    assert_eq!(receiver.requests("/hang").len(), 2, "never more than 2 attempts in flight to one endpoint");
    services.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_ends_is_cut_at_64_kib_and_the_attempt_completes() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start().await;
    receiver.always("/stream", Reply::Endless);
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/stream")], &["job.created"])).await;
    let services = env.start();
    env.publish(json!({"type": "job.created", "organization": org.id})).await;

    assert_eq!(first_attempt(&env).await, (Some(200), None));
    let kept: i32 = env.scalar("SELECT length(response_body) FROM attempts", &[]).await;
    let truncated: bool = env.scalar("SELECT response_body_truncated FROM attempts", &[]).await;
    assert_eq!((kept, truncated), (64 * 1024, true));
    assert!(
        eventually(WAIT, || async {
            env.scalar::<DeliveryStatus>("SELECT status FROM deliveries", &[]).await == DeliveryStatus::Succeeded
        })
        .await
    );
    services.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_headers_cannot_override_the_signature_content_type_or_host() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start().await;
    let org = env.organization().await;
    let mut input = TestEnv::webhook(&org.id, &[receiver.url("/hook")], &["job.created"]);
    input.endpoints[0].headers = [("x-tenant".to_owned(), "acme".to_owned())].into_iter().collect();
    let webhook = env.create_webhook(input).await;
    // The API refuses these now; an endpoint stored with them before still cannot use them.
    env.pool
        .get()
        .await
        .unwrap()
        .execute(
            r#"UPDATE endpoints SET headers = headers
                 || '{"webhook-signature": "v1,forged", "Content-Type": "text/plain", "host": "evil.example.com"}'"#,
            &[],
        )
        .await
        .unwrap();
    let services = env.start();
    env.publish(json!({"type": "job.created", "organization": org.id})).await;

    let request = receiver.wait_for("/hook", 1, WAIT).await.remove(0);
    assert_eq!(request.header("x-tenant"), Some("acme"), "ordinary configured headers are sent");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert!(request.header("host").unwrap().starts_with("127.0.0.1:"));
    assert!(!request.header("webhook-signature").unwrap().contains("forged"));
    standardwebhooks::Webhook::new(&webhook.signing_secret).unwrap().verify(&request.body, &request.headers).unwrap();
    services.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_201_and_a_204_are_successes_like_a_200() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start().await;
    receiver.always("/created", Reply::Status(201));
    receiver.always("/no-content", Reply::Status(204));
    let org = env.organization().await;
    let urls = [receiver.url("/created"), receiver.url("/no-content")];
    env.create_webhook(TestEnv::webhook(&org.id, &urls, &["job.created"])).await;
    let services = env.start();
    env.publish(json!({"type": "job.created", "organization": org.id, "data": {}})).await;

    let settled = eventually(WAIT, || async {
        env.scalar::<i64>("SELECT count(*) FROM deliveries WHERE status = 'succeeded'", &[]).await == 2
    })
    .await;
    assert!(settled, "both deliveries succeeded");
    let client = env.pool.get().await.unwrap();
    let mut codes: Vec<(Option<i32>, Option<String>)> = client
        .query("SELECT status_code, error_kind::text FROM attempts ORDER BY status_code", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    codes.sort();
    assert_eq!(codes, [(Some(201), None), (Some(204), None)], "one attempt each, neither a failure");
    // Longer than the first retry delay (1 s): a retry would have come by now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!((receiver.requests("/created").len(), receiver.requests("/no-content").len()), (1, 1));
    services.stop().await;
    env.cleanup().await;
}

/// A receiver's answer is recorded whatever bytes it holds: a NUL (which PostgreSQL's
/// text cannot store) or invalid UTF-8 is recorded as U+FFFD, and the delivery settles
/// instead of being retried for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_body_holding_a_nul_is_recorded_and_settles() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start().await;
    receiver.always("/nul", Reply::Bytes(200, b"ok\0done\xff"));
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/nul")], &["job.created"])).await;
    let services = env.start();
    env.publish(json!({"type": "job.created", "organization": org.id})).await;

    assert_eq!(first_attempt(&env).await, (Some(200), None));
    let kept: String = env.scalar("SELECT response_body FROM attempts", &[]).await;
    assert_eq!(kept, "ok\u{fffd}done\u{fffd}");
    let settled = eventually(WAIT, || async {
        env.scalar::<DeliveryStatus>("SELECT status FROM deliveries", &[]).await == DeliveryStatus::Succeeded
    })
    .await;
    assert!(settled, "the delivery settles");
    assert_eq!(receiver.requests("/nul").len(), 1, "sent once");
    services.stop().await;
    env.cleanup().await;
}
