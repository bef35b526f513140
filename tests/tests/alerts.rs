//! The alert rules on real PostgreSQL, the in-process bus and the simulator's Slack: each rule
//! fires from data past its threshold and stays quiet below it and below its minimum volume;
//! cooldown, recovery, the hourly cap and the bounce pause work; two overlapping runs send one
//! alert.

use std::sync::Arc;
use std::time::Duration;

use alerts::{Alerts, Level, Thresholds};
use leadfactory_cli::local::{LocalOptions, LocalPipeline, memory_bus};
use testkit::TestDb;

struct Fixture {
    _db: TestDb,
    p: LocalPipeline,
    admin: tokio_postgres::Client,
    campaign: uuid::Uuid,
    _store: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let db = TestDb::new().await;
    let store = tempfile::tempdir().unwrap();
    let p = LocalPipeline::start(
        LocalOptions::new(db.app_url(), store.path().to_owned()),
        Arc::new(memory_bus(Duration::from_secs(30), 3)),
    )
    .await
    .unwrap();
    p.ensure_tenant("Acme Agency").await.unwrap();
    let admin = db.admin().await;
    let campaign = uuid::Uuid::new_v4();
    admin
        .execute(
            "INSERT INTO campaigns (id, tenant_id, name, vertical, zip_codes, daily_quota, sender_email, sender_name, postal_address)
             VALUES ($1, $2, 'c', 'restaurants', '{95113}', 100, 'a@agency.example.com', 'Ann', '1 Market St')",
            &[&campaign, &p.tenant.as_uuid()],
        )
        .await
        .unwrap();
    Fixture {
        _db: db,
        p,
        admin,
        campaign,
        _store: store,
    }
}

impl Fixture {
    fn alerts(&self) -> Alerts {
        let sink: Arc<dyn shared::vendors::CallSink> = self.p.deps.sink.clone();
        Alerts::new(
            self.p
                .deps
                .vendors
                .slack(&sink, &self.p.deps.policy)
                .unwrap(),
            Thresholds::default(),
        )
    }

    fn slack(&self) -> Vec<String> {
        self.p
            .sim
            .state
            .slack
            .lock()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// `sent` outreach emails in the last hour, the first `bounced` of them bounced.
    async fn emails(&self, sent: i64, bounced: i64) {
        self.admin
            .execute(
                "WITH b AS (
                     INSERT INTO businesses (id, tenant_id, name, name_norm)
                     SELECT gen_random_uuid(), $1, 'B' || i, 'b' || i || gen_random_uuid() FROM generate_series(1, $2::int) i RETURNING id)
                 INSERT INTO emails (id, tenant_id, campaign_id, business_id, to_email, subject, send_state, sent_at, delivery_status)
                 SELECT gen_random_uuid(), $1, $3, id, 'o' || n || '@x.example', 's', 'sent', now() - interval '1 hour',
                        CASE WHEN n <= $4 THEN 'bounced' ELSE 'delivered' END
                 FROM (SELECT id, row_number() OVER () AS n FROM b) x",
                &[&self.p.tenant.as_uuid(), &(sent as i32), &self.campaign, &bounced],
            )
            .await
            .unwrap();
    }

    async fn set_bounced(&self, n: i64) {
        self.admin
            .execute("UPDATE emails SET delivery_status = 'delivered'", &[])
            .await
            .unwrap();
        self.admin
            .execute(
                "UPDATE emails SET delivery_status = 'bounced' WHERE id IN (SELECT id FROM emails ORDER BY id LIMIT $1)",
                &[&n],
            )
            .await
            .unwrap();
    }

    async fn findings(&self, now: chrono::DateTime<chrono::Utc>) -> Vec<alerts::Finding> {
        let mut c = self.p.deps.pool.get().await.unwrap();
        let tx = shared::db::begin_tenant(&mut c, self.p.tenant)
            .await
            .unwrap();
        let f = alerts::rules::evaluate(&tx, &Thresholds::default(), now)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        f
    }
}

fn at(h: u32, m: u32) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
        .date_naive()
        .and_hms_opt(h, m, 0)
        .unwrap()
        .and_utc()
}

fn level(f: &[alerts::Finding], rule: &str) -> Option<(Level, &'static str)> {
    f.iter()
        .find(|x| x.rule == rule)
        .map(|x| (x.level, x.grade))
}

