//! `lf-bench http`: the HTTP functions under load through the local gateway (the real handlers
//! behind the API Gateway stand-in), driven by `oha` at increasing concurrency: the storefront's
//! report page, both webhooks (signed, valid) and the ops API. The gateway, the handlers, the
//! simulator, PostgreSQL and the load generator share this machine's cores.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use leadfactory_cli::local::{LocalOptions, LocalPipeline, NoProgress};
use secrecy::SecretString;

use super::database;

/// One target: what it is, the request, and how many units (events) a request carries.
struct Target {
    what: &'static str,
    method: &'static str,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
    units: f64,
}

pub async fn http(oha: &Path, concurrency: &[usize], seconds: u64) -> anyhow::Result<()> {
    let tmp = std::env::temp_dir().join(format!("lf-bench-http-{}", std::process::id()));
    let result = load(&tmp, oha, concurrency, seconds).await;
    shared::db::cluster::LocalCluster::stop(&tmp.join("pg")).await?;
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

async fn load(tmp: &Path, oha: &Path, concurrency: &[usize], seconds: u64) -> anyhow::Result<()> {
    let (owner, app) = database(&tmp.join("pg")).await?;
    let (admin, conn) = tokio_postgres::connect(&owner, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let mut opts = LocalOptions::new(SecretString::from(app), tmp.join("store"));
    opts.buy_share = 1.0;
    let bus = Arc::new(leadfactory_cli::local::memory_bus(
        Duration::from_secs(30),
        3,
    ));
    let p = LocalPipeline::start(opts, bus).await?;
    p.ensure_tenant("Load agency").await?;
    let mut pool = p.pool().clone();
    testkit::example_campaign()
        .upsert(&mut pool, p.tenant)
        .await?;
    p.run(&NoProgress).await?;
    p.simulate_recipients(&NoProgress).await?;
    let key = ops_api::keys::create(&p.deps.pool, p.tenant, "load")
        .await?
        .key;
    let row = admin
        .query_one(
            "SELECT r.token, e.id AS email, e.sg_message_id, e.to_email FROM reports r
             JOIN emails e ON e.report_id = r.id AND e.kind = 'outreach' WHERE e.sg_message_id IS NOT NULL LIMIT 1",
            &[],
        )
        .await
        .context("a sent email with a report")?;
    let token: String = row.get("token");
    let gw = &p.gateway_url;

    // SendGrid: one signed batch of 100 events (oha repeats it: after the first, every event is
    // a duplicate, which the handler verifies, parses and drops by its event id).
    let now = chrono::Utc::now().timestamp();
    let kinds = ["delivered", "open", "click"];
    let events: Vec<serde_json::Value> = (0..100)
        .map(|i| {
            let kind = kinds[i % kinds.len()];
            serde_json::json!({
                "email": row.get::<_, String>("to_email"), "timestamp": now, "event": kind,
                "sg_event_id": format!("load-{i}"), "sg_message_id": row.get::<_, String>("sg_message_id"),
                "tenant_id": p.tenant.to_string(), "email_id": row.get::<_, uuid::Uuid>("email").to_string()
            })
        })
        .collect();
    let sendgrid_body = serde_json::Value::Array(events).to_string();
    let sendgrid_sig = shared::webhook::sendgrid::sign(
        &p.sim.sendgrid_signing_key(),
        now,
        sendgrid_body.as_bytes(),
    );
    // Stripe: the signed completion of one of the night's purchases (oha repeats it: after
    // the first, the handler verifies it and finds its event id already processed).
    let paid = admin
        .query_one(
            "SELECT stripe_session_id, report_id, business_id FROM purchases WHERE status = 'paid' LIMIT 1",
            &[],
        )
        .await
        .context("a paid purchase")?;
    let session: String = paid.get("stripe_session_id");
    let stripe_body = super::checkout_completed(
        "evt_load_1",
        &session,
        now,
        &serde_json::json!({
            "tenant_id": p.tenant.to_string(),
            "report_id": paid.get::<_, uuid::Uuid>("report_id").to_string(),
            "business_id": paid.get::<_, uuid::Uuid>("business_id").to_string(),
        }),
    );
    let stripe_sig = shared::webhook::stripe::sign(
        &p.sim.state.cfg.stripe_webhook_secret,
        now,
        stripe_body.as_bytes(),
    )?;
    let targets = [
        Target {
            what: "storefront: report page",
            method: "GET",
            url: format!("{gw}/r/{token}"),
            headers: vec![],
            body: None,
            units: 1.0,
        },
        Target {
            what: "SendGrid webhook: signed batch of 100 (repeated)",
            method: "POST",
            url: format!("{gw}/webhooks/sendgrid"),
            headers: vec![
                (
                    shared::webhook::sendgrid::SIGNATURE_HEADER.into(),
                    sendgrid_sig,
                ),
                (
                    shared::webhook::sendgrid::TIMESTAMP_HEADER.into(),
                    now.to_string(),
                ),
            ],
            body: Some(sendgrid_body),
            units: 100.0,
        },
        Target {
            what: "Stripe webhook: signed completion (repeated)",
            method: "POST",
            url: format!("{gw}/webhooks/stripe"),
            headers: vec![("Stripe-Signature".into(), stripe_sig)],
            body: Some(stripe_body),
            units: 1.0,
        },
        Target {
            what: "ops API: GET /v1/campaigns",
            method: "GET",
            url: format!("{gw}/v1/campaigns"),
            headers: vec![("Authorization".into(), format!("Bearer {key}"))],
            body: None,
            units: 1.0,
        },
    ];
    println!(
        "| target | concurrency | req/s | units/s | p50 ms | p95 ms | p99 ms | non-2xx | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for t in &targets {
        for &c in concurrency {
            let r = run_oha(oha, t, c, seconds).await?;
            println!(
                "| {} | {c} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {} | {} |",
                t.what,
                r.rps,
                r.rps * t.units,
                r.p50 * 1000.0,
                r.p95 * 1000.0,
                r.p99 * 1000.0,
                r.non_2xx,
                r.errors
            );
        }
    }
    Ok(())
}

struct OhaResult {
    rps: f64,
    p50: f64,
    p95: f64,
    p99: f64,
    non_2xx: u64,
    errors: u64,
}

async fn run_oha(oha: &Path, t: &Target, c: usize, seconds: u64) -> anyhow::Result<OhaResult> {
    let mut cmd = tokio::process::Command::new(oha);
    cmd.args(["--no-tui", "--output-format", "json", "-z"])
        .arg(format!("{seconds}s"))
        .args(["-c", &c.to_string(), "-m", t.method]);
    for (k, v) in &t.headers {
        cmd.args(["-H", &format!("{k}: {v}")]);
    }
    if let Some(b) = &t.body {
        cmd.args(["-d", b, "-T", "application/json"]);
    }
    cmd.arg(&t.url)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    let out = cmd.output().await.context("running oha")?;
    anyhow::ensure!(out.status.success(), "oha failed: {}", out.status);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("oha's JSON summary")?;
    let f = |p: &str| {
        v.pointer(p)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(f64::NAN)
    };
    let codes = v["statusCodeDistribution"].as_object();
    let non_2xx = codes
        .into_iter()
        .flatten()
        .filter(|(k, _)| !k.starts_with('2'))
        .filter_map(|(_, n)| n.as_u64())
        .sum();
    // Requests still in flight when the duration ends are counted as "aborted due to
    // deadline": not failures.
    let errors = v["errorDistribution"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !k.contains("deadline"))
        .filter_map(|(_, n)| n.as_u64())
        .sum();
    Ok(OhaResult {
        rps: f("/summary/requestsPerSec"),
        p50: f("/latencyPercentiles/p50"),
        p95: f("/latencyPercentiles/p95"),
        p99: f("/latencyPercentiles/p99"),
        non_2xx,
        errors,
    })
}
