//! `leadfactory` — the operator CLI: the local run and database, the simulator, and the
//! operations commands (status, dashboard, DLQs, QA, API keys, erasure, sending pauses,
//! export/restore).

mod cloud_cmd;
mod db;
mod dlq_cmd;
mod ops;
mod purchase_cmd;
mod run;
mod simulator;
mod vendor_cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "leadfactory",
    version,
    about = "Operate LeadFactory: local database, migrations, pipeline"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The throwaway local PostgreSQL cluster under .leadfactory/
    Db {
        #[command(subcommand)]
        action: db::DbAction,
    },
    /// Run the whole pipeline locally on embedded defaults (PostgreSQL, simulator, local store and queue)
    Run(run::RunArgs),
    /// The local stand-in for the AWS account infra/template.yaml describes: up, fire, status, down
    Cloud(cloud_cmd::CloudArgs),
    /// Dead-letter queues in AWS (or moto): list what failed and why, move messages back
    Dlq(dlq_cmd::DlqArgs),
    /// The latest runs and the newest run's stage table
    Status {
        /// URL of the database as `leadfactory_backup`, which reads every tenant (default: the
        /// local cluster)
        #[arg(long, env = "DATABASE_BACKUP_URL")]
        url: Option<String>,
        #[arg(long, default_value_t = 10)]
        runs: i64,
    },
    /// Erase a person's data on request (leaves a suppression so they are never contacted again)
    Forget(ops::ForgetArgs),
    /// Everything held about an address, as JSON (an access request; the counterpart of forget)
    SubjectExport(ops::SubjectExportArgs),
    /// QA samples of each run's top leads: list them, record verdicts
    Qa(ops::QaArgs),
    /// Ops API keys: create, rotate, revoke, list
    Apikey(ops::ApiKeyArgs),
    /// Export the critical tables (CSV + manifest) to a directory or s3://bucket/prefix
    Export(ops::ExportArgs),
    /// Restore an export into an empty, migrated database
    Restore(ops::RestoreArgs),
    /// Write the dashboard (funnel, spend, latency, experiments) to out/dashboard.html and open it
    Dashboard(ops::DashboardArgs),
    /// Sending pauses and today's caps: status, pause, resume
    Sending(ops::SendingArgs),
    /// Purchases: send a report again; Stripe events that named no tenant
    Purchase(purchase_cmd::PurchaseArgs),
    /// Create a tenant (an agency); prints its id
    TenantCreate(ops::TenantArgs),
    /// Send a tenant's alerts to its own Slack channel (the webhook kept in Secrets Manager)
    TenantSlack(ops::TenantSlackArgs),
    /// The vendor kill switch: pause a vendor for the fleet (or a tenant), resume it, list pauses
    Vendor(vendor_cmd::VendorArgs),
    /// Run the vendor simulator standalone until Ctrl-C
    Sim(simulator::SimArgs),
    /// Apply pending migrations to DATABASE_OWNER_URL (or DATABASE_URL), or the local cluster
    Migrate {
        /// Owner (not application-role) URL of the database to migrate
        #[arg(long, env = "DATABASE_OWNER_URL")]
        url: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    leadfactory_cli::local::return_freed_buffers_to_the_os();
    let cli = Cli::parse();
    match cli.command {
        Command::Db { action } => db::run(action).await,
        Command::Migrate { url } => db::migrate(url).await,
        Command::Sim(args) => simulator::run(args).await,
        Command::Vendor(args) => vendor_cmd::run(args).await,
        Command::Run(args) => run::run(args).await,
        Command::Dlq(args) => dlq_cmd::run(args).await,
        Command::Cloud(args) => cloud_cmd::run(args).await,
        Command::Forget(args) => ops::forget(args).await,
        Command::SubjectExport(args) => ops::subject_export(args).await,
        Command::Qa(args) => ops::qa(args).await,
        Command::Apikey(args) => ops::apikey(args).await,
        Command::Dashboard(args) => ops::dashboard(args).await,
        Command::Sending(args) => ops::sending(args).await,
        Command::Purchase(args) => purchase_cmd::run(args).await,
        Command::TenantCreate(args) => ops::tenant_create(args).await,
        Command::TenantSlack(args) => ops::tenant_slack(args).await,
        Command::Export(args) => ops::export(args).await,
        Command::Restore(args) => ops::restore(args).await,
        Command::Status { url, runs } => {
            let client = db::operator_client(url).await?;
            print!("{}", leadfactory_cli::status::report(&client, runs).await?);
            Ok(())
        }
    }
}
