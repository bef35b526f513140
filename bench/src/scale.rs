//! `lf-bench scale`: the hot operations on one database grown to each size in turn
//! (`testkit::population`: 20 tenants, a fixed number of businesses sourced a day, so a bigger
//! database is a longer history and a day's work is the same rows at every size). Each
//! operation works as the deployed function does, for the largest tenant (about a fifth of the
//! rows), and is timed `repeat` times; the medians are tabled by size with the growth from the
//! smallest size to the largest.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use leadfactory_cli::local::{LOCAL_TENANT, LocalOptions, LocalPipeline, NoProgress};
use secrecy::SecretString;
use shared::bus::{MemoryBus, Queue, QueueSpec};
use testkit::population::{self, Shape};

use super::{database, ms, pct};

const SEED: &str = "bench";
const STRIPE_SECRET: &str = "whsec_bench_scale";

/// One operation's medians by size, in ms, with what a repetition handles.
struct Row {
    what: String,
    unit: &'static str,
    per_call: f64,
    ms: Vec<f64>,
}

struct Bench {
    admin: tokio_postgres::Client,
    p: LocalPipeline,
    tenant: uuid::Uuid,
    sendgrid: sendgrid_webhook::WebhookDeps,
    sendgrid_key: p256::ecdsa::SigningKey,
    stripe: stripe_webhook::WebhookDeps,
    ops_key: String,
    http: reqwest::Client,
    repeat: usize,
    round: usize,
}

