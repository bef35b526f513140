//! Backups (`leadfactory export` / `restore`, the scheduled `backup` function): every table of
//! the schema (read from the catalog, so a table a migration adds is included) as CSV files
//! written by PostgreSQL's own `COPY` (exact text for every type), with a manifest of row
//! counts and SHA-256 sums. Exported as `leadfactory_backup` (BYPASSRLS: the owner is bound by forced RLS
//! and would read the tenants' tables empty), across tenants, ordered by primary key, so two
//! exports of the same data are byte-identical. Tables stream through in chunks both ways, so
//! memory stays bounded whatever their size. A restore into an empty, migrated database checks
//! the manifest, loads every table in one transaction (foreign keys in dependency order, read
//! from the catalog; the email ↔ purchase cycle deferred), checking each file as it arrives, and
//! moves every sequence past the restored ids.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt, pin_mut};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::{ObjectKey, ObjectStore, ObjectWriter};

/// A table as a backup sees it: its name and the columns its rows are exported in order of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub name: String,
    /// The primary key's columns, quoted; empty for a table without one (then the whole row).
    order: String,
}

/// Every table of the schema but the migrations' history, with its primary key.
const SCHEMA_TABLES: &str = "SELECT c.relname::text AS name,
        coalesce((SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.ord)
                  FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                  WHERE i.indrelid = c.oid AND i.indisprimary), '') AS key
 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relname <> $1
 ORDER BY c.relname";

/// Foreign keys a load must respect in order: the deferrable ones (the email ↔ purchase cycle)
/// are checked at commit instead.
const LOAD_ORDER_KEYS: &str = "SELECT c.conrelid::regclass::text AS child, c.confrelid::regclass::text AS parent
 FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
 WHERE c.contype = 'f' AND n.nspname = 'public' AND NOT c.condeferrable AND c.conrelid <> c.confrelid";

/// Columns filled from a sequence, which a restore moves past the restored values.
const SEQUENCE_COLUMNS: &str = "SELECT table_name::text AS t, column_name::text AS c
 FROM information_schema.columns
 WHERE table_schema = 'public' AND column_default LIKE 'nextval(%' AND table_name <> $1
 ORDER BY 1, 2";

/// Every table of the schema, in the order a restore loads them: each after the tables its
/// foreign keys point at (ties by name), so a table a migration adds is backed up without a
/// list to keep.
pub async fn tables(client: &tokio_postgres::Client) -> Result<Vec<Table>, BackupError> {
    let history = crate::db::MIGRATIONS_APPLIED_TABLE;
    let mut all: std::collections::BTreeMap<String, Table> = client
        .query(SCHEMA_TABLES, &[&history])
        .await?
        .iter()
        .map(|r| {
            let name: String = r.get("name");
            (
                name.clone(),
                Table {
                    name,
                    order: r.get("key"),
                },
            )
        })
        .collect();
    let mut parents: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> = all
        .keys()
        .map(|t| (t.clone(), Default::default()))
        .collect();
    for r in client.query(LOAD_ORDER_KEYS, &[]).await? {
        let (child, parent): (String, String) = (r.get("child"), r.get("parent"));
        if let Some(p) = parents.get_mut(&child) {
            p.insert(parent);
        }
    }
    let mut ordered = Vec::with_capacity(all.len());
    while !parents.is_empty() {
        let ready: Vec<String> = parents
            .iter()
            .filter(|(_, p)| p.iter().all(|p| !parents.contains_key(p)))
            .map(|(t, _)| t.clone())
            .collect();
        if ready.is_empty() {
            let stuck: Vec<&String> = parents.keys().collect();
            return Err(BackupError::Manifest(format!(
                "foreign keys that are not deferrable form a cycle among {stuck:?}"
            )));
        }
        for t in ready {
            parents.remove(&t);
            if let Some(table) = all.remove(&t) {
                ordered.push(table);
            }
        }
    }
    Ok(ordered)
}

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
    #[error("{table}: the database holds {found} rows, the manifest says {expected}")]
    Verify {
        table: String,
        expected: u64,
        found: u64,
    },
    #[error("{table}: restored and read back, it differs from the export")]
    Drill { table: String },
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
    mut writer: Option<&mut dyn ObjectWriter>,
    tally: &mut Tally,
) -> Result<(), BackupError> {
    let order = if order.is_empty() { "x" } else { order };
    let stream = client
        .copy_out(&format!(
            "COPY (SELECT * FROM {table} x ORDER BY {order}) TO STDOUT WITH (FORMAT csv, HEADER)"
        ))
        .await?;
    pin_mut!(stream);
    // COPY sends a message per row: rows are gathered into larger writes, so a table of ten
    // million rows is not ten million writes.
    let mut gathered = bytes::BytesMut::with_capacity(WRITE_CHUNK);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        tally.add(&chunk);
        gathered.extend_from_slice(&chunk);
        if gathered.len() >= WRITE_CHUNK {
            let full = gathered.split().freeze();
            if let Some(w) = writer.as_deref_mut() {
                w.write(full).await?;
            }
        }
    }
    if let (false, Some(w)) = (gathered.is_empty(), writer) {
        w.write(gathered.freeze()).await?;
    }
    Ok(())
}

