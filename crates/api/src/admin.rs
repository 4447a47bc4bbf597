//! Administrative operations shared by the CLI and the REST API: every rule about what
//! a valid webhook is lives here, once.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use hookline_core::apikey::Scope;
use hookline_core::credential::{Credential, CredentialValues};
use hookline_core::crypto::SecretBox;
use hookline_core::environment::Environment;
use hookline_core::ids::{EndpointId, OrganizationId, WebhookId};
use hookline_core::limits;
use hookline_core::signing::SigningSecret;
use hookline_core::webhook::{EventSelector, HttpMethod};
use hookline_core::{Catalog, RetryPolicy};
use hookline_store::Pool;
use hookline_store::repo::webhooks::{self, changes};
use hookline_store::repo::{api_keys, credentials, organizations};

use crate::ApiError;

/// Why an administrative operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The input breaks a rule; nothing was saved.
    #[error("{field}: {message}")]
    Invalid {
        /// Stable machine code.
        code: &'static str,
        /// The input field concerned.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The organisation may not use webhooks (the operator turned them off).
    #[error("webhooks are turned off for this organisation")]
    WebhooksDisabled,
    /// PostgreSQL failed.
    #[error(transparent)]
    Store(#[from] hookline_store::Error),
}

/// The answer to creating or activating a webhook of an organisation whose webhooks
/// the operator turned off.
pub(crate) fn webhooks_disabled() -> ApiError {
    ApiError {
        status: StatusCode::CONFLICT,
        code: "webhooks_disabled",
        field: None,
        message: "webhooks are turned off for this organisation; the platform's operator can turn them on".into(),
        retry_after: None,
    }
}

impl From<AdminError> for ApiError {
    fn from(err: AdminError) -> Self {
        match err {
            AdminError::Invalid { code, field, message } => {
                ApiError::field(StatusCode::UNPROCESSABLE_ENTITY, code, field, message)
            }
            AdminError::WebhooksDisabled => webhooks_disabled(),
            AdminError::Store(err) => ApiError::internal(&err),
        }
    }
}

fn invalid(code: &'static str, field: &'static str, message: impl Into<String>) -> AdminError {
    AdminError::Invalid { code, field, message: message.into() }
}

/// A new organisation and its first key.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OrganizationCreated {
    /// The organisation.
    pub id: OrganizationId,
    /// Its name.
    pub name: String,
    /// An admin API key, shown this once.
    pub api_key: String,
}

/// Creates an organisation with an admin key labelled `bootstrap`.
pub async fn create_organization(pool: &Pool, name: &str) -> Result<OrganizationCreated, AdminError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(invalid("invalid_name", "name", "name must be 1 to 200 characters"));
    }
    let id = organizations::create(pool, name).await?;
    let (_, key) = api_keys::create(pool, &id, "bootstrap", &[Scope::Admin]).await?;
    Ok(OrganizationCreated { id, name: name.to_owned(), api_key: key.secret })
}

/// A key minted for an existing organisation by the operator (`hookline org key`): the
/// way back in for an organisation that has lost its admin keys.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyMinted {
    /// The key's id.
    pub id: hookline_core::ids::ApiKeyId,
    /// The key itself, shown this once.
    pub api_key: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
}

/// Mints a key with `scopes` for the existing organisation `organization`.
pub async fn mint_api_key(
    pool: &Pool,
    organization: &OrganizationId,
    label: &str,
    scopes: &[Scope],
) -> Result<KeyMinted, AdminError> {
    if !organizations::exists(pool, organization).await? {
        return Err(invalid("unknown_organization", "org", format!("organisation `{organization}` does not exist")));
    }
    let label = limits::name(label)
        .ok_or_else(|| invalid("invalid_label", "label", format!("label must be 1 to {} bytes", limits::NAME)))?;
    let (id, key) = api_keys::create(pool, organization, label, scopes).await?;
    Ok(KeyMinted { id, api_key: key.secret, scopes: scopes.to_vec() })
}

/// One endpoint as given.
#[derive(Debug, Clone, Default)]
pub struct EndpointInput {
    /// Receiver URL.
    pub url: String,
    /// `POST` (default), `PUT` or `PATCH`.
    pub method: Option<String>,
    /// Extra headers.
    pub headers: BTreeMap<String, String>,
    /// Credential to authenticate with (must be the organisation's, and test for a test
    /// webhook, live for a live one).
    pub credential_id: Option<String>,
}

