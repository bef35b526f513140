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
            retention::erase_email(&ops.pool, ops.store.as_ref(), ops.tenant, &email, "cli").await?
        }
        (None, Some(b)) => {
            let id = shared::domain::BusinessId::parse(b).context("--business")?;
            retention::erase_business(&ops.pool, ops.store.as_ref(), ops.tenant, id, "cli")
                .await?
                .with_context(|| format!("no business {b} for tenant {}", ops.tenant))?
        }
        (None, None) => anyhow::bail!("give --email or --business"),
    };
    println!("{}", serde_json::to_string_pretty(&erased)?);
    eprintln!("erased; the address stays on the suppression list so it is never contacted again");
    Ok(())
}
