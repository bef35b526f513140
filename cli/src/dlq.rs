//! Dead-letter queues for operators: what is in them (`shared::bus::dlq`), why each failed, and
//! moving them back.

pub use shared::bus::dlq::*;

/// The failure recorded for a dead letter: the error its run recorded when the message failed
/// for the last time, else the latest error event of its trace. Read as the schema owner inside
/// the message's tenant: row-level security binds the owner too.
pub async fn failure_reason(
    client: &mut tokio_postgres::Client,
    letter: &DeadLetter,
) -> Result<Option<String>, tokio_postgres::Error> {
    let Some(tenant) = letter
        .tenant
        .as_deref()
        .and_then(|t| shared::domain::TenantId::parse(t).ok())
    else {
        return Ok(None);
    };
    let run = letter
        .run
        .as_deref()
        .and_then(|r| uuid::Uuid::parse_str(r).ok());
    let tx = client.transaction().await?;
    tx.batch_execute(&shared::db::with_tenant_setting(tenant))
        .await?;
    let recorded = tx
        .query_opt(
            "SELECT queue || ': ' || reason AS reason FROM run_work
             WHERE run_id = $1 AND key = $2 AND state = 'dead' AND reason IS NOT NULL",
            &[&run, &letter.idempotency_key],
        )
        .await?
        .map(|r| r.get::<_, String>("reason"));
    let reason = match recorded {
        Some(r) => Some(r),
        None => tx
            .query_opt(
                "SELECT stage || ': ' || coalesce(extra->>'error', error_code, event) AS reason FROM run_event_logs
                 WHERE trace_id = $1 AND status = 'error' ORDER BY created_at DESC LIMIT 1",
                &[&letter.trace_id],
            )
            .await?
            .map(|r| r.get("reason")),
    };
    tx.commit().await?;
    Ok(reason)
}