/// A webhook as given, before validation.
#[derive(Debug, Clone, Default)]
pub struct WebhookInput {
    /// Owner.
    pub organization_id: Option<OrganizationId>,
    /// Name people see.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Receivers.
    pub endpoints: Vec<EndpointInput>,
    /// Event codes and `component.*` wildcards.
    pub events: Vec<String>,
    /// "For login" filter.
    pub actor: Option<String>,
    /// Team filter.
    pub team: Option<String>,
    /// Test webhook (receives test events only).
    pub test: bool,
    /// Start active (new webhooks are inactive by default).
    pub active: bool,
    /// Basic credential (username, password) for every endpoint.
    pub basic: Option<(String, String)>,
    /// Its own retry policy instead of the configured one.
    pub retry_policy: Option<RetryPolicy>,
    /// Who created it.
    pub created_by: Option<String>,
}

/// A created webhook.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WebhookCreated {
    /// The webhook.
    pub id: WebhookId,
    /// Its `whsec_` signing secret, for the receiver to verify signatures.
    pub signing_secret: String,
    /// Its endpoints, in order.
    pub endpoints: Vec<EndpointId>,
    /// Whether it receives events now.
    pub active: bool,
}

/// What validation needs from configuration.
#[derive(Debug, Clone, Copy)]
pub struct WebhookRules<'a> {
    /// The event catalog.
    pub catalog: &'a Catalog,
    /// Whether live webhooks may use http://.
    pub allow_http: bool,
}

/// Validates and stores a webhook (and its basic credential, if given).
pub async fn create_webhook(
    pool: &Pool,
    secrets: &SecretBox,
    rules: WebhookRules<'_>,
    input: WebhookInput,
) -> Result<WebhookCreated, AdminError> {
    let organization_id =
        input.organization_id.clone().ok_or_else(|| invalid("missing_organization", "organization", "required"))?;
    if !organizations::exists(pool, &organization_id).await? {
        return Err(invalid("unknown_organization", "organization", format!("{organization_id} does not exist")));
    }
    if !organizations::webhooks_enabled(pool, &organization_id).await? {
        return Err(AdminError::WebhooksDisabled);
    }
    let mut new = validate(&organization_id, &input, rules)?;
    check_credentials(pool, secrets, &organization_id, &mut new).await?;
    if let Some((username, password)) = &input.basic {
        let credential = Credential::Basic { username: username.clone(), password: password.clone() };
        credential.validate().map_err(|err| AdminError::Invalid {
            code: "invalid_credential",
            field: "basic",
            message: err.to_string(),
        })?;
        let name = format!("{} (basic)", input.name.trim());
        let values = CredentialValues { default: Some(credential), ..CredentialValues::default() };
        let id = credentials::create(pool, secrets, &organization_id, &name, "basic", input.test, &values).await?;
        for endpoint in &mut new.endpoints {
            endpoint.credential_id = Some(id.clone());
        }
    }
    let secret = SigningSecret::generate();
    let (id, endpoints) = changes::create(pool, secrets, &new, &secret).await?;
    Ok(WebhookCreated { id, signing_secret: secret.expose().to_owned(), endpoints, active: new.active })
}

/// Checks that every endpoint's credential belongs to the organisation, matches the
/// webhook's environment (test webhooks use only test credentials, live ones only live)
/// and may be sent to the endpoint's URL (`hookline_core::destination`).
pub async fn check_credentials(
    pool: &Pool,
    secrets: &SecretBox,
    organization: &OrganizationId,
    webhook: &mut webhooks::NewWebhook,
) -> Result<(), AdminError> {
    let test = webhook.environment == Environment::Test;
    for endpoint in &webhook.endpoints {
        let Some(id) = &endpoint.credential_id else { continue };
        let Some((_, credential_test, values)) = credentials::values(pool, secrets, organization, id).await? else {
            return Err(invalid("unknown_credential", "endpoints.credential_id", format!("no credential {id}")));
        };
        if credential_test != test {
            let wanted = if test { "test" } else { "live" };
            return Err(invalid(
                "credential_environment_mismatch",
                "endpoints.credential_id",
                format!("a {wanted} webhook may only use {wanted} credentials"),
            ));
        }
        values.may_be_sent_to(&endpoint.url).map_err(|why| invalid("host_not_allowed", "endpoints.url", why))?;
    }
    Ok(())
}

