//! `leadfactory status`: the latest runs and, for the newest, its stage table (counts and
//! p50/p95/p99) and vendor usage — read as the schema owner, across tenants.

use std::fmt::Write;

pub async fn report(
    client: &tokio_postgres::Client,
    runs: i64,
) -> Result<String, tokio_postgres::Error> {
    let mut out = String::new();
    let rows = client
        .query(
            "SELECT r.id, t.name, r.kind, r.status, r.started_at, r.finished_at
             FROM runs r JOIN tenants t ON t.id = r.tenant_id ORDER BY r.started_at DESC LIMIT $1",
            &[&runs],
        )
        .await?;
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
        let started: chrono::DateTime<chrono::Utc> = r.get(4);
        let finished: Option<chrono::DateTime<chrono::Utc>> = r.get(5);
        let minutes = finished
            .map(|f| format!("{:.1}", (f - started).num_seconds() as f64 / 60.0))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "{:<36}  {:<16} {:<8} {:<10} {:<20} {:>9}",
            r.get::<_, uuid::Uuid>(0).to_string(),
            r.get::<_, String>(1).chars().take(16).collect::<String>(),
            r.get::<_, String>(2),
            r.get::<_, String>(3),
            started.format("%Y-%m-%d %H:%M:%S"),
            minutes
        );
    }
    let latest: uuid::Uuid = rows[0].get(0);
    let _ = writeln!(out, "\nstages of {latest}");
    let _ = writeln!(
        out,
        "{:<12} {:>7} {:>7} {:>7} {:>7} {:>9} {:>9} {:>9}",
        "stage", "total", "ok", "errors", "skipped", "p50 ms", "p95 ms", "p99 ms"
    );
    let order = "array_position(ARRAY['sourcing','enrichment','assessment','scoring','reports','personalization','delivery'], stage)";
    for s in client
        .query(&format!("SELECT stage, total, success, errors, skipped, p50_ms, p95_ms, p99_ms FROM run_stage_stats WHERE run_id = $1 ORDER BY {order}, stage"), &[&latest])
        .await?
    {
        let ms = |i: usize| s.get::<_, Option<f64>>(i).map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into());
        let _ = writeln!(out, "{:<12} {:>7} {:>7} {:>7} {:>7} {:>9} {:>9} {:>9}", s.get::<_, String>(0), s.get::<_, i32>(1), s.get::<_, i32>(2), s.get::<_, i32>(3), s.get::<_, i32>(4), ms(5), ms(6), ms(7));
    }
    let _ = writeln!(
        out,
        "\n{:<12} {:>7} {:>7} {:>9} {:>12}",
        "vendor", "calls", "errors", "429s", "cost"
    );
    for v in client.query("SELECT vendor, calls, errors, rate_limit_hits, cost_micros FROM run_vendor_usage WHERE run_id = $1 ORDER BY vendor", &[&latest]).await? {
        let _ = writeln!(out, "{:<12} {:>7} {:>7} {:>9} {:>12}", v.get::<_, String>(0), v.get::<_, i32>(1), v.get::<_, i32>(2), v.get::<_, i32>(3), format!("${:.4}", v.get::<_, i64>(4) as f64 / 1e6));
    }
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
