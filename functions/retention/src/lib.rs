//! retention: keeps data only as long as the handbook allows (erasure on request is
//! `shared::erasure`, which the ops API and the CLI call).
//!
//! Daily, tenant by tenant: run event logs (30 days), QA samples (90), LLM logs (by their
//! `expires_at`), raw homepage HTML (90 — the objects are deleted, then their keys cleared),
//! outreach bodies (180 — the row stays for the funnel, its words go), finished idempotency
//! records (30), webhook payloads stripped to what the funnel and the books need (90), contact
//! details of businesses never written to (180 after they were last seen), alerts (90) and
//! buyers' addresses (7 years, the accounting period) — each as `docs/data.md` maps it. Every purge runs in batches of `batch` rows, each its own short statement and
//! transaction, so no lock is held for long; at most `max_batches` per kind and tenant a day, the
//! rest waits for tomorrow (recorded as `remaining`). What was purged is recorded in
//! `retention_runs`.

use std::collections::HashMap;

use serde::Serialize;
use shared::bus::Queue;
use shared::db::{DbError, begin_tenant};
use shared::domain::TenantId;
use shared::pipeline::Deps;
use shared::store::ObjectKey;

/// This function sends to no queue.
pub const SENDS_TO: &[Queue] = &[];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Periods {
    pub run_event_logs_days: i32,
    pub qa_samples_days: i32,
    pub raw_html_days: i32,
    pub email_bodies_days: i32,
    pub processed_messages_days: i32,
    /// Webhook payloads (SendGrid events, processed Stripe events) stripped to what the funnel
    /// and the books need.
    pub raw_payloads_days: i32,
    /// Contact details of businesses never written to, after they were last seen.
    pub uncontacted_days: i32,
    /// Alerts (the tenants' and the operators').
    pub alerts_days: i32,
    /// Buyers' addresses on purchases: the accounting period.
    pub buyer_emails_days: i32,
    /// Domain events (published long since, or given up on) and consumers' records of them:
    /// longer than any redelivery or retry can come back.
    pub domain_events_days: i32,
    /// Compute usage and its daily roll-up: a year and a month of cost history.
    pub compute_days: i32,
    pub batch: i64,
    pub max_batches: u32,
}