/// How many bytes of rows an export hands the store at a time.
const WRITE_CHUNK: usize = 1024 * 1024;

/// Exports every table to `store` under `prefix`, each streamed from `COPY` to the store (a
/// multipart upload on S3) with its checksum and row count computed on the way: memory stays
/// bounded by one upload part whatever the tables hold. Returns the manifest it wrote last.
pub async fn export(
    client: &tokio_postgres::Client,
    store: &dyn ObjectStore,
    prefix: &str,
) -> Result<Manifest, BackupError> {
    // Every table from one snapshot: a backup taken while the nightly still writes holds no
    // email without its business, no purchase without its report.
    client
        .batch_execute("START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await?;
    let exported = export_in_snapshot(client, store, prefix).await;
    let ended = client
        .batch_execute(if exported.is_ok() {
            "COMMIT"
        } else {
            "ROLLBACK"
        })
        .await;
    let manifest = exported?;
    ended?;
    Ok(manifest)
}

async fn export_in_snapshot(
    client: &tokio_postgres::Client,
    store: &dyn ObjectStore,
    prefix: &str,
) -> Result<Manifest, BackupError> {
    let mut files = Vec::new();
    for t in tables(client).await? {
        let (table, order) = (t.name.as_str(), t.order.as_str());
        let file = format!("{table}.csv");
        let mut writer = store.put_writer(&key(prefix, &file)?, "text/csv").await?;
        let mut tally = Tally::new();
        if let Err(e) =
            copy_table_out(client, table, order, Some(writer.as_mut()), &mut tally).await
        {
            writer.abort().await;
            return Err(e);
        }
        writer.finish().await?;
        let (rows, sha256) = tally.finish();
        files.push(TableFile {
            table: table.to_owned(),
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

/// Checks a restored database against the manifest it was restored from: every table holds
/// the manifest's row count (each file's checksum and count were checked as it was loaded).
pub async fn verify(
    client: &tokio_postgres::Client,
    manifest: &Manifest,
) -> Result<(), BackupError> {
    for f in &manifest.tables {
        let found: i64 = client
            .query_one(&format!("SELECT count(*) AS n FROM {}", f.table), &[])
            .await?
            .get("n");
        if found as u64 != f.rows {
            return Err(BackupError::Verify {
                table: f.table.clone(),
                expected: f.rows,
                found: found as u64,
            });
        }
    }
    Ok(())
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

/// The manifest of the export under `prefix`.
pub async fn read_manifest(store: &dyn ObjectStore, prefix: &str) -> Result<Manifest, BackupError> {
    let raw = store.get(&key(prefix, "manifest.json")?).await?;
    serde_json::from_slice(&raw).map_err(|e| BackupError::Manifest(e.to_string()))
}

/// The database's tables in load order, each with its file in `manifest`: the export must be of
/// this schema version and hold exactly this database's tables.
async fn matched<'m>(
    client: &tokio_postgres::Client,
    manifest: &'m Manifest,
) -> Result<Vec<(Table, &'m TableFile)>, BackupError> {
    let database = schema_version(client).await?;
    if manifest.schema_version != database {
        return Err(BackupError::Schema {
            export: manifest.schema_version,
            database,
        });
    }
    let mut files = Vec::new();
    for t in tables(client).await? {
        let f = manifest
            .tables
            .iter()
            .find(|f| f.table == t.name)
            .ok_or_else(|| BackupError::Manifest(format!("{} is missing", t.name)))?;
        files.push((t, f));
    }
    if let Some(extra) = manifest
        .tables
        .iter()
        .find(|f| !files.iter().any(|(_, g)| g.table == f.table))
    {
        return Err(BackupError::Manifest(format!(
            "{} is not a table of this database",
            extra.table
        )));
    }
    Ok(files)
}

/// The newest export under `backups/` (by its day's name) that has a manifest.
pub async fn latest(store: &dyn ObjectStore, under: &str) -> Result<Option<String>, BackupError> {
    let keys = store.list(under).await?;
    Ok(keys
        .iter()
        .filter_map(|k| k.as_str().strip_suffix("manifest.json"))
        .max()
        .map(str::to_owned))
}

/// A restore drill of the export under `prefix`, in the database it was taken from (as
/// `leadfactory_backup`), changing nothing: in one transaction that is rolled back, every table
/// file is loaded into a temporary copy of its table (this session's, shadowing the real one),
/// its checksum and row count checked as it streams in, then read back out exactly as an
/// export writes it and hashed again. The same bytes for every table prove the files restore,
/// and restore exactly, without a second database; a difference fails naming the table. Needs
/// room for one temporary copy of the data.
pub async fn drill(
    client: &mut tokio_postgres::Client,
    store: &dyn ObjectStore,
    prefix: &str,
) -> Result<Manifest, BackupError> {
    let manifest = read_manifest(store, prefix).await?;
    let files = matched(client, &manifest).await?;
    let tx = client.transaction().await?;
    for (t, f) in files {
        let table = t.name.as_str();
        tx.batch_execute(&format!(
            "CREATE TEMPORARY TABLE {table} (LIKE public.{table}) ON COMMIT DROP"
        ))
        .await?;
        copy_table_in(&tx, store, prefix, f).await?;
        let mut tally = Tally::new();
        copy_table_out(tx.client(), table, &t.order, None, &mut tally).await?;
        let (rows, sha256) = tally.finish();
        if rows != f.rows || sha256 != f.sha256 {
            return Err(BackupError::Drill {
                table: table.to_owned(),
            });
        }
    }
    tx.rollback().await?;
    Ok(manifest)
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
    let manifest = read_manifest(store, prefix).await?;
    let files = matched(client, &manifest).await?;
    for (t, _) in &files {
        let table = t.name.as_str();
        let n: i64 = client
            .query_one(&format!("SELECT count(*) AS n FROM {table}"), &[])
            .await?
            .get("n");
        if n > 0 {
            return Err(BackupError::NotEmpty(table.to_owned()));
        }
    }
    let tx = client.transaction().await?;
    tx.batch_execute("SET CONSTRAINTS ALL DEFERRED").await?;
    for (_, f) in files {
        copy_table_in(&tx, store, prefix, f).await?;
    }
    let history = crate::db::MIGRATIONS_APPLIED_TABLE;
    for r in tx.query(SEQUENCE_COLUMNS, &[&history]).await? {
        let (table, col): (String, String) = (r.get("t"), r.get("c"));
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
