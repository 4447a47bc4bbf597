//! `hookline demo`: the whole pipeline on this machine, with a receiver that prints what
//! it gets and fails once so a retry shows.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use clap::Args;
use hookline_api::admin::{self, EndpointInput, WebhookInput, WebhookRules};
use hookline_core::delivery::{DeliveryStatus, ErrorKind};
use hookline_core::ids::{DeliveryId, OrganizationId};
use hookline_telemetry::Settings;
use tokio_util::sync::CancellationToken;

use crate::admin::PublishArgs;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Keep running after the sample deliveries settle (Ctrl-C to stop).
    #[arg(long)]
    keep_running: bool,
    /// Give up waiting for the sample deliveries after this long.
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

#[derive(Clone, Default)]
struct Receiver {
    /// Signing secret per path, to verify what arrives.
    secrets: Arc<Mutex<HashMap<String, String>>>,
    /// Paths that have already failed once.
    failed_once: Arc<Mutex<BTreeSet<String>>>,
}

async fn receive(State(receiver): State<Receiver>, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    let path = uri.path().to_owned();
    let secret = receiver.secrets.lock().ok().and_then(|s| s.get(&path).cloned());
    let verified =
        secret.and_then(|s| standardwebhooks::Webhook::new(&s).ok()).is_some_and(|w| w.verify(&body, &headers).is_ok());
    let first_failure =
        path.ends_with("/flaky") && receiver.failed_once.lock().is_ok_and(|mut seen| seen.insert(path.clone()));
    let status = if first_failure { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    println!(
        "  receiver  {path} got {} signature={} -> answers {}",
        String::from_utf8_lossy(&body),
        if verified { "valid" } else { "INVALID" },
        status.as_u16()
    );
    status
}

/// The demo's two webhooks, to the receiver at `address`, which learns their secrets.
async fn create_webhooks(
    pool: &hookline_store::Pool,
    settings: &Settings,
    org: &OrganizationId,
    receiver: &Receiver,
    address: std::net::SocketAddr,
) -> anyhow::Result<()> {
    let secrets = settings.secret_box()?;
    hookline_store::repo::key_check::verify(pool, &secrets).await?;
    let catalog = settings.catalog()?;
    let rules = WebhookRules { catalog: &catalog, allow_http: true };
    for (name, path, events) in
        [("Jobs to CRM", "/crm/jobs", "job.*"), ("Reports to warehouse (flaky)", "/warehouse/flaky", "report.created")]
    {
        let input = WebhookInput {
            organization_id: Some(org.clone()),
            name: name.into(),
            endpoints: vec![EndpointInput { url: format!("http://{address}{path}"), ..Default::default() }],
            events: vec![events.into()],
            active: true,
            created_by: Some("demo".into()),
            ..Default::default()
        };
        let created = admin::create_webhook(pool, &secrets, rules, input).await?;
        if let Ok(mut map) = receiver.secrets.lock() {
            map.insert(path.to_owned(), created.signing_secret.clone());
        }
        println!("webhook {} `{name}` -> {path} for {events}", created.id);
    }
    Ok(())
}

pub(crate) async fn run(args: DemoArgs, mut settings: Settings) -> anyhow::Result<()> {
    // A demo on one machine: loopback receiver over http, short retry delays so the
    // retry is seen within seconds, human-readable warnings only.
    settings.delivery.allow_http = true;
    settings.delivery.allow_private_networks = true;
    settings.retry.delays = vec![Duration::from_secs(3).into(), Duration::from_secs(6).into()];
    settings.telemetry.log_format = hookline_telemetry::LogFormat::Pretty;
    if settings.telemetry.log_level == "info" {
        settings.telemetry.log_level = "warn".into();
    }
    hookline_telemetry::init_tracing("hookline", &settings.telemetry);
    let shutdown = hookline_telemetry::shutdown_on_signals();

    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let app = axum::Router::new().fallback(receive).with_state(receiver.clone());
    let receiver_shutdown = shutdown.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).with_graceful_shutdown(receiver_shutdown.cancelled_owned()).await;
    });
    println!("demo receiver listening on http://{address}");

    let pool = hookline_store::open(settings.database_url(), 4).await.context("connecting to PostgreSQL")?;
    let secrets = settings.secret_box()?;
    hookline_store::repo::key_check::verify(&pool, &secrets).await?;
    let org = admin::create_organization(&pool, "Demo Solar Co").await?;
    println!("organisation {} created (admin key {}…)", org.id, &org.api_key[..10]);
    create_webhooks(&pool, &settings, &org.id, &receiver, address).await?;

    let services_shutdown = shutdown.child_token();
    let metrics = hookline_telemetry::Metrics::new();
    match hookline_telemetry::start_metrics_endpoint(&settings, &metrics, &services_shutdown).await {
        Ok(Some(address)) => println!("metrics at http://{address}/metrics"),
        Ok(None) => {}
        // Another hookline on this machine has the port; the demo works without it.
        Err(err) => println!("metrics endpoint not started: {err}"),
    }
    let services = tokio::spawn(crate::services::run_all(settings.clone(), metrics.clone(), services_shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;

    for (event_type, data) in [
        ("job.created", r#"{"jobId":"J-1001","name":"Roof inspection"}"#),
        ("job.status_changed", r#"{"jobId":"J-1001","status":"scheduled"}"#),
        ("report.created", r#"{"resourceId":12301,"path":"/reports/12301"}"#),
        ("estimate.created", r#"{"estimateId":"E-31"}"#),
    ] {
        let args = PublishArgs::sample(org.id.clone(), event_type, data);
        crate::admin::publish_event(&args, &settings).await?;
        println!("published {event_type} {data}");
    }
    println!("published 4 events (estimate.created matches no webhook); watching deliveries…");

    let settled = watch(&pool, &org.id, args.timeout, &shutdown).await?;
    if args.keep_running && !shutdown.is_cancelled() {
        println!("still running; publish more with `hookline publish --org {} --type job.created`", org.id);
        shutdown.cancelled().await;
    }
    services_shutdown.cancel();
    shutdown.cancel();
    services.await??;
    anyhow::ensure!(settled, "not every sample delivery settled within {:?}", args.timeout);
    println!("demo finished: every delivery succeeded");
    Ok(())
}

/// Prints each attempt as it is recorded; true once every delivery has succeeded.
async fn watch(
    pool: &hookline_store::Pool,
    org: &hookline_core::ids::OrganizationId,
    timeout: Duration,
    shutdown: &CancellationToken,
) -> anyhow::Result<bool> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut printed = BTreeSet::new();
    while tokio::time::Instant::now() < deadline && !shutdown.is_cancelled() {
        let client = pool.get().await?;
        let rows = client
            .query(
                "SELECT a.delivery_id, a.attempt_number, e.event_type, ep.url, a.status_code, a.error_kind,
                        a.duration_ms, d.status
                 FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
                 JOIN events e ON e.id = d.event_id JOIN endpoints ep ON ep.id = d.endpoint_id
                 WHERE d.organization_id = $1 ORDER BY a.started_at",
                &[org],
            )
            .await?;
        for row in rows {
            let key: (DeliveryId, i32) = (row.try_get(0)?, row.try_get(1)?);
            if printed.insert(key.clone()) {
                let status: Option<i32> = row.try_get(4)?;
                let error: Option<ErrorKind> = row.try_get(5)?;
                let duration: i32 = row.try_get(6)?;
                let delivery_status: DeliveryStatus = row.try_get(7)?;
                println!(
                    "  attempt   {} #{} {} -> {} : {} in {duration} ms (delivery now {})",
                    key.0,
                    key.1,
                    row.try_get::<_, String>(2)?,
                    row.try_get::<_, String>(3)?,
                    status
                        .map_or_else(|| error.map(ErrorKind::as_str).unwrap_or_default().to_owned(), |s| s.to_string()),
                    delivery_status.as_str(),
                );
            }
        }
        let open: i64 = client
            .query_one(
                "SELECT count(*) FILTER (WHERE status <> $2) FROM deliveries WHERE organization_id = $1",
                &[org, &DeliveryStatus::Succeeded],
            )
            .await?
            .try_get(0)?;
        let total: i64 =
            client.query_one("SELECT count(*) FROM deliveries WHERE organization_id = $1", &[org]).await?.try_get(0)?;
        if total == 3 && open == 0 {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(false)
}
