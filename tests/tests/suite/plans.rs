//! Query plans at size: a database populated with 200,000 businesses (and their emails,
//! events, scores, purchases …, `testkit::population`), `ANALYZE`d; then a night and what
//! follows it run on it as the deployed functions would — every stage and delivery, the
//! recipients' SendGrid and Stripe webhooks and storefront visits, the analytics roll-up, QA
//! sampling, alerts, the ops API's list and export pages, retention's purge and an erasure.
//! The server's `auto_explain` logs the plan of every statement they ran (nested ones
//! included, as executed, with their parameters and row counts); none may read a large table
//! by a sequential scan, nor read more than 20,000 of its rows by any scan (an index walked
//! with a filter is a sequential scan in disguise). The statement that does is named, with
//! the table and the scan.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use leadfactory_cli::local::{LOCAL_TENANT, LocalOptions, LocalPipeline, NoProgress};
use serde_json::Value;
use shared::db::cluster;
use testkit::population::{self, Shape};

const DB: &str = "lf_plans";

const BUSINESSES: i64 = 200_000;

/// Rows a hot statement may read from one large table (the populated tenant holds about
/// 44,000 businesses; a night's or a day's work is a few hundred rows of each table).
const MAX_ROWS_READ: f64 = 20_000.0;

/// The scans of a plan tree (as executed) that read a large table badly: every sequential
/// scan, and any scan reading more than [`MAX_ROWS_READ`] rows (those it returned and those
/// its filter threw away, over all its loops), as (table, what was wrong).
fn bad_scans(plan: &Value, large: &BTreeSet<String>, found: &mut Vec<(String, String)>) {
    let node = plan["Node Type"].as_str().unwrap_or("");
    if let Some(table) = plan["Relation Name"]
        .as_str()
        .filter(|t| large.contains(*t))
    {
        let n = |k: &str| plan[k].as_f64().unwrap_or(0.0);
        let read =
            (n("Actual Rows") + n("Rows Removed by Filter") + n("Rows Removed by Index Recheck"))
                * n("Actual Loops").max(1.0);
        if node == "Seq Scan" || read > MAX_ROWS_READ {
            let mut indexes = Vec::new();
            indexes_of(plan, &mut indexes);
            let cond = ["Index Cond", "Recheck Cond", "Filter"]
                .iter()
                .filter_map(|k| plan[*k].as_str().map(|c| format!("{k}: {c}")))
                .collect::<Vec<_>>()
                .join("; ");
            found.push((
                table.to_owned(),
                format!(
                    "{node} [{}] reading {read} rows; {cond}",
                    indexes.join(", ")
                ),
            ));
        }
    }
    for child in plan["Plans"].as_array().into_iter().flatten() {
        bad_scans(child, large, found);
    }
}

/// The indexes a scan reads: its own, or those of the bitmap index scans under it.
fn indexes_of(plan: &Value, found: &mut Vec<String>) {
    if let Some(i) = plan["Index Name"].as_str() {
        found.push(i.to_owned());
    }
    for child in plan["Plans"].as_array().into_iter().flatten() {
        if child["Node Type"]
            .as_str()
            .is_some_and(|n| n.starts_with("Bitmap"))
        {
            indexes_of(child, found);
        }
    }
}

