#![doc = include_str!("../README.md")]
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod broker;
pub mod database;

use std::future::Future;
use std::time::Duration;

use hookline_api::admin::{self, EndpointInput, OrganizationCreated, WebhookCreated, WebhookInput, WebhookRules};
use hookline_bus::Bus;
use hookline_core::crypto::SecretBox;
use hookline_core::ids::OrganizationId;
use hookline_store::Pool;
use hookline_telemetry::Settings;
use lapin::BasicProperties;
use lapin::options::BasicGetOptions;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

fn admin_database_url() -> String {
    std::env::var("HOOKLINE_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn amqp_url() -> String {
    std::env::var("HOOKLINE_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// Every span finished in this process, when the sandbox installed tracing (the first
/// sandbox of a process that had not installed it itself does): a test can check the
/// trace its event made.
pub fn spans() -> &'static hookline_telemetry::MemoryExporter {
    static SPANS: std::sync::OnceLock<hookline_telemetry::MemoryExporter> = std::sync::OnceLock::new();
    SPANS.get_or_init(hookline_telemetry::MemoryExporter::default)
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The API served on a loopback port; stopped when dropped.
pub struct ApiServer {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    shutdown: CancellationToken,
    client: reqwest::Client,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl ApiServer {
    /// Sends a request with an optional bearer key and JSON body; returns the status and
    /// the JSON answer (`null` when there is none).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let (status, text) = self.call_text(method, path, key, body.map(|body| body.to_string())).await;
        let json = if text.is_empty() {
            serde_json::Value::Null
        } else {
            // A body that is not JSON is kept as text so a failing assertion shows it.
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
        };
        (status, json)
    }

    /// Like [`Self::call`] with the JSON body and the answer as text, byte for byte.
    pub async fn call_text(&self, method: &str, path: &str, key: Option<&str>, body: Option<String>) -> (u16, String) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// One test's (or benchmark scenario's) database, broker prefix and settings.
pub struct Sandbox {
    /// The id in its database's name and broker prefix.
    pub id: String,
    /// The settings its services run with.
    pub settings: Settings,
    /// Its database, migrated.
    pub pool: Pool,
    /// Its broker prefix, with the topology declared.
    pub bus: Bus,
    /// The key its secrets are sealed with.
    pub secrets: SecretBox,
    /// What this test's services count; every test has its own.
    pub metrics: hookline_telemetry::Metrics,
    /// The `HOOKLINE__…` variables the settings were loaded from, for child processes.
    pub environment: Vec<(String, String)>,
    admin_url: String,
    database: String,
    cleaned: bool,
}

/// Services running in-process; stopped when dropped.
pub struct Services {
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Services {
    /// How many of the services have stopped by themselves (none should, whatever
    /// happens to the broker or the database).
    pub fn stopped(&self) -> usize {
        self.tasks.iter().filter(|task| task.is_finished()).count()
    }

    /// Stops the services and waits for them to finish.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Sandbox {
    /// A fresh environment with retry delays of 1 s and 2 s and a 2 s delivery timeout.
    pub async fn new() -> Self {
        Self::with(&[]).await
    }

    /// A fresh environment with extra `HOOKLINE__…` settings.
    pub async fn with(overrides: &[(&str, &str)]) -> Self {
        Self::on(&admin_database_url(), overrides).await
    }

    /// A fresh environment on a test's own broker node and database cluster, each where
    /// given (the shared ones otherwise).
    pub async fn around(
        broker: Option<&broker::OwnBroker>,
        database: Option<&database::OwnDatabase>,
        overrides: &[(&str, &str)],
    ) -> Self {
        let amqp = broker.map(broker::OwnBroker::url);
        let mut overrides = overrides.to_vec();
        if let Some(url) = &amqp {
            overrides.push(("HOOKLINE__AMQP__URL", url.as_str()));
        }
        match database {
            Some(database) => Self::on(&database.admin_url(), &overrides).await,
            None => Self::with(&overrides).await,
        }
    }

    /// A fresh environment whose database is made on the server `admin_url` (a URL
    /// to its `postgres` database) instead of the shared one: a test's own cluster.
    pub async fn on(admin_url: &str, overrides: &[(&str, &str)]) -> Self {
        let id = ulid::Ulid::new().to_string().to_lowercase();
        let database = format!("hookline_test_{id}");
        let (admin, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL must be reachable (see tests/README.md)");
        tokio::spawn(connection);
        admin.batch_execute(&format!("CREATE DATABASE {database}")).await.unwrap();
        let database_url = match admin_url.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{database}"),
            None => unreachable!("a database URL has a path"),
        };
        let key = SecretBox::generate_key();
        let mut environment: Vec<(String, String)> = [
            ("HOOKLINE__DATABASE__URL", database_url.as_str()),
            ("HOOKLINE__DATABASE__POOL_SIZE", "8"),
            ("HOOKLINE__AMQP__URL", amqp_url().as_str()),
            ("HOOKLINE__AMQP__PREFIX", &format!("hookline-test-{id}")),
            ("HOOKLINE__RETRY__DELAYS", "1s,2s"),
            ("HOOKLINE__DELIVERY__TIMEOUT", "2s"),
            ("HOOKLINE__DELIVERY__ALLOW_HTTP", "true"),
            ("HOOKLINE__DELIVERY__ALLOW_PRIVATE_NETWORKS", "true"),
            ("HOOKLINE__SECRETS__KEY", key.as_str()),
            ("HOOKLINE__SHUTDOWN__GRACE", "3s"),
            ("HOOKLINE__SCHEDULER__RECONCILE_INTERVAL", "1h"),
            ("HOOKLINE__TELEMETRY__LOG_FORMAT", "pretty"),
            ("HOOKLINE__TELEMETRY__LOG_LEVEL", "warn"),
            // Child processes (CLI tests) each get a free port instead of fighting for 9464.
            ("HOOKLINE__TELEMETRY__METRICS_LISTEN", "127.0.0.1:0"),
            // Every test calls from 127.0.0.1, many with bad keys on purpose; the limits
            // have a test of their own.
            ("HOOKLINE__API__FAILED_SIGN_INS_PER_MINUTE", "0"),
            ("HOOKLINE__API__REQUESTS_PER_SECOND_PER_KEY", "0"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        environment.extend(overrides.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let settings = Settings::load_with(None, environment.clone()).unwrap();
        hookline_telemetry::init_tracing_in_memory("hookline-sandbox", &settings.telemetry, spans().clone());
        let pool = hookline_store::open(settings.database_url(), 8).await.unwrap();
        let delays = settings.retry_policy().unwrap().delays().to_vec();
        let bus =
            Bus::open(settings.amqp_url(), &settings.amqp.prefix, "hookline-tests", &delays, &CancellationToken::new())
                .await
                .unwrap();
        let secrets = settings.secret_box().unwrap();
        let metrics = hookline_telemetry::Metrics::new();
        let admin_url = admin_url.to_owned();
        Self { id, settings, pool, bus, secrets, metrics, environment, admin_url, database, cleaned: false }
    }

    /// Starts ingest, router, worker and scheduler in this process.
    pub fn start(&self) -> Services {
        self.start_with(&self.settings)
    }

    /// Starts ingest, router and scheduler, leaving delivery to workers the test runs.
    pub fn start_without_worker(&self) -> Services {
        self.start_some(&self.settings, false)
    }

    /// Starts the services with other settings (same database and prefix).
    pub fn start_with(&self, settings: &Settings) -> Services {
        self.start_some(settings, true)
    }

    fn start_some(&self, settings: &Settings, worker: bool) -> Services {
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();
        macro_rules! spawn {
            ($service:path) => {{
                let settings = settings.clone();
                let shutdown = shutdown.clone();
                let metrics = self.metrics.clone();
                tasks.push(tokio::spawn(async move {
                    if let Err(err) = $service(settings, metrics, shutdown).await {
                        panic!("{} stopped: {err}", stringify!($service));
                    }
                }));
            }};
        }
        spawn!(hookline_ingest::run);
        spawn!(hookline_router::run);
        if worker {
            spawn!(hookline_worker::run);
        }
        spawn!(hookline_scheduler::run);
        Services { shutdown, tasks }
    }

    /// Serves the API on a free loopback port.
    pub async fn start_api(&self) -> ApiServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        tokio::spawn(hookline_api::run(self.settings.clone(), self.metrics.clone(), listener, shutdown.clone()));
        let client = reqwest::Client::new();
        let up = eventually(Duration::from_secs(20), || async {
            client.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status() == 200)
        })
        .await;
        assert!(up, "the API did not become ready");
        ApiServer { base, shutdown, client }
    }

    /// A command for a hookline binary (the test passes its path, e.g.
    /// `env!("CARGO_BIN_EXE_hookline")`) with exactly this test's configuration: the
    /// parent's environment is cleared so no stray `HOOKLINE__…` variable leaks in.
    pub fn command(&self, binary: &str) -> std::process::Command {
        let mut command = std::process::Command::new(binary);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.environment.iter().cloned());
        command
    }

    /// A new organisation with an admin key.
    pub async fn organization(&self) -> OrganizationCreated {
        admin::create_organization(&self.pool, "Test Org").await.unwrap()
    }

    /// A webhook input for `org` sending `events` to `urls`, active, live.
    pub fn webhook(org: &OrganizationId, urls: &[String], events: &[&str]) -> WebhookInput {
        WebhookInput {
            organization_id: Some(org.clone()),
            name: "test webhook".into(),
            endpoints: urls.iter().map(|url| EndpointInput { url: url.clone(), ..Default::default() }).collect(),
            events: events.iter().map(|e| e.to_string()).collect(),
            active: true,
            ..Default::default()
        }
    }

    /// Creates a webhook.
    pub async fn create_webhook(&self, input: WebhookInput) -> WebhookCreated {
        let catalog = self.settings.catalog().unwrap();
        let rules = WebhookRules { catalog: &catalog, allow_http: true };
        admin::create_webhook(&self.pool, &self.secrets, rules, input).await.unwrap()
    }

    /// Publishes raw bytes to the events exchange, as an upstream application would.
    pub async fn publish_raw(&self, routing_key: &str, body: &[u8], content_type: Option<&str>) {
        let mut properties = BasicProperties::default();
        if let Some(content_type) = content_type {
            properties = properties.with_content_type(content_type.into());
        }
        self.bus.publisher.publish(&self.bus.topology.events_exchange(), routing_key, body, properties).await.unwrap();
    }

    /// Publishes a JSON upstream event.
    pub async fn publish(&self, event: serde_json::Value) {
        let routing_key = event["type"].as_str().unwrap_or("unknown").to_owned();
        self.publish_raw(&routing_key, &serde_json::to_vec(&event).unwrap(), Some("application/json")).await;
    }

    /// Takes every message currently in the rejected queue, with its reason header.
    pub async fn drain_rejected(&self) -> Vec<(String, Vec<u8>)> {
        let channel = self.bus.connection().unwrap().create_channel().await.unwrap();
        let mut taken = Vec::new();
        while let Some(message) = channel
            .basic_get(self.bus.topology.rejected_queue().as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            let reason = message
                .delivery
                .properties
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get(hookline_bus::consumer::REJECT_REASON_HEADER).cloned())
                .and_then(|v| hookline_bus::trace::header_string(&v))
                .unwrap_or_default();
            taken.push((reason, message.delivery.data));
        }
        taken
    }

    /// One query's single value.
    pub async fn scalar<T: for<'a> tokio_postgres::types::FromSql<'a>>(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> T {
        self.pool.get().await.unwrap().query_one(sql, params).await.unwrap().get(0)
    }

    /// Deletes the database and every exchange and queue of this test.
    pub async fn cleanup(mut self) {
        self.cleaned = true;
        cleanup(self.settings.clone(), self.admin_url.clone(), self.database.clone()).await;
    }
}

async fn cleanup(settings: Settings, admin_url: String, database: String) {
    let configured = settings.retry_policy().map(|p| p.delays().to_vec()).unwrap_or_default();
    // The test's own delays and every Retry-After step, which includes the shipped 5m/10m
    // policy and the worker's 1 s defer queue.
    let delays = hookline_bus::Topology::possible_delays(&configured);
    for node in hookline_bus::node_urls(settings.amqp_url()) {
        let Ok(connection) = hookline_bus::connect(&node, "hookline-tests-cleanup").await else { continue };
        let topology = hookline_bus::Topology::new(settings.amqp.prefix.clone());
        if let Ok(channel) = connection.create_channel().await {
            let _ = topology.delete(&channel, &delays).await;
        }
        let _ = connection.close(200, "done".into()).await;
        break;
    }
    if let Ok((admin, connection)) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls).await {
        tokio::spawn(connection);
        let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)")).await;
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        // A test that panicked still leaves nothing behind.
        let settings = self.settings.clone();
        let (admin_url, database) = (self.admin_url.clone(), self.database.clone());
        let _ = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                runtime.block_on(async {
                    cleanup(settings.clone(), admin_url.clone(), database.clone()).await;
                    // Services of a panicked test may still be winding down, and a
                    // consumer whose queue is deleted reconnects and declares it again:
                    // once they are gone, remove what they declared.
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    cleanup(settings, admin_url, database).await;
                });
            }
        })
        .join();
    }
}
