//! The schema against a real PostgreSQL server: migrations, row-level security, constraints.

use shared::db::{self, PipelinedTx, Tx, begin_tenant, cached};
use shared::domain::TenantId;
use testkit::TestDb;
use tokio_postgres::error::SqlState;

async fn seed_tenant(admin: &tokio_postgres::Client, name: &str) -> TenantId {
    let t = TenantId::new();
    admin
        .execute(
            "INSERT INTO tenants (id, name) VALUES ($1, $2)",
            &[&t.as_uuid(), &name],
        )
        .await
        .unwrap();
    t
}

async fn seed_campaign_and_business(
    admin: &tokio_postgres::Client,
    t: TenantId,
) -> (uuid::Uuid, uuid::Uuid) {
    let c = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    admin
        .execute(
            "INSERT INTO campaigns (id, tenant_id, name, vertical, zip_codes, daily_quota, sender_email, sender_name, postal_address)
             VALUES ($1, $2, 'spring', 'restaurants', '{95113}', 50, 'a@agency.example', 'Ann', '1 Main St, San Jose, CA')",
            &[&c, &t.as_uuid()],
        )
        .await
        .unwrap();
    admin
        .execute(
            "INSERT INTO businesses (id, tenant_id, name, name_norm) VALUES ($1, $2, 'Joe''s Pizza', 'joes pizza')",
            &[&b, &t.as_uuid()],
        )
        .await
        .unwrap();
    (c, b)
}

/// The tenant the connection is scoped to ("" outside a tenant transaction).
async fn tenant_setting(client: &tokio_postgres::Client) -> String {
    client
        .query_one(
            "SELECT coalesce(current_setting('app.tenant_id', true), '')",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// Agencies A and B, each with one business: (A, B, A's business, B's business).
async fn two_tenants_with_a_business_each(
    admin: &tokio_postgres::Client,
) -> (TenantId, TenantId, uuid::Uuid, uuid::Uuid) {
    let a = seed_tenant(admin, "Agency A").await;
    let b = seed_tenant(admin, "Agency B").await;
    let (_, business_a) = seed_campaign_and_business(admin, a).await;
    let (_, business_b) = seed_campaign_and_business(admin, b).await;
    (a, b, business_a, business_b)
}

#[tokio::test]
async fn migrations_apply_to_an_empty_database_and_rerun_as_a_no_op() {
    let test = TestDb::new().await; // already migrated from the template
    let mut admin = test.admin().await;
    let applied_again = db::migrate(&mut admin).await.unwrap();
    assert!(
        applied_again.is_empty(),
        "second run applied {applied_again:?}"
    );

    // A truly empty database: every migration applies, then a re-run applies nothing.
    admin
        .batch_execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        .await
        .unwrap();
    let first = db::migrate(&mut admin).await.unwrap();
    // Every file in migrations/, in order.
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".sql"))
        })
        .count() as i32;
    assert_eq!(first, (1..=files).collect::<Vec<i32>>());
    assert!(db::migrate(&mut admin).await.unwrap().is_empty());

    let tables: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = ANY($1)",
            &[&vec![
                "tenants",
                "api_keys",
                "campaigns",
                "businesses",
                "enrichments",
                "assessments",
                "llm_logs",
                "scores",
                "reports",
                "experiments",
                "experiment_variants",
                "experiment_assignments",
                "emails",
                "email_events",
                "suppressions",
                "purchases",
                "stripe_events",
                "processed_messages",
                "cost_ledger",
                "budgets",
                "runs",
                "run_stage_stats",
                "run_vendor_usage",
                "run_event_logs",
                "qa_samples",
                "sent_alerts",
            ]],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 26);
}

#[tokio::test]
async fn every_tenant_owned_table_has_forced_rls_with_a_policy() {
    let test = TestDb::new().await;
    let admin = test.admin().await;
    let rows = admin
        .query(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
                    EXISTS (SELECT 1 FROM pg_policies p WHERE p.tablename = c.relname)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN information_schema.columns col ON col.table_name = c.relname AND col.column_name = 'tenant_id'
             WHERE n.nspname = 'public' AND c.relkind = 'r'",
            &[],
        )
        .await
        .unwrap();
    assert!(rows.len() >= 25, "only {} tenant-owned tables", rows.len());
    for r in rows {
        let (name, enabled, forced, policy): (String, bool, bool, bool) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        assert!(
            enabled && forced && policy,
            "{name}: rls={enabled} forced={forced} policy={policy}"
        );
    }
}

