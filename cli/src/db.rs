//! `leadfactory db …` and `leadfactory migrate`.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use shared::db::cluster::{self, LocalCluster};

#[derive(Subcommand)]
pub enum DbAction {
    /// Start (initialising on first use) the local cluster, migrate it, print its URLs
    Start {
        /// Where the cluster lives
        #[arg(long, default_value = ".leadfactory/pg")]
        dir: PathBuf,
    },
    /// Stop the local cluster
    Stop {
        #[arg(long, default_value = ".leadfactory/pg")]
        dir: PathBuf,
    },
    /// Print the URLs of the running local cluster
    Status {
        #[arg(long, default_value = ".leadfactory/pg")]
        dir: PathBuf,
    },
    /// Set up the database the template created (docs/deploy.md): the roles with their secrets'
    /// passwords, the database owned by the owner, the migrations; again after any deploy, and
    /// after a secret's rotation (it sets the passwords again)
    Provision(ProvisionArgs),
}

#[derive(clap::Args)]
pub struct ProvisionArgs {
    /// The administrator's secret (the stack's DatabaseAdminSecretArn: RDS's master user)
    #[arg(long)]
    admin_secret: String,
    /// DatabaseOwnerSecretArn
    #[arg(long)]
    owner_secret: String,
    /// DatabaseAppSecretArn (the functions' leadfactory_fn)
    #[arg(long)]
    app_secret: String,
    /// DatabaseBackupSecretArnOut (leadfactory_backup)
    #[arg(long)]
    backup_secret: String,
    /// DatabaseRestoreSecretArn (leadfactory_restore)
    #[arg(long)]
    restore_secret: String,
    /// Where to connect (the stack's DatabaseProxyEndpoint); default: the owner secret's host
    #[arg(long)]
    host: Option<String>,
}

/// One role's secret, as a connection: its keys, the host given over the secret's, and the
/// database named (the administrator's secret names none: it connects to `postgres`).
fn connection(
    secret: &HashMap<String, String>,
    host: Option<&str>,
    database: Option<&str>,
) -> anyhow::Result<tokio_postgres::Config> {
    let mut keys = secret.clone();
    if let Some(h) = host {
        keys.insert("LF_DATABASE_HOST".into(), h.to_owned());
    }
    if let Some(d) = database {
        keys.insert("dbname".into(), d.to_owned());
    }
    let url = shared::config::database_url_of(&keys)?;
    Ok(shared::db::pg_config(&url)?)
}

async fn connect(
    cfg: &tokio_postgres::Config,
    who: &str,
) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = cfg
        .connect(shared::db::tls_connector()?)
        .await
        .with_context(|| format!("connecting as {who}"))?;
    tokio::spawn(conn);
    Ok(client)
}

async fn provision(args: ProvisionArgs) -> anyhow::Result<()> {
    use leadfactory_cli::provision::{APP_LOGIN, BACKUP_ROLE, OWNER_ROLE, RESTORE_ROLE};
    let sdk = shared::aws::sdk_config(std::env::var("AWS_ENDPOINT_URL").ok().as_deref()).await;
    let sm = shared::secrets::client(&sdk);
    let read = async |arn: &str| {
        shared::secrets::load(&sm, &[arn.to_owned()])
            .await
            .with_context(|| format!("reading the secret {arn}"))
    };
    let admin = read(&args.admin_secret).await?;
    let mut roles = HashMap::new();
    for (role, arn) in [
        (OWNER_ROLE, &args.owner_secret),
        (APP_LOGIN, &args.app_secret),
        (BACKUP_ROLE, &args.backup_secret),
        (RESTORE_ROLE, &args.restore_secret),
    ] {
        let secret = read(arn).await?;
        let named = secret.get("username").map(String::as_str);
        anyhow::ensure!(
            named == Some(role),
            "the secret {arn} is for {named:?}, not {role}: give each role's own secret"
        );
        roles.insert(role, secret);
    }
    let owner = &roles[OWNER_ROLE];
    let database = owner
        .get("dbname")
        .cloned()
        .unwrap_or_else(|| cluster::DEFAULT_DB.to_owned());
    // The administrator's secret holds a user and a password only: where the owner's points.
    let mut admin_keys = admin.clone();
    for k in ["host", "port", "sslmode"] {
        if let (None, Some(v)) = (admin_keys.get(k), owner.get(k)) {
            admin_keys.insert(k.to_owned(), v.clone());
        }
    }
    let host = args.host.as_deref();
    let admin = connect(
        &connection(&admin_keys, host, Some("postgres"))?,
        "the administrator",
    )
    .await?;
    let passwords: HashMap<&str, secrecy::SecretString> = roles
        .iter()
        .filter_map(|(role, s)| {
            s.get("password")
                .map(|p| (*role, secrecy::SecretString::from(p.clone())))
        })
        .collect();
    let created =
        leadfactory_cli::provision::roles_and_database(&admin, &database, Some(&passwords)).await?;
    let mut owner_client = connect(&connection(owner, host, Some(&database))?, OWNER_ROLE).await?;
    let applied = shared::db::migrate(&mut owner_client).await?;
    eprintln!(
        "database {database}: {}; roles {} with their secrets' passwords; migrations applied: {applied:?}",
        if created { "created" } else { "already there" },
        leadfactory_cli::provision::LOGIN_ROLES.join(", ")
    );
    Ok(())
}

