//! Compute cost beside vendor cost: a night's functions record their invocations (billed
//! milliseconds at the template's memory, and the SQS, S3 and event requests of their work) per
//! tenant and run; the run summary, the roll-up and the ops API show it per 1,000 leads beside
//! vendor cost; the daily infra budget alert fires above the budget, naming the costliest
//! functions; the platform's own work has no tenant; the HTTP functions write at most once per
//! flush interval.

use std::collections::BTreeMap;
use std::time::Duration;

use leadfactory_cli::local::NoProgress;
use shared::compute::{ComputePrices, Meter, Requests, Usage};
use testkit::TestDb;

#[tokio::test]
async fn a_night_records_and_prices_its_compute_per_function_and_the_roll_up_shows_it_per_1000_leads()
 {
    let db = TestDb::new().await;
    let store = tempfile::tempdir().unwrap();
    let p = testkit::local_pipeline(&db, store.path(), |_| {}).await;
    let run = p.run(&NoProgress).await.unwrap();
    let admin = db.admin().await;
    let rows = admin
        .query(
            "SELECT function, sum(invocations)::int8 AS invocations, sum(billed_ms)::int8 AS ms, min(memory_mb) AS memory,
                    sum(sqs_requests)::int8 AS sqs, sum(s3_requests)::int8 AS s3, sum(events)::int8 AS events,
                    sum(cost_nanos)::int8 AS nanos, bool_and(tenant_id IS NOT NULL) AS tenanted
             FROM compute_usage WHERE run_id = $1 GROUP BY function",
            &[&run.as_uuid()],
        )
        .await
        .unwrap();
    let by: BTreeMap<String, &tokio_postgres::Row> =
        rows.iter().map(|r| (r.get("function"), r)).collect();
    let memory = leadfactory_cli::local::template_memory().unwrap();
    for f in [
        "sourcing",
        "enrichment",
        "assessment",
        "scoring",
        "reports",
        "personalization",
        "delivery",
    ] {
        let r = by
            .get(f)
            .unwrap_or_else(|| panic!("no compute recorded for {f}: {:?}", by.keys()));
        let invocations: i64 = r.get("invocations");
        assert!(invocations > 0, "{f}");
        assert!(
            r.get::<_, bool>("tenanted"),
            "{f}: a stage's work is its tenant's"
        );
        // Priced at the template's memory, as it runs deployed.
        assert_eq!(r.get::<_, i32>("memory") as u32, memory[f], "{f}");
        // The event source's receive and delete, and the hop it sent (all but the last stage).
        let sqs: i64 = r.get("sqs");
        assert!(sqs >= 2 * invocations, "{f}: {sqs} SQS requests");
        assert!(r.get::<_, i64>("nanos") > 0);
    }
    assert!(by["assessment"].get::<_, i64>("s3") > 0, "homepages stored");
    assert!(by["reports"].get::<_, i64>("s3") > 0, "PDFs stored");
    // The publish after a batch's last round trip is recorded on its own, under the tenant.
    let events: i64 = admin
        .query_one(
            "SELECT sum(events)::int8 FROM compute_usage WHERE tenant_id = $1",
            &[&p.tenant.as_uuid()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        events, 1,
        "the run's RunFinished, published by the batch that finished it"
    );
    // The price is what the list prices make of the figures.
    let r = by["scoring"];
    let expected = Usage {
        tenant: None,
        run: None,
        function: "scoring".into(),
        invocations: r.get::<_, i64>("invocations") as u32,
        billed_ms: r.get::<_, i64>("ms") as u64,
        memory_mb: r.get::<_, i32>("memory") as u32,
        requests: Requests {
            sqs: r.get::<_, i64>("sqs") as u32,
            s3: r.get::<_, i64>("s3") as u32,
            events: r.get::<_, i64>("events") as u32,
        },
    }
    .cost_nanos(&ComputePrices::default());
    // Summed per row, each rounded down: within a nano-dollar per row.
    let priced: i64 = r.get("nanos");
    assert!(
        (expected - priced).abs() <= rows.len() as i64 * 10,
        "{expected} vs {priced}"
    );

    // The run's summary shows it beside vendor cost.
    let s = leadfactory_cli::local::summarize(p.pool(), p.tenant, run)
        .await
        .unwrap();
    let total: i64 = rows.iter().map(|r| r.get::<_, i64>("nanos")).sum();
    assert_eq!(s.infra_nanos, total);
    assert_eq!(
        s.infra_per_1000_leads_micros(),
        Some(total / s.sourced),
        "nano-dollars per lead are micro-dollars per 1,000"
    );
    assert!(s.vendor_per_1000_leads_micros().unwrap() > s.infra_per_1000_leads_micros().unwrap());

    // The roll-up: the tenant's day, compute beside vendors and leads.
    let today = chrono::Utc::now().date_naive();
    shared::analytics::rollup(p.pool(), today, today)
        .await
        .unwrap();
    let day = admin
        .query_one(
            "SELECT infra_nanos, vendor_micros, sourced, invocations FROM infra_daily WHERE tenant_id = $1 AND day = $2",
            &[&p.tenant.as_uuid(), &today],
        )
        .await
        .unwrap();
    let tenant_today: i64 = admin
        .query_one(
            "SELECT sum(cost_nanos)::int8 FROM compute_usage WHERE tenant_id = $1",
            &[&p.tenant.as_uuid()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(day.get::<_, i64>("infra_nanos"), tenant_today);
    assert_eq!(day.get::<_, i64>("vendor_micros"), s.cost_micros);
    assert!(day.get::<_, i64>("sourced") > 0);

    // The ops API's daily costs read it, per 1,000 leads.
    let key = ops_api::keys::create(p.pool(), p.tenant, "costs")
        .await
        .unwrap()
        .key;
    let body: serde_json::Value = reqwest::Client::new()
        .get(format!(
            "{}/v1/costs/daily?from={today}&to={today}",
            p.gateway_url
        ))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let d = &body["days"][0];
    assert_eq!(d["infra_micros"], tenant_today / 1_000, "{body}");
    assert_eq!(d["vendor_micros"], s.cost_micros);
    let sourced = d["sourced"].as_i64().unwrap();
    assert_eq!(
        d["infra_per_1000_leads_micros"],
        tenant_today / 1_000 * 1_000 / sourced
    );

    // Above the daily infra budget the operators' alert fires, naming the costliest functions.
    let t = alerts::Thresholds {
        infra_daily_budget_usd: total as f64 / 1e9 / 2.0,
        ..alerts::Thresholds::default()
    };
    alerts::Alerts::new(None, t)
        .run(&p.deps, chrono::Utc::now())
        .await
        .unwrap();
    let alert = admin
        .query_one(
            "SELECT severity, message FROM operator_alerts WHERE rule = 'infra_budget'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(alert.get::<_, String>("severity"), "critical");
    let message: String = alert.get("message");
    assert!(
        message.contains("daily infra budget") && message.contains("invocations"),
        "{message}"
    );
}

#[tokio::test]
async fn the_platforms_own_work_has_no_tenant_and_an_http_functions_usage_waits_for_its_flush() {
    let db = TestDb::new().await;
    let pool = db.app_pool();
    let admin = db.admin().await;
    let count = |function: &'static str| {
        let admin = &admin;
        async move {
            admin
                .query_one(
                    "SELECT count(*) AS rows, coalesce(sum(invocations), 0)::int8 AS invocations,
                            bool_and(tenant_id IS NULL) AS platform
                     FROM compute_usage WHERE function = $1",
                    &[&function],
                )
                .await
                .unwrap()
        }
    };
    let scheduled = Meter::configured(Some(512), ComputePrices::default());
    let out = scheduled
        .platform(&pool, "retention", async {
            shared::compute::count(shared::compute::Service::S3, 3);
            7
        })
        .await;
    assert_eq!(out, 7);
    let r = count("retention").await;
    assert_eq!(
        (r.get::<_, i64>("rows"), r.get::<_, i64>("invocations")),
        (1, 1)
    );
    assert!(r.get::<_, bool>("platform"));
    let s3: i32 = admin
        .query_one(
            "SELECT s3_requests FROM compute_usage WHERE function = 'retention'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(s3, 3);

    // An HTTP function's requests wait for the flush interval, then go as one row.
    let http = Meter::configured(Some(256), ComputePrices::default())
        .flushing_after(Duration::from_millis(300));
    http.platform(&pool, "storefront", async {}).await;
    http.platform(&pool, "storefront", async {}).await;
    assert_eq!(count("storefront").await.get::<_, i64>("rows"), 0);
    tokio::time::sleep(Duration::from_millis(350)).await;
    http.platform(&pool, "storefront", async {}).await;
    let r = count("storefront").await;
    assert_eq!(
        (r.get::<_, i64>("rows"), r.get::<_, i64>("invocations")),
        (1, 3)
    );
    // The application role cannot read the platform's rows, nor write any directly.
    let app = db.app_pool();
    let c = app.get().await.unwrap();
    let seen: i64 = c
        .query_one("SELECT count(*) FROM compute_usage", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(seen, 0);
    assert!(
        c.execute(
            "INSERT INTO compute_usage (function, invocations, billed_ms, memory_mb, sqs_requests, s3_requests, events, cost_nanos)
             VALUES ('x', 1, 1, 128, 0, 0, 0, 0)",
            &[],
        )
        .await
        .is_err()
    );
}
