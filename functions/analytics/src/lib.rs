//! analytics: recomputes the funnel roll-up (`funnel_daily`) when a run finishes (its
//! `RunFinished` event) and on its schedule (hourly, and after the nightly, as a safety net). The queries live in `shared::analytics`, which the ops API and the CLI read too.

use serde_json::Value;
use shared::analytics::{DEFAULT_DAYS, RollupReport};
use shared::bus::Queue;
use shared::db::{DbError, Pool, begin_tenant};
use shared::domain::TenantId;
use shared::events::{self, EventError, Received, RunFinished};

/// This function sends to no queue.
pub const SENDS_TO: &[Queue] = &[];

/// How many days, ending `today`, an event asks to recompute: `{"detail": {"days": N}}`
/// (EventBridge's envelope), 1 to 400, by default [`DEFAULT_DAYS`].
pub fn days_asked(event: &Value) -> i64 {
    event
        .get("detail")
        .and_then(|d| d.get("days"))
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_DAYS)
        .clamp(1, 400)
}

/// This consumer's name in `consumed_events`.
pub const CONSUMER: &str = "analytics";

/// A run's `RunFinished` recomputes its tenant's days from the run's date to `today`, once per
/// event; a schedule's event recomputes the days it asks for, ending `today`, for every tenant.
pub async fn handle(
    pool: &Pool,
    event: &Value,
    today: chrono::NaiveDate,
) -> Result<RollupReport, EventError> {
    match Received::of(event)? {
        Received::RunFinished(run) => rollup_run(pool, &run, today).await,
        Received::Ours(..) => Ok(RollupReport::default()),
        Received::Other => {
            let days = days_asked(event);
            Ok(
                shared::analytics::rollup(pool, today - chrono::Duration::days(days - 1), today)
                    .await?,
            )
        }
    }
}

/// The finished run's tenant, from the run's date, with the event's consumption recorded in the
/// same transaction.
async fn rollup_run(
    pool: &Pool,
    run: &RunFinished,
    today: chrono::NaiveDate,
) -> Result<RollupReport, EventError> {
    let tenant = TenantId::from_uuid(run.header.tenant_id);
    let mut c = pool.get().await.map_err(DbError::from)?;
    let tx = begin_tenant(&mut c, tenant).await?;
    let mut report = RollupReport {
        tenants: 1,
        rows: 0,
    };
    if events::consume(&tx, CONSUMER, &run.header).await? {
        report.rows =
            shared::analytics::rollup_tenant(&tx, tenant, run.run_date.min(today), today).await?;
    }
    tx.commit().await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_days_asked_default_and_stay_within_bounds() {
        assert_eq!(days_asked(&serde_json::json!({})), DEFAULT_DAYS);
        assert_eq!(days_asked(&serde_json::json!({"detail": {"days": 7}})), 7);
        assert_eq!(days_asked(&serde_json::json!({"detail": {"days": 0}})), 1);
        assert_eq!(
            days_asked(&serde_json::json!({"detail": {"days": 9999}})),
            400
        );
        assert_eq!(
            days_asked(&serde_json::json!({"detail": {"days": "x"}})),
            DEFAULT_DAYS
        );
    }
}
