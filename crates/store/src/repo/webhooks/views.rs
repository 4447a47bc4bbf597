//! Webhooks as the management API shows them (never with their secrets, but for the
//! admin's own signing-secret read).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use hookline_core::circuit::{Circuit, CircuitState};
use hookline_core::crypto::SecretBox;
use hookline_core::environment::Environment;
use hookline_core::ids::{CredentialId, EndpointId, OrganizationId, WebhookId};
use hookline_core::signing::SigningSecret;
use hookline_core::webhook::HttpMethod;
use tokio_postgres::Row;

use crate::error::{Error, QueryContext as _, Result};

/// An endpoint as shown.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct EndpointView {
    /// Endpoint id.
    #[schema(value_type = String)]
    pub id: EndpointId,
    /// Receiver URL.
    pub url: String,
    /// POST, PUT or PATCH.
    #[schema(value_type = String)]
    pub method: HttpMethod,
    /// Credential used, if any.
    #[schema(value_type = Option<String>)]
    pub credential_id: Option<CredentialId>,
    /// Extra headers.
    pub headers: BTreeMap<String, String>,
    /// Its circuit breaker: whether its jobs are sent or parked, and how many wait.
    pub circuit: EndpointCircuit,
}

/// An endpoint's circuit breaker as shown (see `hookline_core::circuit`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(from = "StoredCircuit")]
pub struct EndpointCircuit {
    /// `closed` (jobs are sent), `open` (jobs are parked until the next probe) or
    /// `probing` (one job is being sent as a probe).
    #[schema(value_type = String)]
    pub state: CircuitState,
    /// Attempts in a row that failed with no answer, a refused connection, a 5xx or a 429.
    pub failures: u32,
    /// When it opened, while open.
    pub opened_at: Option<DateTime<Utc>>,
    /// When the next probe may go, while open.
    pub next_probe_at: Option<DateTime<Utc>>,
    /// Deliveries parked for this endpoint: waiting for its circuit to close, or for
    /// room under its in-flight cap.
    pub parked: u64,
}

/// An endpoint's circuit as the view's query reads it.
#[derive(serde::Deserialize)]
struct StoredCircuit {
    failures: Option<u32>,
    opened_at: Option<DateTime<Utc>>,
    probe_at: Option<DateTime<Utc>>,
    probing_until: Option<DateTime<Utc>>,
    parked: u64,
}

impl From<StoredCircuit> for EndpointCircuit {
    fn from(stored: StoredCircuit) -> Self {
        let circuit = Circuit {
            failures: stored.failures.unwrap_or_default(),
            opened_at: stored.opened_at,
            probe_wait: None,
            probe_at: stored.probe_at,
            probing_until: stored.probing_until,
        };
        EndpointCircuit {
            state: circuit.state(Utc::now()),
            failures: circuit.failures,
            opened_at: circuit.opened_at,
            next_probe_at: circuit.opened_at.and(circuit.probe_at),
            parked: stored.parked,
        }
    }
}

/// The "for login" and team filters.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Filters {
    /// Only events acted by this user.
    pub actor: Option<String>,
    /// Only events of this team.
    pub team: Option<String>,
}

