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
        "assessment_contacts",
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

#[tokio::test]
async fn a_subject_export_returns_every_row_and_object_that_mentions_the_address() {
    let f = funnel(1.0).await;
    let admin = f.db.admin().await;
    let addr: String = admin
        .query_one(
            "SELECT lower(customer_email) AS a FROM purchases WHERE status = 'paid' ORDER BY id LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get("a");
    // Where the night did not put it, a reviewer's note, an LLM log, a run event and an
    // opt-out do.
    admin
        .execute(
            "UPDATE qa_samples SET notes = 'asked to write to ' || upper($1) WHERE id = (SELECT id FROM qa_samples ORDER BY id LIMIT 1)",
            &[&addr],
        )
        .await
        .unwrap();
    admin
        .execute(
            "UPDATE llm_logs SET prompt = prompt || ' ' || $1 WHERE id = (SELECT id FROM llm_logs ORDER BY id LIMIT 1)",
            &[&addr],
        )
        .await
        .unwrap();
    admin
        .execute(
            "UPDATE run_event_logs SET extra = extra || jsonb_build_object('to', $1::text) WHERE id = (SELECT id FROM run_event_logs ORDER BY id LIMIT 1)",
            &[&addr],
        )
        .await
        .unwrap();
    admin
        .execute(
            "INSERT INTO suppressions (tenant_id, kind, value, reason, source) VALUES ($1, 'email', $2, 'unsubscribe', 'test') ON CONFLICT DO NOTHING",
            &[&f.p.tenant.as_uuid(), &addr],
        )
        .await
        .unwrap();
    let tables: Vec<String> = admin
        .query("SELECT table_name::text AS t FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("t"))
        .collect();
    let held = traces(&admin, &tables, &addr).await;
    for t in [
        "llm_logs",
        "run_event_logs",
        "suppressions",
        "purchases",
        "emails",
    ] {
        assert!(
            held.iter().any(|(h, _)| h == t),
            "{t} should mention it: {held:?}"
        );
    }

    let email = shared::domain::Email::parse(&addr).unwrap();
    let export = shared::subject::export_subject(
        &f.p.deps.pool,
        f.p.deps.store.as_ref(),
        f.p.tenant,
        &email,
    )
    .await
    .unwrap();
    let exported: Vec<(String, i64)> = export
        .tables
        .iter()
        .filter(|(_, rows)| !rows.is_empty())
        .map(|(t, rows)| ((*t).to_owned(), rows.len() as i64))
        .collect();
    let mut held = held;
    held.sort();
    assert_eq!(exported, held, "every table that mentions it, every row");

    // The homepage that listed it comes back too, whole.
    let html: Vec<String> = store_texts(f.store.path())
        .into_iter()
        .filter(|(p, t)| p.contains("/html/") && t.contains(&addr))
        .map(|(_, t)| t)
        .collect();
    assert!(!html.is_empty(), "the scraped homepage holds it");
    let returned: Vec<String> = export
        .objects
        .iter()
        .map(|o| {
            use base64::Engine;
            let gz = base64::engine::general_purpose::STANDARD
                .decode(&o.content_base64)
                .unwrap();
            let mut text = String::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_string(&mut text)
                .unwrap();
            text
        })
        .collect();
    assert_eq!(returned.len(), html.len());
    assert!(returned.iter().all(|t| t.contains(&addr)));

    // Nothing was changed by reading.
    let after = traces(&admin, &tables, &addr).await;
    assert_eq!(after.len(), exported.len());
}

#[tokio::test]
async fn personal_data_past_its_period_is_stripped_or_purged_and_the_rest_kept() {
    let f = funnel(1.0).await;
    let admin = f.db.admin().await;
    let tenant = f.p.tenant.as_uuid();
    // Half the SendGrid events and the processed Stripe events are old; one business never
    // written to (and one that was) was last seen long ago; alerts and one unattributed event
    // resolved long ago; one purchase past the accounting period.
    admin
        .batch_execute(
            "UPDATE email_events SET occurred_at = now() - interval '91 days' WHERE id % 2 = 0;
             UPDATE stripe_events SET created = now() - interval '91 days' WHERE processed_at IS NOT NULL;
             UPDATE businesses SET last_seen_at = now() - interval '181 days'
              WHERE id IN (SELECT b.id FROM businesses b JOIN assessments a ON a.business_id = b.id
                           WHERE b.email IS NOT NULL AND EXISTS (SELECT 1 FROM assessment_contacts c WHERE c.assessment_id = a.id)
                             AND NOT EXISTS (SELECT 1 FROM emails e WHERE e.business_id = b.id) ORDER BY b.id LIMIT 2)
                 OR id IN (SELECT business_id FROM emails ORDER BY id LIMIT 1);
             -- One of the two never had an outreach address chosen: its scraped contacts go too.
             UPDATE businesses SET email = NULL, email_reason = NULL
              WHERE id = (SELECT b.id FROM businesses b WHERE b.last_seen_at < now() - interval '180 days'
                            AND NOT EXISTS (SELECT 1 FROM emails e WHERE e.business_id = b.id) ORDER BY b.id DESC LIMIT 1);
             UPDATE purchases SET created_at = now() - interval '2556 days' WHERE id = (SELECT id FROM purchases WHERE customer_email IS NOT NULL ORDER BY id LIMIT 1);",
        )
        .await
        .unwrap();
    admin
        .execute(
            "INSERT INTO sent_alerts (id, tenant_id, rule, severity, dedupe_key, message, sent_at) VALUES
               (gen_random_uuid(), $1, 'bounce_rate', 'warning', 'old', 'old', now() - interval '91 days'),
               (gen_random_uuid(), $1, 'bounce_rate', 'warning', 'young', 'young', now())",
            &[&tenant],
        )
        .await
        .unwrap();
    admin
        .batch_execute(
            "INSERT INTO operator_alerts (id, rule, severity, dedupe_key, message, sent_at) VALUES
               (gen_random_uuid(), 'unattributed', 'critical', 'old', 'old', now() - interval '91 days'),
               (gen_random_uuid(), 'unattributed', 'critical', 'young', 'young', now());
             INSERT INTO unattributed_stripe_events (event_id, type, created, paid_session, payload, resolved_at, resolution) VALUES
               ('evt_old', 'checkout.session.completed', now() - interval '100 days', true, '{\"id\": \"evt_old\", \"customer_details\": {\"email\": \"buyer@example.com\"}}', now() - interval '91 days', 'refunded'),
               ('evt_open', 'checkout.session.completed', now() - interval '100 days', true, '{\"id\": \"evt_open\", \"customer_details\": {\"email\": \"buyer@example.com\"}}', NULL, NULL);",
        )
        .await
        .unwrap();
    let n = |sql: &'static str| {
        let admin = &admin;
        async move { count(admin, sql).await }
    };
    let old_events =
        n("SELECT count(*) FROM email_events WHERE occurred_at < now() - interval '90 days'").await;
    let young_events =
        n("SELECT count(*) FROM email_events WHERE occurred_at >= now() - interval '90 days'")
            .await;
    let stripe = n("SELECT count(*) FROM stripe_events WHERE processed_at IS NOT NULL").await;
    assert!(old_events > 0 && young_events > 0 && stripe > 0);

    let report = retention::purge(
        &f.p.deps,
        &retention::Periods::default(),
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    let rows = |kind: &str| {
        report
            .purged
            .iter()
            .find(|p| p.kind == kind)
            .map_or(0, |p| p.rows)
    };

    assert_eq!(
        rows("email_event_payloads"),
        old_events as u64,
        "{report:?}"
    );
    assert_eq!(
        n("SELECT count(*) FROM email_events WHERE raw ? 'stripped' AND raw->>'email' IS NULL AND url IS NULL AND reason IS NULL").await,
        old_events
    );
    assert_eq!(
        n("SELECT count(*) FROM email_events WHERE occurred_at >= now() - interval '90 days' AND NOT (raw ? 'stripped')").await,
        young_events,
        "young events keep their payload"
    );
    assert_eq!(rows("stripe_event_payloads"), stripe as u64);
    assert_eq!(
        n("SELECT count(*) FROM stripe_events WHERE payload ? 'stripped' AND payload ? 'id' AND payload::text NOT LIKE '%@%'").await,
        stripe
    );
    assert_eq!(
        rows("uncontacted_assessment_contacts"),
        2,
        "with or without an outreach address"
    );
    assert_eq!(
        rows("uncontacted_business_emails"),
        1,
        "only the business never written to"
    );
    assert_eq!(
        n("SELECT count(*) FROM businesses b WHERE b.last_seen_at < now() - interval '180 days' AND b.email IS NOT NULL").await,
        1,
        "the business that was written to keeps its address"
    );
    assert_eq!(rows("sent_alerts"), 1);
    assert_eq!(
        n("SELECT count(*) FROM sent_alerts WHERE dedupe_key = 'young'").await,
        1
    );
    assert_eq!(rows("operator_alerts"), 1);
    assert_eq!(n("SELECT count(*) FROM operator_alerts").await, 1);
    assert_eq!(rows("unattributed_stripe_payloads"), 1);
    assert_eq!(
        n("SELECT count(*) FROM unattributed_stripe_events WHERE payload::text LIKE '%buyer@example.com%'").await,
        1,
        "an unresolved event keeps everything"
    );
    assert_eq!(rows("buyer_emails"), 1);

    // A second pass finds nothing more.
    let again = retention::purge(
        &f.p.deps,
        &retention::Periods::default(),
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    assert!(again.purged.iter().all(|p| p.rows == 0), "{again:?}");
}

#[tokio::test]
async fn a_business_crossing_the_cutoff_after_a_completed_night_is_purged_the_next() {
    let f = funnel(1.0).await;
    let admin = f.db.admin().await;
    let periods = retention::Periods::default();
    let now = chrono::Utc::now();
    // A completed night first: from then on the uncontacted purges read only what crossed the
    // cutoff since (less a day), not the whole history.
    retention::purge(&f.p.deps, &periods, now).await.unwrap();
    let crossing: uuid::Uuid = admin
        .query_one(
            "UPDATE businesses SET last_seen_at = now() - interval '179 days'
              WHERE id = (SELECT b.id FROM businesses b WHERE b.email IS NOT NULL
                            AND NOT EXISTS (SELECT 1 FROM emails e WHERE e.business_id = b.id) ORDER BY b.id LIMIT 1)
              RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get("id");
    let kept = retention::purge(&f.p.deps, &periods, now).await.unwrap();
    let rows = |r: &retention::RetentionReport, kind: &str| {
        r.purged
            .iter()
            .find(|p| p.kind == kind)
            .map_or(0, |p| p.rows)
    };
    assert_eq!(rows(&kept, "uncontacted_business_emails"), 0, "not due yet");
    let later = retention::purge(&f.p.deps, &periods, now + chrono::Duration::days(2))
        .await
        .unwrap();
    assert_eq!(rows(&later, "uncontacted_business_emails"), 1, "{later:?}");
    let email: Option<String> = admin
        .query_one("SELECT email FROM businesses WHERE id = $1", &[&crossing])
        .await
        .unwrap()
        .get("email");
    assert_eq!(email, None);
}
