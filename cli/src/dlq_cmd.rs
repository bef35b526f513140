//! `leadfactory dlq list|show|redrive --queue NAME`: SQS queues named `<prefix><name>` and
//! `<prefix><name>-dlq` (the template's `leadfactory-<stage>-…`), credentials and endpoint from the
//! usual AWS environment (`AWS_ENDPOINT_URL` for moto).

use anyhow::Context;
use clap::Subcommand;
use leadfactory_cli::dlq;
use shared::bus::{Queue, SqsBus};

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
        /// URL of the database as `leadfactory_backup`, to show each message's recorded failure
        #[arg(long, env = "DATABASE_BACKUP_URL")]
        database_url: Option<String>,
    },
    /// One dead-lettered message in full, with the reason it failed
    Show {
        #[arg(long)]
        queue: String,
        /// The message id (from `dlq list`)
        #[arg(long)]
        message_id: String,
        /// URL of the database as `leadfactory_backup`, to show the recorded failure
        #[arg(long, env = "DATABASE_BACKUP_URL")]
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

/// The pipeline queue named `queue`, and a bus over it and its DLQ under `prefix`.
async fn resolve(
    client: aws_sdk_sqs::Client,
    prefix: &str,
    queue: &str,
) -> anyhow::Result<(Queue, SqsBus)> {
    let queue = Queue::named(queue).ok_or_else(|| {
        let names: Vec<&str> = Queue::ALL.iter().map(|q| q.name()).collect();
        anyhow::anyhow!("unknown queue {queue:?}; one of {names:?}")
    })?;
    let bus = SqsBus::resolve(
        client,
        prefix,
        &[queue.name().to_owned(), queue.dlq().to_owned()],
    )
    .await
    .context("finding the queues")?;
    Ok((queue, bus))
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
            let (queue, bus) = resolve(client, &args.prefix, &queue).await?;
            let mut db = connect(database_url).await?;
            let letters = dlq::peek(&bus, queue, max).await?;
            println!(
                "{} message(s) in {}{}-dlq",
                letters.len(),
                args.prefix,
                queue
            );
            for l in letters {
                let reason = reason(&l, db.as_mut()).await?;
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
        DlqAction::Show {
            queue,
            message_id,
            database_url,
        } => {
            let (queue, bus) = resolve(client, &args.prefix, &queue).await?;
            let mut db = connect(database_url).await?;
            let l = dlq::peek(&bus, queue, 10_000)
                .await?
                .into_iter()
                .find(|l| l.message_id == message_id)
                .with_context(|| {
                    format!("no message {message_id} in {}{queue}-dlq", args.prefix)
                })?;
            println!("message {} (received {}×)", l.message_id, l.receive_count);
            println!("why: {}", reason(&l, db.as_mut()).await?);
            let body = serde_json::from_str::<serde_json::Value>(&l.body)
                .and_then(|v| serde_json::to_string_pretty(&v))
                .unwrap_or(l.body);
            println!("{body}");
        }
        DlqAction::Redrive { queue, max } => {
            let (queue, bus) = resolve(client, &args.prefix, &queue).await?;
            let moved = dlq::redrive(&bus, queue, max).await?;
            println!(
                "moved {moved} message(s) from {p}{queue}-dlq back to {p}{queue}",
                p = args.prefix
            );
        }
    }
    Ok(())
}

async fn connect(url: Option<String>) -> anyhow::Result<Option<tokio_postgres::Client>> {
    match url {
        Some(u) => {
            let (c, conn) = tokio_postgres::connect(&u, shared::db::tls_connector()?)
                .await
                .context("connecting to the database")?;
            tokio::spawn(conn);
            Ok(Some(c))
        }
        None => Ok(None),
    }
}

/// Why a dead letter failed: unreadable, or the failure its trace recorded.
async fn reason(
    l: &dlq::DeadLetter,
    db: Option<&mut tokio_postgres::Client>,
) -> anyhow::Result<String> {
    Ok(match (&l.parse_error, db) {
        (Some(e), _) => e.clone(),
        (None, Some(c)) => dlq::failure_reason(c, l)
            .await?
            .unwrap_or_else(|| "no failure recorded (see the function's logs)".into()),
        _ => "see the function's logs by message id (or pass --database-url)".into(),
    })
}
