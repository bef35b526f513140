//! Export → restore round trip on real PostgreSQL, as the operators' roles docs/deploy.md
//! creates (never the superuser): a full local funnel exported (to a directory and to S3 on
//! moto), restored into an empty database and exported again gives byte-identical files; a
//! tampered file, a non-empty target and a schema mismatch are refused. (The cloud stand-in's
//! database, owned by a non-superuser owner as on RDS, shows why the roles exist: see cloud.rs.)

use leadfactory_cli::local::NoProgress;
use shared::backup;
use shared::store::{LocalStore, ObjectKey, ObjectStore, S3Store};
use testkit::TestDb;

/// The operators' roles as docs/deploy.md creates them (BYPASSRLS, no superuser): exports and
/// inspection read as `leadfactory_backup`, restores load as `leadfactory_restore`.
async fn reader(db: &TestDb) -> tokio_postgres::Client {
    db.connect_as("leadfactory_backup").await
}

async fn restorer(db: &TestDb) -> tokio_postgres::Client {
    db.connect_as("leadfactory_restore").await
}

/// Every file an export under `prefix` wrote, the manifest's list first.
async fn files(store: &dyn ObjectStore, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let manifest = ObjectKey::parse(&format!("{prefix}manifest.json")).unwrap();
    let m: backup::Manifest = serde_json::from_slice(&store.get(&manifest).await.unwrap()).unwrap();
    let mut out = Vec::new();
    for t in &m.tables {
        let k = ObjectKey::parse(&format!("{prefix}{}", t.file)).unwrap();
        out.push((t.table.clone(), store.get(&k).await.unwrap().to_vec()));
    }
    out
}

#[tokio::test]
async fn an_export_restores_exactly_and_tampering_is_refused() {
    let db = TestDb::new().await;
    let store_dir = tempfile::tempdir().unwrap();
    let p = testkit::local_pipeline(&db, store_dir.path(), |o| o.buy_share = 1.0).await;
    p.run(&NoProgress).await.unwrap();
    p.simulate_recipients(&NoProgress).await.unwrap();
    ops_api::keys::create(&p.deps.pool, p.tenant, "k")
        .await
        .unwrap();

    let out = tempfile::tempdir().unwrap();
    let local = LocalStore::new(out.path());
    let m = backup::export(&reader(&db).await, &local, "")
        .await
        .unwrap();
    let rows = |t: &str| m.tables.iter().find(|f| f.table == t).unwrap().rows;
    for t in [
        "tenants",
        "campaigns",
        "emails",
        "email_events",
        "purchases",
        "cost_ledger",
        "suppressions",
        "api_keys",
    ] {
        assert!(rows(t) > 0, "{t} is empty in the export");
    }
    // Every table of the schema is in it, each after the tables it points at.
    let schema: Vec<String> = db
        .admin()
        .await
        .query(
            "SELECT table_name::text AS t FROM information_schema.tables
             WHERE table_schema = 'public' AND table_type = 'BASE TABLE' AND table_name <> $1 ORDER BY 1",
            &[&shared::db::MIGRATIONS_APPLIED_TABLE],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("t"))
        .collect();
    let mut exported: Vec<String> = m.tables.iter().map(|t| t.table.clone()).collect();
    let position = |t: &str| exported.iter().position(|e| e == t).unwrap();
    assert!(position("tenants") < position("campaigns"));
    assert!(position("businesses") < position("assessments"));
    assert!(position("runs") < position("run_work"));
    exported.sort();
    assert_eq!(exported, schema, "every table, and only tables");
    let original = files(&local, "").await;

    // Into an empty database: the same bytes come out again.
    let fresh = TestDb::new().await;
    let restored = backup::restore(&mut restorer(&fresh).await, &local, "")
        .await
        .unwrap();
    assert_eq!(restored, m);
    let again = tempfile::tempdir().unwrap();
    let local2 = LocalStore::new(again.path());
    backup::export(&reader(&fresh).await, &local2, "")
        .await
        .unwrap();
    assert_eq!(
        files(&local2, "").await,
        original,
        "restore then export is exact"
    );
    // New ids continue past the restored ones.
    let admin = fresh.admin().await;
    let max: i64 = admin
        .query_one("SELECT max(id) FROM cost_ledger", &[])
        .await
        .unwrap()
        .get(0);
    let next: i64 = admin
        .query_one("INSERT INTO cost_ledger (tenant_id, vendor, endpoint) SELECT id, 'x', 'y' FROM tenants LIMIT 1 RETURNING id", &[])
        .await
        .unwrap()
        .get(0);
    assert!(next > max);

    // Restoring over data is refused; so is a tampered file.
    let e = backup::restore(&mut restorer(&fresh).await, &local, "")
        .await
        .unwrap_err();
    assert!(matches!(e, backup::BackupError::NotEmpty(_)), "{e}");
    let empty = TestDb::new().await;
    let emails = ObjectKey::parse("emails.csv").unwrap();
    let mut bytes = local.get(&emails).await.unwrap().to_vec();
    bytes.extend_from_slice(b"\n");
    local.put(&emails, bytes.into(), "text/csv").await.unwrap();
    let e = backup::restore(&mut restorer(&empty).await, &local, "")
        .await
        .unwrap_err();
    assert!(matches!(e, backup::BackupError::Checksum { .. }), "{e}");
    let n: i64 = reader(&empty)
        .await
        .query_one("SELECT count(*) FROM tenants", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "nothing written");
}

