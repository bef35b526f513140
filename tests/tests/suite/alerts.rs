//! The alert rules on real PostgreSQL, the in-process bus and the simulator's Slack: each rule
//! fires from data past its threshold and stays quiet below it and below its minimum volume;
//! cooldown, recovery, the hourly cap and the bounce pause work; two overlapping runs send one
//! alert.

use shared::bus::Queue;
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
        Alerts::new(
            self.p.deps.vendors.slack(&self.p.deps.policy).unwrap(),
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

    /// `sent` outreach emails in the last hour, the first `bounced` of them bounced, the others
    /// delivered a minute after they were sent (as SendGrid's events would have recorded).
    async fn emails(&self, sent: i64, bounced: i64) {
        self.admin
            .execute(
                "WITH b AS (
                     INSERT INTO businesses (id, tenant_id, name, name_norm)
                     SELECT gen_random_uuid(), $1, 'B' || i, 'b' || i || gen_random_uuid() FROM generate_series(1, $2::int) i RETURNING id)
                 INSERT INTO emails (id, tenant_id, campaign_id, business_id, to_email, subject, send_state, sent_at, delivery_status,
                                     delivered_at)
                 SELECT gen_random_uuid(), $1, $3, id, 'o' || n || '.' || left(md5(id::text), 8) || '@x.example', 's', 'sent', now() - interval '1 hour',
                        CASE WHEN n <= $4 THEN 'bounced' ELSE 'delivered' END,
                        CASE WHEN n <= $4 THEN NULL ELSE now() - interval '59 minutes' END
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
        .send_batch(Queue::Delivery.name(), &[body])
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
        .send_batch(shared::bus::Queue::Enrichment.dlq(), &["{}".to_owned()])
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
    // Twelve vendors with exhausted quotas: twelve critical findings at once.
    f.exhausted_vendors(f.p.tenant.as_uuid(), 12).await;
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

impl Fixture {
    /// The webhooks (`/services/…`) the simulator's Slack received each message on.
    fn slack_channels(&self) -> Vec<(String, String)> {
        self.p
            .sim
            .state
            .slack
            .lock()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["_webhook"].as_str().unwrap_or_default().to_owned(),
                    m["text"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// A second tenant, with a run whose vendor quota ran out (one critical finding).
    async fn tenant_with_a_finding(&self, name: &str) -> uuid::Uuid {
        let t = uuid::Uuid::new_v4();
        self.admin
            .execute(
                "INSERT INTO tenants (id, name) VALUES ($1, $2)",
                &[&t, &name],
            )
            .await
            .unwrap();
        self.exhausted_vendors(t, 1).await;
        t
    }

    /// A running run of `tenant` whose `n` vendors ran out of quota: `n` critical findings.
    async fn exhausted_vendors(&self, tenant: uuid::Uuid, n: i32) {
        let run = uuid::Uuid::new_v4();
        self.admin
            .execute(
                "INSERT INTO runs (id, tenant_id, kind, status) VALUES ($1, $2, 'manual', 'running')",
                &[&run, &tenant],
            )
            .await
            .unwrap();
        self.admin
            .execute(
                "INSERT INTO run_vendor_usage (run_id, tenant_id, vendor, calls, quota_exhausted)
                 SELECT $1, $2, 'v' || i, 1, true FROM generate_series(1, $3) i",
                &[&run, &tenant, &n],
            )
            .await
            .unwrap();
    }
}

const OPERATOR_CHANNEL: &str = "/services/T000/B000/XXXX";

#[tokio::test]
async fn shared_infrastructure_alerts_go_once_to_the_operator_and_a_tenants_to_its_own_channel() {
    let f = fixture().await;
    let own = f.tenant_with_a_finding("Bravo Agency").await;
    let other = f.tenant_with_a_finding("Charlie Agency").await;
    // Bravo has its own channel: the webhook URL in Secrets Manager (moto), named in its settings.
    let sdk = testkit::moto_sdk_config().await;
    let secrets = shared::secrets::client(&sdk);
    let prefix = format!(
        "leadfactory/test-{}/tenants/",
        uuid::Uuid::new_v4().simple()
    );
    let name = format!("{prefix}{own}/slack");
    let own_url = format!("{}/services/TBRAVO/BALERTS/own", f.p.sim.state.base_url());
    shared::secrets::put(
        &secrets,
        &name,
        &serde_json::json!({ "SLACK_WEBHOOK_URL": own_url }),
    )
    .await
    .unwrap();
    f.admin
        .execute(
            "UPDATE tenants SET settings = jsonb_build_object('alerts', jsonb_build_object('slack_secret', $2::text)) WHERE id = $1",
            &[&own, &name],
        )
        .await
        .unwrap();
    let channels = || {
        let (vendors, policy) = (f.p.deps.vendors.clone(), f.p.deps.policy.clone());
        alerts::TenantChannels {
            secrets: shared::aws::LazyClient::ready(shared::secrets::client(&sdk)),
            prefix: prefix.clone(),
            make: Box::new(move |url| vendors.slack_webhook(url, &policy)),
        }
    };
    // A dead letter: shared infrastructure, three tenants.
    f.p.deps
        .bus
        .send_batch(shared::bus::Queue::Enrichment.dlq(), &["{}".to_owned()])
        .await
        .unwrap();
    f.alerts()
        .with_tenant_channels(channels())
        .run(&f.p.deps, chrono::Utc::now())
        .await
        .unwrap();
    let sent = f.slack_channels();
    let dlq: Vec<_> = sent
        .iter()
        .filter(|(_, t)| t.contains("enrichment-dlq"))
        .collect();
    assert_eq!(dlq.len(), 1, "once, not once per tenant: {sent:?}");
    assert_eq!(dlq[0].0, OPERATOR_CHANNEL);
    assert!(
        !dlq[0].1.contains("Agency"),
        "no tenant's name on it: {}",
        dlq[0].1
    );
    let bravo: Vec<_> = sent
        .iter()
        .filter(|(_, t)| t.contains("Bravo Agency"))
        .collect();
    assert_eq!(bravo.len(), 1, "{sent:?}");
    assert_eq!(
        bravo[0].0, "/services/TBRAVO/BALERTS/own",
        "Bravo's own channel"
    );
    let charlie: Vec<_> = sent
        .iter()
        .filter(|(_, t)| t.contains("Charlie Agency"))
        .collect();
    assert_eq!(charlie.len(), 1);
    assert_eq!(
        charlie[0].0, OPERATOR_CHANNEL,
        "no own channel: the operator's"
    );
    let _ = other;
    let operator_rows: i64 = f
        .admin
        .query_one(
            "SELECT count(*) FROM operator_alerts WHERE rule = 'dlq'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(operator_rows, 1);
    let tenant_dlq_rows: i64 = f
        .admin
        .query_one("SELECT count(*) FROM sent_alerts WHERE rule = 'dlq'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(tenant_dlq_rows, 0);
}

#[tokio::test]
async fn a_failed_post_is_tried_again_by_the_next_evaluation() {
    let f = fixture().await;
    f.tenant_with_a_finding("Delta Agency").await;
    // Slack answers 500 to everything for a while (more than the client's retries).
    f.p.sim.state.faults.lock().unwrap().insert(
        "slack".into(),
        sim::Fault {
            rate_5xx: 1.0,
            ..Default::default()
        },
    );
    let first = f.alerts().run(&f.p.deps, chrono::Utc::now()).await.unwrap();
    assert_eq!(first.posted, 0, "{first:?}");
    assert!(f.slack().is_empty());
    let (attempts, error): (i16, Option<String>) = {
        let r = f
            .admin
            .query_one(
                "SELECT post_attempts, last_post_error FROM sent_alerts WHERE message LIKE '%Delta Agency%'",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(attempts, 1);
    let error = error.unwrap();
    assert!(
        !error.contains("/services/"),
        "no webhook URL in the row: {error}"
    );
    // Slack is back: the next evaluation posts it (once), with no new record.
    f.p.sim.state.faults.lock().unwrap().remove("slack");
    let second = f
        .alerts()
        .run(&f.p.deps, chrono::Utc::now() + chrono::Duration::minutes(5))
        .await
        .unwrap();
    assert_eq!(second.retried, 1, "{second:?}");
    let delta: Vec<_> = f
        .slack()
        .into_iter()
        .filter(|m| m.contains("Delta Agency"))
        .collect();
    assert_eq!(delta.len(), 1);
    let third = f
        .alerts()
        .run(
            &f.p.deps,
            chrono::Utc::now() + chrono::Duration::minutes(10),
        )
        .await
        .unwrap();
    assert_eq!(third.retried, 0);
    assert_eq!(
        f.slack()
            .into_iter()
            .filter(|m| m.contains("Delta Agency"))
            .count(),
        1
    );
}

#[tokio::test]
async fn purchases_whose_report_never_reached_the_buyer_and_unattributed_payments_alert() {
    let f = fixture().await;
    let t = f.p.tenant.as_uuid();
    let (business, report, purchase) = (
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
    );
    f.admin
        .execute(
            "INSERT INTO businesses (id, tenant_id, name, name_norm) VALUES ($1, $2, 'Joe', 'joe')",
            &[&business, &t],
        )
        .await
        .unwrap();
    f.admin
        .execute(
            "INSERT INTO reports (id, tenant_id, business_id, token, preview_key, full_key, pages, bytes, price_cents)
             VALUES ($1, $2, $3, repeat('k', 40), 'reports/p.pdf', 'reports/f.pdf', 6, 1000, 4900)",
            &[&report, &t, &business],
        )
        .await
        .unwrap();
    f.admin
        .execute(
            "INSERT INTO purchases (id, tenant_id, report_id, business_id, campaign_id, stripe_session_id, status, amount_cents, customer_email, paid_at)
             VALUES ($1, $2, $3, $4, $5, 'cs_1', 'paid', 4900, 'buyer@example.org', now())",
            &[&purchase, &t, &report, &business, &f.campaign],
        )
        .await
        .unwrap();
    // SendGrid refused the report email (a 400).
    f.admin
        .execute(
            "INSERT INTO emails (id, tenant_id, campaign_id, business_id, kind, purchase_id, to_email, subject, send_state, last_error)
             VALUES (gen_random_uuid(), $1, $2, $3, 'fulfilment', $4, 'buyer@example.org', 's', 'failed', 'bad request')",
            &[&t, &f.campaign, &business, &purchase],
        )
        .await
        .unwrap();
    let found = f.findings(chrono::Utc::now()).await;
    let ff = found
        .iter()
        .find(|x| x.rule == "fulfilment_failed")
        .unwrap();
    assert_eq!(ff.level, Level::Critical);
    assert!(
        ff.message.contains(&purchase.to_string()) && ff.message.contains("purchase resend"),
        "{}",
        ff.message
    );
    // A resend that went out ends it.
    f.admin
        .execute(
            "INSERT INTO emails (id, tenant_id, campaign_id, business_id, kind, purchase_id, request_key, to_email, subject, send_state)
             VALUES (gen_random_uuid(), $1, $2, $3, 'fulfilment', $4, 'k1', 'buyer@example.org', 's', 'sent')",
            &[&t, &f.campaign, &business, &purchase],
        )
        .await
        .unwrap();
    let found = f.findings(chrono::Utc::now()).await;
    assert_eq!(
        found
            .iter()
            .find(|x| x.rule == "fulfilment_failed")
            .unwrap()
            .level,
        Level::Ok
    );
    // A paid session naming no tenant is the operator's alert, through the definer door.
    f.p.deps
        .pool
        .get()
        .await
        .unwrap()
        .execute(
            "SELECT record_unattributed_stripe_event('evt_o', 'checkout.session.completed', now(), true, 'cs_o', 4900, 'usd', '{}')",
            &[],
        )
        .await
        .unwrap();
    f.alerts().run(&f.p.deps, chrono::Utc::now()).await.unwrap();
    let operator: Vec<_> = f
        .slack_channels()
        .into_iter()
        .filter(|(_, t)| t.contains("name no tenant"))
        .collect();
    assert_eq!(operator.len(), 1, "{operator:?}");
    assert_eq!(operator[0].0, OPERATOR_CHANNEL);
}

#[tokio::test]
async fn delivery_cost_checkout_and_storage_rules_fire_past_their_thresholds_and_a_tenant_can_move_them()
 {
    let f = fixture().await;
    let t = f.p.tenant.as_uuid();

    // Delivery: 60 sent an hour ago, 57 delivered (95 %) is quiet; 50 delivered (83 %) warns.
    f.emails(60, 0).await;
    f.admin
        .execute(
            "UPDATE emails SET delivered_at = now() - interval '50 minutes'
             WHERE id IN (SELECT id FROM emails ORDER BY id LIMIT 57)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        level(&f.findings(chrono::Utc::now()).await, "delivery_rate"),
        Some((Level::Ok, "ok"))
    );
    f.admin
        .execute(
            "UPDATE emails SET delivered_at = NULL WHERE id IN (SELECT id FROM emails ORDER BY id DESC LIMIT 10)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        level(&f.findings(chrono::Utc::now()).await, "delivery_rate"),
        Some((Level::Warning, "warning"))
    );
    // Mail sent in the last half hour is not judged yet.
    assert_eq!(
        level(
            &f.findings(chrono::Utc::now() - chrono::Duration::minutes(40))
                .await,
            "delivery_rate"
        ),
        None
    );
    // A tenant that accepts 80 % moves the threshold.
    let lenient = Thresholds::default()
        .with_overrides(Some(&serde_json::json!({ "delivery_min_rate": 0.8 })));
    let mut c = f.p.deps.pool.get().await.unwrap();
    let tx = shared::db::begin_tenant(&mut c, f.p.tenant).await.unwrap();
    let found = alerts::rules::evaluate(&tx, &lenient, chrono::Utc::now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(level(&found, "delivery_rate"), Some((Level::Ok, "ok")));

    // Cost per lead: 25 tier-B leads scored this week at $0.50 each is quiet ($0.75 allowed);
    // at $1.00 each it warns; 10 leads are below the volume.
    let run = uuid::Uuid::new_v4();
    f.admin
        .execute(
            "INSERT INTO runs (id, tenant_id, kind, status, started_at) VALUES ($1, $2, 'manual', 'succeeded', now())",
            &[&run, &t],
        )
        .await
        .unwrap();
    f.admin
        .execute(
            "WITH b AS (INSERT INTO businesses (id, tenant_id, name, name_norm)
                        SELECT gen_random_uuid(), $1, 'T' || i, 't' || i || gen_random_uuid() FROM generate_series(1, 25) i RETURNING id),
                  s AS (INSERT INTO scores (id, tenant_id, business_id, run_id, score, tier, qualified, breakdown, rules_version)
                        SELECT gen_random_uuid(), $1, id, $2, 70, 'B', true, '{}', 'v1' FROM b RETURNING business_id)
             INSERT INTO cost_ledger (tenant_id, run_id, business_id, vendor, endpoint, cost_micros)
             SELECT $1, $2, business_id, 'places', 'details', 500000 FROM s",
            &[&t, &run],
        )
        .await
        .unwrap();
    assert_eq!(
        level(&f.findings(chrono::Utc::now()).await, "cost_per_lead"),
        Some((Level::Ok, "ok"))
    );
    f.admin
        .execute("UPDATE cost_ledger SET cost_micros = 1000000", &[])
        .await
        .unwrap();
    let found = f.findings(chrono::Utc::now()).await;
    let cost = found.iter().find(|x| x.rule == "cost_per_lead").unwrap();
    assert_eq!(
        (cost.level, cost.subject.as_str()),
        (Level::Warning, "tier B"),
        "{cost:?}"
    );
    assert!(
        cost.message.contains("$1.0000") && cost.message.contains("$0.75"),
        "{}",
        cost.message
    );
    f.admin
        .execute(
            "DELETE FROM scores WHERE business_id IN (SELECT business_id FROM scores ORDER BY business_id LIMIT 15)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        level(&f.findings(chrono::Utc::now()).await, "cost_per_lead"),
        None
    );

    // Checkouts: 10 started today, 8 expired (80 %) is quiet, 9 (90 %) warns; 9 started is
    // below the volume.
    let report = uuid::Uuid::new_v4();
    f.admin
        .execute(
            "WITH b AS (INSERT INTO businesses (id, tenant_id, name, name_norm) VALUES (gen_random_uuid(), $1, 'R', 'r-report') RETURNING id)
             INSERT INTO reports (id, tenant_id, business_id, run_id, token, preview_key, full_key, pages, bytes, price_cents)
             SELECT $2, $1, id, $3, repeat('t', 40), 'p.pdf', 'f.pdf', 1, 1, 4900 FROM b",
            &[&t, &report, &run],
        )
        .await
        .unwrap();
    f.admin
        .execute(
            "INSERT INTO purchases (id, tenant_id, report_id, business_id, stripe_session_id, status, amount_cents)
             SELECT gen_random_uuid(), $1, $2, (SELECT business_id FROM reports WHERE id = $2), 'cs_' || i,
                    CASE WHEN i <= 8 THEN 'expired' ELSE 'paid' END, 4900
             FROM generate_series(1, 10) i",
            &[&t, &report],
        )
        .await
        .unwrap();
    assert_eq!(
        level(&f.findings(chrono::Utc::now()).await, "checkout_expiry"),
        Some((Level::Ok, "ok"))
    );
    f.admin
        .execute(
            "UPDATE purchases SET status = 'expired' WHERE stripe_session_id = 'cs_9'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        level(&f.findings(chrono::Utc::now()).await, "checkout_expiry"),
        Some((Level::Warning, "warning"))
    );
    f.admin
        .execute(
            "DELETE FROM purchases WHERE stripe_session_id = 'cs_10'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        level(&f.findings(chrono::Utc::now()).await, "checkout_expiry"),
        None
    );

    // Storage: the operators' alert, against the storage the database is given. A test
    // database of some megabytes in 20 GB is quiet; given 10 MB it is critical and names its
    // largest tables.
    f.alerts().run(&f.p.deps, chrono::Utc::now()).await.unwrap();
    assert!(
        !f.slack().iter().any(|m| m.contains("The database holds")),
        "{:?}",
        f.slack()
    );
    let tight = Alerts::new(
        f.p.deps.vendors.slack(&f.p.deps.policy).unwrap(),
        Thresholds {
            db_storage_limit_gb: 0.01,
            ..Thresholds::default()
        },
    );
    tight.run(&f.p.deps, chrono::Utc::now()).await.unwrap();
    let storage: Vec<String> = f
        .slack()
        .into_iter()
        .filter(|m| m.contains("The database holds"))
        .collect();
    assert_eq!(storage.len(), 1, "{:?}", f.slack());
    assert!(
        storage[0].starts_with("[CRITICAL]") && storage[0].contains("Largest: "),
        "{}",
        storage[0]
    );
}

#[test]
fn the_rules_values_become_one_metric_line_with_the_worst_tenants_value() {
    let finding = |rule: &'static str, value: f64, threshold: f64| alerts::Finding {
        rule,
        subject: "all".into(),
        level: Level::Ok,
        grade: "ok",
        value,
        threshold,
        message: String::new(),
        pause: false,
    };
    let line = alerts::metrics(&[
        finding("bounce_rate", 0.01, 0.02),
        finding("delivery_rate", 0.95, 0.9),
        finding("delivery_rate", 0.85, 0.9),
        finding("cost_per_lead", 0.5, 0.25),
        finding("cost_per_lead", 0.1, 1.0),
        finding("few_candidates", 3.0, 20.0),
    ]);
    let json: serde_json::Value = serde_json::from_str(&line.render(0)).unwrap();
    assert_eq!(json["BounceRate"], 0.01);
    assert_eq!(json["DeliveryRate"], 0.85, "the lowest delivery rate");
    assert_eq!(
        json["CostPerLeadOverThreshold"], 2.0,
        "the tier furthest over"
    );
    assert!(json.get("SpamRate").is_none() && json.get("few_candidates").is_none());
    assert_eq!(
        json["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "LeadFactory"
    );
    assert_eq!(json["Function"], "alerts");
}

#[tokio::test]
async fn a_health_check_alerts_only_after_failing_twice_in_a_row_and_recovers_once() {
    let db = TestDb::new().await;
    let store = tempfile::tempdir().unwrap();
    let bus = Arc::new(testkit::HookedBus::new(
        Arc::new(memory_bus(Duration::from_secs(30), 3)),
        |_, _| testkit::OnSend::Pass,
    ));
    let p = LocalPipeline::start(
        LocalOptions::new(db.app_url(), store.path().to_owned()),
        bus.clone(),
    )
    .await
    .unwrap();
    p.ensure_tenant("Acme Agency").await.unwrap();
    let alerts = Alerts::new(
        p.deps.vendors.slack(&p.deps.policy).unwrap(),
        Thresholds::default(),
    );
    let health_posts = || -> Vec<String> {
        p.sim
            .state
            .slack
            .lock()
            .unwrap()
            .iter()
            .filter_map(|m| m["text"].as_str().map(str::to_owned))
            .filter(|t| t.contains("health check"))
            .collect()
    };
    let t0 = at(10, 0);
    let every = |n: i64| t0 + chrono::Duration::minutes(5 * n);
    alerts.run(&p.deps, every(0)).await.unwrap();
    bus.make_unreadable(Some(Queue::Enrichment.dlq()));
    // One failed check is a blip: recorded, no alert; the evaluation itself goes on.
    let report = alerts.run(&p.deps, every(1)).await.unwrap();
    assert_eq!(report.tenants, 1);
    assert!(health_posts().is_empty(), "{:?}", health_posts());
    // An overlapping evaluation seconds later is the same check, not a second failure.
    alerts
        .run(&p.deps, every(1) + chrono::Duration::seconds(20))
        .await
        .unwrap();
    assert!(health_posts().is_empty(), "{:?}", health_posts());
    // The second in a row alerts, critically, naming the queue, the error and since when.
    alerts.run(&p.deps, every(2)).await.unwrap();
    let posts = health_posts();
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert!(
        posts[0].starts_with("[CRITICAL]")
            && posts[0].contains("queue:enrichment-dlq failed 2 health checks in a row")
            && posts[0].contains("AccessDenied"),
        "{}",
        posts[0]
    );
    alerts.run(&p.deps, every(3)).await.unwrap();
    assert_eq!(health_posts().len(), 1, "not repeated within the cooldown");
    bus.make_unreadable(None);
    alerts.run(&p.deps, every(4)).await.unwrap();
    alerts.run(&p.deps, every(5)).await.unwrap();
    let posts = health_posts();
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert!(posts[1].starts_with("[RECOVERED]"), "{}", posts[1]);
}

#[test]
fn the_operators_thresholds_come_from_the_deployment_and_bad_values_are_named() {
    use std::collections::HashMap;
    let env = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let t = Thresholds::configured(&env(&[])).unwrap();
    assert_eq!((t.health_failures, t.db_storage_limit_gb), (2, 20.0));
    let t = Thresholds::configured(&env(&[
        ("HEALTH_CHECK_FAILURES_THRESHOLD", "3"),
        ("LF_DB_STORAGE_LIMIT_GB", "100"),
    ]))
    .unwrap();
    assert_eq!((t.health_failures, t.db_storage_limit_gb), (3, 100.0));
    for (var, value) in [
        ("HEALTH_CHECK_FAILURES_THRESHOLD", "0"),
        ("HEALTH_CHECK_FAILURES_THRESHOLD", "two"),
        ("LF_DB_STORAGE_LIMIT_GB", "-1"),
    ] {
        let e = Thresholds::configured(&env(&[(var, value)])).unwrap_err();
        assert!(e.to_string().contains(var), "{e}");
    }
}
