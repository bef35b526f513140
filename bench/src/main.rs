//! `lf-bench`: the measurements behind `docs/performance.md` (see `scripts/bench`).
//!
//! * `coldstart` — every function binary (release profile, as deployed) started against a
//!   stand-in Lambda Runtime API, interleaved with a hello-world `lambda_runtime` binary built the
//!   same way: init (exec → first `GET /invocation/next`), first invoke, warm invokes, peak RSS.
//! * `pdf` — report rendering time and size.
//! * `webhook` — SendGrid ingest: a 1,000-event batch (verify + parse + store, real PostgreSQL)
//!   and warm 10-event invokes of the handler.
//! * `pipeline` — the local pipeline end to end at N leads with simulated vendor latency: wall
//!   time, CPU per lead, peak memory, database statements (pg_stat_statements) per batch and,
//!   with `--round-trips`, round trips per batch (counted by a relay in front of PostgreSQL).

mod dedup;
mod http_load;
mod runtime_api;
mod scale;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use secrecy::SecretString;
use shared::db::cluster::{self, LocalCluster};

#[derive(Parser)]
#[command(name = "lf-bench", about = "LeadFactory measurements")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Cold starts of every function binary, interleaved with the hello-world baseline
    Coldstart {
        /// Directory of the release binaries (target/release)
        #[arg(long)]
        bins: PathBuf,
        /// Functions (default: every crate under functions/)
        #[arg(long, value_delimiter = ',')]
        functions: Vec<String>,
        #[arg(long, default_value_t = 15)]
        runs: usize,
        #[arg(long, default_value_t = 20)]
        warm: usize,
        /// Copy each binary's /proc/PID/smaps here after its last invoke (last run wins): which
        /// mappings make up its resident memory
        #[arg(long)]
        smaps: Option<PathBuf>,
    },
    /// Report rendering
    Pdf {
        #[arg(long, default_value_t = 50)]
        n: usize,
    },
    /// SendGrid webhook ingest
    Webhook {
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        #[arg(long, default_value_t = 200)]
        invokes: usize,
    },
    /// `leadfactory export` and `restore` of a database holding this many email events, each in
    /// a process of its own: throughput and peak resident memory
    Backup {
        #[arg(long, default_value_t = 10_000_000)]
        events: i64,
        /// Directory of the `leadfactory` binary (target/release)
        #[arg(long)]
        bins: PathBuf,
    },
    /// The hot operations on one production-shaped database grown to each size in turn
    /// (businesses; each with its email, events, score …; see testkit::population)
    Scale {
        #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
        sizes: Vec<i64>,
        #[arg(long, default_value_t = 10)]
        events_per_email: i64,
        #[arg(long, default_value_t = 5)]
        repeat: usize,
    },
    /// The HTTP functions under load through the local gateway, driven by `oha`
    Http {
        /// The `oha` binary
        #[arg(long)]
        oha: PathBuf,
        #[arg(long, value_delimiter = ',', default_value = "10,50,200")]
        concurrency: Vec<usize>,
        /// Seconds per target and concurrency
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// De-duplication quality on labelled sets of these many businesses
    Dedup {
        #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
        businesses: Vec<usize>,
        #[arg(long, default_value_t = 27)]
        seed: u64,
    },
    /// The local pipeline at scale
    Pipeline {
        #[arg(long, value_delimiter = ',', default_value = "1000")]
        leads: Vec<u32>,
        /// Simulated latency of every vendor call, ms
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Runs of each size (a size may also be listed more than once); with repeated sizes the
        /// median CPU per lead is printed too: two cores shared with PostgreSQL and the
        /// simulator make single runs vary by up to ±20 %
        #[arg(long, default_value_t = 1)]
        repeat: u32,
        /// Reach PostgreSQL through a relay that counts round trips (it adds a hop to each, so
        /// runs that measure CPU or wall time go without it)
        #[arg(long)]
        round_trips: bool,
    },
}