/// A webhook as shown (never with its secret).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct WebhookView {
    /// Webhook id.
    #[schema(value_type = String)]
    pub id: WebhookId,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Live endpoints, in order.
    pub endpoints: Vec<EndpointView>,
    /// Selected event codes and wildcards.
    pub events: Vec<String>,
    /// Filters.
    pub filters: Filters,
    /// Test webhook.
    pub test: bool,
    /// Receiving events now.
    pub active: bool,
    /// Why hookline deactivated it, if it did (410 Gone, too many failures in a row).
    pub disabled_reason: Option<String>,
    /// Own retry delays in milliseconds, when set.
    pub retry_delays_ms: Option<Vec<i64>>,
    /// Who created it.
    pub created_by: Option<String>,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "w.id, w.name, w.description, w.events, w.filter_actor, w.filter_team, w.environment, w.active,
    w.retry_delays_ms, w.created_by, w.created_at, w.updated_at, w.disabled_reason,
    COALESCE((SELECT json_agg(json_build_object('id', e.id, 'url', e.url, 'method', e.method,
        'credential_id', e.credential_id, 'headers', e.headers,
        'circuit', json_build_object('failures', c.failures, 'opened_at', c.opened_at, 'probe_at', c.probe_at,
            'probing_until', c.probing_until,
            'parked', (SELECT count(*) FROM deliveries d WHERE d.endpoint_id = e.id AND d.parked_at IS NOT NULL)))
        ORDER BY e.position)
        FROM endpoints e LEFT JOIN endpoint_circuits c ON c.endpoint_id = e.id
        WHERE e.webhook_id = w.id AND e.removed_at IS NULL), '[]'::json) AS endpoints";

fn view(row: &Row) -> Result<WebhookView> {
    let environment: Environment = row.try_get("environment")?;
    let endpoints: serde_json::Value = row.try_get("endpoints")?;
    Ok(WebhookView {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        events: row.try_get("events")?,
        filters: Filters { actor: row.try_get("filter_actor")?, team: row.try_get("filter_team")? },
        test: environment == Environment::Test,
        active: row.try_get("active")?,
        retry_delays_ms: row.try_get("retry_delays_ms")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        disabled_reason: row.try_get("disabled_reason")?,
        endpoints: serde_json::from_value(endpoints).map_err(|err| Error::Corrupt(format!("endpoints: {err}")))?,
    })
}

/// An undeleted webhook of the organisation.
pub async fn get(pool: &Pool, organization: &OrganizationId, id: &WebhookId) -> Result<Option<WebhookView>> {
    let client = pool.get().await?;
    let sql =
        format!("SELECT {COLUMNS} FROM webhooks w WHERE w.id = $1 AND w.organization_id = $2 AND w.deleted_at IS NULL");
    let row = client.query_opt(&sql, &[id, organization]).await.context("loading a webhook")?;
    row.as_ref().map(view).transpose()
}

/// One page of the organisation's undeleted webhooks, oldest first, after the cursor id
/// (`""` for the first page).
pub async fn list(pool: &Pool, organization: &OrganizationId, after: &str, limit: i64) -> Result<Vec<WebhookView>> {
    let client = pool.get().await?;
    let sql = format!(
        "SELECT {COLUMNS} FROM webhooks w WHERE w.organization_id = $1 AND w.deleted_at IS NULL AND w.id > $2
         ORDER BY w.id LIMIT $3"
    );
    let rows = client.query(&sql, &[organization, &after, &limit]).await.context("listing webhooks")?;
    rows.iter().map(view).collect()
}

/// Whether the webhook exists for the organisation, deleted ones included (their
/// delivery history stays readable).
pub async fn exists_with_history(pool: &Pool, organization: &OrganizationId, id: &WebhookId) -> Result<bool> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM webhooks WHERE id = $1 AND organization_id = $2) AS found",
            &[id, organization],
        )
        .await
        .context("looking up a webhook")?;
    Ok(row.try_get("found")?)
}

/// The webhook's signing secret (for admins).
pub async fn signing_secret(
    pool: &Pool,
    secrets: &SecretBox,
    organization: &OrganizationId,
    id: &WebhookId,
) -> Result<Option<SigningSecret>> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT signing_secret FROM webhooks WHERE id = $1 AND organization_id = $2 AND deleted_at IS NULL",
            &[id, organization],
        )
        .await
        .context("loading a signing secret")?;
    row.map(|row| {
        let sealed: Vec<u8> = row.try_get("signing_secret")?;
        SigningSecret::parse(&secrets.open_string(&sealed)?).map_err(|_| Error::Corrupt("signing secret".into()))
    })
    .transpose()
}
