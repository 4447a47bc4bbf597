//! What most API suites start with: a sandbox, a receiver, the API, the services and an
//! organisation, all stopped and removed together.

use hookline_api::admin::OrganizationCreated;

use crate::{ApiServer, Receiver, Services, TestEnv};

/// A running hookline of the test's own, with a receiver for its webhooks and an
/// organisation (with an admin key) to call the API as.
pub struct Running {
    pub env: TestEnv,
    pub receiver: Receiver,
    pub api: ApiServer,
    pub services: Services,
    pub org: OrganizationCreated,
}

impl Running {
    /// Starts everything, with extra `HOOKLINE__…` settings.
    pub async fn start(overrides: &[(&str, &str)]) -> Self {
        let env = TestEnv::with(overrides).await;
        let receiver = Receiver::start().await;
        let api = env.start_api().await;
        let services = env.start();
        let org = env.organization().await;
        Self { env, receiver, api, services, org }
    }

    /// The organisation's admin key, as [`ApiServer::call`] takes it.
    pub fn key(&self) -> Option<&str> {
        Some(self.org.api_key.as_str())
    }

    /// Stops the services and the API, and removes the database and broker prefix.
    pub async fn stop(self) {
        self.services.stop().await;
        drop(self.api);
        self.env.cleanup().await;
    }
}
