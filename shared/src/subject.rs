//! Access requests: everything held about one address, as JSON — the counterpart of
//! [`crate::erasure`]. Each table is searched exactly as erasure searches it (the same columns,
//! the address as a plain substring of free text, never a `LIKE` pattern), plus the suppression
//! list; the stored objects that contain it (raw homepage HTML) come with their bytes. One
//! read-only transaction under the tenant's row-level security, so the export is consistent.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Serialize;

use crate::db::{DbError, Pool, begin_tenant};
use crate::domain::{Email, TenantId};
use crate::store::{ObjectKey, ObjectStore};

#[derive(Debug, thiserror::Error)]
pub enum SubjectError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("object store: {0}")]
    Store(#[from] crate::store::StoreError),
}

impl From<tokio_postgres::Error> for SubjectError {
    fn from(e: tokio_postgres::Error) -> Self {
        SubjectError::Db(DbError::Postgres(e))
    }
}

/// What is held about one address.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubjectExport {
    pub email: String,
    pub tenant: TenantId,
    pub exported_at: chrono::DateTime<chrono::Utc>,
    /// Table → its rows that mention the address, each as the row's own JSON.
    pub tables: BTreeMap<&'static str, Vec<serde_json::Value>>,
    pub objects: Vec<HeldObject>,
}

/// A stored object that contains the address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldObject {
    pub key: String,
    /// How the bytes are stored (`gzip` for homepage HTML).
    pub encoding: &'static str,
    pub content_base64: String,
}

/// (table, statement with `$1` = the normalised address, returning `row`). Each finds its rows
/// by index, as the erasure's statements do (`shared::erasure`); suppressions are stored
/// lower-cased (a CHECK), like every stored address (V22), so keys are compared with `=`, which
/// an index serves under row-level security (`lower(column)` it cannot: lower is not leakproof).
const TABLES: &[(&str, &str)] = &[
    ("businesses", "SELECT to_jsonb(x) AS row FROM businesses x WHERE email = $1 ORDER BY id"),
    (
        "assessment_contacts",
        "SELECT to_jsonb(x) AS row FROM assessment_contacts x WHERE address = $1 ORDER BY assessment_id",
    ),
    ("emails", "SELECT to_jsonb(x) AS row FROM emails x WHERE to_email = $1 ORDER BY created_at, id"),
    (
        "email_events",
        "SELECT to_jsonb(x) AS row FROM email_events x
         WHERE id IN (SELECT v.id FROM emails e JOIN email_events v ON v.email_id = e.id WHERE e.to_email = $1
                      UNION SELECT id FROM email_events WHERE recipient = $1)
         ORDER BY id",
    ),
    ("purchases", "SELECT to_jsonb(x) AS row FROM purchases x WHERE customer_email = $1 ORDER BY created_at, id"),
    ("stripe_events", "SELECT to_jsonb(x) AS row FROM stripe_events x WHERE NOT (payload ? 'stripped') AND strpos(lower(payload::text), $1) > 0 ORDER BY created, event_id"),
    ("suppressions", "SELECT to_jsonb(x) AS row FROM suppressions x WHERE kind = 'email' AND value = $1"),
    (
        "llm_logs",
        "SELECT to_jsonb(x) AS row FROM llm_logs x WHERE strpos(lower(prompt), $1) > 0 OR strpos(lower(completion), $1) > 0 ORDER BY created_at, id",
    ),
    (
        "run_event_logs",
        "SELECT to_jsonb(x) AS row FROM run_event_logs x WHERE strpos(lower(extra::text), $1) > 0 OR strpos(lower(entity_id), $1) > 0 ORDER BY id",
    ),
    ("qa_samples", "SELECT to_jsonb(x) AS row FROM qa_samples x WHERE strpos(lower(notes), $1) > 0 ORDER BY id"),
];

/// The homepages whose contact list held the address (the erasure deletes the same objects).
const HTML_KEYS: &str =
    "SELECT a.raw_html_key FROM assessment_contacts c JOIN assessments a ON a.id = c.assessment_id
 WHERE c.address = $1 AND a.raw_html_key IS NOT NULL ORDER BY a.id";

/// Everything `tenant` holds about `email`.
pub async fn export_subject(
    pool: &Pool,
    store: &dyn ObjectStore,
    tenant: TenantId,
    email: &Email,
) -> Result<SubjectExport, SubjectError> {
    let addr = email.to_string();
    let mut c = pool.get().await.map_err(DbError::from)?;
    let tx = begin_tenant(&mut c, tenant).await?;
    tx.batch_execute("SET TRANSACTION READ ONLY").await?;
    let mut tables = BTreeMap::new();
    for (table, sql) in TABLES {
        let rows = tx.query(*sql, &[&addr]).await?;
        tables.insert(*table, rows.iter().map(|r| r.get("row")).collect());
    }
    let keys: Vec<String> = tx
        .query(HTML_KEYS, &[&addr])
        .await?
        .iter()
        .map(|r| r.get("raw_html_key"))
        .collect();
    tx.commit().await?;
    let mut objects = Vec::new();
    for key in keys {
        let Ok(k) = ObjectKey::parse(&key) else {
            continue;
        };
        match store.get(&k).await {
            Ok(bytes) => objects.push(HeldObject {
                key,
                encoding: "gzip",
                content_base64: base64::engine::general_purpose::STANDARD.encode(&bytes),
            }),
            // Retention deleted it and has not cleared its key yet: nothing is held.
            Err(crate::store::StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    tracing::info!(email = %crate::obs::hash_pii(&addr), %tenant, "subject access export");
    Ok(SubjectExport {
        email: addr,
        tenant,
        exported_at: chrono::Utc::now(),
        tables,
        objects,
    })
}
