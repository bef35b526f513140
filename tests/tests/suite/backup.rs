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

/// `bytes` with the first timestamp of a data row written as `2026-12-03T19:00:00…` instead of
/// PostgreSQL's `2026-12-03 19:00:00…`: the same instant, different bytes.
fn respelled_timestamp(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
    let digits = |w: &[u8], r: std::ops::Range<usize>| w[r].iter().all(u8::is_ascii_digit);
    let at = (start..bytes.len() - 13)
        .find(|&i| {
            let w = &bytes[i..i + 13];
            digits(w, 0..4)
                && w[4] == b'-'
                && digits(w, 5..7)
                && w[7] == b'-'
                && digits(w, 8..10)
                && w[10] == b' '
                && digits(w, 11..13)
        })
        .expect("a timestamp in a data row");
    let mut out = bytes.to_vec();
    out[at + 10] = b'T';
    out
}

#[tokio::test]
async fn the_monthly_drill_restores_the_newest_backup_in_place_and_a_failure_is_a_critical_alert() {
    use sha2::Digest;
    let db = TestDb::new().await;
    let store_dir = tempfile::tempdir().unwrap();
    let p = testkit::local_pipeline(&db, store_dir.path(), |o| o.buy_share = 1.0).await;
    p.run(&NoProgress).await.unwrap();
    p.simulate_recipients(&NoProgress).await.unwrap();
    // The backup function as deployed: its own pool, as leadfactory_backup.
    let pool = db.pool_as("leadfactory_backup");
    let bucket = tempfile::tempdir().unwrap();
    let store = LocalStore::new(bucket.path());
    let older = chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    let newer = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
    ::backup::run(&pool, &store, older).await.unwrap();
    let written = ::backup::run(&pool, &store, newer).await.unwrap();
    let admin = db.admin().await;
    let emails = "SELECT count(*) AS n FROM emails";
    let before: i64 = admin.query_one(emails, &[]).await.unwrap().get("n");

    let report = ::backup::drill(&pool, &store).await.unwrap();
    assert!(report.passed, "{report:?}");
    assert_eq!(report.prefix.as_deref(), Some("backups/2026-12-01/"));
    assert_eq!((report.tables, report.rows), (written.tables, written.rows));
    let after: i64 = admin.query_one(emails, &[]).await.unwrap().get("n");
    assert_eq!(before, after, "the drill changed nothing");
    // Passed: the operator's alerts say nothing of it.
    let alerts = alerts::Alerts::new(
        p.deps.vendors.slack(&p.deps.policy).unwrap(),
        alerts::Thresholds::default(),
    );
    alerts.run(&p.deps, chrono::Utc::now()).await.unwrap();
    let drill_alerts = "SELECT severity, message FROM operator_alerts WHERE rule = 'restore_drill' ORDER BY sent_at";
    assert!(admin.query(drill_alerts, &[]).await.unwrap().is_empty());

    // A file whose bytes load but do not read back the same (its checksum made to match, as a
    // tool that rewrote the export would): the drill names the table, and alerts critically.
    let prefix = "backups/2026-12-01/";
    let key = |name: &str| ObjectKey::parse(&format!("{prefix}{name}")).unwrap();
    let original = store.get(&key("tenants.csv")).await.unwrap();
    let changed = respelled_timestamp(&original);
    store
        .put(&key("tenants.csv"), changed.clone().into(), "text/csv")
        .await
        .unwrap();
    let original_manifest = store.get(&key("manifest.json")).await.unwrap();
    let mut manifest: backup::Manifest = serde_json::from_slice(&original_manifest).unwrap();
    let entry = manifest
        .tables
        .iter_mut()
        .find(|t| t.table == "tenants")
        .unwrap();
    entry.sha256 = hex::encode(sha2::Sha256::digest(&changed));
    store
        .put(
            &key("manifest.json"),
            serde_json::to_vec(&manifest).unwrap().into(),
            "application/json",
        )
        .await
        .unwrap();
    let report = ::backup::drill(&pool, &store).await.unwrap();
    assert!(!report.passed);
    let failure = report.failure.unwrap();
    assert!(
        failure.contains("tenants") && failure.contains("differs"),
        "{failure}"
    );

    // A file changed without its checksum is refused as it streams in.
    store
        .put(&key("tenants.csv"), original, "text/csv")
        .await
        .unwrap();
    store
        .put(&key("manifest.json"), original_manifest, "application/json")
        .await
        .unwrap();
    store
        .put(
            &key("emails.csv"),
            b"id\nnot an email row\n".to_vec().into(),
            "text/csv",
        )
        .await
        .unwrap();
    let report = ::backup::drill(&pool, &store).await.unwrap();
    assert!(!report.passed);
    let failure = report.failure.unwrap();
    assert!(failure.contains("emails.csv"), "{failure}");

    alerts.run(&p.deps, chrono::Utc::now()).await.unwrap();
    let raised = admin.query(drill_alerts, &[]).await.unwrap();
    assert_eq!(raised.len(), 1, "one alert for the failing drill");
    assert_eq!(raised[0].get::<_, String>("severity"), "critical");
    let message: String = raised[0].get("message");
    assert!(
        message.contains("backups/2026-12-01/") && message.contains("emails.csv"),
        "{message}"
    );
    let recorded: i64 = admin
        .query_one("SELECT count(*) AS n FROM backup_drills", &[])
        .await
        .unwrap()
        .get("n");
    assert_eq!(recorded, 3);
}
