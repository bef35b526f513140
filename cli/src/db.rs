//! `leadfactory db …` and `leadfactory migrate`.

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
