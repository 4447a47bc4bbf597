//! The environment's proxy settings do not reach deliveries. With `HTTP_PROXY` and the
//! like set, reqwest would hand every request to the proxy, and the address guard would
//! only ever check the proxy's address: a receiver's host name (`localhost`, an
//! internal name) would be fetched through it, unchecked. A `hookline all` process with
//! every proxy variable pointing at a listener of the test's delivers straight to the
//! receiver, and the "proxy" sees nothing.
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Stdio;
use std::time::Duration;

use hookline_tests::{Receiver, Reply, TestEnv};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_never_go_through_the_environments_proxy() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start().await;
    receiver.always("/hook", Reply::Status(200));
    let proxy = Receiver::start().await;
    let org = env.organization().await;
    // A host name, not an address: what a proxy would be asked to resolve.
    let url = receiver.url("/hook").replace("127.0.0.1", "localhost");
    env.create_webhook(TestEnv::webhook(&org.id, &[url], &["job.created"])).await;
    let proxy_url = proxy.url("");
    let process = Killed(
        env.command(env!("CARGO_BIN_EXE_hookline"))
            .arg("all")
            .env("HOOKLINE__API__LISTEN", "127.0.0.1:0")
            .envs(
                ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"]
                    .map(|v| (v, &proxy_url)),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    env.publish(json!({"type": "job.created", "organization": org.id, "data": {"n": 1}})).await;

    let reached = receiver.wait_for("/hook", 1, Duration::from_secs(30)).await;
    assert_eq!(reached.len(), 1);
    assert!(proxy.all_requests().is_empty(), "the proxy was asked: {:?}", proxy.all_requests().len());
    drop(process);
    env.cleanup().await;
}

/// An egress proxy set in configuration (`delivery.egress_proxy`) carries every
/// delivery, host names included: hookline hands the request to the proxy without
/// resolving the receiver's name (`.invalid` never resolves), and the environment's
/// proxy variables, pointing elsewhere, are still ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_egress_proxy_in_configuration_carries_every_delivery() {
    let env = TestEnv::new().await;
    let proxy = Receiver::start().await;
    proxy.always("/hook", Reply::Status(204));
    let environment_proxy = Receiver::start().await;
    let org = env.organization().await;
    let url = "http://receiver.hooks.invalid/hook".to_owned();
    env.create_webhook(TestEnv::webhook(&org.id, &[url], &["job.created"])).await;
    let process = Killed(
        env.command(env!("CARGO_BIN_EXE_hookline"))
            .arg("all")
            .env("HOOKLINE__API__LISTEN", "127.0.0.1:0")
            .env("HOOKLINE__DELIVERY__EGRESS_PROXY", proxy.url(""))
            .envs(["HTTP_PROXY", "http_proxy", "ALL_PROXY"].map(|v| (v, environment_proxy.url(""))))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    env.publish(json!({"type": "job.created", "organization": org.id, "data": {"n": 1}})).await;

    let reached = proxy.wait_for("/hook", 1, Duration::from_secs(30)).await;
    assert_eq!(reached.len(), 1, "the configured proxy was not asked");
    assert_eq!(reached[0].header("host"), Some("receiver.hooks.invalid"));
    assert_eq!(reached[0].json()["payload"], json!({"n": 1}));
    assert!(environment_proxy.all_requests().is_empty(), "the environment's proxy was asked");
    let succeeded = hookline_tests::eventually(Duration::from_secs(20), || async {
        env.scalar::<i64>("SELECT count(*) FROM deliveries WHERE status = 'succeeded'", &[]).await == 1
    })
    .await;
    assert!(succeeded, "the proxy's 204 settles the delivery");
    drop(process);
    env.cleanup().await;
}

/// The `hookline` process, killed when the test ends, a failed assertion included (it
/// would otherwise keep consuming the test's queues, and declaring them again).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
