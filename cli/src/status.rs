//! `leadfactory status`: the latest runs and, for the newest, its stage table (counts and
//! p50/p95/p99) and vendor usage — read as the schema owner, across tenants.

use std::fmt::Write;

use shared::pipeline::Stage;

const LATEST_RUNS: &str = "SELECT r.id, t.name, r.kind, r.status, r.started_at, r.finished_at
 FROM runs r JOIN tenants t ON t.id = r.tenant_id ORDER BY r.started_at DESC LIMIT $1";

const STAGE_TABLE: &str = "SELECT stage, total, success, errors, skipped, p50_ms, p95_ms, p99_ms
 FROM run_stage_stats WHERE run_id = $1 ORDER BY array_position($2::text[], stage), stage";

const VENDOR_TABLE: &str = "SELECT vendor, calls, errors, rate_limit_hits, cost_micros
 FROM run_vendor_usage WHERE run_id = $1 ORDER BY vendor";

/// The run's compute and vendor spend, and the leads it found (new or stale businesses).
const RUN_COSTS: &str = "SELECT (SELECT coalesce(sum(cost_nanos), 0)::int8 FROM compute_usage WHERE run_id = $1) AS infra_nanos,
        (SELECT coalesce(sum(cost_micros), 0)::int8 FROM run_vendor_usage WHERE run_id = $1) AS vendor_micros,
        (SELECT count(*) FROM run_event_logs WHERE run_id = $1 AND stage = 'sourcing' AND event = ANY('{sourced,stale,known}')) AS leads";

/// Since midnight UTC, read directly (the operators' roles read every row).
const COMPUTE_TODAY: &str = "SELECT coalesce(sum(cost_nanos), 0)::int8 AS nanos FROM compute_usage
 WHERE occurred_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'";

const PAUSED_VENDORS: &str = "SELECT p.vendor, coalesce(t.name, 'every tenant') AS scope, p.reason, p.paused_at, p.until
 FROM vendor_pauses p LEFT JOIN tenants t ON t.id = p.tenant_id
 WHERE p.resumed_at IS NULL AND (p.until IS NULL OR p.until > now()) ORDER BY p.paused_at, p.vendor";

/// The vendors paused now (the kill switch), for every tenant or one, as lines of a table; empty
/// when none is.
pub async fn paused_vendors(
    client: &tokio_postgres::Client,
) -> Result<String, tokio_postgres::Error> {
    let rows = client.query(PAUSED_VENDORS, &[]).await?;
    let mut out = String::new();
    if rows.is_empty() {
        return Ok(out);
    }
    let _ = writeln!(
        out,
        "{:<10} {:<16} {:<17} {:<17} reason",
        "paused", "for", "since (UTC)", "until (UTC)"
    );
    let time = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M").to_string();
    for r in rows {
        let _ = writeln!(
            out,
            "{:<10} {:<16} {:<17} {:<17} {}",
            r.get::<_, String>("vendor"),
            r.get::<_, String>("scope")
                .chars()
                .take(16)
                .collect::<String>(),
            time(r.get("paused_at")),
            r.get::<_, Option<chrono::DateTime<chrono::Utc>>>("until")
                .map_or_else(|| "resumed by hand".to_owned(), time),
            r.get::<_, String>("reason")
        );
    }
    Ok(out)
}

