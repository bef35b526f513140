//! Erasure on request: one person's address removed or anonymised everywhere it was stored —
//! emails (the row stays, anonymised, so counts hold; one not yet sent is cancelled), SendGrid events, purchases, Stripe
//! payloads, the business record, scraped contact lists, LLM logs and run events that quote it,
//! QA notes, and the raw homepage HTML that contained it (the object is deleted) — and one
//! suppression left behind so the address is never contacted again. One transaction: all or
//! nothing; the objects are deleted after it commits (a retry finds no rows and deletes nothing
//! twice).

use serde::Serialize;

use crate::db::{DbError, Pool, begin_tenant};
use crate::domain::{BusinessId, Email, TenantId};
use crate::store::{ObjectKey, ObjectStore};

/// Why an erasure did not complete: nothing of it is committed when the database fails; when
/// the objects' deletion fails after the commit, a retry deletes what is left.
#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("object store: {0}")]
    Store(#[from] crate::store::StoreError),
}

const ERASE_EMAILS: &str = "UPDATE emails SET to_email = 'erased-' || left(md5(id::text), 12) || '@erased.invalid', subject = '[erased]',
        body_text = NULL, body_html = NULL, body_purged_at = coalesce(body_purged_at, now()),
        last_error = CASE WHEN send_state = 'queued' THEN 'cancelled: the address was erased' END,
        send_state = CASE WHEN send_state = 'queued' THEN 'cancelled' ELSE send_state END
 WHERE to_email = $1";
/// The events of the address's emails (found before those are anonymised), and any addressed
/// to it (the recipient SendGrid named), each by index. Addresses are stored normalised (V22),
/// so `=` compares them, and an index can serve it under row-level security.
const ERASE_EMAIL_EVENTS: &str = "UPDATE email_events SET raw = jsonb_build_object('event', event, 'erased', true), reason = NULL, url = NULL,
        recipient = NULL
 WHERE id IN (SELECT v.id FROM emails e JOIN email_events v ON v.email_id = e.id WHERE e.to_email = $1
              UNION SELECT id FROM email_events WHERE recipient = $1)";
const ERASE_PURCHASE_EMAILS: &str =
    "UPDATE purchases SET customer_email = NULL WHERE customer_email = $1";
/// Only payloads retention has not stripped yet can hold an address (the last 90 days'), so
/// the search reads those, by their partial index.
const ERASE_STRIPE_PAYLOADS: &str = "UPDATE stripe_events SET payload = jsonb_build_object('id', payload->'id', 'type', payload->'type', 'erased', true)
 WHERE NOT (payload ? 'stripped') AND strpos(lower(payload::text), $1) > 0";
const ERASE_BUSINESS_EMAILS: &str =
    "UPDATE businesses SET email = NULL, erased_at = now() WHERE email = $1";
/// The homepages' published addresses, one row per (address, assessment) (V26): by index.
const ERASE_CONTACT_EMAILS: &str = "DELETE FROM assessment_contacts WHERE address = $1";
const ERASE_LLM_LOGS: &str =
    "DELETE FROM llm_logs WHERE strpos(lower(prompt), $1) > 0 OR strpos(lower(completion), $1) > 0";
const ERASE_RUN_EVENTS: &str = "DELETE FROM run_event_logs WHERE strpos(lower(extra::text), $1) > 0 OR strpos(lower(entity_id), $1) > 0";
const ERASE_QA_NOTES: &str =
    "UPDATE qa_samples SET notes = NULL WHERE strpos(lower(notes), $1) > 0";

