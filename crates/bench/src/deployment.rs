//! Where a scenario runs: a throwaway deployment with every service in this process, or
//! a deployment already running (`hookline all`, or services started one by one).

use hookline_api::admin::{self, EndpointInput, WebhookInput, WebhookRules};
use hookline_bus::Bus;
use hookline_core::ids::OrganizationId;
use hookline_sandbox::{Sandbox, Services};
use hookline_store::Pool;
use hookline_telemetry::Settings;

/// Which deployment the scenarios measure.
#[derive(Clone)]
pub(crate) enum Target {
    /// A fresh database and broker prefix per scenario, with every service in the bench.
    InProcess,
    /// The running deployment these settings describe. Its workers must be on this
    /// machine and allowed to reach 127.0.0.1 (`delivery.allow_private_networks`, or
    /// `delivery.allowed_networks = ["127.0.0.1/32"]`), where the sink listens.
    Running(Box<Settings>),
}

/// A deployment a scenario publishes to and reads its progress from.
pub(crate) enum Deployment {
    /// Owned by the scenario, removed after it.
    InProcess {
        /// The throwaway database and prefix.
        env: Box<Sandbox>,
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
    pub(crate) async fn open(target: &Target, overrides: &[(&str, &str)]) -> anyhow::Result<Self> {
        Ok(match target {
            Target::InProcess => {
                let env = Box::new(Sandbox::with(overrides).await);
                let services = env.start();
                Self::InProcess { env, services }
            }
            Target::Running(settings) => {
                let pool = hookline_store::connect(settings.database_url(), 4)?;
                let delays = settings.retry_policy()?.delays().to_vec();
                let bus = Bus::open(
                    settings.amqp_url(),
                    &settings.amqp.prefix,
                    "hookline-bench",
                    &delays,
                    &tokio_util::sync::CancellationToken::new(),
                )
                .await?;
                Self::Running { settings: settings.clone(), pool, bus }
            }
        })
    }

    /// The deployment's database.
    pub(crate) fn pool(&self) -> &Pool {
        match self {
            Self::InProcess { env, .. } => &env.pool,
            Self::Running { pool, .. } => pool,
        }
    }

    /// The deployment's broker.
    pub(crate) fn bus(&self) -> &Bus {
        match self {
            Self::InProcess { env, .. } => &env.bus,
            Self::Running { bus, .. } => bus,
        }
    }

    /// Whether the services run in another process (their CPU and memory are then read
    /// from the `hookline` processes).
    pub(crate) fn is_running(&self) -> bool {
        matches!(self, Self::Running { .. })
    }

    /// A new organisation for the scenario, so its counts are its own.
    pub(crate) async fn organization(&self) -> anyhow::Result<OrganizationId> {
        Ok(admin::create_organization(self.pool(), "hookline-bench").await?.id)
    }

    /// A webhook of `organization` sending `job.created` to `url`, active or not. On a running
    /// deployment it is a test-mode webhook, so plain http:// to the sink is allowed
    /// whatever the deployment's `delivery.allow_http`.
    pub(crate) async fn create_webhook(
        &self,
        organization: &OrganizationId,
        url: String,
        active: bool,
    ) -> anyhow::Result<()> {
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
            active,
            ..Default::default()
        };
        let catalog = settings.catalog()?;
        let secrets = settings.secret_box()?;
        let rules = WebhookRules { catalog: &catalog, allow_http: true };
        admin::create_webhook(self.pool(), &secrets, rules, input).await?;
        Ok(())
    }

    /// The environment of the events to publish (matching the webhooks').
    pub(crate) fn event_environment(&self) -> &'static str {
        if self.is_running() { "test" } else { "live" }
    }

    /// Mean rows per batch and mean milliseconds per batch of each batched statement
    /// (and per route message), as `(name, rows, ms)`, from an in-process deployment's
    /// metrics: how much group commit gathered and what a message waited behind. None
    /// for a running deployment (read its `/metrics`).
    pub(crate) async fn batch_sizes(&self) -> Option<Vec<(String, f64, f64)>> {
        let Self::InProcess { env, .. } = self else { return None };
        let rendered = env.metrics.render().await;
        let seconds = histogram_means(&rendered, "hookline_batch_seconds_");
        let batches = histogram_means(&rendered, "hookline_batch_rows_")
            .into_iter()
            .map(|(name, rows)| {
                let ms = seconds.iter().find(|(timed, _)| *timed == name).map_or(f64::NAN, |(_, s)| s * 1000.0);
                (name, rows, ms)
            })
            .collect();
        Some(batches)
    }

    /// Stops and removes an in-process deployment; leaves a running one as it is (the
    /// scenario's organisation and its rows stay).
    pub(crate) async fn finish(self) {
        match self {
            Self::InProcess { env, services } => {
                services.stop().await;
                env.cleanup().await;
            }
            Self::Running { bus, .. } => {
                if let Ok(connection) = bus.connection() {
                    let _ = connection.close(200, "benchmark done".into()).await;
                }
            }
        }
    }
}

/// Mean of each statement's histogram named `prefix` (`hookline_batch_rows_`, say) in
/// an OpenMetrics text rendering.
fn histogram_means(rendered: &str, prefix: &str) -> Vec<(String, f64)> {
    let value = |suffix: &str| -> Vec<(String, f64)> {
        rendered
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix(prefix)?.strip_prefix(suffix)?;
                let (labels, number) = rest.split_once("} ")?;
                let name = labels.strip_prefix("{statement=\"")?.strip_suffix('"')?;
                Some((name.to_owned(), number.trim().parse().ok()?))
            })
            .collect()
    };
    let counts = value("count");
    value("sum")
        .into_iter()
        .filter_map(|(name, sum)| {
            let count = counts.iter().find(|(counted, _)| *counted == name)?.1;
            (count > 0.0).then(|| (name, sum / count))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn batch_means_are_read_from_the_histograms() {
        let rendered = "# HELP hookline_batch_rows Messages ...\n\
            hookline_batch_rows_sum{statement=\"store_events\"} 300.0\n\
            hookline_batch_rows_count{statement=\"store_events\"} 8\n\
            hookline_batch_rows_bucket{le=\"1.0\",statement=\"store_events\"} 0\n\
            hookline_batch_rows_sum{statement=\"load_jobs\"} 0.0\n\
            hookline_batch_rows_count{statement=\"load_jobs\"} 0\n";
        assert_eq!(super::histogram_means(rendered, "hookline_batch_rows_"), [("store_events".to_owned(), 37.5)]);
        assert!(super::histogram_means(rendered, "hookline_batch_seconds_").is_empty());
    }
}
