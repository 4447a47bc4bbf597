//! Layered configuration: shipped defaults, an optional file, then environment.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hookline_core::crypto::SecretBox;
use hookline_core::{Catalog, RetryPolicy};
use secrecy::{ExposeSecret as _, SecretString};

/// The defaults file, shipped in the repository and compiled in.
pub(crate) const DEFAULTS: &str = include_str!("../../../config/default.toml");

/// A configuration that cannot be used; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A source could not be read or a value has the wrong type.
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    /// A value has the right type but is not acceptable.
    #[error("configuration key `{key}`: {message}")]
    Invalid {
        /// Dotted key, e.g. `retry.delays`.
        key: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

fn invalid(key: &'static str, message: impl Into<String>) -> SettingsError {
    SettingsError::Invalid { key, message: message.into() }
}

/// Every setting of every service. See `config/default.toml` for each key's meaning.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub amqp: AmqpSettings,
    pub retry: RetrySettings,
    pub delivery: DeliverySettings,
    pub signing: SigningSettings,
    pub ingest: IngestSettings,
    pub router: RouterSettings,
    pub scheduler: SchedulerSettings,
    pub retention: RetentionSettings,
    pub api: ApiSettings,
    pub catalog: CatalogSettings,
    pub secrets: SecretsSettings,
    pub shutdown: ShutdownSettings,
    pub telemetry: TelemetrySettings,
}

/// `[database]`
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct DatabaseSettings {
    pub url: SecretString,
    pub pool_size: usize,
    #[serde(with = "humantime_serde")]
    pub batch_linger: Duration,
}

/// `[amqp]`
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct AmqpSettings {
    pub url: SecretString,
    pub prefix: String,
}

/// `[retry]`
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RetrySettings {
    pub delays: Vec<humantime_serde::Serde<Duration>>,
}

/// `[delivery]`
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct DeliverySettings {
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub concurrency: usize,
    pub max_in_flight_per_endpoint: usize,
    #[serde(with = "humantime_serde")]
    pub endpoint_slot_wait: Duration,
    pub circuit_open_after: u32,
    #[serde(with = "humantime_serde")]
    pub circuit_first_probe: Duration,
    #[serde(with = "humantime_serde")]
    pub circuit_max_probe: Duration,
    pub allow_http: bool,
    pub allow_private_networks: bool,
    pub allowed_networks: Vec<String>,
    pub max_response_body: usize,
    pub auto_disable_after: u32,
    #[serde(with = "humantime_serde")]
    pub max_retry_after: Duration,
    /// An explicit egress proxy (`http://` or `https://`) every delivery goes through;
    /// none by default, and never the environment's `HTTP_PROXY`.
    #[serde(default)]
    pub egress_proxy: Option<String>,
}

impl DeliverySettings {
    fn validate_circuit(&self) -> Result<(), SettingsError> {
        if self.circuit_open_after == 0 {
            return Err(invalid("delivery.circuit_open_after", "must be at least 1"));
        }
        if self.circuit_first_probe.is_zero() || self.circuit_first_probe > self.circuit_max_probe {
            return Err(invalid(
                "delivery.circuit_first_probe",
                "must be more than 0 and at most delivery.circuit_max_probe",
            ));
        }
        Ok(())
    }

    /// When an endpoint's circuit opens and how often it is probed.
    pub fn breaker(&self) -> hookline_core::circuit::Breaker {
        hookline_core::circuit::Breaker {
            open_after: self.circuit_open_after,
            first_probe: self.circuit_first_probe,
            max_probe: self.circuit_max_probe,
        }
    }

