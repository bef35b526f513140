//! analytics: recomputes the funnel roll-up (`funnel_daily`) on its schedule (hourly, and after
//! the nightly). The queries live in `shared::analytics`, which the ops API and the CLI read too.

use serde_json::Value;
use shared::analytics::{DEFAULT_DAYS, RollupReport};
use shared::bus::Queue;
use shared::db::{DbError, Pool};

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

/// Recomputes the days `event` asks for, ending `today`.
pub async fn handle(
    pool: &Pool,
    event: &Value,
    today: chrono::NaiveDate,
) -> Result<RollupReport, DbError> {
    let days = days_asked(event);
    shared::analytics::rollup(pool, today - chrono::Duration::days(days - 1), today).await
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
