//! What an operator does with the deployed account, done the way `docs/deploy.md` says: a tenant
//! and its API key with the CLI's own steps as the application role, the campaign through the ops
//! API, the night started by its schedule, and the run's outcome read as the functions left it.

use std::time::Duration;

use secrecy::SecretString;
use shared::db::{Pool, begin_tenant};
use shared::domain::{RunId, TenantId};

use super::{Cloud, CloudError};

/// A tenant onboarded on the account.
pub struct Tenant {
    pub id: TenantId,
    /// Its ops API key.
    pub api_key: String,
}

/// A database error with its causes (PostgreSQL's message is the source of the driver's).
fn db_err(e: impl std::error::Error) -> CloudError {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    CloudError::Service(format!("database: {text}"))
}

impl Cloud {
    /// A pool as the functions' role (RLS applies).
    pub fn app_pool(&self) -> Result<Pool, CloudError> {
        shared::db::connect(&SecretString::from(self.db.app_url.clone()), 2).map_err(db_err)
    }

    /// Creates a tenant (`leadfactory tenant-create`), its API key (`leadfactory apikey create`)
    /// and `campaign` (`POST /v1/campaigns`).
    pub async fn onboard(
        &self,
        name: &str,
        campaign: &serde_json::Value,
    ) -> Result<Tenant, CloudError> {
        let pool = self.app_pool()?;
        let id = TenantId::parse(&uuid::Uuid::new_v4().to_string()).map_err(db_err)?;
        {
            let mut c = pool.get().await.map_err(db_err)?;
            let tx = begin_tenant(&mut c, id).await.map_err(db_err)?;
            tx.execute(
                "INSERT INTO tenants (id, name) VALUES ($1, $2)",
                &[&id.as_uuid(), &name],
            )
            .await
            .map_err(db_err)?;
            tx.commit().await.map_err(db_err)?;
        }
        let key = ops_api::keys::create(&pool, id, "ops")
            .await
            .map_err(db_err)?;
        let resp = reqwest::Client::new()
            .post(format!("{}/v1/campaigns", self.gateway_url))
            .bearer_auth(&key.key)
            .json(campaign)
            .send()
            .await
            .map_err(|e| CloudError::Service(format!("POST /v1/campaigns: {e}")))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(CloudError::Service(format!(
                "POST /v1/campaigns answered {status}: {body}"
            )));
        }
        Ok(Tenant {
            id,
            api_key: key.key,
        })
    }

    /// The full name of the schedule `event` of the function built from `binary`, or its only
    /// schedule when `event` is `None`.
    pub fn schedule_of(&self, binary: &str, event: Option<&str>) -> Result<String, CloudError> {
        self.template
            .functions
            .iter()
            .filter(|f| f.binary == binary)
            .flat_map(|f| f.schedules.iter())
            .find(|s| event.is_none_or(|e| s.event == e))
            .map(|s| s.name.clone())
            .ok_or_else(|| {
                CloudError::NoSchedule(
                    format!("{binary}.{}", event.unwrap_or("*")),
                    self.schedule_names().join(", "),
                )
            })
    }

    /// Fires the nightly schedule (the targeting function's) and returns the run it began for
    /// `tenant`.
    pub async fn nightly(&self, tenant: TenantId) -> Result<RunId, CloudError> {
        let report = self.fire(&self.schedule_of("targeting", None)?).await?;
        let runs: Vec<RunId> = serde_json::from_value(report["runs"].clone())
            .map_err(|e| CloudError::Service(format!("targeting answered {report} ({e})")))?;
        for run in runs {
            if self.run_tenant(run).await? == Some(tenant) {
                return Ok(run);
            }
        }
        Err(CloudError::Service(format!(
            "the nightly began no run for tenant {tenant}"
        )))
    }

    async fn run_tenant(&self, run: RunId) -> Result<Option<TenantId>, CloudError> {
        // The operator asks as each tenant: RLS shows a run only to its own.
        let pool = self.app_pool()?;
        let mut c = pool.get().await.map_err(db_err)?;
        let ids = c
            .query("SELECT list_tenant_ids() AS id", &[])
            .await
            .map_err(db_err)?;
        let tenants: Vec<uuid::Uuid> = ids.iter().map(|r| r.get("id")).collect();
        for t in tenants {
            let tenant = TenantId::parse(&t.to_string()).map_err(db_err)?;
            let tx = begin_tenant(&mut c, tenant).await.map_err(db_err)?;
            let found = tx
                .query_opt("SELECT 1 FROM runs WHERE id = $1", &[&run.as_uuid()])
                .await
                .map_err(db_err)?
                .is_some();
            tx.commit().await.map_err(db_err)?;
            if found {
                return Ok(Some(tenant));
            }
        }
        Ok(None)
    }

    /// A run's status as the functions left it.
    pub async fn run_status(&self, tenant: TenantId, run: RunId) -> Result<String, CloudError> {
        let pool = self.app_pool()?;
        let mut c = pool.get().await.map_err(db_err)?;
        let tx = begin_tenant(&mut c, tenant).await.map_err(db_err)?;
        let row = tx
            .query_one("SELECT status FROM runs WHERE id = $1", &[&run.as_uuid()])
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(row.get("status"))
    }

    /// Waits for the functions to finish `run` (no driver finishes it) and returns its status.
    pub async fn wait_for_run(
        &self,
        tenant: TenantId,
        run: RunId,
        limit: Duration,
    ) -> Result<String, CloudError> {
        let until = tokio::time::Instant::now() + limit;
        loop {
            let status = self.run_status(tenant, run).await?;
            if status != "running" {
                return Ok(status);
            }
            if tokio::time::Instant::now() >= until {
                return Err(CloudError::Service(format!(
                    "run {run} still running after {} s",
                    limit.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The recipients' side against the account's HTTP API, then the queues settled.
    pub async fn simulate_recipients(
        &self,
        tenant: TenantId,
        buy_share: f64,
        progress: &dyn crate::local::Progress,
        limit: Duration,
    ) -> Result<crate::local::FunnelActivity, CloudError> {
        let pool = self.app_pool()?;
        let activity = crate::local::simulate_recipients(
            &self.sim.base_url(),
            &self.gateway_url,
            &pool,
            tenant,
            buy_share,
            progress,
        )
        .await
        .map_err(|e| CloudError::Service(e.to_string()))?;
        self.settle(limit).await?;
        Ok(activity)
    }
}
