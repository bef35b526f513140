//! Retention and erasure on real PostgreSQL, the local store and a full local funnel: purges
//! remove exactly what is past its period (rows and objects), in batches, and nothing else;
//! erasure leaves no trace of the address but its suppression.

use std::io::Read;

use leadfactory_cli::local::{LocalPipeline, NoProgress};
use testkit::TestDb;

struct Fixture {
    db: TestDb,
    p: LocalPipeline,
    store: tempfile::TempDir,
}

async fn funnel(buy_share: f64) -> Fixture {
    let db = TestDb::new().await;
    let store = tempfile::tempdir().unwrap();
    let p = testkit::local_pipeline(&db, store.path(), |o| o.buy_share = buy_share).await;
    p.run(&NoProgress).await.unwrap();
    p.simulate_recipients(&NoProgress).await.unwrap();
    Fixture { db, p, store }
}

async fn count(admin: &tokio_postgres::Client, sql: &str) -> i64 {
    admin.query_one(sql, &[]).await.unwrap().get(0)
}

/// Every file in the store, decompressed when gzipped.
fn store_texts(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let bytes = std::fs::read(&p).unwrap();
            let mut text = String::new();
            if flate2::read::GzDecoder::new(&bytes[..])
                .read_to_string(&mut text)
                .is_err()
            {
                text = String::from_utf8_lossy(&bytes).into_owned();
            }
            out.push((p.display().to_string(), text));
        }
    }
    out
}

#[tokio::test]
async fn purges_exactly_what_is_past_its_period_in_batches() {
    let f = funnel(0.0).await;
    let admin = f.db.admin().await;
    // Age half of each kind past its period.
    admin.batch_execute(
        "UPDATE run_event_logs SET created_at = now() - interval '31 days' WHERE id % 2 = 0;
         UPDATE llm_logs SET expires_at = now() - interval '1 minute' WHERE id IN (SELECT id FROM llm_logs ORDER BY id LIMIT (SELECT count(*) / 2 FROM llm_logs));
         UPDATE assessments SET assessed_at = now() - interval '91 days' WHERE id IN (SELECT id FROM assessments WHERE raw_html_key IS NOT NULL ORDER BY id LIMIT 10);
         UPDATE emails SET created_at = now() - interval '181 days' WHERE id IN (SELECT id FROM emails ORDER BY id LIMIT 5);
         UPDATE processed_messages SET updated_at = now() - interval '31 days' WHERE stage = 'sourcing';",
    )
    .await
    .unwrap();
    let old_events = count(
        &admin,
        "SELECT count(*) FROM run_event_logs WHERE created_at < now() - interval '30 days'",
    )
    .await;
    let young_events = count(
        &admin,
        "SELECT count(*) FROM run_event_logs WHERE created_at >= now() - interval '30 days'",
    )
    .await;
    let old_llm = count(
        &admin,
        "SELECT count(*) FROM llm_logs WHERE expires_at < now()",
    )
    .await;
    let llm = count(&admin, "SELECT count(*) FROM llm_logs").await;
    let old_keys: Vec<String> = admin
        .query(
            "SELECT raw_html_key FROM assessments WHERE assessed_at < now() - interval '90 days'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let young_keys: Vec<String> = admin
        .query("SELECT raw_html_key FROM assessments WHERE raw_html_key IS NOT NULL AND assessed_at >= now() - interval '90 days'", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        old_events > 0
            && young_events > 0
            && old_llm > 0
            && old_keys.len() == 10
            && !young_keys.is_empty()
    );
    let old_pm = count(
        &admin,
        "SELECT count(*) FROM processed_messages WHERE stage = 'sourcing'",
    )
    .await;

    // Small batches, so purges take several statements.
    let periods = retention::Periods {
        batch: 7,
        ..retention::Periods::default()
    };
    let r = retention::purge(&f.p.deps, &periods, chrono::Utc::now())
        .await
        .unwrap();
    let by = |k: &str| r.purged.iter().find(|p| p.kind == k).cloned().unwrap();
    assert_eq!(by("run_event_logs").rows as i64, old_events);
    assert!(by("run_event_logs").batches > 1);
    assert_eq!(by("llm_logs").rows as i64, old_llm);
    assert_eq!((by("raw_html").rows, by("raw_html").objects), (10, 10));
    assert_eq!(by("email_bodies").rows, 5);
    assert_eq!(by("processed_messages").rows as i64, old_pm);
    // What is left is exactly the young part.
    assert_eq!(
        count(&admin, "SELECT count(*) FROM run_event_logs").await,
        young_events
    );
    assert_eq!(
        count(&admin, "SELECT count(*) FROM llm_logs").await,
        llm - old_llm
    );
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) FROM emails WHERE body_text IS NULL AND body_purged_at IS NOT NULL"
        )
        .await,
        5
    );
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) FROM emails WHERE body_text IS NOT NULL"
        )
        .await,
        count(
            &admin,
            "SELECT count(*) FROM emails WHERE kind = 'outreach'"
        )
        .await
            - 5
    );
    for k in &old_keys {
        let key = shared::store::ObjectKey::parse(k).unwrap();
        assert!(
            matches!(
                f.p.deps.store.get(&key).await,
                Err(shared::store::StoreError::NotFound(_))
            ),
            "{k} still stored"
        );
    }
    for k in &young_keys {
        let key = shared::store::ObjectKey::parse(k).unwrap();
        assert!(
            f.p.deps.store.get(&key).await.is_ok(),
            "{k} was purged too early"
        );
    }
    assert!(
        count(
            &admin,
            "SELECT count(*) FROM retention_runs WHERE kind = 'raw_html' AND objects = 10"
        )
        .await
            == 1
    );
    // A second run finds nothing more.
    let again = retention::purge(&f.p.deps, &periods, chrono::Utc::now())
        .await
        .unwrap();
    assert!(
        again.purged.iter().all(|p| p.rows == 0 && p.objects == 0),
        "{again:?}"
    );
    // A batch budget that runs out says so.
    admin
        .execute(
            "UPDATE run_event_logs SET created_at = now() - interval '40 days'",
            &[],
        )
        .await
        .unwrap();
    let tight = retention::Periods {
        batch: 2,
        max_batches: 1,
        ..retention::Periods::default()
    };
    let r = retention::purge(&f.p.deps, &tight, chrono::Utc::now())
        .await
        .unwrap();
    let ev = r
        .purged
        .iter()
        .find(|p| p.kind == "run_event_logs")
        .unwrap();
    assert_eq!((ev.rows, ev.remaining), (2, true));
}

