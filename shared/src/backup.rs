//! Backups (`leadfactory export` / `restore`): the critical tables — tenants, campaigns, suppressions,
//! emails, email events, purchases, the cost ledger, API keys, and the rows they reference
//! (experiments, runs, businesses, assessments, scores, reports) — as CSV files written by
//! PostgreSQL's own `COPY` (exact text for every type), with a manifest of row counts and
//! SHA-256 sums. Exported as `leadfactory_backup` (BYPASSRLS: the owner is bound by forced RLS
//! and would read the tenants' tables empty), across tenants, ordered by primary key, so two
//! exports of the same data are byte-identical. Tables stream through in chunks both ways, so
//! memory stays bounded whatever their size. A restore into an empty, migrated database checks
//! the manifest, loads every table in one transaction (foreign keys in dependency order; the
//! email ↔ purchase cycle deferred), checking each file as it arrives, and moves the sequences
//! past the restored ids.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt, pin_mut};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::{ObjectKey, ObjectStore, ObjectWriter};

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
    #[error("database: {}", crate::db::describe(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("object store: {0}")]
    Store(#[from] crate::store::StoreError),
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
                crate::db::MIGRATIONS_APPLIED_TABLE
            ),
            &[],
        )
        .await?
        .get("version"))
}

/// Counts CSV records as the bytes stream past (a quoted field may hold a newline, so records
/// are not lines), holding no more than a small scratch buffer whatever the table's size.
struct RecordCounter {
    reader: csv_core::Reader,
    records: u64,
    scratch: Vec<u8>,
    ends: Vec<usize>,
}

impl RecordCounter {
    fn new() -> Self {
        Self {
            reader: csv_core::Reader::new(),
            records: 0,
            scratch: vec![0; 64 * 1024],
            ends: vec![0; 1024],
        }
    }

    /// Reads `input` on, counting the records it completes; an empty input ends the data.
    fn feed(&mut self, mut input: &[u8]) {
        use csv_core::ReadRecordResult::*;
        loop {
            // The fields' bytes are not kept: the scratch buffers are reused from the start.
            let (result, read, _, _) =
                self.reader
                    .read_record(input, &mut self.scratch, &mut self.ends);
            input = &input[read..];
            match result {
                Record => self.records += 1,
                OutputFull | OutputEndsFull => {}
                InputEmpty | End => return,
            }
        }
    }

    /// The data rows: the records after the header.
    fn rows(mut self) -> u64 {
        self.feed(&[]);
        self.records.saturating_sub(1)
    }
}

/// A table file as it is written or read: its bytes hashed and its records counted on the fly.
struct Tally {
    hasher: Sha256,
    counter: RecordCounter,
}

impl Tally {
    fn new() -> Self {
        Self {
            hasher: Sha256::new(),
            counter: RecordCounter::new(),
        }
    }

    fn add(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
        self.counter.feed(chunk);
    }

    /// (data rows, SHA-256 in hex).
    fn finish(self) -> (u64, String) {
        (self.counter.rows(), hex::encode(self.hasher.finalize()))
    }
}

/// Streams one table out of PostgreSQL into `writer`.
async fn copy_table_out(
    client: &tokio_postgres::Client,
    table: &str,
    order: &str,
    writer: &mut dyn ObjectWriter,
    tally: &mut Tally,
) -> Result<(), BackupError> {
    let stream = client
        .copy_out(&format!(
            "COPY (SELECT * FROM {table} ORDER BY {order}) TO STDOUT WITH (FORMAT csv, HEADER)"
        ))
        .await?;
    pin_mut!(stream);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        tally.add(&chunk);
        writer.write(chunk).await?;
    }
    Ok(())
}

