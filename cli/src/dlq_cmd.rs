//! `leadfactory dlq list|redrive --queue NAME`: SQS queues named `<prefix><name>` and
//! `<prefix><name>-dlq` (the template's `leadfactory-<stage>-…`), credentials and endpoint from the
//! usual AWS environment (`AWS_ENDPOINT_URL` for moto).

use anyhow::Context;
use clap::Subcommand;
use leadfactory_cli::dlq;
use shared::bus::{SqsBus, queues};

#[derive(clap::Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    action: DlqAction,
    /// Queue name prefix, e.g. leadfactory-prod-
    #[arg(
        long,
        global = true,
        env = "LF_QUEUE_PREFIX",
        default_value = "leadfactory-prod-"
    )]
    prefix: String,
}

#[derive(Subcommand)]
enum DlqAction {
    /// Show dead-lettered messages (they stay in the DLQ)
    List {
        #[arg(long)]
        queue: String,
        #[arg(long, default_value_t = 50)]
        max: usize,
        /// Owner URL of the database, to show each message's recorded failure
        #[arg(long, env = "DATABASE_OWNER_URL")]
        database_url: Option<String>,
    },
    /// Move messages from the DLQ back to the source queue
    Redrive {
        #[arg(long)]
        queue: String,
        #[arg(long, default_value_t = 1_000)]
        max: usize,
    },
}

fn check(queue: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        queues::ALL.contains(&queue),
        "unknown queue {queue:?}; one of {:?}",
        queues::ALL
    );
    Ok(())
}

pub async fn run(args: DlqArgs) -> anyhow::Result<()> {
    let sdk = shared::aws::sdk_config(std::env::var("AWS_ENDPOINT_URL").ok().as_deref()).await;
    let client = shared::bus::sqs_client(&sdk);
    match args.action {
        DlqAction::List {
            queue,
            max,
            database_url,
        } => {
            check(&queue)?;
            let bus = SqsBus::resolve(client, &args.prefix, &[queue.clone(), queues::dlq(&queue)])
                .await
                .context("finding the queues")?;
            let db = match database_url {
                Some(u) => {
                    let (c, conn) = tokio_postgres::connect(&u, shared::db::tls_connector()?)
                        .await
                        .context("connecting to the database")?;
                    tokio::spawn(conn);
                    Some(c)
                }
                None => None,
            };
            let letters = dlq::peek(&bus, &queue, max).await?;
            println!(
                "{} message(s) in {}{}-dlq",
                letters.len(),
                args.prefix,
                queue
            );
            for l in letters {
                let reason = match (&l.parse_error, &db, &l.trace_id) {
                    (Some(e), _, _) => e.clone(),
                    (None, Some(c), Some(t)) => dlq::failure_reason(c, t)
                        .await?
                        .unwrap_or_else(|| "no failure recorded (see the function's logs)".into()),
                    _ => "see the function's logs by message id (or pass --database-url)".into(),
                };
                println!(
                    "- {} (received {}×) key={} tenant={}",
                    l.message_id,
                    l.receive_count,
                    l.idempotency_key.as_deref().unwrap_or("-"),
                    l.tenant.as_deref().unwrap_or("-")
                );
                println!("    why: {reason}");
                println!("    body: {}", l.body_excerpt);
            }
        }
        DlqAction::Redrive { queue, max } => {
            check(&queue)?;
            let bus = SqsBus::resolve(client, &args.prefix, &[queue.clone(), queues::dlq(&queue)])
                .await
                .context("finding the queues")?;
            let moved = dlq::redrive(&bus, &queue, max).await?;
            println!(
                "moved {moved} message(s) from {p}{queue}-dlq back to {p}{queue}",
                p = args.prefix
            );
        }
    }
    Ok(())
}
