//! `leadfactory vendor pause|resume|list`: the vendor kill switch. A pause stops every function
//! calling the vendor — for every tenant, or for one with `--tenant` — within a minute (each
//! container rereads the pauses at most that often); the work that would have called it waits on
//! its queue, reserving no budget, and goes on when the pause ends. Run as the schema owner
//! (`DATABASE_OWNER_URL`): a pause for the whole fleet is an operator's act.

use clap::Subcommand;
use shared::domain::TenantId;
use shared::vendors::pauses;

use crate::db;

#[derive(clap::Args)]
pub struct VendorArgs {
    #[command(subcommand)]
    action: VendorAction,
    /// Owner URL of the database (pauses may cover every tenant)
    #[arg(long, env = "DATABASE_OWNER_URL", global = true)]
    url: Option<String>,
}

#[derive(Subcommand)]
enum VendorAction {
    /// Stop every call to a vendor (yelp, places, pagespeed, openai, sendgrid, stripe, slack)
    Pause {
        vendor: String,
        /// Why (shown in `status`, the ops API and the logs of the work it holds)
        #[arg(long)]
        reason: String,
        /// When the pause ends by itself (RFC 3339, e.g. 2026-12-04T06:00:00Z); default: when resumed
        #[arg(long)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// Only this tenant's work (default: every tenant's)
        #[arg(long)]
        tenant: Option<uuid::Uuid>,
    },
    /// End a vendor's pause (the fleet's, or one tenant's with `--tenant`)
    Resume {
        vendor: String,
        #[arg(long)]
        tenant: Option<uuid::Uuid>,
    },
    /// The vendors paused now
    List,
}

/// Who is acting, for the record.
fn operator() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

pub async fn run(args: VendorArgs) -> anyhow::Result<()> {
    let mut client = db::operator_client(args.url).await?;
    match args.action {
        VendorAction::Pause {
            vendor,
            reason,
            until,
            tenant,
        } => {
            let vendor = pauses::vendor(&vendor)?;
            let tx = client.transaction().await?;
            let p = pauses::pause(
                &tx,
                vendor,
                tenant.map(TenantId::from_uuid),
                &reason,
                until,
                &operator(),
            )
            .await?;
            tx.commit().await?;
            eprintln!(
                "{} paused for {}{}; every container stops calling it within a minute",
                p.vendor,
                p.tenant
                    .map_or_else(|| "every tenant".to_owned(), |t| format!("tenant {t}")),
                p.until
                    .map(|u| format!(" until {}", u.format("%Y-%m-%d %H:%M UTC")))
                    .unwrap_or_default()
            );
        }
        VendorAction::Resume { vendor, tenant } => {
            let vendor = pauses::vendor(&vendor)?;
            let tx = client.transaction().await?;
            let ended =
                pauses::resume(&tx, vendor, tenant.map(TenantId::from_uuid), &operator()).await?;
            tx.commit().await?;
            if ended {
                eprintln!("{vendor} resumed; held work goes on within minutes");
            } else {
                anyhow::bail!("{vendor} was not paused for that scope");
            }
        }
        VendorAction::List => {}
    }
    let table = leadfactory_cli::status::paused_vendors(&client).await?;
    if table.is_empty() {
        println!("no vendor is paused");
    } else {
        print!("{table}");
    }
    Ok(())
}