pub async fn report(
    client: &tokio_postgres::Client,
    runs: i64,
) -> Result<String, tokio_postgres::Error> {
    let mut out = paused_vendors(client).await?;
    if !out.is_empty() {
        out.push('\n');
    }
    let rows = client.query(LATEST_RUNS, &[&runs]).await?;
    if rows.is_empty() {
        out.push_str("no runs yet\n");
        return Ok(out);
    }
    let _ = writeln!(
        out,
        "{:<36}  {:<16} {:<8} {:<10} {:<20} {:>9}",
        "run", "tenant", "kind", "status", "started (UTC)", "minutes"
    );
    for r in &rows {
        let started: chrono::DateTime<chrono::Utc> = r.get("started_at");
        let finished: Option<chrono::DateTime<chrono::Utc>> = r.get("finished_at");
        let minutes = finished
            .map(|f| format!("{:.1}", (f - started).num_seconds() as f64 / 60.0))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "{:<36}  {:<16} {:<8} {:<10} {:<20} {:>9}",
            r.get::<_, uuid::Uuid>("id").to_string(),
            r.get::<_, String>("name")
                .chars()
                .take(16)
                .collect::<String>(),
            r.get::<_, String>("kind"),
            r.get::<_, String>("status"),
            started.format("%Y-%m-%d %H:%M:%S"),
            minutes
        );
    }
    let latest: uuid::Uuid = rows[0].get("id");
    let _ = writeln!(out, "\nstages of {latest}");
    let _ = writeln!(
        out,
        "{:<12} {:>7} {:>7} {:>7} {:>7} {:>9} {:>9} {:>9}",
        "stage", "total", "ok", "errors", "skipped", "p50 ms", "p95 ms", "p99 ms"
    );
    for s in client
        .query(STAGE_TABLE, &[&latest, &Stage::names()])
        .await?
    {
        let ms = |column: &str| {
            s.get::<_, Option<f64>>(column)
                .map(|v| format!("{v:.0}"))
                .unwrap_or_else(|| "-".into())
        };
        let count = |column: &str| s.get::<_, i32>(column);
        let _ = writeln!(
            out,
            "{:<12} {:>7} {:>7} {:>7} {:>7} {:>9} {:>9} {:>9}",
            s.get::<_, String>("stage"),
            count("total"),
            count("success"),
            count("errors"),
            count("skipped"),
            ms("p50_ms"),
            ms("p95_ms"),
            ms("p99_ms")
        );
    }
    let _ = writeln!(
        out,
        "\n{:<12} {:>7} {:>7} {:>9} {:>12}",
        "vendor", "calls", "errors", "429s", "cost"
    );
    for v in client.query(VENDOR_TABLE, &[&latest]).await? {
        let count = |column: &str| v.get::<_, i32>(column);
        let _ = writeln!(
            out,
            "{:<12} {:>7} {:>7} {:>9} {:>12}",
            v.get::<_, String>("vendor"),
            count("calls"),
            count("errors"),
            count("rate_limit_hits"),
            format!("${:.4}", v.get::<_, i64>("cost_micros") as f64 / 1e6)
        );
    }
    // Compute beside vendors, per 1,000 leads the run found; and the deployment's compute today.
    let c = client.query_one(RUN_COSTS, &[&latest]).await?;
    let (infra, vendor, leads): (i64, i64, i64) =
        (c.get("infra_nanos"), c.get("vendor_micros"), c.get("leads"));
    let dollars = |micros: i64| format!("${:.4}", micros as f64 / 1e6);
    let _ = writeln!(
        out,
        "\n{:<12} {:>12} {:>20}\n{:<12} {:>12} {:>20}\n{:<12} {:>12} {:>20}",
        "cost",
        "run",
        "per 1,000 leads",
        "infra",
        dollars(infra / 1_000),
        if leads > 0 {
            dollars(infra / leads)
        } else {
            "-".into()
        },
        "vendors",
        dollars(vendor),
        if leads > 0 {
            dollars(vendor * 1_000 / leads)
        } else {
            "-".into()
        },
    );
    let today: i64 = client.query_one(COMPUTE_TODAY, &[]).await?.get("nanos");
    let _ = writeln!(
        out,
        "compute today, every tenant and the platform: {}",
        dollars(today / 1_000)
    );
    // Areas searched as deep as Yelp goes: their campaigns find nothing new there.
    let used_up = client
        .query(
            "SELECT c.name, t.location, t.category FROM targeting_cursors t JOIN campaigns c ON c.id = t.campaign_id
             WHERE t.exhausted_at IS NOT NULL AND c.status = 'active' ORDER BY c.name, t.location, t.category",
            &[],
        )
        .await?;
    if !used_up.is_empty() {
        let _ = writeln!(
            out,
            "\nexhausted areas (add ZIP codes, a city or categories)"
        );
        for r in used_up {
            let _ = writeln!(
                out,
                "{:<30} {:<12} {}",
                r.get::<_, String>("name"),
                r.get::<_, String>("location"),
                r.get::<_, String>("category")
            );
        }
    }
    Ok(out)
}