/// A Stripe `checkout.session.completed` event for `session`, paid, with our metadata.
fn checkout_completed(
    event_id: &str,
    session: &str,
    now: i64,
    metadata: &serde_json::Value,
) -> String {
    serde_json::json!({
        "id": event_id, "object": "event", "type": "checkout.session.completed", "created": now, "livemode": false,
        "data": { "object": {
            "id": session, "object": "checkout.session", "payment_status": "paid", "status": "complete",
            "amount_total": 4900, "currency": "usd", "payment_intent": format!("pi_{session}"),
            "customer_details": { "email": "buyer@example.com" },
            "metadata": metadata
        } }
    })
    .to_string()
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let i = ((p / 100.0) * (s.len() - 1) as f64).round() as usize;
    s[i.min(s.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A throwaway PostgreSQL with pg_stat_statements, migrated; (owner URL, app URL).
async fn database(dir: &Path) -> anyhow::Result<(String, String)> {
    let c = LocalCluster::start(dir, false).await?;
    let conf = dir.join("data").join("postgresql.auto.conf");
    let text = std::fs::read_to_string(&conf).unwrap_or_default();
    if !text.contains("pg_stat_statements") {
        LocalCluster::stop(dir).await?;
        std::fs::write(
            &conf,
            // A quarter of a 4 GB instance (db.t4g.medium), as RDS sizes shared_buffers: the
            // default 128 MB would make the scale benchmark measure the OS page cache.
            format!(
                "{text}\nshared_preload_libraries = 'pg_stat_statements'\nshared_buffers = '1GB'\n"
            ),
        )?;
    }
    let c = if LocalCluster::running(dir).await.is_some() {
        c
    } else {
        LocalCluster::start(dir, false).await?
    };
    cluster::prepare_database(&c.admin_url("postgres"), cluster::DEFAULT_DB).await?;
    let owner = c.admin_url(cluster::DEFAULT_DB);
    let (client, conn) = tokio_postgres::connect(&owner, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await?;
    Ok((owner, c.app_url(cluster::DEFAULT_DB)))
}

fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

struct Start {
    init_ms: f64,
    first_ms: f64,
    warm_ms: Vec<f64>,
    rss_kb: u64,
    errors: usize,
}

/// What `coldstart` keeps of each function process besides its figures.
#[derive(Clone, Copy, Default)]
struct Profile<'a> {
    /// Copy /proc/PID/smaps here after the last invoke.
    smaps: Option<&'a Path>,
}

/// Starts `bin` with `env` against a fresh runtime API, invokes it `1 + warm` times with `event`.
async fn measure(
    bin: &Path,
    env: &HashMap<String, String>,
    event: &str,
    warm: usize,
    profile: Profile<'_>,
) -> anyhow::Result<Start> {
    let mut api = runtime_api::start().await?;
    let name = bin.file_name().unwrap_or_default().to_string_lossy();
    let mut cmd = tokio::process::Command::new(bin);
    cmd.env_clear()
        .envs(env)
        .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let pid = child.id().unwrap_or(0);
    tokio::time::timeout(Duration::from_secs(20), api.api.ready.notified())
        .await
        .with_context(|| format!("{} never asked for work", bin.display()))?;
    let init = api
        .api
        .first_next
        .lock()
        .await
        .map(|t| ms(t - started))
        .with_context(|| format!("{} failed during init", bin.display()))?;
    let mut times = Vec::new();
    let mut errors = 0;
    for i in 0..=warm {
        let id = format!("req-{i}");
        let sent = Instant::now();
        api.send.send((id.clone(), event.to_owned())).await?;
        let (got, at, err) = tokio::time::timeout(Duration::from_secs(60), api.done.recv())
            .await
            .with_context(|| format!("{}: invoke {i} timed out", bin.display()))?
            .context("runtime api closed")?;
        if got != id {
            bail!("{}: answered {got} for {id}", bin.display());
        }
        errors += usize::from(err);
        times.push(ms(at - sent));
    }
    let rss = peak_rss_kb(pid);
    if let Some(dir) = profile.smaps {
        std::fs::copy(
            format!("/proc/{pid}/smaps"),
            dir.join(format!("{name}.smaps")),
        )
        .with_context(|| format!("copying {name}'s smaps"))?;
    }
    let _ = child.kill().await;
    Ok(Start {
        init_ms: init,
        first_ms: times[0],
        warm_ms: times[1..].to_vec(),
        rss_kb: rss,
        errors,
    })
}

/// The environment a function gets: local database and store, vendors and AWS on a closed
/// port (the sample events never reach them), secrets as plain variables.
fn function_env(app_url: &str, store: &Path) -> anyhow::Result<HashMap<String, String>> {
    let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32])?;
    let sg = shared::webhook::sendgrid::public_key_base64(&key)?;
    let nowhere = "http://127.0.0.1:9";
    let mut env: HashMap<String, String> = [
        ("PATH", "/usr/bin:/bin"),
        ("AWS_LAMBDA_FUNCTION_NAME", "bench"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_ENDPOINT_URL", nowhere),
        ("LF_MODE", "development"),
        ("LF_STORE", "local"),
        ("LF_PUBLIC_BASE_URL", "https://reports.example.com"),
        ("LF_LINK_SECRET", "bench-link-secret-bench-link-secret-0123"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_bench"),
        ("YELP_API_KEY", "k"),
        ("GOOGLE_PLACES_API_KEY", "k"),
        ("GOOGLE_PAGESPEED_API_KEY", "k"),
        ("OPENAI_API_KEY", "k"),
        ("SENDGRID_API_KEY", "k"),
        ("STRIPE_SECRET_KEY", "k"),
        ("RUST_LOG", "warn"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for v in shared::vendors::config::VENDOR_PREFIXES {
        env.insert(format!("LF_{v}_URL"), nowhere.into());
    }
    env.insert("SLACK_WEBHOOK_URL".into(), format!("{nowhere}/slack"));
    for q in shared::bus::Queue::ALL {
        env.insert(
            format!("LF_QUEUE_{}_URL", q.name().to_uppercase()),
            format!("{nowhere}/123456789012/{q}"),
        );
    }
    env.insert("DATABASE_URL".into(), app_url.into());
    env.insert("LF_LOCAL_STORE_DIR".into(), store.display().to_string());
    env.insert("SENDGRID_WEBHOOK_PUBLIC_KEY".into(), sg);
    Ok(env)
}

async fn coldstart(
    bins: &Path,
    mut functions: Vec<String>,
    runs: usize,
    warm: usize,
    profile: Profile<'_>,
) -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if functions.is_empty() {
        for e in std::fs::read_dir(root.join("functions"))? {
            let e = e?;
            // A crate per directory; functions/ also holds their shared build script.
            if e.file_type()?.is_dir() {
                functions.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        functions.sort();
    }
    let tmp = std::env::temp_dir().join(format!("lf-bench-{}", std::process::id()));
    let (_, app) = database(&tmp.join("pg")).await?;
    let env = function_env(&app, &tmp.join("store"))?;
    let hello = bins.join("hello-lambda");
    let hello_event = r#"{"hello":"world"}"#;
    let mut base: Vec<Start> = Vec::new();
    let mut results: HashMap<String, Vec<Start>> = HashMap::new();
    for run in 0..runs {
        for f in &functions {
            let event = std::fs::read_to_string(root.join("events").join(format!("{f}.json")))?;
            results
                .entry(f.clone())
                .or_default()
                .push(measure(&bins.join(f), &env, &event, warm, profile).await?);
            base.push(measure(&hello, &env, hello_event, warm, profile).await?);
        }
        eprintln!("run {}/{runs} done", run + 1);
    }
    let init = |v: &[Start]| pct(&v.iter().map(|s| s.init_ms).collect::<Vec<_>>(), 50.0);
    let rss = |v: &[Start]| pct(&v.iter().map(|s| s.rss_kb as f64).collect::<Vec<_>>(), 50.0);
    let (b_init, b_rss) = (init(&base), rss(&base));
    let b_warm: Vec<f64> = base.iter().flat_map(|s| s.warm_ms.clone()).collect();
    println!(
        "| function | init p50 ms | × hello | first invoke ms | warm p50 ms | warm p99 ms | peak RSS MB | × hello | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| hello-world (baseline) | {b_init:.2} | 1.00 | {:.2} | {:.3} | {:.3} | {:.1} | 1.00 | 0 |",
        pct(&base.iter().map(|s| s.first_ms).collect::<Vec<_>>(), 50.0),
        pct(&b_warm, 50.0),
        pct(&b_warm, 99.0),
        b_rss / 1024.0
    );
    for f in &functions {
        let v = &results[f];
        let warm: Vec<f64> = v.iter().flat_map(|s| s.warm_ms.clone()).collect();
        println!(
            "| {f} | {:.2} | {:.2} | {:.2} | {:.3} | {:.3} | {:.1} | {:.2} | {} |",
            init(v),
            init(v) / b_init,
            pct(&v.iter().map(|s| s.first_ms).collect::<Vec<_>>(), 50.0),
            pct(&warm, 50.0),
            pct(&warm, 99.0),
            rss(v) / 1024.0,
            rss(v) / b_rss,
            v.iter().map(|s| s.errors).sum::<usize>()
        );
    }
    LocalCluster::stop(&tmp.join("pg")).await?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

/// Runs `leadfactory args…`, sampling its peak resident memory until it exits; returns
/// (wall seconds, peak RSS in kB).
async fn run_sampled(bin: &Path, args: &[&str]) -> anyhow::Result<(f64, u64)> {
    let started = Instant::now();
    let mut child = tokio::process::Command::new(bin)
        .args(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let pid = child.id().context("the child has no pid")?;
    let mut peak = 0;
    let status = loop {
        peak = peak.max(peak_rss_kb(pid));
        tokio::select! {
            status = child.wait() => break status?,
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    };
    if !status.success() {
        bail!("{} {args:?} failed: {status}", bin.display());
    }
    Ok((started.elapsed().as_secs_f64(), peak))
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Exports a database of `events` email events (generated set-based: one tenant, SendGrid-shaped
/// raw payloads) with the real CLI, then restores it into an empty database.
async fn backup(events: i64, bins: &Path) -> anyhow::Result<()> {
    let bin = bins.join("leadfactory");
    let tmp = std::env::temp_dir().join(format!("lf-bench-backup-{}", std::process::id()));
    let pg = tmp.join("pg");
    let (owner, _) = database(&pg).await?;
    let (mut admin, conn) = tokio_postgres::connect(&owner, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    shared::db::migrate(&mut admin).await?;
    let tenant = uuid::Uuid::new_v4();
    admin
        .execute(
            "INSERT INTO tenants (id, name) VALUES ($1, 'bench')",
            &[&tenant],
        )
        .await?;
    let step = 1_000_000i64;
    let mut from = 0i64;
    while from < events {
        let to = (from + step).min(events);
        admin
            .execute(
                "INSERT INTO email_events (tenant_id, sg_event_id, event, sg_message_id, occurred_at, url, raw)
                 SELECT $1, 'ev-' || g, (ARRAY['processed','delivered','open','click'])[1 + g % 4], 'msg-' || (g / 4),
                        timestamptz '2026-01-01' + g * interval '1 second', CASE WHEN g % 4 = 3 THEN 'https://example.com/r/' || g END,
                        jsonb_build_object('email', 'owner' || (g / 4) || '@business' || (g / 400) || '.example', 'event', 'delivered',
                                           'sg_event_id', 'ev-' || g, 'sg_message_id', 'msg-' || (g / 4), 'timestamp', 1767225600 + g)
                 FROM generate_series($2::int8, $3::int8 - 1) g",
                &[&tenant, &from, &to],
            )
            .await?;
        from = to;
    }
    admin.batch_execute("VACUUM ANALYZE email_events").await?;
    let out = tmp.join("export");
    let out_arg = out.to_string_lossy().into_owned();
    let (export_s, export_kb) =
        run_sampled(&bin, &["export", "--to", &out_arg, "--url", &owner]).await?;
    let bytes = dir_bytes(&out);
    // The source goes before the restore, so the two databases never need the disk at once.
    drop(admin);
    let c = LocalCluster::running(&pg)
        .await
        .context("the bench cluster stopped")?;
    let (postgres, conn) =
        tokio_postgres::connect(&c.admin_url("postgres"), tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    postgres
        .batch_execute(&format!(
            "DROP DATABASE \"{}\" WITH (FORCE)",
            cluster::DEFAULT_DB
        ))
        .await?;
    cluster::prepare_database(&c.admin_url("postgres"), "lf_restore").await?;
    let target = c.admin_url("lf_restore");
    let (mut fresh, conn) = tokio_postgres::connect(&target, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    shared::db::migrate(&mut fresh).await?;
    let (restore_s, restore_kb) =
        run_sampled(&bin, &["restore", "--from", &out_arg, "--url", &target]).await?;
    let restored: i64 = fresh
        .query_one("SELECT count(*) AS n FROM email_events", &[])
        .await?
        .get("n");
    if restored != events {
        bail!("restored {restored} events of {events}");
    }
    println!("| | email events | CSV written, MB | wall s | rows/s | peak RSS MB |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (what, secs, kb) in [
        ("export", export_s, export_kb),
        ("restore", restore_s, restore_kb),
    ] {
        println!(
            "| {what} | {events} | {:.0} | {secs:.1} | {:.0} | {:.1} |",
            bytes as f64 / 1e6,
            events as f64 / secs,
            kb as f64 / 1024.0
        );
    }
    LocalCluster::stop(&pg).await?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

fn sample_report(i: usize) -> reports::ReportData {
    reports::ReportData {
        business: format!("Business number {i} & Sons"),
        location: "San Jose, CA 95113".into(),
        website: format!("http://www.business-{i}.example/"),
        agency: "Ann Example Web Studio".into(),
        agency_address: "1 Market St, Suite 300, San Francisco, CA 94105".into(),
        date: "2026-11-25".into(),
        score: (40 + i % 60) as u8,
        tier: ["A", "B", "C"][i % 3].into(),
        performance: Some((20 + i % 70) as u8),
        seo: Some(69),
        accessibility: Some(61),
        best_practices: Some(58),
        lcp_ms: Some(2000.0 + (i % 50) as f64 * 100.0),
        cls: Some(0.31),
        fcp_ms: Some(3200.0),
        tbt_ms: Some(900.0),
        speed_index_ms: Some(7100.0),
        findings: vec!["No mobile viewport: phones show a shrunken desktop page.".into(), "jQuery 1.8.3 with known security issues.".into()],
        recommendations: (1..=3)
            .map(|k| reports::Recommendation {
                title: format!("Fix number {k}"),
                description: "A description long enough to wrap over more than one line of the page, as real ones do.".into(),
                impact: "high".into(),
                effort: "low".into(),
                steps: vec!["First step".into(), "Second step".into(), "Third step".into()],
            })
            .collect(),
    }
}

fn pdf(n: usize) -> anyhow::Result<()> {
    // The first render loads and subsets the fonts once per process; measured separately.
    let t = Instant::now();
    reports::render(&sample_report(0), false)?;
    let first = ms(t.elapsed());
    let (mut full, mut preview, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let d = sample_report(i);
        let t = Instant::now();
        let pdf = reports::render(&d, false)?;
        full.push(ms(t.elapsed()));
        sizes.push(pdf.len() as f64);
        let t = Instant::now();
        reports::render(&d, true)?;
        preview.push(ms(t.elapsed()));
    }
    println!("| report | n | first in process ms | median ms | p99 ms | median KB |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| full (5 pages) | {n} | {first:.1} | {:.1} | {:.1} | {:.1} |",
        pct(&full, 50.0),
        pct(&full, 99.0),
        pct(&sizes, 50.0) / 1024.0
    );
    println!(
        "| preview (2 pages) | {n} | – | {:.1} | {:.1} | – |",
        pct(&preview, 50.0),
        pct(&preview, 99.0)
    );
    Ok(())
}

const KINDS: [&str; 4] = ["processed", "delivered", "open", "click"];

fn signed_request(
    key: &p256::ecdsa::SigningKey,
    tenant: uuid::Uuid,
    n: usize,
    round: usize,
) -> aws_lambda_events::event::apigw::ApiGatewayV2httpRequest {
    let now = chrono::Utc::now().timestamp();
    let events: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "email": format!("owner{i}@shop{i}.example"), "timestamp": now, "event": KINDS[i % 4],
                "sg_event_id": format!("ev-{round}-{i}-{}", uuid::Uuid::new_v4().simple()), "sg_message_id": format!("msg{i}.filter"),
                "tenant_id": tenant.to_string(), "email_id": uuid::Uuid::new_v4().to_string()
            })
        })
        .collect();
    sendgrid_request(key, now, serde_json::Value::Array(events).to_string())
}

/// SendGrid's POST of `body` (a JSON array of events), signed at `now` as SendGrid signs it.
fn sendgrid_request(
    key: &p256::ecdsa::SigningKey,
    now: i64,
    body: String,
) -> aws_lambda_events::event::apigw::ApiGatewayV2httpRequest {
    let sig = shared::webhook::sendgrid::sign(key, now, body.as_bytes());
    let mut r = aws_lambda_events::event::apigw::ApiGatewayV2httpRequest::default();
    r.request_context.http.method = http::Method::POST;
    r.raw_path = Some("/webhooks/sendgrid".into());
    for (k, v) in [
        (shared::webhook::sendgrid::SIGNATURE_HEADER, sig),
        (shared::webhook::sendgrid::TIMESTAMP_HEADER, now.to_string()),
    ] {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(&v),
        ) {
            r.headers.insert(k, v);
        }
    }
    r.body = Some(body);
    r
}

async fn webhook(batch: usize, rounds: usize, invokes: usize) -> anyhow::Result<()> {
    let tmp = std::env::temp_dir().join(format!("lf-bench-wh-{}", std::process::id()));
    let (owner, app) = database(&tmp.join("pg")).await?;
    let tenant = uuid::Uuid::new_v4();
    let (admin, conn) = tokio_postgres::connect(&owner, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    admin
        .execute(
            "INSERT INTO tenants (id, name) VALUES ($1, 'bench')",
            &[&tenant],
        )
        .await?;
    let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32])?;
    let deps = sendgrid_webhook::WebhookDeps {
        pool: shared::db::connect(&SecretString::from(app), 4)?,
        key: shared::webhook::sendgrid::SendGridKey::from_base64_der(
            &shared::webhook::sendgrid::public_key_base64(&key)?,
        )?,
        tolerance_secs: 600,
    };
    // Warm the pool and the statement cache.
    sendgrid_webhook::ingest(
        &deps,
        &signed_request(&key, tenant, 10, 0),
        chrono::Utc::now().timestamp(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut big = Vec::new();
    for round in 0..rounds {
        let req = signed_request(&key, tenant, batch, round + 1);
        let t = Instant::now();
        let r = sendgrid_webhook::ingest(&deps, &req, chrono::Utc::now().timestamp())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        big.push(ms(t.elapsed()));
        anyhow::ensure!(r.stored == batch, "stored {} of {batch}", r.stored);
    }
    let mut small = Vec::new();
    for i in 0..invokes {
        let req = signed_request(&key, tenant, 10, 10_000 + i);
        let t = Instant::now();
        let resp = sendgrid_webhook::handler(&deps, req).await;
        small.push(ms(t.elapsed()));
        anyhow::ensure!(resp.status_code == 200, "status {}", resp.status_code);
    }
    println!("| webhook | n | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|");
    println!(
        "| {batch}-event batch: verify + parse + store | {rounds} | {:.1} | {:.1} |",
        pct(&big, 50.0),
        pct(&big, 99.0)
    );
    println!(
        "| 10-event batch, warm handler invoke | {invokes} | {:.2} | {:.2} |",
        pct(&small, 50.0),
        pct(&small, 99.0)
    );
    LocalCluster::stop(&tmp.join("pg")).await?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

fn cpu_seconds() -> f64 {
    // utime + stime of this process from /proc (ticks of 1/100 s on Linux).
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .unwrap_or(0.0)
}

/// CPU seconds of this process's threads named `name` (the simulator's own runtime).
fn threads_cpu_seconds(name: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter_map(|s| {
            let (head, rest) = s.rsplit_once(')')?;
            let comm = head.split_once('(')?.1;
            if comm != name {
                return None;
            }
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .sum()
}

/// Each size runs in a process of its own (this binary again), so that one run's peak memory
/// and allocator state never count toward the next.
async fn pipeline(
    leads: &[u32],
    latency_ms: u64,
    repeat: u32,
    round_trips: bool,
) -> anyhow::Result<()> {
    let ([n], 1) = (leads, repeat) else {
        let exe = std::env::current_exe()?;
        let mut rows = Vec::new();
        let mut tail = String::new();
        let mut per_lead: Vec<(u32, Vec<f64>)> = Vec::new();
        for &n in leads
            .iter()
            .flat_map(|n| std::iter::repeat_n(n, repeat.max(1) as usize))
        {
            let out = tokio::process::Command::new(&exe)
                .args(["pipeline", "--leads", &n.to_string()])
                .args(["--latency-ms", &latency_ms.to_string()])
                .args(round_trips.then_some("--round-trips"))
                .stderr(std::process::Stdio::inherit())
                .output()
                .await?;
            anyhow::ensure!(out.status.success(), "pipeline --leads {n} failed");
            let text = String::from_utf8(out.stdout)?;
            let mut lines = text.lines();
            let header: Vec<&str> = lines.by_ref().take(2).collect();
            if rows.is_empty() {
                rows.extend(header.iter().map(|l| (*l).to_owned()));
            }
            let row = lines.next().unwrap_or_default();
            // Column 10 of the row: CPU ms per lead, PDF excluded.
            if let Some(ms) = row.split('|').nth(10).and_then(|c| c.trim().parse().ok()) {
                match per_lead.iter_mut().find(|(size, _)| *size == n) {
                    Some((_, v)) => v.push(ms),
                    None => per_lead.push((n, vec![ms])),
                }
            }
            rows.push(row.to_owned());
            tail = lines.collect::<Vec<_>>().join("\n");
        }
        println!("{}", rows.join("\n"));
        if per_lead.iter().any(|(_, v)| v.len() > 1) {
            println!();
            for (n, v) in &mut per_lead {
                v.sort_by(f64::total_cmp);
                println!(
                    "CPU ms/lead (PDF excluded) at {n} leads: median {:.2} of {} runs (min {:.2}, max {:.2})  ",
                    pct(v, 50.0),
                    v.len(),
                    v[0],
                    v[v.len() - 1]
                );
            }
        }
        println!("\n{tail}");
        return Ok(());
    };
    pipeline_one(*n, latency_ms, round_trips).await
}

async fn pipeline_one(n: u32, latency_ms: u64, round_trips: bool) -> anyhow::Result<()> {
    use leadfactory_cli::local::{LocalOptions, LocalPipeline, NoProgress, memory_bus, summarize};
    println!(
        "| leads asked | sourced | emailed | wall s | leads/s | CPU s, all ours | simulator CPU s | reports | PDF + file I/O CPU s | CPU ms/lead, PDF excluded | peak RSS MB | statements | statements/lead | stage batches | statements/batch | round trips/batch |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut statement_table = String::new();
    {
        let tmp = std::env::temp_dir().join(format!("lf-bench-pl-{}-{n}", std::process::id()));
        let (owner, app) = database(&tmp.join("pg")).await?;
        // With --round-trips the pipeline reaches PostgreSQL through the counting relay.
        let pg_port = *tokio_postgres::Config::from_str(&app)?
            .get_ports()
            .first()
            .context("the app URL has no port")?;
        let relay = match round_trips {
            true => Some(testkit::round_trips::Relay::start(SocketAddr::from((
                [127, 0, 0, 1],
                pg_port,
            )))?),
            false => None,
        };
        let app = match &relay {
            Some(r) => app.replace(&format!(":{pg_port}/"), &format!(":{}/", r.port)),
            None => app,
        };
        let turns_now = || relay.as_ref().map(testkit::round_trips::Relay::turns);
        let (admin, conn) = tokio_postgres::connect(&owner, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        let mut opts = LocalOptions::new(SecretString::from(app), tmp.join("store"));
        opts.budgets = shared::pipeline::budget::BudgetLimits {
            yelp: i64::MAX / 4,
            places: i64::MAX / 4,
            llm: i64::MAX / 4,
        };
        opts.parallel_batches = 8;
        opts.sim_threads = Some(2);
        if latency_ms > 0 {
            for v in shared::vendors::Vendor::ALL {
                opts.sim.faults.insert(
                    v.as_str().into(),
                    sim::Fault {
                        latency_ms,
                        ..sim::Fault::default()
                    },
                );
            }
        }
        let bus = std::sync::Arc::new(memory_bus(Duration::from_secs(120), 3));
        let p = LocalPipeline::start(opts, bus).await?;
        p.ensure_tenant("bench").await?;
        let zips: Vec<String> = (0..n.div_ceil(50))
            .map(|i| format!("{}", 20000 + i))
            .collect();
        let campaign = shared::campaign::CampaignFile {
            name: "bench".into(),
            vertical: "restaurants".into(),
            categories: vec!["restaurants".into()],
            zip_codes: zips,
            city: None,
            daily_quota: n,
            qualify_tiers: vec!["A".into(), "B".into()],
            sender: shared::campaign::Sender {
                email: "ann@agency.example.com".into(),
                name: "Ann".into(),
                postal_address: "1 Market St, San Francisco, CA 94105".into(),
            },
            status: None,
        };
        let mut pool = p.pool().clone();
        campaign.upsert(&mut pool, p.tenant).await?;
        admin
            .batch_execute("SELECT pg_stat_statements_reset()")
            .await?;
        let turns0 = turns_now();
        let relay0 = threads_cpu_seconds(testkit::round_trips::RELAY_THREAD);
        let sim0 = threads_cpu_seconds(sim::SIM_THREAD);
        let blocking0 = threads_cpu_seconds(BLOCKING_THREAD);
        let (cpu0, t0) = (cpu_seconds(), Instant::now());
        let run = p.run(&NoProgress).await?;
        let sim_cpu = threads_cpu_seconds(sim::SIM_THREAD) - sim0;
        let blocking_cpu = threads_cpu_seconds(BLOCKING_THREAD) - blocking0;
        let relay_cpu = threads_cpu_seconds(testkit::round_trips::RELAY_THREAD) - relay0;
        let turns = turns_now().zip(turns0).map(|(now, then)| now - then);
        let (wall, cpu) = (
            t0.elapsed().as_secs_f64(),
            cpu_seconds() - cpu0 - sim_cpu - relay_cpu,
        );
        let s = summarize(p.pool(), p.tenant, run).await?;
        let rss = peak_rss_kb(std::process::id());
        let stmts: i64 = admin
            .query_one("SELECT coalesce(sum(calls), 0)::int8 FROM pg_stat_statements WHERE query NOT ILIKE '%pg_stat_statements%'", &[])
            .await?
            .get(0);
        // Every stage batch with results claims its keys in one statement.
        let batches: i64 = admin
            .query_one("SELECT coalesce(sum(calls), 0)::int8 FROM pg_stat_statements WHERE query ILIKE 'INSERT INTO processed_messages%'", &[])
            .await?
            .get(0);
        let leads_done = s.sourced.max(1);
        let ours_ms = (cpu - blocking_cpu).max(0.0) * 1000.0;
        println!(
            "| {n} | {} | {} | {wall:.1} | {:.0} | {cpu:.1} | {sim_cpu:.1} | {} | {blocking_cpu:.1} | {:.2} | {:.0} | {stmts} | {:.1} | {batches} | {:.1} | {} |",
            s.sourced,
            s.sent,
            s.sourced as f64 / wall,
            s.reports,
            ours_ms / leads_done as f64,
            rss as f64 / 1024.0,
            stmts as f64 / leads_done as f64,
            stmts as f64 / batches.max(1) as f64,
            turns.map_or("–".to_owned(), |t| format!(
                "{:.1}",
                t as f64 / batches.max(1) as f64
            ))
        );
        let _ = writeln_top(&admin, &mut statement_table).await;
        drop(p);
        LocalCluster::stop(&tmp.join("pg")).await?;
        let _ = std::fs::remove_dir_all(&tmp);
    }
    println!("\nMost frequent statements of the largest run (calls, mean ms):\n");
    print!("{statement_table}");
    Ok(())
}

async fn writeln_top(admin: &tokio_postgres::Client, out: &mut String) -> anyhow::Result<()> {
    use std::fmt::Write;
    let _ = writeln!(out, "| calls | mean ms | statement |\n|---:|---:|---|");
    for r in admin
        .query(
            "SELECT calls, mean_exec_time, left(regexp_replace(query, '\\s+', ' ', 'g'), 90) FROM pg_stat_statements
             WHERE query NOT ILIKE '%pg_stat_statements%' ORDER BY calls DESC LIMIT 15",
            &[],
        )
        .await?
    {
        let _ = writeln!(out, "| {} | {:.2} | `{}` |", r.get::<_, i64>(0), r.get::<_, f64>(1), r.get::<_, String>(2).replace('|', "\\|"));
    }
    Ok(())
}

/// The blocking pool's threads (PDF rendering, file I/O), by name, so their CPU can be told
/// apart. The runtime itself is single-threaded, as in the functions (docs/performance.md): it
/// runs on the main thread and starts no workers.
const BLOCKING_THREAD: &str = "lf-blocking";

fn main() -> anyhow::Result<()> {
    leadfactory_cli::local::return_freed_buffers_to_the_os();
    let command = Cli::parse().command;
    // Under load the gateway serves from every core, as many Lambda instances would; the other
    // benchmarks run on one thread so that their CPU can be attributed.
    let mut builder = match command {
        Command::Http { .. } => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    builder
        .thread_name(BLOCKING_THREAD)
        // A blocking thread that ended would take its CPU time out of /proc/self/task.
        .thread_keep_alive(Duration::from_secs(24 * 3600))
        // Kept threads never end: without a cap, every momentary burst of file I/O would leave
        // threads (and their allocator arenas) behind for the rest of the run, and memory would
        // grow with the run's length. 16 = the local driver's concurrent PDF renders
        // (8 batches × 2), the pool's only long tasks.
        .max_blocking_threads(16)
        .enable_all()
        .build()?
        .block_on(run(command))
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Coldstart {
            bins,
            functions,
            runs,
            warm,
            smaps,
        } => {
            let profile = Profile {
                smaps: smaps.as_deref(),
            };
            coldstart(&bins, functions, runs, warm, profile).await
        }
        Command::Pdf { n } => pdf(n),
        Command::Backup { events, bins } => backup(events, &bins).await,
        Command::Webhook {
            batch,
            rounds,
            invokes,
        } => webhook(batch, rounds, invokes).await,
        Command::Http {
            oha,
            concurrency,
            seconds,
        } => http_load::http(&oha, &concurrency, seconds).await,
        Command::Dedup { businesses, seed } => {
            dedup::dedup(&businesses, seed);
            Ok(())
        }
        Command::Scale {
            sizes,
            events_per_email,
            repeat,
        } => scale::scale(&sizes, events_per_email, repeat).await,
        Command::Pipeline {
            leads,
            latency_ms,
            repeat,
            round_trips,
        } => pipeline(&leads, latency_ms, repeat, round_trips).await,
    }
}
