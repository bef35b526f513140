//! What the operator commands act on: the application-role database (RLS applies; `--tenant`
//! picks whose data) and the object store — the local run's by default, or a deployment's via
//! `DATABASE_URL` and `LF_STORE`/`LF_BUCKET` (the same variables the functions read).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use secrecy::SecretString;
use shared::db::cluster::{self, LocalCluster};
use shared::domain::TenantId;
use shared::store::{LocalStore, ObjectStore};

#[derive(clap::Args, Debug, Clone)]
pub struct Target {
    /// Application-role database URL (default: the local cluster under .leadfactory/)
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Tenant id (default: the local run's tenant)
    #[arg(long, default_value = leadfactory_cli::local::LOCAL_TENANT)]
    pub tenant: String,
    /// Local state directory (database cluster and object store of the local run)
    #[arg(long, default_value = ".leadfactory")]
    pub state: PathBuf,
}

pub struct Ops {
    pub pool: shared::db::Pool,
    pub store: Arc<dyn ObjectStore>,
    pub tenant: TenantId,
}

impl Target {
    pub async fn open(&self) -> anyhow::Result<Ops> {
        let tenant = TenantId::parse(&self.tenant).context("--tenant")?;
        let (url, store): (String, Arc<dyn ObjectStore>) = match &self.database_url {
            Some(u) => {
                let bucket = std::env::var("LF_BUCKET").ok();
                let local = std::env::var("LF_STORE").is_ok_and(|s| s == "local");
                let store: Arc<dyn ObjectStore> = match bucket {
                    Some(bucket) if !local => {
                        let endpoint = std::env::var("AWS_ENDPOINT_URL").ok();
                        let sdk = shared::aws::sdk_config(endpoint.as_deref()).await;
                        Arc::new(shared::store::S3Store::from_sdk_config(&sdk, &bucket))
                    }
                    _ => Arc::new(LocalStore::new(
                        std::env::var("LF_LOCAL_STORE_DIR")
                            .map(PathBuf::from)
                            .unwrap_or_else(|_| self.state.join("store")),
                    )),
                };
                (u.clone(), store)
            }
            None => {
                let c = LocalCluster::running(&self.state.join("pg"))
                    .await
                    .context("no DATABASE_URL given and no local cluster running (run `scripts/run` or `leadfactory db start`)")?;
                (
                    c.app_url(cluster::DEFAULT_DB),
                    Arc::new(LocalStore::new(self.state.join("store"))),
                )
            }
        };
        Ok(Ops {
            pool: shared::db::connect(&SecretString::from(url), 2)?,
            store,
            tenant,
        })
    }
}

#[derive(clap::Args)]
pub struct ForgetArgs {
    #[command(flatten)]
    target: Target,
    /// The address to erase
    #[arg(long, conflicts_with = "business")]
    email: Option<String>,
    /// A business id whose contact address and phone to erase
    #[arg(long)]
    business: Option<String>,
}

pub async fn forget(args: ForgetArgs) -> anyhow::Result<()> {
    let ops = args.target.open().await?;
    let erased = match (&args.email, &args.business) {
        (Some(e), _) => {
            let email = shared::domain::Email::parse(e).context("--email")?;
            shared::erasure::erase_email(&ops.pool, ops.store.as_ref(), ops.tenant, &email, "cli")
                .await?
        }
        (None, Some(b)) => {
            let id = shared::domain::BusinessId::parse(b).context("--business")?;
            shared::erasure::erase_business(&ops.pool, ops.store.as_ref(), ops.tenant, id, "cli")
                .await?
                .with_context(|| format!("no business {b} for tenant {}", ops.tenant))?
        }
        (None, None) => anyhow::bail!("give --email or --business"),
    };
    println!("{}", serde_json::to_string_pretty(&erased)?);
    eprintln!("erased; the address stays on the suppression list so it is never contacted again");
    Ok(())
}

#[derive(clap::Args)]
pub struct SubjectExportArgs {
    #[command(flatten)]
    target: Target,
    /// The address whose data to export
    #[arg(long)]
    email: String,
}

/// Prints everything the tenant holds about an address, as JSON.
pub async fn subject_export(args: SubjectExportArgs) -> anyhow::Result<()> {
    let ops = args.target.open().await?;
    let email = shared::domain::Email::parse(&args.email).context("--email")?;
    let held =
        shared::subject::export_subject(&ops.pool, ops.store.as_ref(), ops.tenant, &email).await?;
    println!("{}", serde_json::to_string_pretty(&held)?);
    Ok(())
}

#[derive(clap::Args)]
pub struct QaArgs {
    #[command(subcommand)]
    action: QaAction,
}

#[derive(clap::Subcommand)]
enum QaAction {
    /// Samples to review (all samples with --all)
    List {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        all: bool,
        /// Where report links point (the storefront's public URL)
        #[arg(
            long,
            env = "LF_PUBLIC_BASE_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        base_url: String,
    },
    /// Record a verdict on a sample
    Review {
        #[command(flatten)]
        target: Target,
        /// The sample id (from `qa list`)
        id: String,
        #[arg(long, conflicts_with = "fail", required_unless_present = "fail")]
        pass: bool,
        #[arg(long)]
        fail: bool,
        #[arg(long, env = "USER", default_value = "operator")]
        reviewer: String,
        #[arg(long)]
        notes: Option<String>,
    },
}

pub async fn qa(args: QaArgs) -> anyhow::Result<()> {
    match args.action {
        QaAction::List {
            target,
            all,
            base_url,
        } => {
            let ops = target.open().await?;
            let samples = qa_sampler::list(&ops.pool, ops.tenant, all).await?;
            if samples.is_empty() {
                println!("nothing to review");
            }
            for s in samples {
                println!(
                    "{}  {:<13} {:<28} score {:>3} tier {}  {}",
                    s.id,
                    s.result,
                    s.business.chars().take(28).collect::<String>(),
                    s.score.map(|x| x.to_string()).unwrap_or_else(|| "-".into()),
                    s.tier.unwrap_or_else(|| "-".into()),
                    s.website.unwrap_or_default()
                );
                if let Some(t) = s.report_token {
                    println!("      report  {}/r/{t}", base_url.trim_end_matches('/'));
                }
                if let Some(subject) = s.subject {
                    println!("      email   {subject}");
                }
            }
        }
        QaAction::Review {
            target,
            id,
            pass,
            fail: _,
            reviewer,
            notes,
        } => {
            let ops = target.open().await?;
            let id = uuid::Uuid::parse_str(&id).context("sample id")?;
            let verdict = if pass {
                qa_sampler::Verdict::Pass
            } else {
                qa_sampler::Verdict::Fail
            };
            if !qa_sampler::review(
                &ops.pool,
                ops.tenant,
                id,
                verdict,
                &reviewer,
                notes.as_deref(),
            )
            .await?
            {
                anyhow::bail!("no sample {id} for tenant {}", ops.tenant);
            }
            eprintln!("recorded");
        }
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct ApiKeyArgs {
    #[command(subcommand)]
    action: ApiKeyAction,
}

#[derive(clap::Subcommand)]
enum ApiKeyAction {
    /// Create a key for the tenant; the key is printed once
    Create {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        name: String,
    },
    /// Replace a key: a new one is printed, the old one stops working
    Rotate {
        #[command(flatten)]
        target: Target,
        id: String,
    },
    /// Revoke a key
    Revoke {
        #[command(flatten)]
        target: Target,
        id: String,
    },
    /// The tenant's keys (prefixes only)
    List {
        #[command(flatten)]
        target: Target,
    },
}

pub async fn apikey(args: ApiKeyArgs) -> anyhow::Result<()> {
    match args.action {
        ApiKeyAction::Create { target, name } => {
            let ops = target.open().await?;
            let k = ops_api::keys::create(&ops.pool, ops.tenant, &name).await?;
            println!("{}", k.key);
            eprintln!(
                "key {} (prefix {}) created; it is shown only now",
                k.id, k.prefix
            );
        }
        ApiKeyAction::Rotate { target, id } => {
            let ops = target.open().await?;
            let id = uuid::Uuid::parse_str(&id).context("key id")?;
            let k = ops_api::keys::rotate(&ops.pool, ops.tenant, id)
                .await?
                .with_context(|| format!("no active key {id}"))?;
            println!("{}", k.key);
            eprintln!(
                "key {id} revoked; its replacement {} (prefix {}) is shown only now",
                k.id, k.prefix
            );
        }
        ApiKeyAction::Revoke { target, id } => {
            let ops = target.open().await?;
            let id = uuid::Uuid::parse_str(&id).context("key id")?;
            if !ops_api::keys::revoke(&ops.pool, ops.tenant, id).await? {
                anyhow::bail!("no active key {id}");
            }
            eprintln!("revoked");
        }
        ApiKeyAction::List { target } => {
            let ops = target.open().await?;
            for k in ops_api::keys::list(&ops.pool, ops.tenant).await? {
                println!("{k}");
            }
        }
    }
    Ok(())
}

/// A directory, or `s3://bucket/prefix`.
async fn location(spec: &str) -> anyhow::Result<(Arc<dyn ObjectStore>, String)> {
    match spec.strip_prefix("s3://") {
        Some(rest) => {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            anyhow::ensure!(!bucket.is_empty(), "s3:// needs a bucket");
            let endpoint = std::env::var("AWS_ENDPOINT_URL").ok();
            let sdk = shared::aws::sdk_config(endpoint.as_deref()).await;
            Ok((
                Arc::new(shared::store::S3Store::from_sdk_config(&sdk, bucket)),
                prefix.to_owned(),
            ))
        }
        None => Ok((Arc::new(LocalStore::new(spec)), String::new())),
    }
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// A directory, or s3://bucket/prefix
    #[arg(long)]
    to: String,
    /// URL of the database as `leadfactory_backup` (it reads every tenant; the owner, bound by
    /// forced RLS, would export nothing) — default: the local cluster
    #[arg(long, env = "DATABASE_BACKUP_URL")]
    url: Option<String>,
}

#[derive(clap::Args)]
pub struct RestoreArgs {
    /// A directory, or s3://bucket/prefix, written by `leadfactory export`
    #[arg(long)]
    from: String,
    /// URL of the (empty, migrated) database as `leadfactory_restore` (default: the local cluster)
    #[arg(long, env = "DATABASE_RESTORE_URL")]
    url: Option<String>,
    /// After the restore, check every table's row count against the manifest (a restore drill)
    #[arg(long)]
    verify: bool,
}

pub async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let client = crate::db::operator_client(args.url).await?;
    let (store, prefix) = location(&args.to).await?;
    let m = shared::backup::export(&client, store.as_ref(), &prefix).await?;
    for t in &m.tables {
        println!("{:<22} {:>9} rows  {}", t.table, t.rows, t.sha256);
    }
    eprintln!(
        "exported schema version {} to {}",
        m.schema_version, args.to
    );
    Ok(())
}

pub async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let mut client = crate::db::operator_client(args.url).await?;
    let (store, prefix) = location(&args.from).await?;
    let m = shared::backup::restore(&mut client, store.as_ref(), &prefix).await?;
    if args.verify {
        shared::backup::verify(&client, &m).await?;
        for t in &m.tables {
            println!("{:<28} {:>9} rows  {}  verified", t.table, t.rows, t.sha256);
        }
    }
    let rows: u64 = m.tables.iter().map(|t| t.rows).sum();
    eprintln!(
        "restored {rows} rows in {} tables from {}",
        m.tables.len(),
        args.from
    );
    Ok(())
}

#[derive(clap::Args)]
pub struct DashboardArgs {
    #[command(flatten)]
    target: Target,
    /// Days covered
    #[arg(long, default_value_t = 30)]
    days: i64,
    /// Where the page is written
    #[arg(long, default_value = "out/dashboard.html")]
    out: PathBuf,
    /// Do not open the page in a browser
    #[arg(long)]
    no_open: bool,
}

pub async fn dashboard(args: DashboardArgs) -> anyhow::Result<()> {
    let ops = args.target.open().await?;
    let html = leadfactory_cli::dashboard::render(&ops.pool, ops.tenant, args.days).await?;
    if let Some(dir) = args.out.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    tokio::fs::write(&args.out, html).await?;
    println!("{}", args.out.display());
    if !args.no_open {
        // Best effort: a desktop opens it; a server just has the file.
        let _ = tokio::process::Command::new("xdg-open")
            .arg(&args.out)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct SendingArgs {
    #[command(subcommand)]
    action: SendingAction,
}

#[derive(clap::Subcommand)]
enum SendingAction {
    /// Active pauses (the bounce-rate alert pauses all sending) and today's caps per campaign
    /// and per sending domain, with what waits behind them
    Status {
        #[command(flatten)]
        target: Target,
    },
    /// Pause all sending for the tenant
    Pause {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        reason: String,
    },
    /// Resume sending (after fixing what paused it); queued emails go out at the next release
    Resume {
        #[command(flatten)]
        target: Target,
    },
}

pub async fn sending(args: SendingArgs) -> anyhow::Result<()> {
    let (target, action) = match &args.action {
        SendingAction::Status { target } => (target, 0),
        SendingAction::Pause { target, .. } => (target, 1),
        SendingAction::Resume { target } => (target, 2),
    };
    let ops = target.open().await?;
    let mut c = ops.pool.get().await?;
    let tx = shared::db::begin_tenant(&mut c, ops.tenant).await?;
    match (&args.action, action) {
        (SendingAction::Pause { reason, .. }, 1) => {
            tx.execute(
                "INSERT INTO send_pauses (tenant_id, scope, reason) SELECT $1, 'all', $2
                 WHERE NOT EXISTS (SELECT 1 FROM send_pauses WHERE scope = 'all' AND resumed_at IS NULL)",
                &[&ops.tenant.as_uuid(), reason],
            )
            .await?;
        }
        (_, 2) => {
            let n = tx
                .execute(
                    "UPDATE send_pauses SET resumed_at = now() WHERE resumed_at IS NULL",
                    &[],
                )
                .await?;
            eprintln!("resumed {n} pause(s)");
        }
        _ => {}
    }
    for r in tx
        .query("SELECT scope, reason, paused_at FROM send_pauses WHERE resumed_at IS NULL ORDER BY paused_at", &[])
        .await?
    {
        println!(
            "paused ({}) since {}: {}",
            r.get::<_, String>("scope"),
            r.get::<_, chrono::DateTime<chrono::Utc>>("paused_at").format("%Y-%m-%d %H:%M UTC"),
            r.get::<_, String>("reason")
        );
    }
    // The caps as delivery applies them, configured by the same variables (LF_WARMUP,
    // LF_DOMAIN_DAILY_CAP) as the delivery function.
    let env = shared::config::ProcessEnv;
    let mut r = shared::config::Reader::new(&env);
    let settings = delivery::Settings::load(&mut r);
    r.finish(())?;
    let today = chrono::Utc::now().date_naive();
    let days = delivery::counter_days(&tx, &settings, today).await?;
    tx.commit().await?;
    println!(
        "today ({today}, UTC): an email goes out when its campaign and its sending domain both have room"
    );
    println!(
        "{:<40} {:>6} {:>6} {:>8}",
        "campaign / sending domain", "cap", "sent", "waiting"
    );
    for d in &days {
        let kind = if d.scope.starts_with("domain:") {
            "domain"
        } else {
            "campaign"
        };
        println!(
            "{:<40} {:>6} {:>6} {:>8}",
            format!("{kind} {}", d.label),
            d.cap,
            d.sent,
            d.waiting
        );
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct TenantArgs {
    #[command(flatten)]
    target: Target,
    /// The agency's name
    #[arg(long)]
    name: String,
}

/// Creates the tenant `--tenant` (a new id when it is the local default) named `--name`.
pub async fn tenant_create(args: TenantArgs) -> anyhow::Result<()> {
    let mut target = args.target.clone();
    if target.tenant == leadfactory_cli::local::LOCAL_TENANT && target.database_url.is_some() {
        target.tenant = uuid::Uuid::new_v4().to_string();
    }
    let ops = target.open().await?;
    let mut c = ops.pool.get().await?;
    let tx = shared::db::begin_tenant(&mut c, ops.tenant).await?;
    let n = tx
        .execute(
            "INSERT INTO tenants (id, name) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
            &[&ops.tenant.as_uuid(), &args.name],
        )
        .await?;
    tx.commit().await?;
    println!("{}", ops.tenant);
    eprintln!(
        "{}; next: `leadfactory apikey create --tenant {} --name ops`",
        if n == 1 {
            "tenant created"
        } else {
            "tenant already exists"
        },
        ops.tenant
    );
    Ok(())
}

#[derive(clap::Args)]
pub struct TenantSlackArgs {
    #[command(flatten)]
    target: Target,
    /// The agency's own Slack incoming-webhook URL (https://hooks.slack.com/services/…)
    #[arg(long, required_unless_present = "clear")]
    url: Option<String>,
    /// Go back to the operator's channel
    #[arg(long, conflicts_with = "url")]
    clear: bool,
    /// The deployment's stage (the secret is `leadfactory/<stage>/tenants/<tenant>/slack`)
    #[arg(long, env = "LF_STAGE", default_value = "prod")]
    stage: String,
}

/// Gives the tenant its own alert channel: the webhook URL is stored as a secret in Secrets
/// Manager (never in a row), and the tenant's settings name the secret.
pub async fn tenant_slack(args: TenantSlackArgs) -> anyhow::Result<()> {
    let ops = args.target.open().await?;
    let name = format!("leadfactory/{}/tenants/{}/slack", args.stage, ops.tenant);
    let setting = match &args.url {
        Some(url) => {
            let parsed = url::Url::parse(url).context("--url")?;
            let loopback = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost"));
            anyhow::ensure!(
                parsed.scheme() == "https" || (parsed.scheme() == "http" && loopback),
                "--url must be an https webhook URL"
            );
            let sdk =
                shared::aws::sdk_config(std::env::var("AWS_ENDPOINT_URL").ok().as_deref()).await;
            shared::secrets::put(
                &shared::secrets::client(&sdk),
                &name,
                &serde_json::json!({ "SLACK_WEBHOOK_URL": url }),
            )
            .await?;
            serde_json::json!(name)
        }
        None => serde_json::Value::Null,
    };
    let mut c = ops.pool.get().await?;
    let tx = shared::db::begin_tenant(&mut c, ops.tenant).await?;
    let n = tx
        .execute(
            "UPDATE tenants SET settings = jsonb_set(coalesce(settings, '{}'), '{alerts}',
                 coalesce(settings->'alerts', '{}') || jsonb_build_object('slack_secret', $2::jsonb))
             WHERE id = $1",
            &[&ops.tenant.as_uuid(), &setting],
        )
        .await?;
    tx.commit().await?;
    anyhow::ensure!(n == 1, "no tenant {}", ops.tenant);
    if args.clear {
        println!(
            "alerts of tenant {} go to the operator's channel",
            ops.tenant
        );
    } else {
        println!(
            "alerts of tenant {} go to its own channel (secret {name})",
            ops.tenant
        );
    }
    Ok(())
}
