//! Analytics on real PostgreSQL: the roll-up matches the local funnel and is idempotent;
//! experiment results call a winner only past the minimum sample and the confidence.

use leadfactory_cli::local::{NoProgress, summarize};
use testkit::TestDb;

async fn snapshot(admin: &tokio_postgres::Client) -> Vec<String> {
    admin
        .query("SELECT (to_jsonb(f) - 'computed_at')::text FROM funnel_daily f ORDER BY campaign_id, day", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn the_rollup_matches_the_funnel_and_rerunning_it_changes_nothing() {
    let db = TestDb::new().await;
    let store = tempfile::tempdir().unwrap();
    let p = testkit::local_pipeline(&db, store.path(), |o| o.buy_share = 1.0).await;
    let run = p.run(&NoProgress).await.unwrap();
    p.simulate_recipients(&NoProgress).await.unwrap();
    let s = summarize(p.pool(), p.tenant, run).await.unwrap();

    let today = chrono::Utc::now().date_naive();
    let from = today - chrono::Duration::days(2);
    let r = shared::analytics::rollup(&p.deps.pool, from, today)
        .await
        .unwrap();
    assert_eq!(r.rows, 3, "one row per campaign and day");
    let admin = db.admin().await;
    let first = snapshot(&admin).await;
    shared::analytics::rollup(&p.deps.pool, from, today)
        .await
        .unwrap();
    assert_eq!(
        snapshot(&admin).await,
        first,
        "re-running a period gives the same rows"
    );

    let mut c = p.deps.pool.get().await.unwrap();
    let tx = shared::db::begin_tenant(&mut c, p.tenant).await.unwrap();
    let f = shared::analytics::funnels(&tx, None, from, today)
        .await
        .unwrap();
    assert_eq!(f.len(), 1);
    let f = &f[0];
    let businesses: i64 = admin
        .query_one("SELECT count(*) FROM businesses", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(f.sourced, businesses);
    assert_eq!((f.assessed, f.scored), (s.assessed, s.scored));
    assert_eq!(
        (f.emailed, f.delivered, f.opened, f.clicked),
        (s.sent, s.delivered, s.opened, s.clicked)
    );
    assert_eq!(
        (f.purchased, f.revenue_cents),
        (s.purchased, s.revenue_cents)
    );
    assert!(f.cost_micros > 0 && f.cost_per_lead_micros.is_some());
    let bounces: i64 = admin
        .query_one(
            "SELECT count(*) FROM emails WHERE delivery_status = 'bounced'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(f.bounced, bounces);
    // Both subject-line variants have results; the sample is far below the minimum: no winner.
    let ex = shared::analytics::experiment_results(&tx).await.unwrap();
    assert_eq!(ex.len(), 2);
    assert_eq!(ex.iter().map(|v| v.sends).sum::<i64>(), s.sent);
    assert!(ex.iter().all(|v| !v.winner && !v.min_sample_reached));
    assert!(ex[0].p_value.is_none() && ex[1].p_value.is_some());
    let tiers =
        shared::analytics::cost_per_tier(&tx, chrono::Utc::now() - chrono::Duration::days(1))
            .await
            .unwrap();
    assert_eq!(tiers.iter().map(|t| t.leads).sum::<i64>(), s.scored);
    tx.commit().await.unwrap();

    // A refund lowers the day's revenue on the next roll-up.
    admin.execute("UPDATE purchases SET refunded_cents = amount_cents, status = 'refunded' WHERE id = (SELECT id FROM purchases ORDER BY id LIMIT 1)", &[]).await.unwrap();
    shared::analytics::rollup(&p.deps.pool, from, today)
        .await
        .unwrap();
    let revenue: i64 = admin
        .query_one("SELECT sum(revenue_cents)::int8 FROM funnel_daily", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(revenue, s.revenue_cents - 4900);
}

/// An experiment with `n` sends per variant and the given purchases.
async fn experiment(
    admin: &tokio_postgres::Client,
    tenant: uuid::Uuid,
    min_sample: i32,
    n: i32,
    buys: [i32; 2],
) {
    admin
        .batch_execute(&format!(
            "INSERT INTO campaigns (id, tenant_id, name, vertical, zip_codes, daily_quota, sender_email, sender_name, postal_address)
               VALUES ('00000000-0000-4000-8000-0000000000c1', '{tenant}', 'exp', 'x', '{{1}}', 10, 'a@b.example', 'A', 'addr');
             INSERT INTO experiments (id, tenant_id, key, name, min_sample) VALUES ('00000000-0000-4000-8000-0000000000e1', '{tenant}', 'subj', 'Subject', {min_sample});
             INSERT INTO experiment_variants (id, tenant_id, experiment_id, key, weight) VALUES
               ('00000000-0000-4000-8000-0000000000a1', '{tenant}', '00000000-0000-4000-8000-0000000000e1', 'a_control', 1),
               ('00000000-0000-4000-8000-0000000000a2', '{tenant}', '00000000-0000-4000-8000-0000000000e1', 'b_question', 1);
             INSERT INTO businesses (id, tenant_id, name, name_norm)
               SELECT ('00000000-0000-4000-9000-' || lpad(i::text, 12, '0'))::uuid, '{tenant}', 'B' || i, 'b' || i FROM generate_series(1, {total}) i;
             INSERT INTO reports (id, tenant_id, business_id, token, preview_key, full_key, pages, bytes, price_cents)
               VALUES ('00000000-0000-4000-8000-0000000000f1', '{tenant}', '00000000-0000-4000-9000-000000000001', repeat('t', 40), 'p', 'f', 5, 1, 4900);
             INSERT INTO emails (id, tenant_id, campaign_id, business_id, variant_id, to_email, subject, send_state, sent_at)
               SELECT gen_random_uuid(), '{tenant}', '00000000-0000-4000-8000-0000000000c1', ('00000000-0000-4000-9000-' || lpad(i::text, 12, '0'))::uuid,
                      CASE WHEN i <= {n} THEN '00000000-0000-4000-8000-0000000000a1'::uuid ELSE '00000000-0000-4000-8000-0000000000a2'::uuid END,
                      'x' || i || '@x.example', 's', 'sent', now()
               FROM generate_series(1, {total}) i;
             INSERT INTO purchases (id, tenant_id, report_id, business_id, email_id, stripe_session_id, status, amount_cents)
               SELECT gen_random_uuid(), '{tenant}', '00000000-0000-4000-8000-0000000000f1', '00000000-0000-4000-9000-000000000001', e.id, 'cs_' || e.id, 'paid', 4900
               FROM (SELECT e.id, e.variant_id, row_number() OVER (PARTITION BY e.variant_id ORDER BY e.id) k FROM emails e) e
               WHERE (e.variant_id = '00000000-0000-4000-8000-0000000000a1' AND e.k <= {a})
                  OR (e.variant_id = '00000000-0000-4000-8000-0000000000a2' AND e.k <= {b});",
            total = 2 * n,
            a = buys[0],
            b = buys[1],
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_winner_is_called_only_past_the_minimum_sample_and_the_confidence() {
    for (min_sample, n, buys, winner) in [
        (100, 500, [50, 100], true),   // 10 % vs 20 %: significant
        (1000, 500, [50, 100], false), // same, below the minimum sample
        (100, 500, [50, 55], false),   // 10 % vs 11 %: noise
        (100, 500, [100, 50], false),  // significant, but worse than the control
    ] {
        let db = TestDb::new().await;
        let store = tempfile::tempdir().unwrap();
        let p = testkit::local_pipeline(&db, store.path(), |_| {}).await;
        let admin = db.admin().await;
        experiment(&admin, p.tenant.as_uuid(), min_sample, n, buys).await;
        let mut c = p.deps.pool.get().await.unwrap();
        let tx = shared::db::begin_tenant(&mut c, p.tenant).await.unwrap();
        let r = shared::analytics::experiment_results(&tx).await.unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].variant.as_str(), r[0].sends, r[0].purchases),
            ("a_control", i64::from(n), i64::from(buys[0]))
        );
        assert!(r[1].ci_low < r[1].conversion && r[1].conversion < r[1].ci_high);
        assert_eq!(r[1].winner, winner, "{min_sample} {n} {buys:?}: {r:?}");
        assert!(!r[0].winner);
    }
}