pub async fn scale(sizes: &[i64], events_per_email: i64, repeat: usize) -> anyhow::Result<()> {
    let tmp = std::env::temp_dir().join(format!("lf-bench-scale-{}", std::process::id()));
    let result = measure_sizes(&tmp, sizes, events_per_email, repeat).await;
    // The cluster goes whatever happened: a failed run must not leave a server behind.
    shared::db::cluster::LocalCluster::stop(&tmp.join("pg")).await?;
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

async fn measure_sizes(
    tmp: &std::path::Path,
    sizes: &[i64],
    events_per_email: i64,
    repeat: usize,
) -> anyhow::Result<()> {
    let (owner, app) = database(&tmp.join("pg")).await?;
    let (admin, conn) = tokio_postgres::connect(&owner, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let tenant: uuid::Uuid = LOCAL_TENANT.parse()?;
    let tenants = population::tenants(tenant, SEED);

    let mut opts = LocalOptions::new(SecretString::from(app), tmp.join("store"));
    opts.budgets = shared::pipeline::budget::BudgetLimits {
        yelp: i64::MAX / 4,
        places: i64::MAX / 4,
        llm: i64::MAX / 4,
    };
    let bus = Arc::new(leadfactory_cli::local::memory_bus(
        Duration::from_secs(30),
        3,
    ));
    let p = LocalPipeline::start(opts, bus).await?;
    p.ensure_tenant("Bench agency").await?;
    let sendgrid_key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32])?;
    let sendgrid = sendgrid_webhook::WebhookDeps {
        pool: p.deps.pool.clone(),
        key: shared::webhook::sendgrid::SendGridKey::from_base64_der(
            &shared::webhook::sendgrid::public_key_base64(&sendgrid_key)?,
        )?,
        tolerance_secs: 600,
    };
    let stripe = stripe_webhook::WebhookDeps {
        pool: p.deps.pool.clone(),
        bus: Arc::new(MemoryBus::new(QueueSpec::with_dlq(
            Queue::Fulfilment.name(),
            Duration::from_secs(30),
            3,
        ))),
        secret: SecretString::from(STRIPE_SECRET),
        tolerance_secs: 300,
        events: p.deps.events.clone(),
    };
    let ops_key = ops_api::keys::create(&p.deps.pool, p.tenant, "bench")
        .await?
        .key;
    let mut b = Bench {
        admin,
        p,
        tenant,
        sendgrid,
        sendgrid_key,
        stripe,
        ops_key,
        http: reqwest::Client::new(),
        repeat,
        round: 0,
    };

    let mut rows: Vec<Row> = Vec::new();
    let mut generated = Vec::new();
    let mut from = 0;
    for (i, &size) in sizes.iter().enumerate() {
        let t = Instant::now();
        population::populate(
            &b.admin,
            &tenants,
            SEED,
            Shape {
                events_per_email,
                ..Shape::default()
            },
            from,
            size,
        )
        .await?;
        b.admin.batch_execute("VACUUM ANALYZE").await?;
        generated.push(t.elapsed().as_secs_f64());
        from = size;
        let measured = b.measure(i).await?;
        for (k, (what, unit, per_call, v)) in measured.into_iter().enumerate() {
            if i == 0 {
                rows.push(Row {
                    what,
                    unit,
                    per_call,
                    ms: vec![v],
                });
            } else if let Some(r) = rows.get_mut(k) {
                r.ms.push(v);
            }
        }
    }

    let counts = b
        .admin
        .query_one(
            "SELECT (SELECT count(*) FROM businesses) AS b, (SELECT count(*) FROM emails) AS e,
                    (SELECT count(*) FROM email_events) AS v, (SELECT count(*) FROM purchases) AS p,
                    pg_database_size(current_database()) AS bytes",
            &[],
        )
        .await?;
    println!(
        "Largest size: {} businesses, {} emails, {} email events, {} purchases over 20 tenants, {:.1} GB; \
         the measured tenant holds about a fifth. Generating each step took {} s.",
        counts.get::<_, i64>("b"),
        counts.get::<_, i64>("e"),
        counts.get::<_, i64>("v"),
        counts.get::<_, i64>("p"),
        counts.get::<_, i64>("bytes") as f64 / 1e9,
        generated
            .iter()
            .map(|s| format!("{s:.0}"))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    println!();
    let head: Vec<String> = sizes.iter().map(|s| format!("{s} ms")).collect();
    println!(
        "| operation (median of {repeat}) | {} | growth | at the largest |",
        head.join(" | ")
    );
    println!("|---|{}---:|---:|", "---:|".repeat(sizes.len()));
    for r in &rows {
        let growth = match (r.ms.first(), r.ms.last()) {
            (Some(a), Some(z)) if *a > 0.0 => z / a,
            _ => f64::NAN,
        };
        let last = r.ms.last().copied().unwrap_or(f64::NAN);
        let rate = if r.per_call > 1.0 {
            format!("{:.0} {}/s", r.per_call / (last / 1000.0), r.unit)
        } else {
            String::new()
        };
        println!(
            "| {} | {} | {growth:.2}x | {rate} |",
            r.what,
            r.ms.iter()
                .map(|v| format!("{v:.1}"))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    Ok(())
}

impl Bench {
    /// Each operation's median ms at this size: (what, unit, units per call, ms).
    async fn measure(
        &mut self,
        step: usize,
    ) -> anyhow::Result<Vec<(String, &'static str, f64, f64)>> {
        let mut out = Vec::new();
        let n = self.repeat;

        let (mut v, mut events) = (Vec::new(), 0);
        for _ in 0..n {
            let (took, sent) = self.sendgrid_batch(1000).await?;
            v.push(took);
            events = sent;
        }
        out.push((
            format!("SendGrid webhook: a signed batch of {events} events"),
            "events",
            events as f64,
            pct(&v, 50.0),
        ));

        let mut v = Vec::new();
        for _ in 0..n {
            v.push(self.stripe_checkout().await?);
        }
        out.push((
            "Stripe webhook: a paid checkout".into(),
            "",
            1.0,
            pct(&v, 50.0),
        ));

        // A night of the example campaign for the measured tenant: every stage's batches. Each
        // size gets a campaign of its own (the last one paused, as an operator would), so each
        // night hands on the area's businesses afresh rather than finding it searched.
        let mut pool = self.p.pool().clone();
        let night = |i: usize, status: Option<&str>| {
            let mut c = testkit::example_campaign();
            c.name = format!("{} (night {i})", c.name);
            c.status = status.map(str::to_owned);
            c
        };
        if step > 0 {
            night(step - 1, Some("paused"))
                .upsert(&mut pool, self.p.tenant)
                .await?;
        }
        night(step, None).upsert(&mut pool, self.p.tenant).await?;
        let t = Instant::now();
        let run = self.p.run(&NoProgress).await?;
        let night = ms(t.elapsed());
        let stages = self
            .admin
            .query(
                "SELECT stage, total, p50_ms FROM run_stage_stats WHERE run_id = $1 ORDER BY stage",
                &[&run.as_uuid()],
            )
            .await?;
        out.push((
            "a night: targeting to delivery, wall".into(),
            "",
            1.0,
            night,
        ));
        for s in stages {
            let stage: String = s.get("stage");
            out.push((
                format!("a night: {stage} message, p50"),
                "",
                1.0,
                s.get::<_, Option<f64>>("p50_ms").unwrap_or(f64::NAN),
            ));
        }

        let today = chrono::Utc::now().date_naive();
        let mut v = Vec::new();
        for _ in 0..n {
            let t = Instant::now();
            shared::analytics::rollup(&self.p.deps.pool, today, today).await?;
            v.push(ms(t.elapsed()));
        }
        out.push((
            "analytics roll-up of a day, 20 tenants".into(),
            "",
            1.0,
            pct(&v, 50.0),
        ));

        let campaign: uuid::Uuid = self
            .admin
            .query_one(
                "SELECT id FROM campaigns WHERE tenant_id = $1 AND name = 'Generated campaign'",
                &[&self.tenant],
            )
            .await
            .context("the generated campaign")?
            .get("id");
        for (what, path, rows) in [
            ("ops API: runs", "/v1/runs".to_owned(), 1.0),
            (
                "ops API: a campaign's funnel",
                format!("/v1/campaigns/{campaign}/funnel"),
                1.0,
            ),
            (
                "ops API: leads.csv, a page of 1,000",
                "/v1/exports/leads.csv?limit=1000".to_owned(),
                1000.0,
            ),
            (
                "ops API: emails.csv, a page of 1,000",
                "/v1/exports/emails.csv?limit=1000".to_owned(),
                1000.0,
            ),
            (
                "ops API: purchases.csv, a page of 1,000",
                "/v1/exports/purchases.csv?limit=1000".to_owned(),
                1000.0,
            ),
        ] {
            let mut v = Vec::new();
            for _ in 0..n {
                v.push(self.get(&path).await?);
            }
            out.push((what.into(), "rows", rows, pct(&v, 50.0)));
        }

        // Retention as the nightly schedule runs it a day on: what a night purges depends on
        // the history (nothing is 90 days old below ~450,000 businesses), so the figures are
        // the purge with nothing due (its checks: what the tables' size could slow) and, where
        // rows were due, its cost per 1,000 rows.
        let periods = retention::Periods::default();
        let later = chrono::Utc::now() + chrono::Duration::days(1);
        let t = Instant::now();
        let first = retention::purge(&self.p.deps, &periods, later).await?;
        let first_ms = ms(t.elapsed());
        let rows: u64 = first.purged.iter().map(|p| p.rows).sum();
        let mut v = Vec::new();
        for _ in 0..n {
            let t = Instant::now();
            retention::purge(&self.p.deps, &periods, later).await?;
            v.push(ms(t.elapsed()));
        }
        out.push((
            "retention: the nightly purge with nothing due, 20 tenants".into(),
            "",
            1.0,
            pct(&v, 50.0),
        ));
        out.push((
            "retention: rows due a night on (a count, not ms)".into(),
            "",
            1.0,
            rows as f64,
        ));
        out.push((
            "retention: the purge of what was due, ms per 1,000 rows".into(),
            "",
            1.0,
            if rows > 0 {
                (first_ms - pct(&v, 50.0)).max(0.0) * 1000.0 / rows as f64
            } else {
                f64::NAN
            },
        ));

        let addresses: Vec<String> = self
            .admin
            .query(
                "SELECT email FROM businesses WHERE tenant_id = $1 AND email LIKE 'owner@gen-%'
                 ORDER BY md5(id::text || $2::text) LIMIT $3",
                &[&self.tenant, &(step as i64).to_string(), &(n as i64)],
            )
            .await?
            .iter()
            .map(|r| r.get("email"))
            .collect();
        let mut v = Vec::new();
        for a in &addresses {
            let email = shared::domain::Email::parse(a)?;
            let t = Instant::now();
            shared::erasure::erase_email(
                &self.p.deps.pool,
                self.p.deps.store.as_ref(),
                self.p.tenant,
                &email,
                "bench",
            )
            .await?;
            v.push(ms(t.elapsed()));
        }
        out.push(("erasure of one address".into(), "", 1.0, pct(&v, 50.0)));
        Ok(out)
    }

    async fn get(&self, path: &str) -> anyhow::Result<f64> {
        let t = Instant::now();
        let r = self
            .http
            .get(format!("{}{path}", self.p.gateway_url))
            .bearer_auth(&self.ops_key)
            .send()
            .await?;
        anyhow::ensure!(r.status() == 200, "{path}: {}", r.status());
        r.bytes().await?;
        Ok(ms(t.elapsed()))
    }

    /// A signed batch of `n` events for the measured tenant's emails of the last days, as
    /// SendGrid posts them (delivered, opens, clicks, a blocked bounce now and then).
    async fn sendgrid_batch(&mut self, n: i64) -> anyhow::Result<(f64, usize)> {
        self.round += 1;
        let emails = self
            .admin
            .query(
                "SELECT id, to_email, sg_message_id FROM emails WHERE tenant_id = $1 AND sg_message_id LIKE 'gen-msg-%'
                   AND sent_at > now() - interval '3 days'
                 ORDER BY md5(id::text || $2::text) LIMIT $3",
                &[&self.tenant, &self.round.to_string(), &n],
            )
            .await?;
        let now = chrono::Utc::now().timestamp();
        let kinds = ["delivered", "open", "click", "open", "bounce"];
        let events: Vec<serde_json::Value> = emails
            .iter()
            .enumerate()
            .map(|(i, e)| {
                serde_json::json!({
                    "email": e.get::<_, String>("to_email"), "timestamp": now, "event": kinds[i % kinds.len()],
                    "type": "blocked", "sg_event_id": format!("bench-{}-{i}", self.round),
                    "sg_message_id": e.get::<_, String>("sg_message_id"),
                    "tenant_id": self.tenant.to_string(), "email_id": e.get::<_, uuid::Uuid>("id").to_string()
                })
            })
            .collect();
        let sent = events.len();
        let r = super::sendgrid_request(
            &self.sendgrid_key,
            now,
            serde_json::Value::Array(events).to_string(),
        );
        let t = Instant::now();
        let resp = sendgrid_webhook::handler(&self.sendgrid, r).await;
        let took = ms(t.elapsed());
        anyhow::ensure!(
            resp.status_code == 200,
            "SendGrid webhook answered {}",
            resp.status_code
        );
        Ok((took, sent))
    }

    /// A signed `checkout.session.completed` for one of the tenant's reports nobody bought yet.
    async fn stripe_checkout(&mut self) -> anyhow::Result<f64> {
        self.round += 1;
        let row = self
            .admin
            .query_one(
                "SELECT r.id AS report, r.business_id, e.id AS email, e.campaign_id FROM reports r
                 JOIN emails e ON e.report_id = r.id
                 WHERE r.tenant_id = $1 AND NOT EXISTS (SELECT 1 FROM purchases p WHERE p.report_id = r.id)
                 LIMIT 1",
                &[&self.tenant],
            )
            .await
            .context("a report nobody bought")?;
        let now = chrono::Utc::now().timestamp();
        let session = format!("cs_bench_{}", self.round);
        let body = super::checkout_completed(
            &format!("evt_bench_{}", self.round),
            &session,
            now,
            &serde_json::json!({
                "tenant_id": self.tenant.to_string(),
                "report_id": row.get::<_, uuid::Uuid>("report").to_string(),
                "business_id": row.get::<_, uuid::Uuid>("business_id").to_string(),
                "campaign_id": row.get::<_, uuid::Uuid>("campaign_id").to_string(),
                "email_id": row.get::<_, uuid::Uuid>("email").to_string(),
            }),
        );
        let mut r = aws_lambda_events::event::apigw::ApiGatewayV2httpRequest::default();
        r.request_context.http.method = http::Method::POST;
        r.headers.insert(
            http::HeaderName::from_static("stripe-signature"),
            http::HeaderValue::from_str(&shared::webhook::stripe::sign(
                STRIPE_SECRET,
                now,
                body.as_bytes(),
            )?)?,
        );
        r.body = Some(body);
        let t = Instant::now();
        let resp = stripe_webhook::handler(&self.stripe, r).await;
        let took = ms(t.elapsed());
        anyhow::ensure!(
            resp.status_code == 200,
            "Stripe webhook answered {}",
            resp.status_code
        );
        Ok(took)
    }
}
