//! Where a scenario runs: a throwaway deployment with every service in this process, or
//! a deployment already running (`hookline all`, or services started one by one).

use hookline_api::admin::{self, EndpointInput, WebhookInput, WebhookRules};
use hookline_bus::Bus;
use hookline_core::ids::OrganizationId;
use hookline_store::Pool;
use hookline_telemetry::Settings;
use hookline_tests::{Services, TestEnv};

/// Which deployment the scenarios measure.
#[derive(Clone)]
pub enum Target {
    /// A fresh database and broker prefix per scenario, with every service in the bench.
    InProcess,
    /// The running deployment these settings describe. Its workers must be on this
    /// machine and allowed to reach 127.0.0.1 (`delivery.allow_private_networks`, or
    /// `delivery.allowed_networks = ["127.0.0.1/32"]`), where the sink listens.
    Running(Box<Settings>),
}

/// A deployment a scenario publishes to and reads its progress from.
pub enum Deployment {
    /// Owned by the scenario, removed after it.
    InProcess {
        /// The throwaway database and prefix.
        env: Box<TestEnv>,
        /// The services, in this process.
        services: Services,
    },
    /// Someone else's: the scenario only adds an organisation with its webhooks.
    Running {
        /// Its settings.
        settings: Box<Settings>,
        /// Its database.
        pool: Pool,
        /// Its broker.
        bus: Bus,
    },
}

impl Deployment {
    /// Sets up `target` for one scenario; `overrides` are `HOOKLINE__…` settings for an
    /// in-process deployment.
    pub async fn open(target: &Target, overrides: &[(&str, &str)]) -> anyhow::Result<Self> {
        Ok(match target {
            Target::InProcess => {
                let env = Box::new(TestEnv::with(overrides).await);
                let services = env.start();
                Self::InProcess { env, services }
            }
            Target::Running(settings) => {
                let pool = hookline_store::connect(settings.database_url(), 4)?;
                let delays = settings.retry_policy()?.delays().to_vec();
                let bus = Bus::open(settings.amqp_url(), &settings.amqp.prefix, "hookline-bench", &delays).await?;
                Self::Running { settings: settings.clone(), pool, bus }
            }
        })
    }

    /// The deployment's database.
    pub fn pool(&self) -> &Pool {
        match self {
            Self::InProcess { env, .. } => &env.pool,
            Self::Running { pool, .. } => pool,
        }
    }

    /// The deployment's broker.
    pub fn bus(&self) -> &Bus {
        match self {
            Self::InProcess { env, .. } => &env.bus,
            Self::Running { bus, .. } => bus,
        }
    }

    /// Whether the services run in another process (their CPU and memory are then read
    /// from the `hookline` processes).
    pub fn is_running(&self) -> bool {
        matches!(self, Self::Running { .. })
    }

    /// A new organisation for the scenario, so its counts are its own.
    pub async fn organization(&self) -> anyhow::Result<OrganizationId> {
        Ok(admin::create_organization(self.pool(), "hookline-bench").await?.id)
    }

    /// A webhook of `organization` sending `job.created` to `url`. On a running
    /// deployment it is a test-mode webhook, so plain http:// to the sink is allowed
    /// whatever the deployment's `delivery.allow_http`.
    pub async fn create_webhook(&self, organization: &OrganizationId, url: String) -> anyhow::Result<()> {
        let settings = match self {
            Self::InProcess { env, .. } => &env.settings,
            Self::Running { settings, .. } => settings,
        };
        let input = WebhookInput {
            organization_id: Some(organization.clone()),
            name: "hookline-bench".into(),
            endpoints: vec![EndpointInput { url, ..Default::default() }],
            events: vec!["job.created".into()],
            test: self.is_running(),
            active: true,
            ..Default::default()
        };
        let catalog = settings.catalog()?;
        let secrets = settings.secret_box()?;
        let rules = WebhookRules { catalog: &catalog, allow_http: true };
        admin::create_webhook(self.pool(), &secrets, rules, input).await?;
        Ok(())
    }

    /// The environment of the events to publish (matching the webhooks').
    pub fn event_environment(&self) -> &'static str {
        if self.is_running() { "test" } else { "live" }
    }

    /// Stops and removes an in-process deployment; leaves a running one as it is (the
    /// scenario's organisation and its rows stay).
    pub async fn finish(self) {
        match self {
            Self::InProcess { env, services } => {
                services.stop().await;
                env.cleanup().await;
            }
            Self::Running { bus, .. } => {
                let _ = bus.connection.close(200, "benchmark done".into()).await;
            }
        }
    }
}