/// Checks every rule, returning the first broken one.
pub fn validate(
    organization_id: &OrganizationId,
    input: &WebhookInput,
    rules: WebhookRules<'_>,
) -> Result<webhooks::NewWebhook, AdminError> {
    let name = limits::name(&input.name)
        .ok_or_else(|| invalid("invalid_name", "name", format!("name must be 1 to {} bytes", limits::NAME)))?;
    if input.description.len() > limits::DESCRIPTION {
        let message = format!("description must be at most {} bytes", limits::DESCRIPTION);
        return Err(invalid("invalid_description", "description", message));
    }
    if input.events.is_empty() {
        return Err(invalid("missing_events", "events", "select at least one event type or component"));
    }
    // Each selector once, in the order first given.
    let mut events: Vec<String> = Vec::with_capacity(input.events.len().min(limits::EVENTS));
    for event in &input.events {
        let selector: EventSelector =
            event.parse().map_err(|err| invalid("invalid_event", "events", format!("{err}")))?;
        if !selector.exists_in(rules.catalog) {
            return Err(invalid("unknown_event", "events", format!("`{selector}` is not in the event catalog")));
        }
        let selector = selector.to_string();
        if !events.contains(&selector) {
            events.push(selector);
        }
        if events.len() > limits::EVENTS {
            let message = format!("at most {} event types and components", limits::EVENTS);
            return Err(invalid("too_many_events", "events", message));
        }
    }
    if input.endpoints.is_empty() || input.endpoints.len() > limits::ENDPOINTS {
        let message = format!("a webhook needs 1 to {} endpoints", limits::ENDPOINTS);
        return Err(invalid("invalid_endpoints", "endpoints", message));
    }
    for (field, filter) in [("filters.actor", &input.actor), ("filters.team", &input.team)] {
        if filter.as_ref().is_some_and(|filter| filter.len() > limits::FILTER) {
            let message =
                format!("at most {} bytes: events' values are capped there, so it could never match", limits::FILTER);
            return Err(invalid("invalid_filter", field, message));
        }
    }
    let environment = if input.test { Environment::Test } else { Environment::Live };
    let endpoints = input
        .endpoints
        .iter()
        .map(|endpoint| validate_endpoint(endpoint, input.test, rules))
        .collect::<Result<_, _>>()?;
    Ok(webhooks::NewWebhook {
        organization_id: organization_id.clone(),
        name: name.to_owned(),
        description: input.description.clone(),
        events,
        actor: input.actor.clone().filter(|a| !a.is_empty()),
        team: input.team.clone().filter(|t| !t.is_empty()),
        environment,
        active: input.active,
        endpoints,
        retry_policy: input.retry_policy.clone(),
        created_by: input.created_by.clone(),
    })
}

/// Checks one endpoint: an http(s) URL with a host and no user name or password (https
/// for a live webhook unless `delivery.allow_http`), an allowed method, a credential id
/// that parses.
fn validate_endpoint(
    endpoint: &EndpointInput,
    test: bool,
    rules: WebhookRules<'_>,
) -> Result<webhooks::NewEndpoint, AdminError> {
    if endpoint.url.len() > limits::URL {
        return Err(invalid("invalid_url", "endpoints.url", format!("a URL must be at most {} bytes", limits::URL)));
    }
    let url = url::Url::parse(endpoint.url.trim())
        .map_err(|err| invalid("invalid_url", "endpoints.url", format!("`{}` is not a URL: {err}", endpoint.url)))?;
    match url.scheme() {
        "https" => {}
        "http" if rules.allow_http || test => {}
        "http" => {
            return Err(invalid(
                "https_required",
                "endpoints.url",
                format!("live webhooks must use https (`{url}`); delivery.allow_http permits http in development"),
            ));
        }
        other => return Err(invalid("invalid_url", "endpoints.url", format!("scheme `{other}` is not http(s)"))),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("invalid_url", "endpoints.url", format!("`{url}` has no host")));
    }
    // A password in the URL would be shown to every reader of the webhook and of its
    // attempts, and would break SigV4 (the signed host would hold it).
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "credentials_in_url",
            "endpoints.url",
            "an endpoint URL may not hold a user name or password: put them in a `basic` credential",
        ));
    }
    let method = match &endpoint.method {
        None => HttpMethod::Post,
        Some(method) => {
            method.parse().map_err(|err| invalid("invalid_method", "endpoints.method", format!("{err}")))?
        }
    };
    let credential_id = match endpoint.credential_id.as_deref() {
        None | Some("") => None,
        Some(id) => Some(id.parse().map_err(|_| {
            invalid("unknown_credential", "endpoints.credential_id", format!("`{id}` is not a credential id"))
        })?),
    };
    check_headers(&endpoint.headers)?;
    Ok(webhooks::NewEndpoint { url: url.to_string(), method, credential_id, headers: endpoint.headers.clone() })
}

