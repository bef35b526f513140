//! backup: EventBridge schedule (04:00 UTC, after the nightly must have finished) → every table
//! exported to `backups/<day>/` in the artifacts bucket, in `shared::backup`'s format (CSV per
//! table, manifest with row counts and SHA-256 sums written last), as the role made for it
//! (`leadfactory_backup`: reads every tenant past forced RLS, writes nothing; its URL is the
//! function's own secret). Streams: memory stays bounded by one upload part whatever the tables
//! hold. The day comes from the scheduled event, so a retried invocation rewrites the same
//! day's files; the bucket keeps 90 days of them, noncurrent versions included. `leadfactory
//! restore --from s3://<bucket>/backups/<day>/ --verify` restores one.

use serde::Serialize;
use shared::bus::Queue;
use shared::db::{DbError, Pool};
use shared::store::ObjectStore;

/// This function sends to no queue.
pub const SENDS_TO: &[Queue] = &[];

/// What one backup wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupReport {
    pub prefix: String,
    pub schema_version: i32,
    pub tables: usize,
    pub rows: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Backup(#[from] shared::backup::BackupError),
}

/// Where a day's backup goes.
pub fn prefix_for(day: chrono::NaiveDate) -> String {
    format!("backups/{}/", day.format("%Y-%m-%d"))
}

/// The day a scheduled event fired for (its `time`, UTC); `now`'s for any other event.
pub fn day_of(event: &serde_json::Value, now: chrono::DateTime<chrono::Utc>) -> chrono::NaiveDate {
    event
        .get("time")
        .and_then(serde_json::Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map_or(now.date_naive(), |t| {
            t.with_timezone(&chrono::Utc).date_naive()
        })
}

/// Exports every table to `store` under the day's prefix.
pub async fn run(
    pool: &Pool,
    store: &dyn ObjectStore,
    day: chrono::NaiveDate,
) -> Result<BackupReport, RunError> {
    let prefix = prefix_for(day);
    let client = pool.get().await.map_err(DbError::from)?;
    let manifest = shared::backup::export(&client, store, &prefix).await?;
    let report = BackupReport {
        prefix,
        schema_version: manifest.schema_version,
        tables: manifest.tables.len(),
        rows: manifest.tables.iter().map(|t| t.rows).sum(),
    };
    {
        use shared::obs::metrics::{MetricLine, Unit};
        MetricLine::new()
            .dimension("Function", "backup")
            .value("BackupRows", report.rows as f64, Unit::Count)
            .value("BackupTables", report.tables as f64, Unit::Count)
            .emit();
    }
    tracing::info!(prefix = %report.prefix, tables = report.tables, rows = report.rows, "backup written");
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_day_is_the_scheduled_events_and_names_the_prefix() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let scheduled =
            serde_json::json!({ "detail-type": "Scheduled Event", "time": "2026-11-25T04:00:00Z" });
        assert_eq!(prefix_for(day_of(&scheduled, now)), "backups/2026-11-25/");
        for other in [
            serde_json::json!({}),
            serde_json::json!({ "time": "yesterday" }),
        ] {
            assert_eq!(prefix_for(day_of(&other, now)), "backups/2026-12-03/");
        }
    }
}