/// The plans `auto_explain` wrote to a server log (format json): each follows a line ending in
/// `plan:`, its lines continued with a leading tab.
fn logged_plans(log: &str) -> Vec<Value> {
    let mut plans = Vec::new();
    let mut lines = log.lines().peekable();
    while let Some(line) = lines.next() {
        if !line.ends_with("plan:") {
            continue;
        }
        let mut json = String::new();
        while let Some(next) = lines.peek().and_then(|l| l.strip_prefix('\t')) {
            json.push_str(next);
            json.push('\n');
            lines.next();
        }
        if let Ok(plan) = serde_json::from_str::<Value>(&json) {
            plans.push(plan);
        }
    }
    plans
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_hot_statement_reads_a_large_table_sequentially() {
    let dir = tempfile::tempdir().unwrap();
    let c = testkit::own_cluster(dir.path()).await;
    cluster::prepare_database(&c.admin_url("postgres"), DB)
        .await
        .unwrap();
    let (admin, conn) = tokio_postgres::connect(&c.admin_url(DB), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let tenant: uuid::Uuid = LOCAL_TENANT.parse().unwrap();
    let tenants = population::tenants(tenant, "plans");
    population::populate(
        &admin,
        &tenants,
        "plans",
        // 200 days of history: a 30-day analytic window is a part of the tables, as in
        // production, not all of them.
        Shape {
            events_per_email: 3,
            per_day: 1_000,
        },
        0,
        BUSINESSES,
    )
    .await
    .unwrap();
    let large: BTreeSet<String> = admin
        .query(
            "SELECT relname FROM pg_class
             WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace AND reltuples >= 10000",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("relname"))
        .collect();
    for t in [
        "businesses",
        "emails",
        "email_events",
        "scores",
        "reports",
        "purchases",
        "assessment_contacts",
    ] {
        assert!(large.contains(t), "{t} is not large: {large:?}");
    }
    // From here on every new session of the database logs the plan of each statement.
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {DB} SET session_preload_libraries = 'auto_explain';
             ALTER DATABASE {DB} SET auto_explain.log_min_duration = 0;
             ALTER DATABASE {DB} SET auto_explain.log_format = 'json';
             ALTER DATABASE {DB} SET auto_explain.log_nested_statements = on;
             ALTER DATABASE {DB} SET auto_explain.log_analyze = on;
             ALTER DATABASE {DB} SET auto_explain.log_timing = off;"
        ))
        .await
        .unwrap();

    let store = tempfile::tempdir().unwrap();
    let mut opts = LocalOptions::new(c.app_url(DB).into(), store.path().to_owned());
    opts.buy_share = 1.0;
    let bus = Arc::new(leadfactory_cli::local::memory_bus(
        Duration::from_secs(30),
        3,
    ));
    let p = LocalPipeline::start(opts, bus).await.unwrap();
    p.ensure_tenant("Test agency").await.unwrap();
    let mut pool = p.pool().clone();
    testkit::example_campaign()
        .upsert(&mut pool, p.tenant)
        .await
        .unwrap();
    hot_paths(&p, &admin).await;

    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    let plans = logged_plans(&log);
    assert!(
        plans.len() > 200,
        "auto_explain logged {} plans: is it loaded?",
        plans.len()
    );
    let mut offenders: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for plan in &plans {
        let mut scans = Vec::new();
        bad_scans(&plan["Plan"], &large, &mut scans);
        let query = plan["Query Text"].as_str().unwrap_or("?");
        for (table, what) in scans {
            offenders
                .entry(format!("{table} ({what})"))
                .or_default()
                .insert(
                    query
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                        .chars()
                        .take(400)
                        .collect(),
                );
        }
    }
    assert!(
        offenders.is_empty(),
        "statements reading large tables badly ({} plans checked):\n{}",
        plans.len(),
        offenders
            .iter()
            .flat_map(|(t, qs)| qs.iter().map(move |q| format!("  {t}: {q}")))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// What the deployed functions do in and after a night, on the populated database.
async fn hot_paths(p: &LocalPipeline, admin: &tokio_postgres::Client) {
    let run = p.run(&NoProgress).await.unwrap();
    let activity = p.simulate_recipients(&NoProgress).await.unwrap();
    assert!(activity.checkouts > 0, "{activity:?}");
    let now = chrono::Utc::now();
    let today = now.date_naive();
    shared::analytics::rollup(&p.deps.pool, today - chrono::Duration::days(1), today)
        .await
        .unwrap();
    qa_sampler::sample(&p.deps, qa_sampler::DEFAULT_SAMPLE, now)
        .await
        .unwrap();
    alerts::Alerts::new(
        p.deps.vendors.slack(&p.deps.policy).unwrap(),
        alerts::Thresholds::default(),
    )
    .run(&p.deps, now)
    .await
    .unwrap();

    let key = ops_api::keys::create(&p.deps.pool, p.tenant, "plans")
        .await
        .unwrap()
        .key;
    let http = reqwest::Client::new();
    let campaign: uuid::Uuid = admin
        .query_one(
            "SELECT id FROM campaigns WHERE tenant_id = $1 AND status = 'active'",
            &[&p.tenant.as_uuid()],
        )
        .await
        .unwrap()
        .get("id");
    for path in [
        "/v1/health".to_owned(),
        "/v1/runs".to_owned(),
        format!("/v1/runs/{run}"),
        "/v1/campaigns".to_owned(),
        format!("/v1/campaigns/{campaign}/funnel"),
        "/v1/experiments".to_owned(),
        "/v1/costs/tiers".to_owned(),
        "/v1/exports/leads.csv?limit=1000".to_owned(),
        "/v1/exports/emails.csv?limit=1000".to_owned(),
        "/v1/exports/purchases.csv?limit=1000".to_owned(),
        "/v1/exports/costs.csv?limit=1000".to_owned(),
    ] {
        let r = http
            .get(format!("{}{path}", p.gateway_url))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}: {}", r.text().await.unwrap());
    }

    let periods = retention::Periods::default();
    retention::purge(&p.deps, &periods, now + chrono::Duration::days(1))
        .await
        .unwrap();
    let generated: String = admin
        .query_one(
            "SELECT email FROM businesses WHERE tenant_id = $1 AND email LIKE 'owner@gen-%' LIMIT 1",
            &[&p.tenant.as_uuid()],
        )
        .await
        .unwrap()
        .get("email");
    let address = shared::domain::Email::parse(&generated).unwrap();
    let erased = shared::erasure::erase_email(
        &p.deps.pool,
        p.deps.store.as_ref(),
        p.tenant,
        &address,
        "plans",
    )
    .await
    .unwrap();
    assert_ne!(erased, shared::erasure::Erased::default());
}