impl Default for Periods {
    fn default() -> Self {
        Self {
            run_event_logs_days: 30,
            qa_samples_days: 90,
            raw_html_days: 90,
            email_bodies_days: 180,
            processed_messages_days: 30,
            raw_payloads_days: 90,
            uncontacted_days: 180,
            alerts_days: 90,
            buyer_emails_days: 7 * 365,
            domain_events_days: 30,
            compute_days: 400,
            batch: 1000,
            max_batches: 200,
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Purged {
    pub kind: &'static str,
    pub rows: u64,
    pub objects: u64,
    pub batches: u32,
    pub remaining: bool,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    pub tenants: usize,
    pub purged: Vec<Purged>,
}

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("object store: {0}")]
    Store(#[from] shared::store::StoreError),
}

impl From<tokio_postgres::Error> for RetentionError {
    fn from(e: tokio_postgres::Error) -> Self {
        RetentionError::Db(DbError::Postgres(e))
    }
}

/// One bounded row purge: `sql` takes ($1 cutoff, $2 batch) and returns the rows it touched.
/// Each walks its rows oldest first along a time index, so a batch reads what it purges and
/// not the table (the plans test checks this on a populated database).
struct RowPurge {
    kind: &'static str,
    sql: &'static str,
    days: fn(&Periods) -> i32,
    /// The purge's rows are found by a time that only moves forward (a business's last
    /// sighting), and what it checks on each does not shrink (whether it was ever written to):
    /// `$3` bounds it to the rows that crossed the cutoff since the last completed run (less a
    /// day), so a night does not re-check the whole history.
    resumable: bool,
}

const ROW_PURGES: &[RowPurge] = &[
    RowPurge {
        kind: "run_event_logs",
        sql: "DELETE FROM run_event_logs WHERE id IN (SELECT id FROM run_event_logs WHERE created_at < $1 ORDER BY created_at LIMIT $2)",
        days: |p| p.run_event_logs_days,
        resumable: false,
    },
    RowPurge {
        kind: "qa_samples",
        sql: "DELETE FROM qa_samples WHERE id IN (SELECT id FROM qa_samples WHERE created_at < $1 ORDER BY created_at LIMIT $2)",
        days: |p| p.qa_samples_days,
        resumable: false,
    },
    RowPurge {
        kind: "llm_logs",
        // Expiry is stored per row; the cutoff is now.
        sql: "DELETE FROM llm_logs WHERE id IN (SELECT id FROM llm_logs WHERE expires_at < $1 ORDER BY expires_at LIMIT $2)",
        days: |_| 0,
        resumable: false,
    },
    RowPurge {
        kind: "email_bodies",
        sql: "UPDATE emails SET body_text = NULL, body_html = NULL, body_purged_at = now()
              WHERE id IN (SELECT id FROM emails WHERE body_purged_at IS NULL AND created_at < $1 ORDER BY created_at LIMIT $2)",
        days: |p| p.email_bodies_days,
        resumable: false,
    },
    RowPurge {
        kind: "processed_messages",
        sql: "DELETE FROM processed_messages WHERE (tenant_id, stage, key) IN
              (SELECT tenant_id, stage, key FROM processed_messages WHERE status = 'done' AND updated_at < $1 LIMIT $2)",
        days: |p| p.processed_messages_days,
        resumable: false,
    },
    RowPurge {
        kind: "email_event_payloads",
        sql: "UPDATE email_events SET raw = jsonb_build_object('event', event, 'stripped', true), reason = NULL, url = NULL, recipient = NULL
              WHERE id IN (SELECT id FROM email_events WHERE occurred_at < $1 AND NOT (raw ? 'stripped') ORDER BY occurred_at LIMIT $2)",
        days: |p| p.raw_payloads_days,
        resumable: false,
    },
    RowPurge {
        kind: "stripe_event_payloads",
        sql: "UPDATE stripe_events SET payload = jsonb_build_object('id', payload->'id', 'type', type, 'stripped', true)
              WHERE event_id IN (SELECT event_id FROM stripe_events
                                 WHERE processed_at IS NOT NULL AND created < $1 AND NOT (payload ? 'stripped') LIMIT $2)",
        days: |p| p.raw_payloads_days,
        resumable: false,
    },
    RowPurge {
        kind: "uncontacted_assessment_contacts",
        // The old businesses by their index, each one's assessments by theirs: a lateral kept
        // apart by `OFFSET 0` (flattened into a join, the planner hashes every assessment of
        // the tenant).
        sql: "WITH due AS (SELECT a.id FROM businesses b
                           CROSS JOIN LATERAL (SELECT x.id FROM assessments x WHERE x.business_id = b.id
                                                 AND (cardinality(x.contact_phones) > 0
                                                      OR EXISTS (SELECT 1 FROM assessment_contacts c WHERE c.assessment_id = x.id))
                                               OFFSET 0) a
                           WHERE b.last_seen_at < $1 AND b.last_seen_at >= $3
                             AND NOT EXISTS (SELECT 1 FROM emails e WHERE e.business_id = b.id) LIMIT $2),
                   gone AS (DELETE FROM assessment_contacts WHERE assessment_id IN (SELECT id FROM due))
              UPDATE assessments SET contact_phones = '{}' WHERE id IN (SELECT id FROM due)",
        days: |p| p.uncontacted_days,
        resumable: true,
    },
    RowPurge {
        // After the assessments' copies above, so those still find their business.
        kind: "uncontacted_business_emails",
        sql: "UPDATE businesses SET email = NULL, email_reason = NULL, updated_at = now()
              WHERE id IN (SELECT b.id FROM businesses b WHERE b.email IS NOT NULL AND b.last_seen_at < $1
                             AND b.last_seen_at >= $3
                             AND NOT EXISTS (SELECT 1 FROM emails e WHERE e.business_id = b.id) LIMIT $2)",
        days: |p| p.uncontacted_days,
        resumable: true,
    },
    RowPurge {
        kind: "sent_alerts",
        sql: "DELETE FROM sent_alerts WHERE id IN (SELECT id FROM sent_alerts WHERE sent_at < $1 ORDER BY sent_at LIMIT $2)",
        days: |p| p.alerts_days,
        resumable: false,
    },
    RowPurge {
        kind: "domain_events",
        sql: "DELETE FROM domain_events WHERE id IN (SELECT id FROM domain_events WHERE occurred_at < $1 ORDER BY occurred_at LIMIT $2)",
        days: |p| p.domain_events_days,
        resumable: false,
    },
    RowPurge {
        kind: "consumed_events",
        sql: "DELETE FROM consumed_events WHERE (consumer, event_id) IN
              (SELECT consumer, event_id FROM consumed_events WHERE consumed_at < $1 ORDER BY consumed_at LIMIT $2)",
        days: |p| p.domain_events_days,
        resumable: false,
    },
    RowPurge {
        kind: "infra_daily",
        sql: "DELETE FROM infra_daily WHERE (tenant_id, day) IN
              (SELECT tenant_id, day FROM infra_daily WHERE day < ($1::timestamptz)::date ORDER BY day LIMIT $2)",
        days: |p| p.compute_days,
        resumable: false,
    },
    RowPurge {
        kind: "buyer_emails",
        sql: "UPDATE purchases SET customer_email = NULL
              WHERE id IN (SELECT id FROM purchases WHERE customer_email IS NOT NULL AND created_at < $1 ORDER BY created_at LIMIT $2)",
        days: |p| p.buyer_emails_days,
        resumable: false,
    },
];

/// The operators' records, outside every tenant, purged through the definer functions made for
/// it (each takes ($1 cutoff, $2 batch) and returns the rows it touched as `n`).
const OPERATOR_PURGES: &[RowPurge] = &[
    RowPurge {
        kind: "operator_alerts",
        sql: "SELECT purge_operator_alerts($1, $2::int) AS n",
        days: |p| p.alerts_days,
        resumable: false,
    },
    RowPurge {
        kind: "compute_usage",
        sql: "SELECT purge_compute_usage($1, $2::int) AS n",
        days: |p| p.compute_days,
        resumable: false,
    },
    RowPurge {
        kind: "unattributed_stripe_payloads",
        sql: "SELECT strip_unattributed_stripe_payloads($1, $2::int) AS n",
        days: |p| p.raw_payloads_days,
        resumable: false,
    },
];

/// When each kind last ran to the end (`cutoff` records the run's time).
const LAST_COMPLETED: &str =
    "SELECT kind, max(cutoff) AS at FROM retention_runs WHERE NOT remaining GROUP BY kind";
const RECORD_RETENTION_RUN: &str = "INSERT INTO retention_runs (kind, rows, objects, batches, remaining, cutoff, ran_at) VALUES ($1, $2, $3, $4, $5, $6, $6)";

/// Purges everything past its period for every tenant, as of `now`.
pub async fn purge(
    deps: &Deps,
    periods: &Periods,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<RetentionReport, RetentionError> {
    let c = deps.pool.get().await.map_err(DbError::from)?;
    let tenants = shared::db::tenant_ids(&c).await?;
    let completed: HashMap<String, chrono::DateTime<chrono::Utc>> = c
        .query(LAST_COMPLETED, &[])
        .await?
        .iter()
        .map(|r| (r.get("kind"), r.get("at")))
        .collect();
    drop(c);
    let mut totals: Vec<Purged> = Vec::new();
    for tenant in &tenants {
        for p in ROW_PURGES {
            let days = chrono::Duration::days(i64::from((p.days)(periods)));
            let cutoff = now - days;
            let since = match completed.get(p.kind) {
                Some(at) if p.resumable => *at - days - chrono::Duration::days(1),
                _ => chrono::DateTime::UNIX_EPOCH,
            };
            let r = purge_rows(deps, *tenant, p, cutoff, since, periods).await?;
            add(&mut totals, r);
        }
        let cutoff = now - chrono::Duration::days(i64::from(periods.raw_html_days));
        let r = purge_html(deps, *tenant, cutoff, periods).await?;
        add(&mut totals, r);
    }
    for p in OPERATOR_PURGES {
        let cutoff = now - chrono::Duration::days(i64::from((p.days)(periods)));
        let r = purge_operator_rows(deps, p, cutoff, periods).await?;
        add(&mut totals, r);
    }
    let mut c = deps.pool.get().await.map_err(DbError::from)?;
    let tx = c.transaction().await?;
    for t in &totals {
        tx.execute(
            RECORD_RETENTION_RUN,
            &[
                &t.kind,
                &(t.rows as i64),
                &(t.objects as i64),
                &(t.batches as i32),
                &t.remaining,
                &now,
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(RetentionReport {
        tenants: tenants.len(),
        purged: totals,
    })
}

fn add(totals: &mut Vec<Purged>, r: Purged) {
    match totals.iter_mut().find(|t| t.kind == r.kind) {
        Some(t) => {
            t.rows += r.rows;
            t.objects += r.objects;
            t.batches += r.batches;
            t.remaining |= r.remaining;
        }
        None => totals.push(r),
    }
}

/// Runs `step` (one batch: rows touched, objects deleted, whether a full batch suggests more)
/// until it reports no more or the day's batch budget is spent.
async fn batched(
    kind: &'static str,
    periods: &Periods,
    mut step: impl AsyncFnMut() -> Result<(u64, u64, bool), RetentionError>,
) -> Result<Purged, RetentionError> {
    let mut out = Purged {
        kind,
        ..Purged::default()
    };
    loop {
        if out.batches >= periods.max_batches {
            out.remaining = true;
            return Ok(out);
        }
        let (rows, objects, more) = step().await?;
        out.batches += 1;
        out.rows += rows;
        out.objects += objects;
        if !more {
            return Ok(out);
        }
    }
}

async fn purge_rows(
    deps: &Deps,
    tenant: TenantId,
    p: &RowPurge,
    cutoff: chrono::DateTime<chrono::Utc>,
    since: chrono::DateTime<chrono::Utc>,
    periods: &Periods,
) -> Result<Purged, RetentionError> {
    let mut c = deps.pool.get().await.map_err(DbError::from)?;
    batched(p.kind, periods, async || {
        let tx = begin_tenant(&mut c, tenant).await?;
        let n = if p.resumable {
            tx.execute(p.sql, &[&cutoff, &periods.batch, &since])
                .await?
        } else {
            tx.execute(p.sql, &[&cutoff, &periods.batch]).await?
        };
        tx.commit().await?;
        Ok((n, 0, n as i64 >= periods.batch))
    })
    .await
}

async fn purge_operator_rows(
    deps: &Deps,
    p: &RowPurge,
    cutoff: chrono::DateTime<chrono::Utc>,
    periods: &Periods,
) -> Result<Purged, RetentionError> {
    let c = deps.pool.get().await.map_err(DbError::from)?;
    let batch = i32::try_from(periods.batch).unwrap_or(i32::MAX);
    batched(p.kind, periods, async || {
        let n: i64 = c.query_one(p.sql, &[&cutoff, &batch]).await?.get("n");
        Ok((n as u64, 0, n >= i64::from(batch)))
    })
    .await
}

const EXPIRED_HTML: &str = "SELECT id, raw_html_key FROM assessments WHERE raw_html_key IS NOT NULL AND assessed_at < $1 ORDER BY assessed_at LIMIT $2";
const FORGET_HTML_KEYS: &str = "UPDATE assessments SET raw_html_key = NULL WHERE id = ANY($1)";

/// Raw HTML: delete the objects, then clear their keys (a retry after a crash in between
/// deletes already-missing objects, which succeeds).
async fn purge_html(
    deps: &Deps,
    tenant: TenantId,
    cutoff: chrono::DateTime<chrono::Utc>,
    periods: &Periods,
) -> Result<Purged, RetentionError> {
    let mut c = deps.pool.get().await.map_err(DbError::from)?;
    batched("raw_html", periods, async || {
        let tx = begin_tenant(&mut c, tenant).await?;
        let rows = tx.query(EXPIRED_HTML, &[&cutoff, &periods.batch]).await?;
        tx.commit().await?;
        if rows.is_empty() {
            return Ok((0, 0, false));
        }
        let ids: Vec<uuid::Uuid> = rows.iter().map(|r| r.get("id")).collect();
        let mut objects = 0;
        for r in &rows {
            if let Ok(key) = ObjectKey::parse(&r.get::<_, String>("raw_html_key")) {
                deps.store.delete(&key).await?;
                objects += 1;
            }
        }
        let tx = begin_tenant(&mut c, tenant).await?;
        let n = tx.execute(FORGET_HTML_KEYS, &[&ids]).await?;
        tx.commit().await?;
        Ok((n, objects, rows.len() as i64 >= periods.batch))
    })
    .await
}