/// Starts the local cluster and prepares the default database; shared with the local run.
pub async fn start_local(dir: &std::path::Path) -> anyhow::Result<LocalCluster> {
    let c = LocalCluster::start(dir, true)
        .await
        .context("starting the local PostgreSQL cluster")?;
    cluster::prepare_database(&c.admin_url("postgres"), cluster::DEFAULT_DB)
        .await
        .context("preparing the leadfactory database")?;
    Ok(c)
}

fn print_urls(c: &LocalCluster) {
    println!("DATABASE_URL={}", c.app_url(cluster::DEFAULT_DB));
    println!("DATABASE_OWNER_URL={}", c.admin_url(cluster::DEFAULT_DB));
}

pub async fn run(action: DbAction) -> anyhow::Result<()> {
    match action {
        DbAction::Start { dir } => {
            let c = start_local(&dir).await?;
            eprintln!(
                "PostgreSQL is running on 127.0.0.1:{} (data in {})",
                c.port,
                c.dir.display()
            );
            print_urls(&c);
        }
        DbAction::Stop { dir } => {
            if LocalCluster::stop(&dir)
                .await
                .context("stopping the local cluster")?
            {
                eprintln!("stopped the cluster in {}", dir.display());
            } else {
                eprintln!("no cluster running in {}", dir.display());
            }
        }
        DbAction::Provision(args) => provision(args).await?,
        DbAction::Status { dir } => match LocalCluster::running(&dir).await {
            Some(c) => print_urls(&c),
            None => anyhow::bail!(
                "no cluster running in {} (start one with `leadfactory db start`)",
                dir.display()
            ),
        },
    }
    Ok(())
}

/// A connection as `url`'s role (the owner, `leadfactory_backup` or `leadfactory_restore`, as
/// the command needs), or as the running local cluster's superuser.
pub async fn operator_client(url: Option<String>) -> anyhow::Result<tokio_postgres::Client> {
    let url = match url {
        Some(u) => u,
        None => {
            let c = LocalCluster::running(std::path::Path::new(".leadfactory/pg"))
                .await
                .context("no --url / DATABASE_OWNER_URL given and no local cluster running")?;
            c.admin_url(cluster::DEFAULT_DB)
        }
    };
    let config = shared::db::pg_config(&secrecy::SecretString::from(url))?;
    let (client, conn) = config
        .connect(shared::db::tls_connector()?)
        .await
        .context("connecting to the database")?;
    tokio::spawn(conn);
    Ok(client)
}

pub async fn migrate(url: Option<String>) -> anyhow::Result<()> {
    let mut client = operator_client(url).await?;
    let applied = shared::db::migrate(&mut client).await?;
    if applied.is_empty() {
        eprintln!("schema is up to date");
    } else {
        eprintln!("applied migrations {applied:?}");
    }
    Ok(())
}
