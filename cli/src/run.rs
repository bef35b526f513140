//! `leadfactory run --campaign <file>`: the whole local pipeline on embedded defaults.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use leadfactory_cli::campaign::CampaignFile;
use leadfactory_cli::local::{
    FunnelActivity, LocalOptions, LocalPipeline, Progress, RunSummary, export_outbox,
    export_reports, memory_bus, summarize,
};
use secrecy::SecretString;
use shared::db::cluster;

#[derive(clap::Args)]
pub struct RunArgs {
    /// Campaign file (TOML), e.g. examples/san-jose-restaurants.toml
    #[arg(long)]
    campaign: PathBuf,
    /// Where local state lives (database cluster, object store)
    #[arg(long, default_value = ".leadfactory")]
    state: PathBuf,
    /// Application-role database URL; without it a local cluster is started under --state
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Seed of the simulated world
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Share of recipients who click and then buy the full report
    #[arg(long, default_value_t = 0.5)]
    buy_share: f64,
    /// Stop after delivery: no simulated opens, clicks or purchases
    #[arg(long)]
    no_recipients: bool,
    /// The deployed shape instead: every function its own process in the local stand-in for the
    /// account infra/template.yaml describes (`leadfactory cloud`), the night fired by its schedule
    #[arg(long)]
    cloud: bool,
    /// With --cloud: how much faster than real time batching windows and visibility timeouts pass
    #[arg(long, default_value = "60x", value_parser = leadfactory_cli::cloud::schedule::parse_factor)]
    clock: f64,
}

struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Progress for Bars {
    fn stage(&self, stage: &str, processed: usize, failed: usize) {
        let mut bars = self
            .bars
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let bar = bars.entry(stage.to_owned()).or_insert_with(|| {
            let b = self.multi.add(ProgressBar::new_spinner());
            b.set_style(
                ProgressStyle::with_template("{spinner} {prefix:>11} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.set_prefix(stage.to_owned());
            b
        });
        let retried = if failed > 0 {
            format!(", {failed} to retry")
        } else {
            String::new()
        };
        bar.set_message(format!("{processed} messages{retried}"));
        bar.tick();
    }
}

fn dollars(micros: i64) -> String {
    format!("${:.4}", micros as f64 / 1_000_000.0)
}

fn print_summary(s: &RunSummary, activity: &FunnelActivity, secs: f64) {
    let row = |k: &str, v: String| println!("  {k:<28} {v:>12}");
    println!();
    println!("Run summary");
    row("sourcing jobs (Yelp pages)", s.jobs.to_string());
    row("new or stale businesses", s.sourced.to_string());
    row("duplicates / already fresh", s.duplicates.to_string());
    row("closed (stopped)", s.closed.to_string());
    row("enriched (Places match)", s.enriched.to_string());
    row("assessed", s.assessed.to_string());
    row("  of which site unreachable", s.unreachable.to_string());
    row("scored", s.scored.to_string());
    for (tier, n) in &s.tiers {
        row(&format!("  tier {tier}"), n.to_string());
    }
    row("qualified", s.qualified.to_string());
    row("PDF reports rendered", s.reports.to_string());
    row("emails written", s.emails.to_string());
    println!();
    println!("Funnel");
    let pct = |n: i64, of: i64| {
        if of > 0 {
            format!("{n} ({:.0} %)", n as f64 * 100.0 / of as f64)
        } else {
            n.to_string()
        }
    };
    row("sourced", s.sourced.to_string());
    row("assessed", s.assessed.to_string());
    row("scored", s.scored.to_string());
    row("qualified", s.qualified.to_string());
    row("emailed (sent)", s.sent.to_string());
    row("  held by daily cap / pause", s.deferred.to_string());
    row("  failed or parked", s.send_failed.to_string());
    row("delivered", pct(s.delivered, s.sent));
    row("opened", pct(s.opened, s.delivered));
    row("clicked", pct(s.clicked, s.delivered));
    row("bounced or dropped", pct(s.bounced, s.sent));
    row("unsubscribed", s.unsubscribed.to_string());
    row("checkouts started", activity.checkouts.to_string());
    row("purchased", pct(s.purchased, s.clicked));
    row("report emails (fulfilled)", s.fulfilled.to_string());
    row(
        "revenue (net of refunds)",
        format!("${}.{:02}", s.revenue_cents / 100, s.revenue_cents % 100),
    );
    row(
        "SendGrid events received",
        activity.sendgrid_events.to_string(),
    );
    row("skipped by budget", s.skipped_by_budget.to_string());
    row("failed (retried / DLQ)", s.failed.to_string());
    println!();
    println!("  {:<28} {:>12} {:>12}", "vendor", "calls", "cost");
    for (v, calls, cost) in &s.vendors {
        println!("  {v:<28} {calls:>12} {:>12}", dollars(*cost));
    }
    println!(
        "  {:<28} {:>12} {:>12}",
        "total",
        "",
        dollars(s.cost_micros)
    );
    if s.sourced > 0 {
        row(
            "cost per sourced lead",
            dollars(s.cost_micros / s.sourced.max(1)),
        );
    }
    if let Some(per) = s.cost_per_qualified_micros() {
        row("cost per qualified lead", dollars(per));
    }
    println!();
    println!(
        "  infra (Lambda, SQS, S3, events) {:>9} invocations, {:.1} GB-s {:>8}",
        s.invocations,
        s.mb_ms as f64 / 1_024_000.0,
        dollars(s.infra_nanos / 1_000)
    );
    if let (Some(infra), Some(vendor)) = (
        s.infra_per_1000_leads_micros(),
        s.vendor_per_1000_leads_micros(),
    ) {
        row("infra per 1,000 leads", dollars(infra));
        row("vendors per 1,000 leads", dollars(vendor));
    }
    row("wall time", format!("{secs:.1} s"));
    if !s.events.is_empty() {
        println!();
        println!("  domain event (the bus)          published  waiting");
        for (t, published, waiting) in &s.events {
            println!("  {t:<28} {published:>12} {waiting:>8}");
        }
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    if args.cloud {
        return run_cloud(args).await;
    }
    let started = Instant::now();
    let campaign = CampaignFile::load(&args.campaign)?;
    let database_url = match args.database_url {
        Some(u) => u,
        None => {
            eprintln!(
                "starting local PostgreSQL under {} …",
                args.state.join("pg").display()
            );
            let c = crate::db::start_local(&args.state.join("pg")).await?;
            c.app_url(cluster::DEFAULT_DB)
        }
    };
    let mut opts = LocalOptions::new(SecretString::from(database_url), args.state.join("store"));
    opts.sim.seed = args.seed;
    opts.buy_share = args.buy_share.clamp(0.0, 1.0);
    let bus = Arc::new(memory_bus(opts.visibility_timeout, opts.max_receive_count));
    let pipeline = LocalPipeline::start(opts, bus)
        .await
        .context("starting the local pipeline")?;
    eprintln!("vendor simulator on {}", pipeline.sim.base_url());
    pipeline.ensure_tenant("Local agency").await?;
    let mut pool = pipeline.pool().clone();
    campaign.upsert(&mut pool, pipeline.tenant).await?;
    eprintln!(
        "campaign {:?}: {} in {:?}, quota {}",
        campaign.name, campaign.vertical, campaign.zip_codes, campaign.daily_quota
    );
    let bars = Bars {
        multi: MultiProgress::new(),
        bars: Mutex::new(HashMap::new()),
    };
    let run = pipeline.run(&bars).await?;
    let activity = if args.no_recipients {
        FunnelActivity::default()
    } else {
        pipeline.simulate_recipients(&bars).await?
    };
    for b in bars
        .bars
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .values()
    {
        b.finish();
    }
    // The run's `RunFinished` went to the qa-sampler and analytics (the template's rules); then
    // what the schedules do after a night: the hourly roll-up (the recipients' activity came
    // after the run) and the alerts check.
    pipeline.deliver_events().await?;
    let now = chrono::Utc::now();
    shared::analytics::rollup(pipeline.pool(), now.date_naive(), now.date_naive()).await?;
    let checker = alerts::Alerts::new(
        pipeline.deps.vendors.slack(&pipeline.deps.policy)?,
        alerts::Thresholds::default(),
    );
    let alerted = checker.run(&pipeline.deps, now).await?;
    pipeline.deliver_events().await?;
    let slack: Vec<String> = sim::state::lock(&pipeline.sim.state.slack)
        .iter()
        .filter_map(|m| m["text"].as_str().map(str::to_owned))
        .collect();
    let summary = summarize(pipeline.pool(), pipeline.tenant, run).await?;
    let pdfs = export_reports(&pipeline, run, std::path::Path::new("out/reports")).await?;
    let emls = export_outbox(&pipeline, std::path::Path::new("out/outbox")).await?;
    println!("run {run}");
    print_summary(&summary, &activity, started.elapsed().as_secs_f64());
    println!(
        "\n  QA: {} leads sampled for review (`leadfactory qa list`)",
        summary.qa_samples
    );
    println!(
        "  alerts: {} rules checked, {} posted to Slack (simulated)",
        alerted.findings, alerted.posted
    );
    for m in slack {
        println!("    {m}");
    }
    println!(
        "  dashboard: `leadfactory dashboard`, the ops API: `leadfactory apikey create --name me`"
    );
    if let Some(first) = emls.first() {
        println!(
            "  {} emails in out/outbox/ (e.g. {})",
            emls.len(),
            first.display()
        );
    }
    if let Some(first) = pdfs.first() {
        println!(
            "\n  {} PDF reports in out/reports/ (e.g. {})",
            pdfs.len(),
            first.display()
        );
    }
    Ok(())
}

/// `run --cloud`: the same night in the deployed shape. The operator's steps only: a tenant and
/// its key, the campaign through the ops API, the nightly schedule fired; the functions finish
/// the run, whose `RunFinished` the bus's rules hand to the qa-sampler and analytics; then the
/// schedules that follow a night (analytics, alerts, backup) are fired.
async fn run_cloud(args: RunArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    // Validated as the local run does, then sent as the ops API's JSON body.
    CampaignFile::load(&args.campaign)?;
    let text = std::fs::read_to_string(&args.campaign)?;
    let campaign: serde_json::Value = serde_json::to_value(toml::from_str::<toml::Value>(&text)?)?;
    let up = crate::cloud_cmd::UpArgs {
        template: PathBuf::from("infra/template.yaml"),
        bin_dir: None,
        clock: args.clock,
        stage: "local".into(),
        seed: args.seed,
    };
    eprintln!(
        "standing up the account of infra/template.yaml (functions, moto, PostgreSQL, simulator) …"
    );
    let (cloud, pg) = crate::cloud_cmd::start(&args.state, &up, false).await?;
    let result = cloud_night(&cloud, &args, &campaign, started).await;
    let counters = cloud.counters();
    cloud.stop().await;
    cluster::LocalCluster::stop(&pg.dir).await?;
    if result.is_ok() {
        let total = |f: fn(&leadfactory_cli::cloud::lambda::CountersView) -> u64| {
            counters.values().map(f).sum::<u64>()
        };
        println!(
            "  cloud: {} function processes started (cold starts), {} invocations, {} failed, {} timed out",
            total(|c| c.cold_starts),
            total(|c| c.invocations),
            total(|c| c.errors),
            total(|c| c.timeouts)
        );
        println!(
            "  logs of every function in {}",
            args.state.join("cloud/logs").display()
        );
    }
    result
}

async fn cloud_night(
    cloud: &leadfactory_cli::cloud::Cloud,
    args: &RunArgs,
    campaign: &serde_json::Value,
    started: Instant,
) -> anyhow::Result<()> {
    let limit = std::time::Duration::from_secs(30 * 60);
    let tenant = cloud.onboard("Local agency", campaign).await?;
    eprintln!(
        "HTTP API on {}; firing the nightly schedule …",
        cloud.gateway_url
    );
    let run = cloud.nightly(tenant.id).await?;
    let status = cloud.wait_for_run(tenant.id, run, limit).await?;
    cloud.settle(limit).await?;
    eprintln!("run {run} finished by the functions: {status}");
    let activity = if args.no_recipients {
        FunnelActivity::default()
    } else {
        let bars = Bars {
            multi: MultiProgress::new(),
            bars: Mutex::new(HashMap::new()),
        };
        let a = cloud
            .simulate_recipients(tenant.id, args.buy_share.clamp(0.0, 1.0), &bars, limit)
            .await?;
        for b in bars
            .bars
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
        {
            b.finish();
        }
        a
    };
    // The schedules that follow a night, fired now rather than at their hour.
    cloud
        .fire(&cloud.schedule_of("analytics", Some("AfterNightly"))?)
        .await?;
    let alerted = cloud
        .fire(&cloud.schedule_of("alerts", Some("EveryFiveMinutes"))?)
        .await?;
    let backup = cloud
        .fire(&cloud.schedule_of("backup", Some("Daily"))?)
        .await?;
    let drill = cloud
        .fire(&cloud.schedule_of("backup", Some("MonthlyDrill"))?)
        .await?;
    let slack: Vec<String> = sim::state::lock(&cloud.sim.state.slack)
        .iter()
        .filter_map(|m| m["text"].as_str().map(str::to_owned))
        .collect();
    let summary = summarize(&cloud.app_pool()?, tenant.id, run).await?;
    println!("run {run} (deployed shape)");
    print_summary(&summary, &activity, started.elapsed().as_secs_f64());
    println!(
        "\n  QA: {} leads sampled for review by the qa-sampler function (on RunFinished)",
        summary.qa_samples
    );
    println!(
        "  alerts: {} rules checked, {} posted to Slack (simulated)",
        alerted["findings"], alerted["posted"]
    );
    for m in slack {
        println!("    {m}");
    }
    println!(
        "  backup: {} rows of {} tables to {} by the backup function",
        backup["rows"],
        backup["tables"],
        backup["prefix"].as_str().unwrap_or("?")
    );
    println!(
        "  restore drill: {} ({} rows of {} tables read back from {})",
        if drill["passed"] == true {
            "passed"
        } else {
            "FAILED"
        },
        drill["rows"],
        drill["tables"],
        drill["prefix"].as_str().unwrap_or("?")
    );
    Ok(())
}
