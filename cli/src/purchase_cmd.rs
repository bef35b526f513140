//! `leadfactory purchase resend|unattributed`: a paid purchase's report sent again (a new email
//! with a new download link, once per request key), and the Stripe events that named no tenant
//! (kept for an operator; a paid one is money taken for nothing delivered).

use anyhow::Context;
use clap::Subcommand;
use shared::bus::{Queue, SqsBus};

use crate::db;
use crate::ops::Target;

#[derive(clap::Args)]
pub struct PurchaseArgs {
    #[command(subcommand)]
    action: PurchaseAction,
}

#[derive(Subcommand)]
enum PurchaseAction {
    /// Send a paid purchase's report again, with a new download link
    Resend {
        #[command(flatten)]
        target: Target,
        /// The purchase id
        id: uuid::Uuid,
        /// The request's key: the same key never sends twice (default: a new one, printed)
        #[arg(long)]
        key: Option<String>,
        /// Queue name prefix, e.g. leadfactory-prod-
        #[arg(long, env = "LF_QUEUE_PREFIX", default_value = "leadfactory-prod-")]
        prefix: String,
    },
    /// Stripe events that named no tenant, oldest first; `--resolve` closes one
    Unattributed {
        /// Owner URL of the database (the events are outside every tenant)
        #[arg(long, env = "DATABASE_OWNER_URL")]
        url: Option<String>,
        /// Show resolved ones too
        #[arg(long)]
        all: bool,
        /// An event id to mark resolved, with `--note`
        #[arg(long, requires = "note")]
        resolve: Option<String>,
        /// What was done about it (refunded, attributed by hand, …)
        #[arg(long)]
        note: Option<String>,
    },
}

pub async fn run(args: PurchaseArgs) -> anyhow::Result<()> {
    match args.action {
        PurchaseAction::Resend {
            target,
            id,
            key,
            prefix,
        } => {
            let ops = target.open().await?;
            let sdk =
                shared::aws::sdk_config(std::env::var("AWS_ENDPOINT_URL").ok().as_deref()).await;
            let bus = SqsBus::resolve(
                shared::bus::sqs_client(&sdk),
                &prefix,
                &[Queue::Fulfilment.name().to_owned()],
            )
            .await
            .context("finding the fulfilment queue")?;
            let key = key.unwrap_or_else(|| format!("cli-{}", uuid::Uuid::new_v4()));
            let r = shared::pipeline::resend::request_resend(&ops.pool, &bus, ops.tenant, id, &key)
                .await?;
            println!(
                "resend of purchase {} queued (request key {}; the same key sends nothing more)",
                r.purchase_id, r.request_key
            );
            Ok(())
        }
        PurchaseAction::Unattributed {
            url,
            all,
            resolve,
            note,
        } => {
            let client = db::operator_client(url).await?;
            if let (Some(event), Some(note)) = (&resolve, &note) {
                let n = client
                    .execute(
                        "UPDATE unattributed_stripe_events SET resolved_at = now(), resolution = $2
                         WHERE event_id = $1 AND resolved_at IS NULL",
                        &[event, note],
                    )
                    .await?;
                anyhow::ensure!(n == 1, "no unresolved event {event}");
                println!("{event} resolved");
            }
            let rows = client
                .query(
                    "SELECT event_id, type, created, paid_session, stripe_session_id, amount_cents, currency, resolved_at, resolution
                     FROM unattributed_stripe_events WHERE $1 OR resolved_at IS NULL ORDER BY received_at",
                    &[&all],
                )
                .await?;
            println!("{} event(s)", rows.len());
            for r in rows {
                let amount = r
                    .get::<_, Option<i64>>("amount_cents")
                    .map(|c| {
                        format!(
                            " {}.{:02} {}",
                            c / 100,
                            c % 100,
                            r.get::<_, Option<String>>("currency").unwrap_or_default()
                        )
                    })
                    .unwrap_or_default();
                let state = match r.get::<_, Option<chrono::DateTime<chrono::Utc>>>("resolved_at") {
                    Some(t) => format!(
                        "resolved {}: {}",
                        t.format("%Y-%m-%d"),
                        r.get::<_, Option<String>>("resolution").unwrap_or_default()
                    ),
                    None if r.get::<_, bool>("paid_session") => "PAID, NOT FULFILLED".to_owned(),
                    None => "open".to_owned(),
                };
                println!(
                    "- {} {} {}{amount} session={} — {state}",
                    r.get::<_, chrono::DateTime<chrono::Utc>>("created")
                        .format("%Y-%m-%d %H:%M"),
                    r.get::<_, String>("event_id"),
                    r.get::<_, String>("type"),
                    r.get::<_, Option<String>>("stripe_session_id")
                        .unwrap_or_else(|| "-".into()),
                );
            }
            Ok(())
        }
    }
}
