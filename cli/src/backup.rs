//! `leadfactory export` / `restore`: the critical tables — tenants, campaigns, suppressions,
//! emails, email events, purchases, the cost ledger, API keys, and the rows they reference
//! (experiments, runs, businesses, assessments, scores, reports) — as CSV files written by
//! PostgreSQL's own `COPY` (exact text for every type), with a manifest of row counts and
//! SHA-256 sums. Exported as `leadfactory_backup` (BYPASSRLS: the owner is bound by forced RLS
//! and would read the tenants' tables empty), across tenants, ordered by primary key, so two
//! exports of the same data are byte-identical. A restore into an empty, migrated database
//! checks the manifest, loads every table in one transaction (foreign keys in dependency order;
//! the email ↔ purchase cycle deferred) and moves the sequences past the restored ids.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt, pin_mut};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shared::store::{ObjectKey, ObjectStore};

/// (table, primary-key order) in the order a restore loads them.
pub const TABLES: &[(&str, &str)] = &[
    ("tenants", "id"),
    ("api_keys", "id"),
    ("experiments", "id"),
    ("experiment_variants", "id"),
    ("campaigns", "id"),
    ("runs", "id"),
    ("businesses", "id"),
    ("assessments", "id"),
    ("scores", "id"),
    ("reports", "id"),
    ("emails", "id"),
    ("purchases", "id"),
    ("email_events", "id"),
    ("suppressions", "tenant_id, kind, value"),
    ("cost_ledger", "id"),
];

/// Sequences behind `bigserial` ids, moved past the restored rows.
const SEQUENCES: &[(&str, &str)] = &[("email_events", "id"), ("cost_ledger", "id")];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema_version: i32,
    pub exported_at: chrono::DateTime<chrono::Utc>,
    pub tables: Vec<TableFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableFile {
    pub table: String,
    pub file: String,
    pub rows: u64,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("database: {}", shared::db::describe(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("object store: {0}")]
    Store(#[from] shared::store::StoreError),
    #[error("manifest: {0}")]
    Manifest(String),
    #[error("{file}: checksum mismatch (the export was changed or is incomplete)")]
    Checksum { file: String },
    #[error("the target database is not empty: {0} has rows (restore only into an empty database)")]
    NotEmpty(String),
    #[error("the export is schema version {export}, the database is at {database}: migrate first")]
    Schema { export: i32, database: i32 },
}

fn key(prefix: &str, name: &str) -> Result<ObjectKey, BackupError> {
    let p = prefix.trim_matches('/');
    let k = if p.is_empty() {
        name.to_owned()
    } else {
        format!("{p}/{name}")
    };
    Ok(ObjectKey::parse(&k)?)
}

async fn schema_version(client: &tokio_postgres::Client) -> Result<i32, BackupError> {
    Ok(client
        .query_one(
            &format!(
                "SELECT coalesce(max(version), 0) AS version FROM {}",
                shared::db::MIGRATIONS_APPLIED_TABLE
            ),
            &[],
        )
        .await?
        .get("version"))
}

/// Exports every table to `store` under `prefix`; returns the manifest it wrote.
pub async fn export(
    client: &tokio_postgres::Client,
    store: &dyn ObjectStore,
    prefix: &str,
) -> Result<Manifest, BackupError> {
    let mut files = Vec::new();
    for (table, order) in TABLES {
        let stream = client
            .copy_out(&format!(
                "COPY (SELECT * FROM {table} ORDER BY {order}) TO STDOUT WITH (FORMAT csv, HEADER)"
            ))
            .await?;
        pin_mut!(stream);
        let mut buf = Vec::new();
        while let Some(chunk) = stream.next().await {
            buf.extend_from_slice(&chunk?);
        }
        // Records, not lines: a quoted field may hold a newline.
        let rows = csv::Reader::from_reader(&buf[..]).byte_records().count() as u64;
        let file = format!("{table}.csv");
        let sha256 = hex::encode(Sha256::digest(&buf));
        store
            .put(&key(prefix, &file)?, Bytes::from(buf), "text/csv")
            .await?;
        files.push(TableFile {
            table: (*table).to_owned(),
            file,
            rows,
            sha256,
        });
    }
    let manifest = Manifest {
        schema_version: schema_version(client).await?,
        exported_at: chrono::Utc::now(),
        tables: files,
    };
    let json =
        serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Manifest(e.to_string()))?;
    store
        .put(
            &key(prefix, "manifest.json")?,
            Bytes::from(json),
            "application/json",
        )
        .await?;
    Ok(manifest)
}

/// Restores an export into an empty database (as `leadfactory_restore`: COPY FROM refuses a
/// table under RLS to a role that does not bypass it); returns the manifest.
pub async fn restore(
    client: &mut tokio_postgres::Client,
    store: &dyn ObjectStore,
    prefix: &str,
) -> Result<Manifest, BackupError> {
    let raw = store.get(&key(prefix, "manifest.json")?).await?;
    let manifest: Manifest =
        serde_json::from_slice(&raw).map_err(|e| BackupError::Manifest(e.to_string()))?;
    let database = schema_version(client).await?;
    if manifest.schema_version != database {
        return Err(BackupError::Schema {
            export: manifest.schema_version,
            database,
        });
    }
    for (table, _) in TABLES {
        let n: i64 = client
            .query_one(&format!("SELECT count(*) AS n FROM {table}"), &[])
            .await?
            .get("n");
        if n > 0 {
            return Err(BackupError::NotEmpty((*table).to_owned()));
        }
    }
    // Everything is read and checked before anything is written.
    let mut data = Vec::new();
    for (table, _) in TABLES {
        let f = manifest
            .tables
            .iter()
            .find(|f| f.table == *table)
            .ok_or_else(|| BackupError::Manifest(format!("{table} is missing")))?;
        let bytes = store.get(&key(prefix, &f.file)?).await?;
        if hex::encode(Sha256::digest(&bytes)) != f.sha256 {
            return Err(BackupError::Checksum {
                file: f.file.clone(),
            });
        }
        data.push((*table, bytes));
    }
    let tx = client.transaction().await?;
    tx.batch_execute("SET CONSTRAINTS ALL DEFERRED").await?;
    for (table, bytes) in data {
        let sink = tx
            .copy_in(&format!(
                "COPY {table} FROM STDIN WITH (FORMAT csv, HEADER)"
            ))
            .await?;
        pin_mut!(sink);
        sink.send(bytes).await?;
        sink.finish().await?;
    }
    for (table, col) in SEQUENCES {
        tx.execute(
            &format!("SELECT setval(pg_get_serial_sequence('{table}', '{col}'), coalesce((SELECT max({col}) FROM {table}), 0) + 1, false)"),
            &[],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(manifest)
}