#[tokio::test]
async fn bounce_rate_warns_escalates_pauses_sending_and_recovers_once() {
    let f = fixture().await;
    let a = f.alerts();
    // Before 05:00, so the nightly watchdog stays out of it.
    let now = at(4, 0);
    // Below the minimum volume (50 sent) even half bouncing says nothing.
    f.emails(10, 5).await;
    a.run(&f.p.deps, now).await.unwrap();
    assert!(f.slack().is_empty(), "{:?}", f.slack());
    // 60 sent, 2 bounced: 3.3 % is a warning; the next run within the cooldown repeats nothing.
    f.emails(50, 0).await;
    f.set_bounced(2).await;
    a.run(&f.p.deps, now).await.unwrap();
    a.run(&f.p.deps, now + chrono::Duration::minutes(5))
        .await
        .unwrap();
    assert_eq!(f.slack().len(), 1, "{:?}", f.slack());
    assert!(
        f.slack()[0].starts_with("[WARNING] Acme Agency: Bounce rate 3.3 %"),
        "{:?}",
        f.slack()
    );
    // 4 bounced (6.7 %): critical, at once.
    f.set_bounced(4).await;
    a.run(&f.p.deps, now + chrono::Duration::minutes(10))
        .await
        .unwrap();
    assert_eq!(f.slack().len(), 2);
    assert!(f.slack()[1].starts_with("[CRITICAL]"));
    // 7 bounced (11.7 %): sending pauses.
    f.set_bounced(7).await;
    let r = a
        .run(&f.p.deps, now + chrono::Duration::minutes(15))
        .await
        .unwrap();
    assert_eq!(r.pauses, 1);
    assert!(f.slack()[2].contains("paused"));
    let paused: i64 = f
        .admin
        .query_one(
            "SELECT count(*) FROM send_pauses WHERE resumed_at IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(paused, 1);

    // The pause stops delivery: a queued email's message is deferred, nothing goes out.
    let business: uuid::Uuid = f
        .admin
        .query_one("SELECT business_id FROM emails LIMIT 1", &[])
        .await
        .unwrap()
        .get(0);
    let queued = uuid::Uuid::new_v4();
    let b2: uuid::Uuid = f
        .admin
        .query_one("INSERT INTO businesses (id, tenant_id, name, name_norm) VALUES (gen_random_uuid(), $1, 'Q', 'q') RETURNING id", &[&f.p.tenant.as_uuid()])
        .await
        .unwrap()
        .get(0);
    f.admin
        .execute(
            "INSERT INTO emails (id, tenant_id, campaign_id, business_id, to_email, subject, body_text) VALUES ($1, $2, $3, $4, 'q@q.example', 'Hello', 'Hi')",
            &[&queued, &f.p.tenant.as_uuid(), &f.campaign, &b2],
        )
        .await
        .unwrap();
    let _ = business;
    let body = shared::bus::Envelope::new(
        f.p.tenant,
        None,
        "paused-test",
        shared::pipeline::messages::LeadRef {
            business_id: shared::domain::BusinessId::from_uuid(b2),
            campaign_id: shared::domain::CampaignId::from_uuid(f.campaign),
        },
    )
    .to_body()
    .unwrap();
    f.p.deps
        .bus
        .send_batch(shared::bus::queues::DELIVERY, &[body])
        .await
        .unwrap();
    f.p.settle().await.unwrap();
    assert!(f.p.sim.state.outbox.lock().unwrap().is_empty());
    let state: String = f
        .admin
        .query_one("SELECT send_state FROM emails WHERE id = $1", &[&queued])
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, "queued");

    // Healthy again: one recovery message, then silence.
    f.set_bounced(0).await;
    let r = a
        .run(&f.p.deps, now + chrono::Duration::minutes(20))
        .await
        .unwrap();
    assert_eq!(r.recoveries, 1);
    a.run(&f.p.deps, now + chrono::Duration::minutes(25))
        .await
        .unwrap();
    let msgs = f.slack();
    assert_eq!(msgs.len(), 4, "{msgs:?}");
    assert!(msgs[3].starts_with("[RECOVERED] Acme Agency: Bounce rate back to 0.0 %"));
}