/// Exports every table to `store` under `prefix`, each streamed from `COPY` to the store (a
/// multipart upload on S3) with its checksum and row count computed on the way: memory stays
/// bounded by one upload part whatever the tables hold. Returns the manifest it wrote last.
pub async fn export(
    client: &tokio_postgres::Client,
    store: &dyn ObjectStore,
    prefix: &str,
) -> Result<Manifest, BackupError> {
    let mut files = Vec::new();
    for (table, order) in TABLES {
        let file = format!("{table}.csv");
        let mut writer = store.put_writer(&key(prefix, &file)?, "text/csv").await?;
        let mut tally = Tally::new();
        if let Err(e) = copy_table_out(client, table, order, writer.as_mut(), &mut tally).await {
            writer.abort().await;
            return Err(e);
        }
        writer.finish().await?;
        let (rows, sha256) = tally.finish();
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

/// Streams one table file from the store into `COPY … FROM STDIN`, checking its checksum and
/// row count against the manifest before the copy is finished.
async fn copy_table_in(
    tx: &tokio_postgres::Transaction<'_>,
    store: &dyn ObjectStore,
    prefix: &str,
    f: &TableFile,
) -> Result<(), BackupError> {
    let mut chunks = store.get_stream(&key(prefix, &f.file)?).await?;
    let sink = tx
        .copy_in(&format!(
            "COPY {} FROM STDIN WITH (FORMAT csv, HEADER)",
            f.table
        ))
        .await?;
    pin_mut!(sink);
    let mut tally = Tally::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        tally.add(&chunk);
        sink.send(chunk).await?;
    }
    let (rows, sha256) = tally.finish();
    if sha256 != f.sha256 || rows != f.rows {
        // The copy is not finished: it and the transaction are abandoned.
        return Err(BackupError::Checksum {
            file: f.file.clone(),
        });
    }
    let copied = sink.finish().await?;
    if copied != f.rows {
        return Err(BackupError::Checksum {
            file: f.file.clone(),
        });
    }
    Ok(())
}

/// Restores an export into an empty database (as `leadfactory_restore`: COPY FROM refuses a
/// table under RLS to a role that does not bypass it); returns the manifest. Every table is
/// streamed in within one transaction, each file's checksum and row count checked as it
/// arrives: a file that does not match the manifest rolls everything back.
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
    let mut files = Vec::new();
    for (table, _) in TABLES {
        let n: i64 = client
            .query_one(&format!("SELECT count(*) AS n FROM {table}"), &[])
            .await?
            .get("n");
        if n > 0 {
            return Err(BackupError::NotEmpty((*table).to_owned()));
        }
        let f = manifest
            .tables
            .iter()
            .find(|f| f.table == *table)
            .ok_or_else(|| BackupError::Manifest(format!("{table} is missing")))?;
        files.push(f);
    }
    let tx = client.transaction().await?;
    tx.batch_execute("SET CONSTRAINTS ALL DEFERRED").await?;
    for f in files {
        copy_table_in(&tx, store, prefix, f).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rows_fed_in(csv: &[u8], chunk: usize) -> u64 {
        let mut c = RecordCounter::new();
        for part in csv.chunks(chunk.max(1)) {
            c.feed(part);
        }
        c.rows()
    }

    #[test]
    fn records_are_counted_across_chunk_boundaries_and_quoted_newlines() {
        let csv = b"id,notes\n1,plain\n2,\"two\nlines, and \"\"quotes\"\"\"\n3,\n";
        for chunk in [1, 2, 3, 7, 64, csv.len()] {
            assert_eq!(rows_fed_in(csv, chunk), 3, "chunks of {chunk}");
        }
    }

    #[test]
    fn a_last_record_without_a_newline_counts_and_a_header_alone_is_no_rows() {
        assert_eq!(rows_fed_in(b"id\n1\n2", 4), 2);
        assert_eq!(rows_fed_in(b"id,name\n", 3), 0);
        assert_eq!(rows_fed_in(b"", 3), 0);
    }

    #[test]
    fn a_field_longer_than_the_scratch_buffer_is_one_record() {
        let mut csv = b"id,body\n1,\"".to_vec();
        csv.extend(std::iter::repeat_n(b'x', 200_000));
        csv.extend_from_slice(b"\"\n2,y\n");
        assert_eq!(rows_fed_in(&csv, 50_000), 2);
    }
}
