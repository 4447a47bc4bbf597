//! The `hookline` binary.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use hookline_telemetry::Settings;

mod admin;
mod demo;
mod services;

/// hookline: self-hosted webhook delivery.
#[derive(Debug, Parser)]
#[command(name = "hookline", version, about)]
struct Cli {
    /// Configuration file layered over the shipped defaults (environment variables
    /// HOOKLINE__SECTION__KEY override both).
    #[arg(long, global = true, env = "HOOKLINE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every service in one process.
    All,
    /// Run the event ingest service.
    Ingest,
    /// Run the subscription router.
    Router,
    /// Run a delivery worker (start as many as the load needs).
    Worker,
    /// Run the retry scheduler.
    Scheduler,
    /// Run the management API and HTTP event ingest.
    Api,
    /// Apply database migrations and exit.
    Migrate,
    /// Organisations.
    Org {
        #[command(subcommand)]
        command: admin::OrgCommand,
    },
    /// The host platform's operator token.
    Operator {
        #[command(subcommand)]
        command: admin::OperatorCommand,
    },
    /// Webhooks.
    Webhook {
        #[command(subcommand)]
        command: admin::WebhookCommand,
    },
    /// Publish an upstream event to the events exchange, as an upstream application would.
    Publish(admin::PublishArgs),
    /// Start everything with a demo receiver, publish sample events and show each
    /// delivery and attempt as it happens.
    Demo(demo::DemoArgs),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match execute(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("hookline: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn execute(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref())?;
    match cli.command {
        Command::All => services::all(settings).await,
        Command::Ingest => services::one(services::Service::Ingest, settings).await,
        Command::Router => services::one(services::Service::Router, settings).await,
        Command::Worker => services::one(services::Service::Worker, settings).await,
        Command::Scheduler => services::one(services::Service::Scheduler, settings).await,
        Command::Api => services::one(services::Service::Api, settings).await,
        Command::Migrate => {
            hookline_store::migrate(settings.database_url()).await?;
            println!("database is up to date");
            Ok(())
        }
        Command::Org { command } => admin::org(command, &settings).await,
        Command::Operator { command } => {
            admin::operator(command);
            Ok(())
        }
        Command::Webhook { command } => admin::webhook(command, &settings).await,
        Command::Publish(args) => admin::publish(args, &settings).await,
        Command::Demo(args) => demo::run(args, settings).await,
    }
}
