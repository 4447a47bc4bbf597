//! Bootstrap administration without the REST API.

use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use hookline_api::admin::{self, EndpointInput, WebhookInput, WebhookRules};
use hookline_bus::{Bus, codec};
use hookline_core::ids::OrganizationId;
use hookline_telemetry::Settings;
use lapin::BasicProperties;

#[derive(Debug, Subcommand)]
pub(crate) enum OperatorCommand {
    /// Make an operator token for the host platform's backend (it manages organisations
    /// through /v1/organizations). Prints the token (shown once) and the hash to list in
    /// `api.operator_token_hashes`; the token itself is never stored.
    Token,
}

/// Prints a new operator token and the configuration line that admits it.
pub(crate) fn operator(command: OperatorCommand) {
    let OperatorCommand::Token = command;
    println!("{}", serde_json::to_string_pretty(&new_operator_token()).unwrap_or_default());
}

/// A new operator token, with its hash and the setting that admits it.
fn new_operator_token() -> serde_json::Value {
    let (token, hash) = hookline_core::apikey::generate_operator_token();
    serde_json::json!({
        "operator_token": token,
        "hash": hash,
        "configure": format!("HOOKLINE__API__OPERATOR_TOKEN_HASHES={hash}"),
    })
}

#[derive(Debug, Subcommand)]
pub(crate) enum OrgCommand {
    /// Create an organisation; prints its id and an admin API key (shown once).
    Create {
        /// Organisation name.
        name: String,
        /// Also make an operator token for the host platform's backend (printed once,
        /// with the hash to configure), for a first bootstrap.
        #[arg(long)]
        operator_token: bool,
    },
    /// Mint an API key for an existing organisation (one that has lost its admin keys,
    /// say); prints its id and the key (shown once).
    Key {
        /// The organisation's id.
        #[arg(long)]
        org: OrganizationId,
        /// What the key may do: admin, webhooks:write or webhooks:read (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "admin")]
        scopes: Vec<hookline_core::apikey::Scope>,
        /// The key's label, recorded as "created by" on what it creates.
        #[arg(long, default_value = "operator")]
        label: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum WebhookCommand {
    /// Create a webhook; prints its id and signing secret.
    Create(WebhookCreateArgs),
}

#[derive(Debug, Args)]
pub(crate) struct WebhookCreateArgs {
    /// Owning organisation id.
    #[arg(long)]
    org: OrganizationId,
    /// Webhook name.
    #[arg(long)]
    name: String,
    /// Endpoint URL (repeat for several endpoints).
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    /// Event types and component wildcards, comma-separated: job.created,estimate.*
    #[arg(long, value_delimiter = ',', required = true)]
    events: Vec<String>,
    /// HTTP method for every endpoint: POST, PUT or PATCH.
    #[arg(long, default_value = "POST")]
    method: String,
    /// A test webhook (receives test events only).
    #[arg(long)]
    test: bool,
    /// Start active (webhooks start inactive otherwise).
    #[arg(long)]
    active: bool,
    /// Only events caused by this user ("for login").
    #[arg(long)]
    actor: Option<String>,
    /// Only events concerning this team.
    #[arg(long)]
    team: Option<String>,
    /// Basic authentication for every endpoint, as USER:PASSWORD.
    #[arg(long)]
    basic: Option<String>,
    /// Description.
    #[arg(long, default_value = "")]
    description: String,
}

#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// Organisation id.
    #[arg(long)]
    org: OrganizationId,
    /// Event type, e.g. job.created.
    #[arg(long = "type")]
    event_type: String,
    /// Payload, a JSON object.
    #[arg(long, default_value = "{}")]
    data: String,
    /// Idempotency key.
    #[arg(long)]
    id: Option<String>,
    /// Publish as a test event.
    #[arg(long)]
    test: bool,
    /// Acting user.
    #[arg(long)]
    actor: Option<String>,
    /// Team.
    #[arg(long)]
    team: Option<String>,
}

async fn pool(settings: &Settings) -> anyhow::Result<hookline_store::Pool> {
    Ok(hookline_store::open(settings.database_url(), 2).await?)
}

pub(crate) async fn org(command: OrgCommand, settings: &Settings) -> anyhow::Result<()> {
    match command {
        OrgCommand::Create { name, operator_token } => {
            let created = admin::create_organization(&pool(settings).await?, &name).await?;
            let mut shown = serde_json::to_value(&created)?;
            if operator_token {
                shown["operator"] = new_operator_token();
            }
            println!("{}", serde_json::to_string_pretty(&shown)?);
        }
        OrgCommand::Key { org, scopes, label } => {
            let minted = admin::mint_api_key(&pool(settings).await?, &org, &label, &scopes).await?;
            println!("{}", serde_json::to_string_pretty(&minted)?);
        }
    }
    Ok(())
}

pub(crate) async fn webhook(command: WebhookCommand, settings: &Settings) -> anyhow::Result<()> {
    let WebhookCommand::Create(args) = command;
    let basic = match args.basic {
        None => None,
        Some(pair) => {
            let (user, password) = pair.split_once(':').context("--basic takes USER:PASSWORD")?;
            Some((user.to_owned(), password.to_owned()))
        }
    };
    let input = WebhookInput {
        organization_id: Some(args.org),
        name: args.name,
        description: args.description,
        endpoints: args
            .urls
            .into_iter()
            .map(|url| EndpointInput { url, method: Some(args.method.clone()), ..Default::default() })
            .collect(),
        events: args.events,
        actor: args.actor,
        team: args.team,
        test: args.test,
        active: args.active,
        basic,
        retry_policy: None,
        created_by: Some("cli".into()),
    };
    let catalog = Arc::new(settings.catalog()?);
    let rules = WebhookRules { catalog: &catalog, allow_http: settings.delivery.allow_http };
    let (pool, secrets) = (pool(settings).await?, settings.secret_box()?);
    hookline_store::repo::key_check::verify(&pool, &secrets).await?;
    let created = admin::create_webhook(&pool, &secrets, rules, input).await?;
    println!("{}", serde_json::to_string_pretty(&created)?);
    Ok(())
}

/// The JSON envelope an upstream application publishes.
pub(crate) fn envelope(args: &PublishArgs) -> anyhow::Result<serde_json::Value> {
    let data: serde_json::Value = serde_json::from_str(&args.data).context("--data must be a JSON object")?;
    Ok(serde_json::json!({
        "id": args.id,
        "type": args.event_type,
        "organization": args.org,
        "environment": if args.test { "test" } else { "live" },
        "occurred_at": chrono::Utc::now().to_rfc3339(),
        "actor": args.actor,
        "team": args.team,
        "data": data,
    }))
}

pub(crate) async fn publish(args: PublishArgs, settings: &Settings) -> anyhow::Result<()> {
    let body = publish_event(&args, settings).await?;
    println!("{}", serde_json::to_string_pretty(&serde_json::json!({"published": body}))?);
    Ok(())
}

/// Publishes the event described by `args` and returns the envelope sent.
pub(crate) async fn publish_event(args: &PublishArgs, settings: &Settings) -> anyhow::Result<serde_json::Value> {
    let body = envelope(args)?;
    let delays = settings.retry_policy()?.delays().to_vec();
    let bus = open_bus(settings, &delays).await?;
    let properties = BasicProperties::default().with_content_type(codec::JSON.into());
    bus.publisher
        .publish(&bus.topology.events_exchange(), &args.event_type, &serde_json::to_vec(&body)?, properties)
        .await?;
    Ok(body)
}

/// How long a command waits for the broker before it gives up.
const BROKER_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// The broker, or a clear error once [`BROKER_WAIT`] has passed: a command, unlike a
/// service, should not wait for ever.
async fn open_bus(settings: &Settings, delays: &[std::time::Duration]) -> anyhow::Result<Bus> {
    let give_up = tokio_util::sync::CancellationToken::new();
    let _timer = {
        let give_up = give_up.clone();
        tokio::spawn(async move {
            tokio::time::sleep(BROKER_WAIT).await;
            give_up.cancel();
        })
    };
    Bus::open(settings.amqp_url(), &settings.amqp.prefix, "hookline-cli", delays, &give_up)
        .await
        .map_err(|err| anyhow::anyhow!("{err}: no broker answered at amqp.url within {}s", BROKER_WAIT.as_secs()))
}

impl PublishArgs {
    /// A live event with a payload, for the demo.
    pub(crate) fn sample(org: OrganizationId, event_type: &str, data: &str) -> Self {
        Self {
            org,
            event_type: event_type.to_owned(),
            data: data.to_owned(),
            id: None,
            test: false,
            actor: None,
            team: None,
        }
    }
}