#[tokio::test]
async fn an_export_to_s3_restores_from_s3() {
    let db = TestDb::new().await;
    let store_dir = tempfile::tempdir().unwrap();
    let p = testkit::local_pipeline(&db, store_dir.path(), |_| {}).await;
    p.run(&NoProgress).await.unwrap();
    let sdk = testkit::moto_sdk_config().await;
    let bucket = testkit::unique_name("lf-backup");
    aws_sdk_s3::Client::new(&sdk)
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let s3 = S3Store::from_sdk_config(&sdk, &bucket);
    let m = backup::export(&reader(&db).await, &s3, "backups/2026-11-25")
        .await
        .unwrap();
    let fresh = TestDb::new().await;
    backup::restore(&mut restorer(&fresh).await, &s3, "backups/2026-11-25")
        .await
        .unwrap();
    let businesses: i64 = reader(&fresh)
        .await
        .query_one("SELECT count(*) FROM businesses", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        businesses as u64,
        m.tables
            .iter()
            .find(|t| t.table == "businesses")
            .unwrap()
            .rows
    );
    assert_eq!(files(&s3, "backups/2026-11-25/").await, {
        let d = tempfile::tempdir().unwrap();
        let l = LocalStore::new(d.path());
        backup::export(&reader(&fresh).await, &l, "").await.unwrap();
        files(&l, "").await
    });
}

/// A store that runs `hook` once, when the export opens its first file.
struct HookedStore {
    inner: LocalStore,
    hook: tokio::sync::Mutex<Option<futures_util::future::BoxFuture<'static, ()>>>,
}

#[async_trait::async_trait]
impl ObjectStore for HookedStore {
    async fn put(
        &self,
        key: &ObjectKey,
        body: bytes::Bytes,
        content_type: &str,
    ) -> Result<(), shared::store::StoreError> {
        self.inner.put(key, body, content_type).await
    }
    async fn get(&self, key: &ObjectKey) -> Result<bytes::Bytes, shared::store::StoreError> {
        self.inner.get(key).await
    }
    async fn delete(&self, key: &ObjectKey) -> Result<(), shared::store::StoreError> {
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectKey>, shared::store::StoreError> {
        self.inner.list(prefix).await
    }
    async fn presign_get(
        &self,
        key: &ObjectKey,
        ttl: std::time::Duration,
    ) -> Result<String, shared::store::StoreError> {
        self.inner.presign_get(key, ttl).await
    }
    async fn get_stream(
        &self,
        key: &ObjectKey,
    ) -> Result<shared::store::Chunks, shared::store::StoreError> {
        self.inner.get_stream(key).await
    }
    async fn put_writer(
        &self,
        key: &ObjectKey,
        content_type: &str,
    ) -> Result<Box<dyn shared::store::ObjectWriter>, shared::store::StoreError> {
        if let Some(hook) = self.hook.lock().await.take() {
            hook.await;
        }
        self.inner.put_writer(key, content_type).await
    }
}

#[tokio::test]
async fn an_export_reads_every_table_from_one_snapshot_while_others_write() {
    let db = TestDb::new().await;
    let store_dir = tempfile::tempdir().unwrap();
    let p = testkit::local_pipeline(&db, store_dir.path(), |_| {}).await;
    p.run(&NoProgress).await.unwrap();
    let tenant = p.tenant.as_uuid();
    // While the first table is being written, another connection commits a suppression — a
    // row of a table the export reaches later.
    let writer = db.admin().await;
    let out = tempfile::tempdir().unwrap();
    let store = HookedStore {
        inner: LocalStore::new(out.path()),
        hook: tokio::sync::Mutex::new(Some(Box::pin(async move {
            writer
                .execute(
                    "INSERT INTO suppressions (tenant_id, kind, value, reason, source) VALUES ($1, 'email', 'late@example.com', 'unsubscribe', 'test')",
                    &[&tenant],
                )
                .await
                .unwrap();
        }))),
    };
    let m = backup::export(&reader(&db).await, &store, "")
        .await
        .unwrap();
    let suppressions = String::from_utf8(
        store
            .get(&ObjectKey::parse("suppressions.csv").unwrap())
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(
        !suppressions.contains("late@example.com"),
        "a row committed after the export began is not in it"
    );
    assert!(
        m.tables
            .iter()
            .position(|t| t.table == "suppressions")
            .unwrap()
            > 0
    );
    // The next export has it.
    let again = tempfile::tempdir().unwrap();
    let local = LocalStore::new(again.path());
    backup::export(&reader(&db).await, &local, "")
        .await
        .unwrap();
    let later = local
        .get(&ObjectKey::parse("suppressions.csv").unwrap())
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&later).contains("late@example.com"));
}