impl From<tokio_postgres::Error> for ErasureError {
    fn from(e: tokio_postgres::Error) -> Self {
        ErasureError::Db(DbError::Postgres(e))
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Erased {
    pub emails: u64,
    pub email_events: u64,
    pub purchases: u64,
    pub stripe_events: u64,
    pub businesses: u64,
    pub assessments: u64,
    pub llm_logs: u64,
    pub run_events: u64,
    pub objects: u64,
}

/// The statements, each with `$1` = the normalised address (lower case). Free text is searched
/// for the address as a plain substring (`strpos`), never as a `LIKE` pattern: `_` and `%` are
/// ordinary characters of an address, and as wildcards they would erase other people's data.
const STEPS: &[&str] = &[
    // 0: the suppression that remains.
    "",
    // 1: events of the address's emails, or addressed to it.
    ERASE_EMAIL_EVENTS,
    // 2: anonymised; one still waiting to be sent is cancelled (its address is gone).
    ERASE_EMAILS,
    // 3
    ERASE_PURCHASE_EMAILS,
    // 4
    ERASE_STRIPE_PAYLOADS,
    // 5
    ERASE_BUSINESS_EMAILS,
    // 6
    ERASE_CONTACT_EMAILS,
    // 7
    ERASE_LLM_LOGS,
    // 8
    ERASE_RUN_EVENTS,
    // 9
    ERASE_QA_NOTES,
];

const ASSESSMENT_HTML_FOR_EMAIL: &str = "SELECT a.id, a.raw_html_key FROM assessment_contacts c JOIN assessments a ON a.id = c.assessment_id
 WHERE c.address = $1 AND a.raw_html_key IS NOT NULL";
const SUPPRESS_ERASED: &str = "INSERT INTO suppressions (tenant_id, kind, value, reason, source) VALUES ($1, 'email', $2, 'erasure', $3)
 ON CONFLICT (tenant_id, kind, value) DO UPDATE SET reason = 'erasure', source = EXCLUDED.source";
const FORGET_HTML_KEYS: &str = "UPDATE assessments SET raw_html_key = NULL WHERE id = ANY($1)";

/// Erases `email` for `tenant` (see the module doc); `source` names who asked (CLI, API).
pub async fn erase_email(
    pool: &Pool,
    store: &dyn ObjectStore,
    tenant: TenantId,
    email: &Email,
    source: &str,
) -> Result<Erased, ErasureError> {
    let addr = email.to_string();
    let mut c = pool.get().await.map_err(crate::db::DbError::from)?;
    let tx = begin_tenant(&mut c, tenant).await?;
    // The raw HTML that contained the address: found before the contact lists are cleaned.
    let html: Vec<(uuid::Uuid, String)> = tx
        .query(ASSESSMENT_HTML_FOR_EMAIL, &[&addr])
        .await?
        .iter()
        .map(|r| (r.get("id"), r.get("raw_html_key")))
        .collect();
    tx.execute(SUPPRESS_ERASED, &[&tenant.as_uuid(), &addr, &source])
        .await?;
    let mut counts = [0u64; 10];
    for (i, sql) in STEPS.iter().enumerate().skip(1) {
        counts[i] = tx.execute(*sql, &[&addr]).await?;
    }
    let ids: Vec<uuid::Uuid> = html.iter().map(|(id, _)| *id).collect();
    if !ids.is_empty() {
        tx.execute(FORGET_HTML_KEYS, &[&ids]).await?;
    }
    tx.commit().await?;
    let mut objects = 0;
    for (_, key) in &html {
        if let Ok(k) = ObjectKey::parse(key) {
            store.delete(&k).await?;
            objects += 1;
        }
    }
    tracing::info!(email = %crate::obs::hash_pii(&addr), %tenant, "erased on request");
    Ok(Erased {
        email_events: counts[1],
        emails: counts[2],
        purchases: counts[3],
        stripe_events: counts[4],
        businesses: counts[5],
        assessments: counts[6],
        llm_logs: counts[7],
        run_events: counts[8],
        objects,
    })
}

const BUSINESS_EMAIL: &str = "SELECT email FROM businesses WHERE id = $1";
const ERASE_BUSINESS_PHONE: &str =
    "UPDATE businesses SET phone_e164 = NULL, erased_at = now() WHERE id = $1";
const ERASE_ENRICHMENT_PHONE: &str =
    "UPDATE enrichments SET phone_e164 = NULL WHERE business_id = $1";

/// Erases a business's contact address (as [`erase_email`]) and its phone number.
pub async fn erase_business(
    pool: &Pool,
    store: &dyn ObjectStore,
    tenant: TenantId,
    business: BusinessId,
    source: &str,
) -> Result<Option<Erased>, ErasureError> {
    let mut c = pool.get().await.map_err(crate::db::DbError::from)?;
    let tx = begin_tenant(&mut c, tenant).await?;
    let row = tx.query_opt(BUSINESS_EMAIL, &[&business.as_uuid()]).await?;
    let Some(row) = row else { return Ok(None) };
    tx.execute(ERASE_BUSINESS_PHONE, &[&business.as_uuid()])
        .await?;
    tx.execute(ERASE_ENRICHMENT_PHONE, &[&business.as_uuid()])
        .await?;
    tx.commit().await?;
    drop(c);
    let email: Option<String> = row.get("email");
    match email.as_deref().map(Email::parse) {
        Some(Ok(e)) => erase_email(pool, store, tenant, &e, source).await.map(Some),
        _ => Ok(Some(Erased {
            businesses: 1,
            ..Erased::default()
        })),
    }
}