#[tokio::test]
async fn two_overlapping_runs_send_one_alert() {
    let f = fixture().await;
    f.emails(60, 6).await;
    let (a, b) = (f.alerts(), f.alerts());
    let now = at(4, 0);
    let (x, y) = tokio::join!(a.run(&f.p.deps, now), b.run(&f.p.deps, now));
    x.unwrap();
    y.unwrap();
    assert_eq!(f.slack().len(), 1, "{:?}", f.slack());
    let rows: i64 = f
        .admin
        .query_one("SELECT count(*) FROM sent_alerts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn every_rule_fires_past_its_threshold_and_stays_quiet_below_it() {
    let f = fixture().await;
    let t = f.p.tenant.as_uuid();
    let today = chrono::Utc::now().date_naive();

    // Nothing at all: no findings that alert.
    let quiet = f.findings(at(6, 0)).await;
    assert!(
        quiet
            .iter()
            .all(|x| x.level == Level::Ok || x.rule == "nightly_watchdog"),
        "{quiet:?}"
    );

    // Watchdog: a tenant that has never had a nightly (local runs only) is not watched.
    assert_eq!(level(&f.findings(at(5, 1)).await, "nightly_watchdog"), None);
    f.admin
        .execute(
            "INSERT INTO runs (id, tenant_id, kind, status, run_date, started_at, finished_at)
             VALUES (gen_random_uuid(), $1, 'nightly', 'succeeded', $2, now() - interval '1 day', now() - interval '1 day')",
            &[&t, &(today - chrono::Duration::days(1))],
        )
        .await
        .unwrap();
    // On the schedule, no nightly today: quiet before 05:00, critical after; a finished
    // nightly is fine.
    assert_eq!(
        level(&f.findings(at(4, 59)).await, "nightly_watchdog"),
        None
    );
    assert_eq!(
        level(&f.findings(at(5, 1)).await, "nightly_watchdog"),
        Some((Level::Critical, "critical"))
    );
    // Today's nightly, started by the targeting function for a one-lead campaign, whose job
    // nobody processes: once nothing has moved for the stall period, the scheduled check
    // finalises it `stalled` and says so once.
    f.admin
        .execute("UPDATE campaigns SET daily_quota = 1", &[])
        .await
        .unwrap();
    let targeted = targeting::handler(&f.p.deps, serde_json::json!({}))
        .await
        .unwrap();
    let nightly = targeted.runs[0].as_uuid();
    assert_eq!(
        level(&f.findings(chrono::Utc::now()).await, "run_stalled"),
        None
    );
    let stall = chrono::Duration::minutes(Thresholds::default().stall_minutes + 1);
    let found = f.findings(chrono::Utc::now() + stall).await;
    assert_eq!(
        level(&found, "run_stalled"),
        Some((Level::Critical, "critical"))
    );
    assert_eq!(f.p.run_status(targeted.runs[0]).await.unwrap(), "stalled");
    // Reported by the evaluation that finalised it, not again.
    assert_eq!(
        level(&f.findings(chrono::Utc::now() + stall).await, "run_stalled"),
        None
    );
    // The job is processed after all (a redrive): the pipeline's last batch finishes the run.
    f.p.settle().await.unwrap();
    assert_eq!(f.p.run_status(targeted.runs[0]).await.unwrap(), "succeeded");
    let found = f.findings(at(5, 30).max(chrono::Utc::now())).await;
    assert_eq!(level(&found, "nightly_watchdog"), Some((Level::Ok, "ok")));
    // It found 1 candidate (< 20).
    assert_eq!(
        level(&found, "few_candidates"),
        Some((Level::Warning, "warning"))
    );

    // Budgets: 70 % quiet, 80 % warning, 95 % critical, 100 % exhausted.
    for (spent, expected) in [
        (70, (Level::Ok, "ok")),
        (80, (Level::Warning, "warning")),
        (95, (Level::Critical, "critical")),
        (100, (Level::Critical, "exhausted")),
    ] {
        f.admin
            .execute(
                "INSERT INTO budgets (tenant_id, vendor_class, day, limit_micros, spent_micros) VALUES ($1, 'llm', $2, 100, $3)
                 ON CONFLICT (tenant_id, vendor_class, day) DO UPDATE SET limit_micros = 100, reserved_micros = 0, spent_micros = $3",
                &[&t, &today, &(spent as i64)],
            )
            .await
            .unwrap();
        assert_eq!(
            level(&f.findings(chrono::Utc::now()).await, "budget"),
            Some(expected),
            "{spent} %"
        );
    }

    // Vendor errors: 40 % of 10 calls is below the volume; 40 % of 30 is critical; rate
    // limiting warns; quota exhaustion is critical.
    f.admin
        .execute("INSERT INTO run_vendor_usage (run_id, tenant_id, vendor, calls, errors) VALUES ($1, $2, 'places', 10, 4)
                  ON CONFLICT (run_id, vendor) DO UPDATE SET calls = 10, errors = 4", &[&nightly, &t])
        .await
        .unwrap();
    let found = f.findings(chrono::Utc::now()).await;
    assert_eq!(level(&found, "vendor_errors"), None);
    assert_eq!(level(&found, "vendor_limits"), Some((Level::Ok, "ok")));
    f.admin
        .execute(
            "UPDATE run_vendor_usage SET calls = 30, errors = 12, rate_limit_hits = 3",
            &[],
        )
        .await
        .unwrap();
    let found = f.findings(chrono::Utc::now()).await;
    assert_eq!(
        level(&found, "vendor_errors"),
        Some((Level::Critical, "critical"))
    );
    assert_eq!(
        level(&found, "vendor_limits"),
        Some((Level::Warning, "rate_limited"))
    );
    f.admin
        .execute(
            "UPDATE run_vendor_usage SET quota_exhausted = true, errors = 3",
            &[],
        )
        .await
        .unwrap();
    let found = f.findings(chrono::Utc::now()).await;
    assert_eq!(level(&found, "vendor_errors"), Some((Level::Ok, "ok")));
    assert_eq!(
        level(&found, "vendor_limits"),
        Some((Level::Critical, "quota"))
    );

    // QA: 4 of 5 reviews passing is fine, 3 of 5 is not; 3 of 4 is below the volume.
    f.admin
        .execute(
            "WITH b AS (INSERT INTO businesses (id, tenant_id, name, name_norm) SELECT gen_random_uuid(), $1, 'Q' || i, 'q' || i FROM generate_series(1, 5) i RETURNING id)
             INSERT INTO qa_samples (id, tenant_id, run_id, business_id, result, reviewed_at)
             SELECT gen_random_uuid(), $1, $2, id, 'pass', now() FROM b",
            &[&t, &nightly],
        )
        .await
        .unwrap();
    f.admin.execute("UPDATE qa_samples SET result = 'fail' WHERE business_id = (SELECT business_id FROM qa_samples ORDER BY business_id LIMIT 1)", &[]).await.unwrap();
    assert_eq!(
        level(&f.findings(chrono::Utc::now()).await, "qa_pass_rate"),
        Some((Level::Ok, "ok"))
    );
    f.admin.execute("UPDATE qa_samples SET result = 'fail' WHERE business_id IN (SELECT business_id FROM qa_samples ORDER BY business_id LIMIT 2)", &[]).await.unwrap();
    assert_eq!(
        level(&f.findings(chrono::Utc::now()).await, "qa_pass_rate"),
        Some((Level::Warning, "warning"))
    );
    f.admin.execute("UPDATE qa_samples SET result = 'needs_review' WHERE business_id = (SELECT business_id FROM qa_samples ORDER BY business_id DESC LIMIT 1)", &[]).await.unwrap();
    assert_eq!(
        level(&f.findings(chrono::Utc::now()).await, "qa_pass_rate"),
        None
    );

    // Spam reports: 1 in 300 delivered (0.33 %) is critical; 1 in 150 is below the volume.
    f.admin
        .execute(
            "INSERT INTO email_events (tenant_id, sg_event_id, event, occurred_at, raw)
             SELECT $1, 'd' || i, 'delivered', now(), '{}' FROM generate_series(1, 150) i",
            &[&t],
        )
        .await
        .unwrap();
    f.admin
        .execute("INSERT INTO email_events (tenant_id, sg_event_id, event, occurred_at, raw) VALUES ($1, 's1', 'spamreport', now(), '{}')", &[&t])
        .await
        .unwrap();
    assert_eq!(
        level(&f.findings(chrono::Utc::now()).await, "spam_rate"),
        None
    );
    f.admin
        .execute(
            "INSERT INTO email_events (tenant_id, sg_event_id, event, occurred_at, raw)
             SELECT $1, 'e' || i, 'delivered', now(), '{}' FROM generate_series(1, 150) i",
            &[&t],
        )
        .await
        .unwrap();
    assert_eq!(
        level(&f.findings(chrono::Utc::now()).await, "spam_rate"),
        Some((Level::Critical, "critical"))
    );

    // A dead-lettered message: critical for its DLQ, through the whole run.
    f.p.deps
        .bus
        .send_batch(&shared::bus::queues::dlq("enrichment"), &["{}".to_owned()])
        .await
        .unwrap();
    f.alerts().run(&f.p.deps, chrono::Utc::now()).await.unwrap();
    assert!(
        f.slack()
            .iter()
            .any(|m| m.contains("1 message(s) in enrichment-dlq")),
        "{:?}",
        f.slack()
    );
}

#[tokio::test]
async fn at_most_ten_alerts_an_hour_are_posted_and_the_rest_recorded() {
    let f = fixture().await;
    let t = f.p.tenant.as_uuid();
    let run = uuid::Uuid::new_v4();
    f.admin
        .execute(
            "INSERT INTO runs (id, tenant_id, kind, status) VALUES ($1, $2, 'manual', 'running')",
            &[&run, &t],
        )
        .await
        .unwrap();
    // Twelve vendors with exhausted quotas: twelve critical findings at once.
    f.admin
        .execute(
            "INSERT INTO run_vendor_usage (run_id, tenant_id, vendor, calls, quota_exhausted) SELECT $1, $2, 'v' || i, 1, true FROM generate_series(1, 12) i",
            &[&run, &t],
        )
        .await
        .unwrap();
    let r = f.alerts().run(&f.p.deps, chrono::Utc::now()).await.unwrap();
    assert_eq!(r.posted, 10, "{r:?}");
    assert!(r.not_posted >= 2, "{r:?}");
    assert_eq!(f.slack().len(), 10);
    let recorded: i64 = f
        .admin
        .query_one(
            "SELECT count(*) FROM sent_alerts WHERE rule = 'vendor_limits'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, 12);
}
