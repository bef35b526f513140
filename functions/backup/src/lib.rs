//! backup: EventBridge schedule (04:00 UTC, after the nightly must have finished) → every table
//! exported to `backups/<day>/` in the artifacts bucket, in `shared::backup`'s format (CSV per
//! table, manifest with row counts and SHA-256 sums written last), as the role made for it
//! (`leadfactory_backup`: reads every tenant past forced RLS, writes nothing; its URL is the
//! function's own secret). Streams: memory stays bounded by one upload part whatever the tables
//! hold. The day comes from the scheduled event, so a retried invocation rewrites the same
//! day's files; the bucket keeps 90 days of them, noncurrent versions included. `leadfactory
//! restore --from s3://<bucket>/backups/<day>/ --verify` restores one.
//!
//! A second schedule (the 1st of each month, input `{"drill": true}`) drills a restore of the
//! newest backup in place ([`drill`]) and records the outcome for the alerts function.

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

/// What one restore drill found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DrillReport {
    /// The backup drilled; `None` when there was none to drill.
    pub prefix: Option<String>,
    pub passed: bool,
    pub tables: usize,
    pub rows: u64,
    pub failure: Option<String>,
}

/// Where the backups are, and so where a drill looks for the newest.
pub const BACKUPS: &str = "backups/";

const RECORD_DRILL: &str = "INSERT INTO backup_drills (id, prefix, passed, tables, rows, failure)
 VALUES ($1, $2, $3, $4, $5, $6)";

/// The monthly restore drill: the newest backup restored into temporary copies of the tables
/// and read back ([`shared::backup::drill`]), its outcome recorded in `backup_drills` for the
/// alerts function (a failure is a critical alert) and as the `RestoreDrillPassed` metric. A
/// failed drill is a finding, not a failed invocation: retrying it would find the same.
pub async fn drill(pool: &Pool, store: &dyn ObjectStore) -> Result<DrillReport, RunError> {
    let mut client = pool.get().await.map_err(DbError::from)?;
    let prefix = shared::backup::latest(store, BACKUPS).await?;
    let outcome = match &prefix {
        None => Err(format!("no backup under {BACKUPS} to drill")),
        Some(p) => shared::backup::drill(&mut client, store, p)
            .await
            .map_err(|e| e.to_string()),
    };
    let report = match outcome {
        Ok(manifest) => DrillReport {
            prefix,
            passed: true,
            tables: manifest.tables.len(),
            rows: manifest.tables.iter().map(|t| t.rows).sum(),
            failure: None,
        },
        Err(why) => DrillReport {
            prefix,
            passed: false,
            tables: 0,
            rows: 0,
            failure: Some(why),
        },
    };
    client
        .execute(
            RECORD_DRILL,
            &[
                &uuid::Uuid::new_v4(),
                &report.prefix,
                &report.passed,
                &(report.tables as i32),
                &(report.rows as i64),
                &report.failure,
            ],
        )
        .await
        .map_err(DbError::from)?;
    {
        use shared::obs::metrics::{MetricLine, Unit};
        MetricLine::new()
            .dimension("Function", "backup")
            .value(
                "RestoreDrillPassed",
                if report.passed { 1.0 } else { 0.0 },
                Unit::None,
            )
            .emit();
    }
    if report.passed {
        tracing::info!(prefix = ?report.prefix, tables = report.tables, rows = report.rows, "restore drill passed");
    } else {
        tracing::error!(prefix = ?report.prefix, failure = ?report.failure, "restore drill failed");
    }
    Ok(report)
}

/// Whether an invocation is the monthly drill (its schedule's input `{"drill": true}`).
pub fn is_drill(event: &serde_json::Value) -> bool {
    event.get("drill").and_then(serde_json::Value::as_bool) == Some(true)
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