/// An endpoint's own headers: at most [`limits::HEADERS`], each valid HTTP and none that
/// hookline sets itself.
fn check_headers(headers: &BTreeMap<String, String>) -> Result<(), AdminError> {
    if headers.len() > limits::HEADERS {
        let message = format!("at most {} headers per endpoint", limits::HEADERS);
        return Err(invalid("invalid_header", "endpoints.headers", message));
    }
    for (name, value) in headers {
        hookline_core::webhook::check_header(name, value).map_err(|refusal| {
            use hookline_core::webhook::HeaderRefusal;
            match refusal {
                HeaderRefusal::InvalidName => invalid(
                    "invalid_header",
                    "endpoints.headers",
                    format!("`{name:.64}` is not a valid header name of at most {} bytes", limits::HEADER_NAME),
                ),
                HeaderRefusal::InvalidValue => invalid(
                    "invalid_header",
                    "endpoints.headers",
                    format!(
                        "the value of `{name}` holds a control character (a CR or LF would split the request) or is over {} bytes",
                        limits::VALUE
                    ),
                ),
                HeaderRefusal::Reserved => invalid(
                    "reserved_header",
                    "endpoints.headers",
                    format!("`{name}` is set by hookline itself (signature, content type, transport or credential)"),
                ),
            }
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(url: &str, events: &[&str]) -> WebhookInput {
        WebhookInput {
            name: "CRM".into(),
            endpoints: vec![EndpointInput { url: url.into(), ..Default::default() }],
            events: events.iter().map(|e| e.to_string()).collect(),
            ..Default::default()
        }
    }

    fn refusal(input: &WebhookInput, allow_http: bool) -> (&'static str, &'static str) {
        let catalog = Catalog::builtin();
        match validate(&OrganizationId::generate(), input, WebhookRules { catalog: &catalog, allow_http }) {
            Err(AdminError::Invalid { code, field, .. }) => (code, field),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_webhook_passes_and_starts_inactive() {
        let catalog = Catalog::builtin();
        let org = OrganizationId::generate();
        let rules = WebhookRules { catalog: &catalog, allow_http: false };
        let webhook = validate(&org, &input("https://crm.example.com/h", &["job.*", "report.created"]), rules).unwrap();
        assert_eq!(webhook.events, vec!["job.*", "report.created"]);
        assert_eq!(webhook.organization_id, org);
        assert!(!webhook.active);
        assert_eq!(webhook.endpoints[0].method, HttpMethod::Post);
    }

    #[test]
    fn every_field_is_capped_and_selectors_are_kept_once() {
        let over = |limit: usize| "x".repeat(limit + 1);
        let mut described = input("https://crm.example.com/h", &["job.created"]);
        described.description = over(limits::DESCRIPTION);
        assert_eq!(refusal(&described, false), ("invalid_description", "description"));
        let mut named = input("https://crm.example.com/h", &["job.created"]);
        named.name = over(limits::NAME);
        assert_eq!(refusal(&named, false), ("invalid_name", "name"));
        let long_url = format!("https://crm.example.com/{}", over(limits::URL));
        assert_eq!(refusal(&input(&long_url, &["job.created"]), false), ("invalid_url", "endpoints.url"));
        let mut actor = input("https://crm.example.com/h", &["job.created"]);
        actor.actor = Some(over(limits::FILTER));
        assert_eq!(refusal(&actor, false), ("invalid_filter", "filters.actor"));
        let mut team = input("https://crm.example.com/h", &["job.created"]);
        team.team = Some(over(limits::FILTER));
        assert_eq!(refusal(&team, false), ("invalid_filter", "filters.team"));
        let mut headed = input("https://crm.example.com/h", &["job.created"]);
        headed.endpoints[0].headers = (0..=limits::HEADERS).map(|i| (format!("x-{i}"), "v".into())).collect();
        assert_eq!(refusal(&headed, false), ("invalid_header", "endpoints.headers"));
        let mut valued = input("https://crm.example.com/h", &["job.created"]);
        valued.endpoints[0].headers.insert("x-a".into(), over(limits::VALUE));
        assert_eq!(refusal(&valued, false), ("invalid_header", "endpoints.headers"));
        let mut many = input("https://crm.example.com/h", &["job.created"]);
        many.endpoints = vec![many.endpoints[0].clone(); limits::ENDPOINTS + 1];
        assert_eq!(refusal(&many, false), ("invalid_endpoints", "endpoints"));

        // 10,000 copies of three selectors are three selectors, in the order first given.
        let catalog = Catalog::builtin();
        let rules = WebhookRules { catalog: &catalog, allow_http: false };
        let repeated: Vec<&str> = ["job.created", "job.*", " job.created "].repeat(3_334);
        let webhook = validate(&OrganizationId::generate(), &input("https://crm.example.com/h", &repeated), rules);
        assert_eq!(webhook.unwrap().events, vec!["job.created", "job.*"]);
        // A catalog larger than the cap: one selector too many is refused.
        let codes: Vec<String> = (0..=limits::EVENTS).map(|i| format!("big.t{i}")).collect();
        let toml: String =
            codes.iter().map(|code| format!("[[event_types]]\ncode = \"{code}\"\nname = \"x\"\n")).collect();
        let big = Catalog::from_toml(&toml).unwrap();
        let codes: Vec<&str> = codes.iter().map(String::as_str).collect();
        let refused = validate(
            &OrganizationId::generate(),
            &input("https://crm.example.com/h", &codes),
            WebhookRules { catalog: &big, allow_http: false },
        );
        assert!(matches!(refused, Err(AdminError::Invalid { code: "too_many_events", field: "events", .. })));
        assert!(
            validate(
                &OrganizationId::generate(),
                &input("https://crm.example.com/h", &codes[1..]),
                WebhookRules { catalog: &big, allow_http: false }
            )
            .is_ok()
        );
    }

    #[test]
    fn each_rule_refuses_with_its_code_and_field() {
        assert_eq!(
            refusal(&input("http://crm.example.com/h", &["job.created"]), false),
            ("https_required", "endpoints.url")
        );
        assert_eq!(refusal(&input("not a url", &["job.created"]), true), ("invalid_url", "endpoints.url"));
        for (name, value, code) in [
            ("x a", "v", "invalid_header"),
            ("x-a", "v\r\nx-b: 1", "invalid_header"),
            ("Webhook-Signature", "v1,x", "reserved_header"),
        ] {
            let mut headed = input("https://crm.example.com/h", &["job.created"]);
            headed.endpoints[0].headers.insert(name.into(), value.into());
            assert_eq!(refusal(&headed, false), (code, "endpoints.headers"));
        }
        for userinfo in
            ["https://user:pass@crm.example.com/h", "https://user@crm.example.com/h", "https://:pass@crm.example.com/h"]
        {
            assert_eq!(refusal(&input(userinfo, &["job.created"]), false), ("credentials_in_url", "endpoints.url"));
        }
        assert_eq!(
            refusal(&input("ftp://crm.example.com/h", &["job.created"]), true),
            ("invalid_url", "endpoints.url")
        );
        assert_eq!(refusal(&input("https://crm.example.com/h", &[]), false), ("missing_events", "events"));
        assert_eq!(refusal(&input("https://crm.example.com/h", &["job.exploded"]), false), ("unknown_event", "events"));
        assert_eq!(refusal(&input("https://crm.example.com/h", &["nothing.*"]), false), ("unknown_event", "events"));
        assert_eq!(refusal(&input("https://crm.example.com/h", &["JOB"]), false), ("invalid_event", "events"));
        let mut unnamed = input("https://crm.example.com/h", &["job.created"]);
        unnamed.name = "  ".into();
        assert_eq!(refusal(&unnamed, false), ("invalid_name", "name"));
        let mut get = input("https://crm.example.com/h", &["job.created"]);
        get.endpoints[0].method = Some("GET".into());
        assert_eq!(refusal(&get, false), ("invalid_method", "endpoints.method"));
        let mut none = input("https://crm.example.com/h", &["job.created"]);
        none.endpoints.clear();
        assert_eq!(refusal(&none, false), ("invalid_endpoints", "endpoints"));
    }

    #[test]
    fn test_webhooks_and_allow_http_permit_plain_http() {
        let catalog = Catalog::builtin();
        let org = OrganizationId::generate();
        let mut test = input("http://127.0.0.1:9/h", &["job.created"]);
        test.test = true;
        let rules = WebhookRules { catalog: &catalog, allow_http: false };
        assert_eq!(validate(&org, &test, rules).unwrap().environment, Environment::Test);
        let live = input("http://127.0.0.1:9/h", &["job.created"]);
        assert!(validate(&org, &live, WebhookRules { catalog: &catalog, allow_http: true }).is_ok());
    }
}