#[tokio::test]
async fn rls_isolates_tenants_for_the_application_role() {
    let test = TestDb::new().await;
    let admin = test.admin().await;
    let (a, b, business_a, business_b) = two_tenants_with_a_business_each(&admin).await;

    let pool = test.app_pool();
    let mut client = pool.get().await.unwrap();

    // Tenant A sees exactly its own business.
    let tx = begin_tenant(&mut client, a).await.unwrap();
    let seen: Vec<uuid::Uuid> = tx
        .query("SELECT id FROM businesses", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(seen, vec![business_a]);

    // ...cannot update B's row (0 rows affected)...
    let updated = tx
        .execute(
            "UPDATE businesses SET name = 'pwned' WHERE id = $1",
            &[&business_b],
        )
        .await
        .unwrap();
    assert_eq!(updated, 0);
    // ...nor delete it...
    assert_eq!(
        tx.execute("DELETE FROM businesses WHERE id = $1", &[&business_b])
            .await
            .unwrap(),
        0
    );
    // ...nor insert a row for B.
    let err = tx
        .execute(
            "INSERT INTO businesses (id, tenant_id, name, name_norm) VALUES ($1, $2, 'x', 'x')",
            &[&uuid::Uuid::new_v4(), &b.as_uuid()],
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    tx.rollback().await.unwrap();

    // Without a tenant set, nothing is visible, and a pooled connection carries no tenant over.
    let tx = client.transaction().await.unwrap();
    let n: i64 = tx
        .query_one("SELECT count(*) FROM businesses", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    let n: i64 = tx
        .query_one("SELECT count(*) FROM tenants", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    tx.commit().await.unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM campaigns", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);

    // B's row is untouched.
    let name: String = admin
        .query_one("SELECT name FROM businesses WHERE id = $1", &[&business_b])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "Joe's Pizza");
}

#[tokio::test]
async fn execute_alone_is_tenant_scoped_commits_and_rolls_back_a_failure() {
    let test = TestDb::new().await;
    let admin = test.admin().await;
    let (a, _, business_a, business_b) = two_tenants_with_a_business_each(&admin).await;
    let pool = test.app_pool();
    let client = pool.get().await.unwrap();
    let rename = "UPDATE businesses SET name = $2 WHERE id = ANY($1)";

    // Scoped to A: A's row changes and is committed; B's is invisible to it.
    let n = db::execute_alone(&client, a, rename, &[&vec![business_a, business_b], &"A2"])
        .await
        .unwrap();
    assert_eq!(n, 1);
    let names: Vec<String> = admin
        .query(
            "SELECT name FROM businesses WHERE id = ANY($1) ORDER BY name",
            &[&vec![business_a, business_b]],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names, ["A2", "Joe's Pizza"]);

    // A failing statement (name is NOT NULL) is an error, changes nothing, and leaves the
    // connection idle rather than inside an aborted transaction.
    let none: Option<&str> = None;
    let err = db::execute_alone(&client, a, rename, &[&vec![business_a], &none])
        .await
        .unwrap_err();
    assert_eq!(err.sqlstate(), Some(&SqlState::NOT_NULL_VIOLATION), "{err}");
    let name: String = admin
        .query_one("SELECT name FROM businesses WHERE id = $1", &[&business_a])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "A2");
    assert_eq!(
        tenant_setting(&client).await,
        "",
        "the tenant setting outlived its transaction"
    );
    let n: i64 = client
        .query_one("SELECT count(*) FROM businesses", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "a statement after it ran inside the old transaction");
}

const ADD_BUSINESS: &str =
    "INSERT INTO businesses (id, tenant_id, name, name_norm) VALUES ($1, $2, $3, lower($3))";

async fn business_names(admin: &tokio_postgres::Client, t: TenantId) -> Vec<String> {
    admin
        .query(
            "SELECT name FROM businesses WHERE tenant_id = $1 ORDER BY name",
            &[&t.as_uuid()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn add_business(tx: &dyn Tx, t: TenantId, name: &str) -> Result<u64, db::DbError> {
    cached::execute(
        tx,
        ADD_BUSINESS,
        &[&uuid::Uuid::new_v4(), &t.as_uuid(), &name],
    )
    .await
}

#[tokio::test]
async fn a_pipelined_transaction_costs_no_round_trip_of_its_own_and_stays_one_transaction() {
    let test = TestDb::new().await;
    let admin = test.admin().await;
    let t = seed_tenant(&admin, "Agency").await;
    let relay = testkit::round_trips::Relay::start(test.addr()).unwrap();
    let pool = test.app_pool_through(&relay, 1);
    let count = "SELECT count(*) FROM businesses";
    // On a new connection nothing is prepared yet: the commit must wait for both statements'
    // prepares and still follow them, so both rows belong to one transaction.
    let tx = PipelinedTx::begin(pool.get().await.unwrap(), t);
    let seen = cached::query_one(&tx, count, &[]).await.unwrap();
    assert_eq!(seen.get::<_, i64>(0), 0);
    let ((a, b), committed) = tx
        .commit_after(futures_util::future::join(
            add_business(&tx, t, "A"),
            add_business(&tx, t, "B"),
        ))
        .await;
    assert_eq!((a.unwrap(), b.unwrap()), (1, 1));
    committed.unwrap();
    let client = tx.release().unwrap();
    let xmins: i64 = admin
        .query_one(
            "SELECT count(DISTINCT xmin::text) FROM businesses WHERE tenant_id = $1",
            &[&t.as_uuid()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        xmins, 1,
        "the two rows were written by different transactions"
    );

    // Warm (statements prepared): a read with the start, then two writes with the commit —
    // two round trips in all, where BEGIN, SET LOCAL and COMMIT would each cost one more.
    let before = relay.turns();
    let tx = PipelinedTx::begin(client, t);
    let seen = cached::query_one(&tx, count, &[]).await.unwrap();
    assert_eq!(
        seen.get::<_, i64>(0),
        2,
        "the read did not run as the tenant"
    );
    let ((c, d), committed) = tx
        .commit_after(futures_util::future::join(
            add_business(&tx, t, "C"),
            add_business(&tx, t, "D"),
        ))
        .await;
    assert_eq!((c.unwrap(), d.unwrap()), (1, 1));
    committed.unwrap();
    assert_eq!(relay.turns() - before, 2);
    let client = tx.release().unwrap();
    assert_eq!(business_names(&admin, t).await, ["A", "B", "C", "D"]);

    // The connection went back idle: no transaction, no tenant.
    assert_eq!(tenant_setting(&client).await, "");
}

#[tokio::test]
async fn a_pipelined_commit_becomes_a_rollback_when_any_statement_fails() {
    let test = TestDb::new().await;
    let admin = test.admin().await;
    let t = seed_tenant(&admin, "Agency").await;
    let pool = test.app_pool();

    // A parameter of the wrong type fails before its statement is sent; the statement beside it
    // succeeds, and the commit sent after both must not keep it.
    let tx = PipelinedTx::begin(pool.get().await.unwrap(), t);
    let ((ok, bad), committed) = tx
        .commit_after(futures_util::future::join(
            add_business(&tx, t, "Kept?"),
            cached::execute(&tx, ADD_BUSINESS, &[&"not a uuid", &t.as_uuid(), &"Bad"]),
        ))
        .await;
    assert_eq!(ok.unwrap(), 1);
    assert!(bad.is_err());
    assert!(
        matches!(committed, Err(db::DbError::RolledBack)),
        "{committed:?}"
    );
    let client = tx.release().unwrap();
    assert!(business_names(&admin, t).await.is_empty());

    // A statement the server refuses (name is NOT NULL) rolls back its neighbour too.
    let none: Option<&str> = None;
    let tx = PipelinedTx::begin(client, t);
    let ((ok, bad), committed) = tx
        .commit_after(futures_util::future::join(
            add_business(&tx, t, "Kept?"),
            cached::execute(
                &tx,
                ADD_BUSINESS,
                &[&uuid::Uuid::new_v4(), &t.as_uuid(), &none],
            ),
        ))
        .await;
    assert_eq!(ok.unwrap(), 1);
    assert_eq!(
        bad.unwrap_err().sqlstate(),
        Some(&SqlState::NOT_NULL_VIOLATION)
    );
    assert!(
        matches!(committed, Err(db::DbError::RolledBack)),
        "{committed:?}"
    );
    drop(tx.release().unwrap());
    assert!(business_names(&admin, t).await.is_empty());
}

#[tokio::test]
async fn a_statement_started_after_a_pipelined_commit_is_refused_not_run_outside() {
    let test = TestDb::new().await;
    let admin = test.admin().await;
    let t = seed_tenant(&admin, "Agency").await;
    let pool = test.app_pool();
    let tx = PipelinedTx::begin(pool.get().await.unwrap(), t);
    let (second, committed) = tx
        .commit_after(async {
            add_business(&tx, t, "First").await?;
            add_business(&tx, t, "Second").await
        })
        .await;
    assert!(
        matches!(second, Err(db::DbError::AfterCommit)),
        "{second:?}"
    );
    committed.unwrap();
    drop(tx.release().unwrap());
    assert_eq!(business_names(&admin, t).await, ["First"]);
}

#[tokio::test]
async fn a_pipelined_transaction_dropped_open_takes_its_connection_with_it() {
    let test = TestDb::new().await;
    let admin = test.admin().await;
    let t = seed_tenant(&admin, "Agency").await;
    let pool = test.app_pool();
    let tx = PipelinedTx::begin(pool.get().await.unwrap(), t);
    add_business(&tx, t, "Never").await.unwrap();
    let pid: i32 = cached::query_one(&tx, "SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(matches!(tx.release(), Err(db::DbError::TransactionOpen)));

    // The next user gets a new connection, outside any transaction and tenant; the server
    // rolled the old one back.
    let client = pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT pg_backend_pid(), coalesce(current_setting('app.tenant_id', true), '')",
            &[],
        )
        .await
        .unwrap();
    assert_ne!(row.get::<_, i32>(0), pid);
    assert_eq!(row.get::<_, String>(1), "");
    assert!(business_names(&admin, t).await.is_empty());

    // A transaction that never ran a statement sent nothing and hands its connection back.
    let tx = PipelinedTx::begin(client, t);
    tx.commit().await.unwrap();
    drop(tx.release().unwrap());
}

#[tokio::test]
async fn the_application_role_neither_owns_tables_nor_bypasses_rls() {
    let test = TestDb::new().await;
    let pool = test.app_pool();
    let client = pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .unwrap();
    assert!(!row.get::<_, bool>(0) && !row.get::<_, bool>(1));
    let owned: i64 = client
        .query_one("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner = current_user", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(owned, 0);
}

#[tokio::test]
async fn api_key_lookup_works_before_a_tenant_is_known() {
    let test = TestDb::new().await;
    let admin = test.admin().await;
    let t = seed_tenant(&admin, "A").await;
    admin
        .execute(
            "INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash) VALUES ($1, $2, 'ops', 'lf_abc', $3)",
            &[&uuid::Uuid::new_v4(), &t.as_uuid(), &vec![7u8; 32]],
        )
        .await
        .unwrap();
    let pool = test.app_pool();
    let client = pool.get().await.unwrap();
    let direct: i64 = client
        .query_one("SELECT count(*) FROM api_keys", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(direct, 0, "RLS hides keys from the app role");
    let row = client
        .query_one("SELECT tenant_id FROM api_key_lookup('lf_abc')", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, uuid::Uuid>(0), t.as_uuid());
    assert!(
        client
            .query_opt("SELECT tenant_id FROM api_key_lookup('nope')", &[])
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn constraints_reject_bad_rows() {
    let test = TestDb::new().await;
    let admin = test.admin().await;
    let t = seed_tenant(&admin, "A").await;
    let (campaign, business) = seed_campaign_and_business(&admin, t).await;
    let insert_email =
        "INSERT INTO emails (id, tenant_id, campaign_id, business_id, to_email, subject)
                        VALUES ($1, $2, $3, $4, 'owner@joes.example', 'Your website')";
    admin
        .execute(
            insert_email,
            &[&uuid::Uuid::new_v4(), &t.as_uuid(), &campaign, &business],
        )
        .await
        .unwrap();
    let dup = admin
        .execute(
            insert_email,
            &[&uuid::Uuid::new_v4(), &t.as_uuid(), &campaign, &business],
        )
        .await
        .unwrap_err();
    assert_eq!(
        dup.code(),
        Some(&SqlState::UNIQUE_VIOLATION),
        "second email to one business in one campaign"
    );

    let insert_event = "INSERT INTO email_events (tenant_id, sg_event_id, event, occurred_at, raw)
                        VALUES ($1, 'evt-1', 'delivered', now(), '{}')";
    admin.execute(insert_event, &[&t.as_uuid()]).await.unwrap();
    let dup = admin
        .execute(insert_event, &[&t.as_uuid()])
        .await
        .unwrap_err();
    assert_eq!(
        dup.code(),
        Some(&SqlState::UNIQUE_VIOLATION),
        "duplicate sg_event_id"
    );

    let report = uuid::Uuid::new_v4();
    admin
        .execute(
            "INSERT INTO reports (id, tenant_id, business_id, token, preview_key, full_key, pages, bytes, price_cents)
             VALUES ($1, $2, $3, repeat('t', 40), 'p', 'f', 6, 1000, 4900)",
            &[&report, &t.as_uuid(), &business],
        )
        .await
        .unwrap();
    let negative = admin
        .execute(
            "INSERT INTO purchases (id, tenant_id, report_id, business_id, stripe_session_id, amount_cents)
             VALUES ($1, $2, $3, $4, 'cs_test_1', -100)",
            &[&uuid::Uuid::new_v4(), &t.as_uuid(), &report, &business],
        )
        .await
        .unwrap_err();
    assert_eq!(
        negative.code(),
        Some(&SqlState::CHECK_VIOLATION),
        "negative money"
    );

    for (sql, what) in [
        (
            "INSERT INTO scores (id, tenant_id, business_id, score, tier, rules_version, breakdown, qualified) VALUES (gen_random_uuid(), $1, $2, 101, 'A', 'v1', '{}', true)",
            "score over 100",
        ),
        (
            "INSERT INTO scores (id, tenant_id, business_id, score, tier, rules_version, breakdown, qualified) VALUES (gen_random_uuid(), $1, $2, 50, 'E', 'v1', '{}', true)",
            "tier E",
        ),
        (
            "INSERT INTO suppressions (tenant_id, kind, value, reason) VALUES ($1, 'email', 'Upper@Case.com', 'manual') RETURNING $2::uuid",
            "unnormalised suppression",
        ),
        (
            "UPDATE businesses SET phone_e164 = '408-298-4008' WHERE tenant_id = $1 AND id = $2",
            "phone not E.164",
        ),
    ] {
        let err = admin
            .execute(sql, &[&t.as_uuid(), &business])
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Some(&SqlState::CHECK_VIOLATION),
            "{what}: {err}"
        );
    }

    // The budget gate's invariant lives in the database too.
    admin
        .execute("INSERT INTO budgets (tenant_id, vendor_class, day, limit_micros) VALUES ($1, 'llm', current_date, 1000)", &[&t.as_uuid()])
        .await
        .unwrap();
    let over = admin
        .execute(
            "UPDATE budgets SET reserved_micros = 1001 WHERE tenant_id = $1",
            &[&t.as_uuid()],
        )
        .await
        .unwrap_err();
    assert_eq!(over.code(), Some(&SqlState::CHECK_VIOLATION));
}

/// The migration files in order, by version.
fn migration_files() -> Vec<(i32, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations");
    let mut files: Vec<(i32, String)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            let version = name.strip_prefix('V')?.split("__").next()?.parse().ok()?;
            Some((
                version,
                std::fs::read_to_string(format!("{dir}/{name}")).ok()?,
            ))
        })
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn outreach_already_doubled_on_one_inbox_migrates_to_one_per_inbox() {
    let test = TestDb::new().await;
    let admin = test.admin().await;
    admin
        .batch_execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        .await
        .unwrap();
    let files = migration_files();
    for (_, sql) in files.iter().filter(|(v, _)| *v < 12) {
        admin.batch_execute(sql).await.unwrap();
    }
    let t = seed_tenant(&admin, "Agency").await;
    let (c, b1) = seed_campaign_and_business(&admin, t).await;
    let mut businesses = vec![b1];
    for _ in 0..4 {
        let b = uuid::Uuid::new_v4();
        admin
            .execute(
                "INSERT INTO businesses (id, tenant_id, name, name_norm) VALUES ($1, $2, 'Branch', 'branch')",
                &[&b, &t.as_uuid()],
            )
            .await
            .unwrap();
        businesses.push(b);
    }
    // Two inboxes written to twice or more before the rule: one sent twice and queued once, one
    // queued twice.
    for (i, (b, to, state)) in [
        (0, "info@joes.example", "sent"),
        (1, "INFO@joes.example", "sent"),
        (2, "info@joes.example", "queued"),
        (3, "hello@other.example", "queued"),
        (4, "Hello@other.example", "queued"),
    ]
    .into_iter()
    .enumerate()
    {
        admin
            .execute(
                "INSERT INTO emails (id, tenant_id, campaign_id, business_id, to_email, subject, send_state, created_at)
                 VALUES (gen_random_uuid(), $1, $2, $3, $4, 's', $5, now() - make_interval(mins => 10 - $6))",
                &[&t.as_uuid(), &c, &businesses[b], &to, &state, &(i as i32)],
            )
            .await
            .unwrap();
    }
    let v12 = &files.iter().find(|(v, _)| *v == 12).unwrap().1;
    admin.batch_execute(v12).await.unwrap();
    let states: Vec<(String, String, bool)> = admin
        .query(
            "SELECT to_email, send_state, duplicate_inbox FROM emails ORDER BY created_at",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let s = |to: &str, state: &str, dup| (to.to_owned(), state.to_owned(), dup);
    assert_eq!(
        states,
        vec![
            s("info@joes.example", "sent", false),
            s("INFO@joes.example", "sent", true),
            s("info@joes.example", "cancelled", false),
            s("hello@other.example", "queued", false),
            s("Hello@other.example", "cancelled", false),
        ]
    );
    // From now on the database refuses a second outreach to an inbox of the campaign.
    let again = admin
        .execute(
            "INSERT INTO emails (id, tenant_id, campaign_id, business_id, to_email, subject)
             VALUES (gen_random_uuid(), $1, $2, $3, 'HELLO@other.example', 's')",
            &[&t.as_uuid(), &c, &businesses[2]],
        )
        .await
        .unwrap_err();
    assert_eq!(again.code(), Some(&SqlState::UNIQUE_VIOLATION));
}

#[tokio::test]
async fn every_definer_function_is_closed_to_public_and_puts_pg_temp_last() {
    let test = TestDb::new().await;
    let admin = test.admin().await;
    let open: Vec<(String, Option<Vec<String>>, bool)> = admin
        .query(
            "SELECT p.proname, p.proconfig,
                    p.proacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a
                                                WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE') AS public_may_run
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = 'public' AND p.prosecdef ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert!(open.len() >= 6, "the definer functions: {open:?}");
    for (name, config, public_may_run) in &open {
        let path = config
            .iter()
            .flatten()
            .find_map(|c| c.strip_prefix("search_path="))
            .unwrap_or("");
        assert!(
            path.replace(' ', "").ends_with(",pg_temp"),
            "{name}: search_path {path:?} must end with pg_temp"
        );
        assert!(!public_may_run, "{name}: PUBLIC may execute it");
    }
}

/// A role's secret as the template makes it: generated (username, password) and attached to the
/// instance (host, port as a number, dbname, engine).
fn rds_secret(user: &str, port: u16, database: &str) -> serde_json::Value {
    serde_json::json!({
        "username": user,
        "password": uuid::Uuid::new_v4().simple().to_string(),
        "engine": "postgres",
        "host": "127.0.0.1",
        "port": port,
        "dbname": database,
        // The test server speaks no TLS; RDS's proxy requires it (the default).
        "sslmode": "disable",
    })
}

#[tokio::test]
async fn the_templates_database_is_provisioned_from_its_generated_secrets_and_reprovisioning_changes_nothing()
 {
    use leadfactory_cli::provision::{
        APP_LOGIN, BACKUP_ROLE, LOGIN_ROLES, OWNER_ROLE, RESTORE_ROLE,
    };
    let server = TestDb::new().await;
    let port = server.addr().port();
    let database = format!("lf_provisioned_{}", uuid::Uuid::new_v4().simple());
    let sm = shared::secrets::client(&testkit::moto_sdk_config().await);
    let prefix = testkit::unique_name("leadfactory/test/db");
    let mut arns = std::collections::HashMap::new();
    // The administrator's secret is RDS's: a user and a password, nothing else.
    let admin_secret = serde_json::json!({ "username": shared::db::cluster::SUPERUSER, "password": "managed-by-rds" });
    arns.insert(
        "admin",
        shared::secrets::put(&sm, &format!("{prefix}/admin"), &admin_secret)
            .await
            .unwrap(),
    );
    let mut secrets = std::collections::HashMap::new();
    for role in LOGIN_ROLES {
        let s = rds_secret(role, port, &database);
        arns.insert(
            role,
            shared::secrets::put(&sm, &format!("{prefix}/{role}"), &s)
                .await
                .unwrap(),
        );
        secrets.insert(role, s);
    }
    let provision = |owner: &str| {
        std::process::Command::new(testkit::built_binaries().join("leadfactory"))
            .args(["db", "provision", "--admin-secret", &arns["admin"]])
            .args(["--owner-secret", &arns[owner]])
            .args([
                "--app-secret",
                &arns[APP_LOGIN],
                "--backup-secret",
                &arns[BACKUP_ROLE],
            ])
            .args(["--restore-secret", &arns[RESTORE_ROLE]])
            .env("AWS_ENDPOINT_URL", testkit::moto_url())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap()
    };
    let out = provision(OWNER_ROLE);
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("created"), "{text}");

    let admin = server.admin().await;
    // Every login role has its secret's password (as a SCRAM verifier), the database is the
    // owner's (the second run below finds nothing left to migrate).
    for role in LOGIN_ROLES {
        let verifier: Option<String> = admin
            .query_one(
                "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
                &[&role],
            )
            .await
            .unwrap()
            .get("rolpassword");
        assert!(
            verifier
                .as_deref()
                .is_some_and(|v| v.starts_with("SCRAM-SHA-256$")),
            "{role} has no password"
        );
    }
    let owner: String = admin
        .query_one(
            "SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = $1",
            &[&database],
        )
        .await
        .unwrap()
        .get("owner");
    assert_eq!(owner, OWNER_ROLE);
    // The functions connect with their secret as the template gives it to them (layered over
    // the environment), and work under row-level security.
    let mut fn_env: std::collections::HashMap<String, String> = secrets[APP_LOGIN]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str().map_or_else(|| v.to_string(), str::to_owned),
            )
        })
        .collect();
    fn_env.insert("LF_BUCKET".into(), "b".into());
    let config = shared::config::CoreConfig::load(&fn_env).unwrap();
    let pool = db::connect(&config.database_url, 1).unwrap();
    let c = pool.get().await.unwrap();
    let user: String = c
        .query_one("SELECT current_user AS u", &[])
        .await
        .unwrap()
        .get("u");
    assert_eq!(user, APP_LOGIN);
    assert!(db::tenant_ids(&c).await.unwrap().is_empty());
    // A tenant the application creates is listed through the definer door, which reads as the
    // owner: not a superuser here, so its read policy is what lets it see the row.
    let mut c = c;
    let created = TenantId::from_uuid(uuid::Uuid::new_v4());
    let tx = begin_tenant(&mut c, created).await.unwrap();
    tx.execute(
        "INSERT INTO tenants (id, name) VALUES ($1, 'Provisioned agency')",
        &[&created.as_uuid()],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(db::tenant_ids(&c).await.unwrap(), vec![created]);
    drop(c);

    // Again (every deploy): nothing to create, nothing to migrate, success.
    let again = provision(OWNER_ROLE);
    let text = String::from_utf8_lossy(&again.stderr).into_owned();
    assert!(
        again.status.success() && text.contains("already there") && text.contains("[]"),
        "{text}"
    );
    // A secret given for the wrong role is refused before anything is changed.
    let wrong = provision(APP_LOGIN);
    let text = String::from_utf8_lossy(&wrong.stderr).into_owned();
    assert!(
        !wrong.status.success() && text.contains("not leadfactory_owner"),
        "{text}"
    );
    leadfactory_cli::provision::drop_database(&admin, &database)
        .await
        .unwrap();
}
