//! `leadfactory dashboard`: one static HTML page — the funnel, spend and cost per lead per day,
//! the latest run's stage latency percentiles, experiment results with their intervals, cost per
//! lead by tier — drawn as inline SVG (no scripts, no external assets), so it opens from disk in
//! any browser and can be mailed around.

use std::fmt::Write;

use shared::db::{DbError, Pool, begin_tenant};
use shared::domain::TenantId;
use shared::pipeline::Stage;

/// The funnel bars' colour (the screenshot test looks for it).
pub const FUNNEL_COLOUR: &str = "#0b7285";
const SPEND_COLOUR: &str = "#e8590c";
const P_COLOURS: [&str; 3] = ["#74c0fc", "#1c7ed6", "#1864ab"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn dollars(micros: i64) -> String {
    format!("${:.2}", micros as f64 / 1_000_000.0)
}

struct Day {
    day: chrono::NaiveDate,
    sourced: i64,
    cost: i64,
    revenue: i64,
}

const PER_DAY: &str =
    "SELECT day, sum(sourced)::int8 AS sourced, sum(cost_micros)::int8 AS cost_micros,
        sum(revenue_cents)::int8 AS revenue_cents
 FROM funnel_daily WHERE day BETWEEN $1 AND $2 GROUP BY day ORDER BY day";

const LATEST_RUN: &str = "SELECT id, started_at FROM runs ORDER BY started_at DESC LIMIT 1";

const STAGE_LATENCIES: &str =
    "SELECT stage, coalesce(p50_ms, 0) AS p50_ms, coalesce(p95_ms, 0) AS p95_ms,
        coalesce(p99_ms, 0) AS p99_ms
 FROM run_stage_stats WHERE run_id = $1 ORDER BY array_position($2::text[], stage), stage";

/// Renders the page for `tenant` over the last `days` days (rolling the funnel up first).
pub async fn render(pool: &Pool, tenant: TenantId, days: i64) -> Result<String, DbError> {
    let today = chrono::Utc::now().date_naive();
    let from = today - chrono::Duration::days(days.max(1) - 1);
    shared::analytics::rollup(pool, from, today).await?;
    let mut c = pool.get().await?;
    let tx = begin_tenant(&mut c, tenant).await?;
    let name: String = tx
        .query_opt(
            "SELECT name FROM tenants WHERE id = $1",
            &[&tenant.as_uuid()],
        )
        .await?
        .map(|r| r.get("name"))
        .unwrap_or_else(|| tenant.to_string());
    let funnels = shared::analytics::funnels(&tx, None, from, today).await?;
    let per_day: Vec<Day> = tx
        .query(PER_DAY, &[&from, &today])
        .await?
        .iter()
        .map(|r| Day {
            day: r.get("day"),
            sourced: r.get("sourced"),
            cost: r.get("cost_micros"),
            revenue: r.get("revenue_cents"),
        })
        .collect();
    let latest = tx.query_opt(LATEST_RUN, &[]).await?;
    let stages: Vec<(String, f64, f64, f64)> = match &latest {
        Some(r) => tx
            .query(
                STAGE_LATENCIES,
                &[&r.get::<_, uuid::Uuid>("id"), &Stage::names()],
            )
            .await?
            .iter()
            .map(|s| {
                (
                    s.get("stage"),
                    s.get("p50_ms"),
                    s.get("p95_ms"),
                    s.get("p99_ms"),
                )
            })
            .collect(),
        None => Vec::new(),
    };
    let experiments = shared::analytics::experiment_results(&tx).await?;
    let tiers = shared::analytics::cost_per_tier(
        &tx,
        from.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc(),
    )
    .await?;
    tx.commit().await?;

    let mut total = shared::analytics::Funnel::default();
    for f in &funnels {
        total.sourced += f.sourced;
        total.assessed += f.assessed;
        total.scored += f.scored;
        total.emailed += f.emailed;
        total.delivered += f.delivered;
        total.opened += f.opened;
        total.clicked += f.clicked;
        total.purchased += f.purchased;
        total.revenue_cents += f.revenue_cents;
        total.cost_micros += f.cost_micros;
    }
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>LeadFactory — {n}</title><style>\
body{{font-family:system-ui,Arial,sans-serif;margin:2rem;color:#1f2933;background:#f8f9fa}}\
h1{{font-size:1.5rem;margin:0 0 .2rem}} h2{{font-size:1.1rem;margin:0 0 .6rem}}\
.grid{{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:1.2rem}}\
.card{{background:#fff;border-radius:.6rem;padding:1rem 1.2rem;box-shadow:0 1px 3px rgba(0,0,0,.08)}}\
.kpis{{display:flex;gap:2rem;margin:1rem 0 1.4rem}} .kpi b{{display:block;font-size:1.6rem}}\
table{{border-collapse:collapse;width:100%;font-size:.9rem}} td,th{{padding:.3rem .4rem;border-bottom:1px solid #e9ecef;text-align:right}}\
td:first-child,th:first-child{{text-align:left}} .win{{color:#2b8a3e;font-weight:700}} .muted{{color:#7b8794}}\
</style></head><body><h1>LeadFactory — {n}</h1><div class=\"muted\">{from} to {today}</div>",
        n = esc(&name)
    );
    let cpl = if total.sourced > 0 {
        dollars(total.cost_micros / total.sourced)
    } else {
        "–".into()
    };
    let _ = write!(
        html,
        "<div class=\"kpis\"><div class=\"kpi\">leads<b>{}</b></div><div class=\"kpi\">emailed<b>{}</b></div>\
<div class=\"kpi\">purchased<b>{}</b></div><div class=\"kpi\">revenue<b>${}.{:02}</b></div>\
<div class=\"kpi\">vendor spend<b>{}</b></div><div class=\"kpi\">cost per lead<b>{cpl}</b></div></div><div class=\"grid\">",
        total.sourced,
        total.emailed,
        total.purchased,
        total.revenue_cents / 100,
        total.revenue_cents % 100,
        dollars(total.cost_micros)
    );

    // The funnel.
    let steps = [
        ("sourced", total.sourced),
        ("assessed", total.assessed),
        ("scored", total.scored),
        ("emailed", total.emailed),
        ("delivered", total.delivered),
        ("opened", total.opened),
        ("clicked", total.clicked),
        ("purchased", total.purchased),
    ];
    let max = steps.iter().map(|s| s.1).max().unwrap_or(0).max(1) as f64;
    let mut svg = String::from(
        "<svg width=\"100%\" viewBox=\"0 0 520 280\" role=\"img\" aria-label=\"funnel\">",
    );
    for (i, (label, n)) in steps.iter().enumerate() {
        let y = 8 + i as i32 * 33;
        let w = (*n as f64 / max * 330.0).max(2.0);
        let prev = if i == 0 { *n } else { steps[i - 1].1 };
        let pct = if i > 0 && prev > 0 {
            format!(" ({:.0} %)", *n as f64 * 100.0 / prev as f64)
        } else {
            String::new()
        };
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{ty}\" font-size=\"13\">{label}</text><rect x=\"90\" y=\"{y}\" width=\"{w:.1}\" height=\"24\" rx=\"3\" fill=\"{FUNNEL_COLOUR}\"/>\
<text x=\"{tx:.1}\" y=\"{ty}\" font-size=\"13\">{n}{pct}</text>",
            ty = y + 17,
            tx = 96.0 + w
        );
    }
    svg.push_str("</svg>");
    let _ = write!(html, "<div class=\"card\"><h2>Funnel</h2>{svg}</div>");

    // Spend and cost per lead per day.
    let mut svg = String::from(
        "<svg width=\"100%\" viewBox=\"0 0 520 260\" role=\"img\" aria-label=\"spend per day\">",
    );
    let max_cost = per_day.iter().map(|d| d.cost).max().unwrap_or(0).max(1) as f64;
    let n = per_day.len().max(1);
    let bw = (460.0 / n as f64).min(40.0);
    let mut line = String::new();
    let max_cpl = per_day
        .iter()
        .filter(|d| d.sourced > 0)
        .map(|d| d.cost as f64 / d.sourced as f64)
        .fold(0.0f64, f64::max)
        .max(1.0);
    for (i, d) in per_day.iter().enumerate() {
        let x = 40.0 + i as f64 * (460.0 / n as f64);
        let h = d.cost as f64 / max_cost * 190.0;
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{SPEND_COLOUR}\"><title>{} spend {} revenue ${:.2}</title></rect>\
{}",
            220.0 - h,
            bw * 0.8,
            d.day,
            dollars(d.cost),
            d.revenue as f64 / 100.0,
            // About eight date labels, however many days.
            if i % n.div_ceil(8) == 0 || i + 1 == n {
                format!(
                    "<text x=\"{x:.1}\" y=\"250\" font-size=\"10\">{}</text>",
                    d.day.format("%m-%d")
                )
            } else {
                String::new()
            }
        );
        if d.sourced > 0 {
            let cpl = d.cost as f64 / d.sourced as f64;
            let _ = write!(
                line,
                "{:.1},{:.1} ",
                x + bw * 0.4,
                220.0 - cpl / max_cpl * 190.0
            );
        }
    }
    let _ = write!(
        svg,
        "<polyline points=\"{line}\" fill=\"none\" stroke=\"#1f2933\" stroke-width=\"2\"/>\
<text x=\"0\" y=\"20\" font-size=\"11\">max {}/day</text><text x=\"380\" y=\"20\" font-size=\"11\">— cost per lead</text></svg>",
        dollars(max_cost as i64)
    );
    let _ = write!(
        html,
        "<div class=\"card\"><h2>Spend and cost per lead</h2>{svg}</div>"
    );

    // Stage latency percentiles of the latest run.
    let mut svg = String::from(
        "<svg width=\"100%\" viewBox=\"0 0 520 280\" role=\"img\" aria-label=\"stage latency\">",
    );
    let max_ms = stages.iter().map(|s| s.3).fold(1.0f64, f64::max);
    for (i, (stage, p50, p95, p99)) in stages.iter().enumerate() {
        let y = 8 + i as i32 * 32;
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{}\" font-size=\"12\">{}</text>",
            y + 18,
            esc(stage)
        );
        for (j, v) in [p50, p95, p99].iter().enumerate() {
            let w = (*v / max_ms * 300.0).max(1.0);
            let _ = write!(
                svg,
                "<rect x=\"110\" y=\"{}\" width=\"{w:.1}\" height=\"8\" fill=\"{}\"><title>p{} {v:.0} ms</title></rect>",
                y + j as i32 * 9,
                P_COLOURS[j],
                [50, 95, 99][j]
            );
        }
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"11\">{p99:.0} ms</text>",
            116.0 + p99 / max_ms * 300.0,
            y + 24
        );
    }
    svg.push_str("</svg>");
    let run = latest
        .as_ref()
        .map(|r| {
            format!(
                "run of {}",
                r.get::<_, chrono::DateTime<chrono::Utc>>("started_at")
                    .format("%Y-%m-%d %H:%M")
            )
        })
        .unwrap_or_else(|| "no run yet".into());
    let _ = write!(
        html,
        "<div class=\"card\"><h2>Stage latency p50 / p95 / p99 <span class=\"muted\">({run})</span></h2>{svg}</div>"
    );

    // Experiments.
    let mut t = String::from(
        "<table><tr><th>variant</th><th>sent</th><th>opened</th><th>clicked</th><th>bought</th><th>conversion (95 % CI)</th><th>p</th><th></th></tr>",
    );
    for v in &experiments {
        let bar = format!(
            "<svg width=\"120\" height=\"12\"><rect x=\"0\" y=\"5\" width=\"120\" height=\"2\" fill=\"#e9ecef\"/><rect x=\"{:.1}\" y=\"2\" width=\"{:.1}\" height=\"8\" fill=\"{FUNNEL_COLOUR}\" opacity=\".5\"/><rect x=\"{:.1}\" y=\"0\" width=\"2\" height=\"12\" fill=\"#1f2933\"/></svg>",
            v.ci_low * 120.0,
            ((v.ci_high - v.ci_low) * 120.0).max(1.0),
            v.conversion * 120.0
        );
        let _ = write!(
            t,
            "<tr><td>{} / {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{bar} {:.1} %</td><td>{}</td><td>{}</td></tr>",
            esc(&v.experiment),
            esc(&v.variant),
            v.sends,
            v.opens,
            v.clicks,
            v.purchases,
            v.conversion * 100.0,
            v.p_value
                .map(|p| format!("{p:.3}"))
                .unwrap_or_else(|| "control".into()),
            if v.winner {
                "<span class=\"win\">winner</span>".to_owned()
            } else if !v.min_sample_reached {
                "<span class=\"muted\">collecting</span>".to_owned()
            } else {
                String::new()
            }
        );
    }
    t.push_str("</table>");
    let _ = write!(html, "<div class=\"card\"><h2>Experiments</h2>{t}</div>");

    let mut t = String::from(
        "<table><tr><th>tier</th><th>leads</th><th>vendor cost</th><th>per lead</th></tr>",
    );
    for x in &tiers {
        let _ = write!(
            t,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&x.tier),
            x.leads,
            dollars(x.cost_micros),
            dollars(x.cost_per_lead_micros)
        );
    }
    t.push_str("</table>");
    let _ = write!(
        html,
        "<div class=\"card\"><h2>Cost per lead by tier</h2>{t}</div></div></body></html>"
    );
    Ok(html)
}