/// The tables (and row counts) whose rows mention `addr` anywhere.
async fn traces(
    admin: &tokio_postgres::Client,
    tables: &[String],
    addr: &str,
) -> Vec<(String, i64)> {
    let mut found = Vec::new();
    for t in tables {
        let n: i64 = admin
            .query_one(
                &format!("SELECT count(*) FROM {t} x WHERE x::text ILIKE '%' || $1 || '%'"),
                &[&addr],
            )
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            found.push((t.clone(), n));
        }
    }
    found
}

async fn erase(f: &Fixture, email: &shared::domain::Email) -> shared::erasure::Erased {
    shared::erasure::erase_email(
        &f.p.deps.pool,
        f.p.deps.store.as_ref(),
        f.p.tenant,
        email,
        "test",
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn erasure_leaves_no_trace_of_the_address_but_the_suppression() {
    let f = funnel(1.0).await;
    let admin = f.db.admin().await;
    // A buyer: emailed, evented, purchased, fulfilled, paid through Stripe.
    let addr: String = admin
        .query_one(
            "SELECT lower(customer_email) FROM purchases WHERE status = 'paid' ORDER BY id LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let tables: Vec<String> = admin
        .query("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let before = traces(&admin, &tables, &addr).await;
    let names: Vec<&str> = before.iter().map(|(t, _)| t.as_str()).collect();
    for t in [
        "emails",
        "email_events",
        "purchases",
        "stripe_events",
        "businesses",
        "assessments",
    ] {
        assert!(
            names.contains(&t),
            "{t} should hold {addr} before: {before:?}"
        );
    }
    assert!(
        store_texts(f.store.path())
            .iter()
            .any(|(_, t)| t.contains(&addr)),
        "the scraped HTML holds it"
    );

    let email = shared::domain::Email::parse(&addr).unwrap();
    let erased = erase(&f, &email).await;
    assert!(
        erased.emails >= 2 && erased.purchases == 1 && erased.objects >= 1,
        "{erased:?}"
    );

    let after = traces(&admin, &tables, &addr).await;
    assert_eq!(after, vec![("suppressions".to_owned(), 1)]);
    let reason: String = admin
        .query_one("SELECT reason FROM suppressions WHERE value = $1", &[&addr])
        .await
        .unwrap()
        .get(0);
    assert_eq!(reason, "erasure");
    let leftovers: Vec<String> = store_texts(f.store.path())
        .into_iter()
        .filter(|(_, t)| t.contains(&addr))
        .map(|(p, _)| p)
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The funnel's counts survive: the rows stay, anonymised.
    assert!(
        count(
            &admin,
            "SELECT count(*) FROM emails WHERE to_email LIKE 'erased-%@erased.invalid'"
        )
        .await
            >= 2
    );
    // Erasing again is harmless.
    let again = erase(&f, &email).await;
    assert_eq!(again, shared::erasure::Erased::default());
}

#[tokio::test]
async fn erasure_cancels_outreach_still_queued_and_the_backlog_never_sends_it() {
    let db = TestDb::new().await;
    let store = tempfile::tempdir().unwrap();
    // One send a day: the rest of the run's outreach waits in the backlog.
    let p = testkit::local_pipeline(&db, store.path(), |o| o.delivery.warmup = vec![1]).await;
    p.run(&NoProgress).await.unwrap();
    let admin = db.admin().await;
    let (id, addr): (uuid::Uuid, String) = {
        let r = admin
            .query_one(
                "SELECT id, lower(to_email) FROM emails WHERE kind = 'outreach' AND send_state = 'queued' ORDER BY id LIMIT 1",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    let sent_before = p.sim.state.outbox.lock().unwrap().len();
    shared::erasure::erase_email(
        &p.deps.pool,
        p.deps.store.as_ref(),
        p.tenant,
        &shared::domain::Email::parse(&addr).unwrap(),
        "test",
    )
    .await
    .unwrap();
    let state: String = admin
        .query_one("SELECT send_state FROM emails WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, "cancelled");
    // Tomorrow's backlog release (and a stray delivery message for it) sends nothing to it.
    let tomorrow = chrono::Utc::now().date_naive() + chrono::Duration::days(1);
    delivery::release_backlog(&p.deps, p.deps.bus.as_ref(), tomorrow)
        .await
        .unwrap();
    p.settle().await.unwrap();
    let outbox = p.sim.state.outbox.lock().unwrap().clone();
    assert!(
        outbox[sent_before..].iter().all(|m| m
            .to
            .iter()
            .all(|t| !t.ends_with("@erased.invalid") && t.to_lowercase() != addr)),
        "nothing went to the erased address"
    );
}

#[tokio::test]
async fn erasure_matches_the_address_exactly_not_as_a_pattern() {
    let db = TestDb::new().await;
    let store = tempfile::tempdir().unwrap();
    let p = testkit::local_pipeline(&db, store.path(), |_| {}).await;
    let admin = db.admin().await;
    // `_` is a LIKE wildcard: a_b@ must not reach axb@ (another person).
    for who in [
        "a_b@x.example.com",
        "axb@x.example.com",
        "100%@x.example.com",
        "1000@x.example.com",
    ] {
        admin
            .execute(
                "INSERT INTO run_event_logs (tenant_id, stage, entity_id, event, status, extra)
                 VALUES ($1, 'delivery', $2, 'sent', 'ok', jsonb_build_object('to', $2::text))",
                &[&p.tenant.as_uuid(), &who],
            )
            .await
            .unwrap();
    }
    for gone in ["a_b@x.example.com", "100%@x.example.com"] {
        shared::erasure::erase_email(
            &p.deps.pool,
            p.deps.store.as_ref(),
            p.tenant,
            &shared::domain::Email::parse(gone).unwrap(),
            "test",
        )
        .await
        .unwrap();
    }
    let left: Vec<String> = admin
        .query(
            "SELECT entity_id FROM run_event_logs ORDER BY entity_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, ["1000@x.example.com", "axb@x.example.com"]);
}