    /// The configured egress proxy, checked: an http(s) URL with a host. Through it,
    /// hookline never resolves a receiver's host name (the proxy does), so the proxy must
    /// enforce the egress policy for names itself; IP literals are still checked here.
    pub fn egress_proxy(&self) -> Result<Option<url::Url>, SettingsError> {
        let Some(text) = self.egress_proxy.as_deref().filter(|text| !text.trim().is_empty()) else { return Ok(None) };
        let url = url::Url::parse(text.trim())
            .map_err(|err| invalid("delivery.egress_proxy", format!("`{text}` is not a URL: {err}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("delivery.egress_proxy", "must be an http:// or https:// URL with a host"));
        }
        Ok(Some(url))
    }

    /// Which addresses deliveries may reach.
    pub fn address_policy(&self) -> Result<hookline_core::address::AddressPolicy, SettingsError> {
        let allowed_networks = self
            .allowed_networks
            .iter()
            .map(|cidr| {
                cidr.parse::<ipnet::IpNet>().map_err(|_| {
                    invalid("delivery.allowed_networks", format!("`{cidr}` is not a CIDR such as 10.0.0.0/8"))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(hookline_core::address::AddressPolicy {
            allow_private_networks: self.allow_private_networks,
            allowed_networks,
        })
    }
}

/// `[signing]`
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct SigningSettings {
    #[serde(with = "humantime_serde")]
    pub rotation_overlap: Duration,
}

/// `[ingest]`
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct IngestSettings {
    pub max_event_size: usize,
    pub concurrency: usize,
}

/// `[router]`
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RouterSettings {
    pub concurrency: usize,
}

/// `[scheduler]`
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct SchedulerSettings {
    pub concurrency: usize,
    #[serde(with = "humantime_serde")]
    pub reconcile_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub reconcile_after: Duration,
}

/// `[retention]`
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RetentionSettings {
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    #[serde(with = "humantime_serde")]
    pub response_bodies: Duration,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl RetentionSettings {
    fn validate(&self) -> Result<(), SettingsError> {
        if self.max_age < Duration::from_secs(86_400) {
            return Err(invalid("retention.max_age", "must be at least 1 day"));
        }
        if self.response_bodies.is_zero() || self.response_bodies > self.max_age {
            return Err(invalid("retention.response_bodies", "must be more than 0 and at most retention.max_age"));
        }
        if self.interval.is_zero() {
            return Err(invalid("retention.interval", "must be more than 0"));
        }
        Ok(())
    }
}

/// `[api]`
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ApiSettings {
    pub listen: SocketAddr,
    /// Requests per second one API key may make (bursts of twice that; 0: no limit).
    pub requests_per_second_per_key: u32,
    /// Requests with a missing or unknown key one client address may make per minute
    /// (0: no limit).
    pub failed_sign_ins_per_minute: u32,
    /// SHA-256 (hex) of each operator token (`hookline operator token` makes one):
    /// the host platform's backend, which manages organisations.
    #[serde(default)]
    pub operator_token_hashes: Vec<String>,
}

impl ApiSettings {
    fn validate(&self) -> Result<(), SettingsError> {
        let is_hash =
            |h: &&String| h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        match self.operator_token_hashes.iter().find(|h| !is_hash(h)) {
            Some(bad) => Err(invalid(
                "api.operator_token_hashes",
                format!("`{bad}` is not a lower-case hex SHA-256 (`hookline operator token` prints one)"),
            )),
            None => Ok(()),
        }
    }
}

/// `[catalog]`
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct CatalogSettings {
    pub path: PathBuf,
}

/// `[secrets]`
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct SecretsSettings {
    #[serde(default)]
    pub key: Option<SecretString>,
}

/// `[shutdown]`
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ShutdownSettings {
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
}

/// `[telemetry]`
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct TelemetrySettings {
    pub log_format: LogFormat,
    pub log_level: String,
    pub otlp_endpoint: String,
    pub sampling_ratio: f64,
    pub metrics_listen: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line, for log collectors.
    Json,
    /// Compact text, for people.
    Pretty,
}

impl Settings {
    /// Loads defaults, then `file` if given, then `HOOKLINE__…` environment variables, and
    /// validates the result.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        Self::load_with(file, std::env::vars())
    }

    /// As [`Settings::load`], with the environment given explicitly (for tests).
    pub fn load_with(
        file: Option<&Path>,
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingsError> {
        let mut builder =
            config::Config::builder().add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Some(file) = file {
            builder = builder.add_source(config::File::from(file).required(true));
        }
        let environment = environment.into_iter().filter(|(k, _)| k.starts_with("HOOKLINE__")).collect();
        builder = builder.add_source(
            config::Environment::with_prefix("HOOKLINE")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("retry.delays")
                .with_list_parse_key("delivery.allowed_networks")
                .with_list_parse_key("api.operator_token_hashes")
                .source(Some(environment)),
        );
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        self.retry_policy()?;
        let prefix = &self.amqp.prefix;
        if prefix.is_empty()
            || prefix.len() > 100
            || !prefix.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(invalid("amqp.prefix", "must be 1 to 100 letters, digits, `-`, `_` or `.`"));
        }
        for (key, value) in [
            ("delivery.concurrency", self.delivery.concurrency),
            ("delivery.max_in_flight_per_endpoint", self.delivery.max_in_flight_per_endpoint),
            ("ingest.concurrency", self.ingest.concurrency),
            ("router.concurrency", self.router.concurrency),
            ("scheduler.concurrency", self.scheduler.concurrency),
            ("database.pool_size", self.database.pool_size),
        ] {
            if !(1..=10_000).contains(&value) {
                return Err(invalid(key, format!("must be between 1 and 10000, not {value}")));
            }
        }
        if self.delivery.timeout.is_zero() || self.delivery.timeout > Duration::from_secs(600) {
            return Err(invalid("delivery.timeout", "must be more than 0 and at most 10 minutes"));
        }
        self.delivery.validate_circuit()?;
        self.retention.validate()?;
        if self.database.batch_linger > Duration::from_millis(100) {
            // Every batched statement can wait this long: beyond a few milliseconds it is
            // added latency, not saved work.
            return Err(invalid("database.batch_linger", "must be at most 100ms"));
        }
        if self.ingest.max_event_size < 1024 {
            return Err(invalid("ingest.max_event_size", "must be at least 1024 bytes"));
        }
        if self.scheduler.reconcile_interval.is_zero() {
            return Err(invalid("scheduler.reconcile_interval", "must be more than 0"));
        }
        self.delivery.address_policy()?;
        self.delivery.egress_proxy()?;
        self.api.validate()?;
        if !(0.0..=1.0).contains(&self.telemetry.sampling_ratio) {
            return Err(invalid("telemetry.sampling_ratio", "must be between 0.0 and 1.0"));
        }
        self.metrics_listen()?;
        if !self.telemetry.otlp_endpoint.is_empty() {
            url::Url::parse(&self.telemetry.otlp_endpoint)
                .map_err(|err| invalid("telemetry.otlp_endpoint", format!("is not a URL: {err}")))?;
        }
        if let Some(key) = &self.secrets.key {
            SecretBox::from_base64(key.expose_secret()).map_err(|err| invalid("secrets.key", err.to_string()))?;
        }
        if !self.catalog.path.as_os_str().is_empty() {
            self.catalog()?;
        }
        Ok(())
    }

    /// The configured default retry policy.
    pub fn retry_policy(&self) -> Result<RetryPolicy, SettingsError> {
        RetryPolicy::new(self.retry.delays.iter().map(|d| **d).collect())
            .map_err(|err| invalid("retry.delays", err.to_string()))
    }

    /// The key that encrypts secrets at rest; an error naming `secrets.key` when unset.
    pub fn secret_box(&self) -> Result<SecretBox, SettingsError> {
        let key = self.secrets.key.as_ref().ok_or_else(|| {
            invalid("secrets.key", "is required (32 bytes, base64; generate one with `openssl rand -base64 32`)")
        })?;
        SecretBox::from_base64(key.expose_secret()).map_err(|err| invalid("secrets.key", err.to_string()))
    }

    /// The event catalog: the configured file, or the shipped one.
    pub fn catalog(&self) -> Result<Catalog, SettingsError> {
        if self.catalog.path.as_os_str().is_empty() {
            return Ok(Catalog::builtin());
        }
        let text = std::fs::read_to_string(&self.catalog.path)
            .map_err(|err| invalid("catalog.path", format!("{}: {err}", self.catalog.path.display())))?;
        Catalog::from_toml(&text).map_err(|err| invalid("catalog.path", err.to_string()))
    }

    /// Where the Prometheus `/metrics` endpoint listens; `None` when it is switched off.
    pub fn metrics_listen(&self) -> Result<Option<SocketAddr>, SettingsError> {
        let listen = self.telemetry.metrics_listen.trim();
        if listen.is_empty() {
            return Ok(None);
        }
        listen.parse().map(Some).map_err(|_| {
            invalid("telemetry.metrics_listen", format!("`{listen}` is not an address such as 127.0.0.1:9464"))
        })
    }

    /// The database URL.
    pub fn database_url(&self) -> &str {
        self.database.url.expose_secret()
    }

    /// The broker URL.
    pub fn amqp_url(&self) -> &str {
        self.amqp.url.expose_secret()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn shipped_defaults_are_the_reference_policy() {
        let settings = Settings::load_with(None, env(&[])).unwrap();
        assert_eq!(settings.retry_policy().unwrap(), RetryPolicy::default());
        assert_eq!(settings.delivery.timeout, Duration::from_secs(60));
        assert_eq!(settings.amqp.prefix, "hookline");
        assert!(!settings.delivery.allow_http);
        assert!(!settings.delivery.allow_private_networks);
        assert_eq!(settings.ingest.max_event_size, 256 * 1024);
        assert!(settings.secret_box().is_err());
    }

    #[test]
    fn environment_overrides_defaults() {
        let settings = Settings::load_with(
            None,
            env(&[
                ("HOOKLINE__RETRY__DELAYS", "1s,2s"),
                ("HOOKLINE__DELIVERY__ALLOW_HTTP", "true"),
                ("HOOKLINE__DELIVERY__TIMEOUT", "5s"),
                ("HOOKLINE__AMQP__PREFIX", "test-1"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.retry_policy().unwrap().delays(), &[Duration::from_secs(1), Duration::from_secs(2)]);
        assert!(settings.delivery.allow_http);
        assert_eq!(settings.delivery.timeout, Duration::from_secs(5));
        assert_eq!(settings.amqp.prefix, "test-1");
    }

    #[test]
    fn invalid_values_name_their_key() {
        let cases = [
            ("HOOKLINE__RETRY__DELAYS", "0s", "retry.delays"),
            ("HOOKLINE__DELIVERY__TIMEOUT", "soon", "timeout"),
            ("HOOKLINE__DELIVERY__CONCURRENCY", "0", "delivery.concurrency"),
            ("HOOKLINE__DATABASE__BATCH_LINGER", "1s", "database.batch_linger"),
            ("HOOKLINE__AMQP__PREFIX", "a b", "amqp.prefix"),
            ("HOOKLINE__SECRETS__KEY", "short", "secrets.key"),
            ("HOOKLINE__CATALOG__PATH", "/nonexistent/catalog.toml", "catalog.path"),
            ("HOOKLINE__DELIVERY__ALLOWED_NETWORKS", "10.0.0.0/99", "delivery.allowed_networks"),
            ("HOOKLINE__DELIVERY__EGRESS_PROXY", "socks5://proxy:1080", "delivery.egress_proxy"),
            ("HOOKLINE__DELIVERY__EGRESS_PROXY", "proxy:3128", "delivery.egress_proxy"),
            ("HOOKLINE__API__OPERATOR_TOKEN_HASHES", "hlop_not_a_hash", "api.operator_token_hashes"),
            ("HOOKLINE__TELEMETRY__SAMPLING_RATIO", "1.5", "telemetry.sampling_ratio"),
            ("HOOKLINE__TELEMETRY__METRICS_LISTEN", "everywhere", "telemetry.metrics_listen"),
            ("HOOKLINE__TELEMETRY__OTLP_ENDPOINT", "collector", "telemetry.otlp_endpoint"),
        ];
        for (key, value, named) in cases {
            let err = Settings::load_with(None, env(&[(key, value)])).unwrap_err().to_string();
            assert!(err.contains(named), "{key}={value}: `{err}` does not name {named}");
        }
    }

    #[test]
    fn a_config_file_sits_between_defaults_and_environment() {
        let dir = std::env::temp_dir().join(format!("hookline-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("local.toml");
        std::fs::write(&file, "[delivery]\nconcurrency = 7\ntimeout = \"9s\"\n").unwrap();
        let settings = Settings::load_with(Some(&file), env(&[("HOOKLINE__DELIVERY__TIMEOUT", "3s")])).unwrap();
        assert_eq!(settings.delivery.concurrency, 7);
        assert_eq!(settings.delivery.timeout, Duration::from_secs(3));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
