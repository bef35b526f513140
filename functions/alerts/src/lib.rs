//! alerts: every five minutes, the handbook's rules per tenant — bounce rate (with a send pause),
//! spam reports, the 05:00 nightly watchdog, stalled runs, vendor errors, rate limits and
//! quotas, budgets at 75 % / 90 % / exhausted, dead-lettered messages, QA pass rate, too few
//! candidates.
//!
//! Each alert is recorded in `sent_alerts` before it is posted to Slack (through the vendor
//! client). A tenant's evaluation holds a transaction-scoped advisory lock, and each record's
//! `dedupe_key` (rule, subject, grade, cooldown window) is unique, so two overlapping runs send
//! one alert. A grade already sent within the cooldown is not repeated; a rule that is healthy
//! again after an alert sends one recovery message; at most `max_per_hour` alerts a tenant are
//! posted in an hour (the rest are recorded, not posted).

pub mod rules;

use serde::Serialize;
use shared::bus::queues;
use shared::db::{DbError, begin_tenant};
use shared::domain::TenantId;
use shared::pipeline::Deps;
use shared::vendors::CallContext;
use shared::vendors::slack::SlackClient;

pub use rules::{Finding, Level, Thresholds};

/// This function sends to no queue.
pub const SENDS_TO: &[&str] = &[];

pub struct Alerts {
    slack: Option<SlackClient>,
    defaults: Thresholds,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct AlertReport {
    pub tenants: usize,
    pub findings: usize,
    /// Recorded and posted.
    pub posted: usize,
    /// Recorded but over the hourly cap (or no Slack configured, or Slack failed).
    pub not_posted: usize,
    pub recoveries: usize,
    pub pauses: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("queue depth: {0}")]
    Bus(#[from] shared::bus::BusError),
}

impl From<tokio_postgres::Error> for AlertError {
    fn from(e: tokio_postgres::Error) -> Self {
        AlertError::Db(DbError::Postgres(e))
    }
}

struct ToPost {
    id: uuid::Uuid,
    text: String,
}

impl Alerts {
    pub fn new(slack: Option<SlackClient>, defaults: Thresholds) -> Self {
        Self { slack, defaults }
    }

    /// Dead-lettered messages, per queue (shared infrastructure: every tenant hears of it).
    async fn dlq_findings(&self, deps: &Deps) -> Result<Vec<Finding>, AlertError> {
        let mut out = Vec::new();
        for q in queues::ALL {
            let dlq = queues::dlq(q);
            let depth = match deps.bus.depth(&dlq).await {
                Ok(d) => d.visible + d.in_flight,
                // A queue this deployment does not wire (no URL) has nothing to report.
                Err(shared::bus::BusError::UnknownQueue(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            let f = Finding {
                rule: "dlq",
                subject: dlq.clone(),
                level: Level::Ok,
                grade: "ok",
                value: depth as f64,
                threshold: 0.0,
                message: format!("{dlq} is empty again."),
                pause: false,
            };
            out.push(if depth > 0 {
                Finding {
                    level: Level::Critical,
                    grade: "critical",
                    message: format!("{depth} message(s) in {dlq}: inspect with `leadfactory dlq list --queue {q}`, redrive with `leadfactory dlq redrive --queue {q}`."),
                    ..f
                }
            } else {
                f
            });
        }
        Ok(out)
    }

    /// One evaluation of every rule for every tenant at `now`.
    pub async fn run(
        &self,
        deps: &Deps,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<AlertReport, AlertError> {
        let tenants =
            shared::db::tenant_ids(&deps.pool.get().await.map_err(DbError::from)?).await?;
        end_dead_letters(deps).await?;
        let dlq = self.dlq_findings(deps).await?;
        let mut report = AlertReport {
            tenants: tenants.len(),
            ..AlertReport::default()
        };
        for tenant in tenants {
            let posts = self.tenant(deps, tenant, now, &dlq, &mut report).await?;
            self.post(deps, tenant, posts, now, &mut report).await?;
        }
        let _ = deps.sink.drain();
        Ok(report)
    }

    async fn tenant(
        &self,
        deps: &Deps,
        tenant: TenantId,
        now: chrono::DateTime<chrono::Utc>,
        dlq: &[Finding],
        report: &mut AlertReport,
    ) -> Result<Vec<ToPost>, AlertError> {
        let mut c = deps.pool.get().await.map_err(DbError::from)?;
        let tx = begin_tenant(&mut c, tenant).await?;
        // Overlapping runs take turns per tenant; the second sees what the first recorded.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('leadfactory:alerts:' || $1::uuid::text, 0))",
            &[&tenant.as_uuid()],
        )
        .await?;
        let row = tx
            .query_opt(
                "SELECT name, settings->'alerts' FROM tenants WHERE id = $1",
                &[&tenant.as_uuid()],
            )
            .await?;
        let (name, overrides): (String, Option<serde_json::Value>) = row
            .map(|r| (r.get(0), r.get(1)))
            .unwrap_or_else(|| (tenant.to_string(), None));
        let t = self.defaults.with_overrides(overrides.as_ref());
        let mut findings = rules::evaluate(&tx, &t, now).await?;
        findings.extend(dlq.iter().cloned());
        report.findings += findings.len();
        let window = now.timestamp() / (t.cooldown_minutes.max(1) * 60);
        let cooldown_start = now - chrono::Duration::minutes(t.cooldown_minutes);
        let mut posts = Vec::new();
        for f in findings {
            let prefix = format!("{}:{}:", f.rule, f.subject);
            let (key, severity, text) = if f.level == Level::Ok {
                let last = tx
                    .query_opt(
                        "SELECT id, severity FROM sent_alerts WHERE rule = $1 AND starts_with(dedupe_key, $2) ORDER BY sent_at DESC, id LIMIT 1",
                        &[&f.rule, &prefix],
                    )
                    .await?;
                match last {
                    Some(r) if r.get::<_, String>(1) != "recovered" => (
                        format!("{prefix}recovered:{}", r.get::<_, uuid::Uuid>(0)),
                        "recovered",
                        format!("[RECOVERED] {name}: {}", f.message),
                    ),
                    _ => continue,
                }
            } else {
                let graded = format!("{prefix}{}:", f.grade);
                let recent: bool = tx
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM sent_alerts WHERE rule = $1 AND starts_with(dedupe_key, $2) AND sent_at > $3)",
                        &[&f.rule, &graded, &cooldown_start],
                    )
                    .await?
                    .get(0);
                if recent {
                    continue;
                }
                let severity = if f.level == Level::Critical {
                    "critical"
                } else {
                    "warning"
                };
                (
                    format!("{graded}{window}"),
                    severity,
                    format!("[{}] {name}: {}", severity.to_uppercase(), f.message),
                )
            };
            let inserted = tx
                .query_opt(
                    "INSERT INTO sent_alerts (id, tenant_id, rule, severity, dedupe_key, message, value, threshold, sent_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (tenant_id, dedupe_key) DO NOTHING RETURNING id",
                    &[&uuid::Uuid::new_v4(), &tenant.as_uuid(), &f.rule, &severity, &key, &text, &f.value, &f.threshold, &now],
                )
                .await?;
            let Some(r) = inserted else { continue };
            if severity == "recovered" {
                report.recoveries += 1;
            }
            if f.pause {
                let paused = tx
                    .execute(
                        "INSERT INTO send_pauses (tenant_id, scope, reason, paused_at)
                         SELECT $1, 'all', $2, $3 WHERE NOT EXISTS (SELECT 1 FROM send_pauses WHERE resumed_at IS NULL AND scope = 'all')",
                        &[&tenant.as_uuid(), &f.message, &now],
                    )
                    .await?;
                report.pauses += paused as usize;
            }
            shared::obs::metrics::MetricLine::new()
                .dimension("Rule", f.rule)
                .dimension("Severity", severity)
                .value("Alerts", 1.0, shared::obs::metrics::Unit::Count)
                .emit();
            posts.push(ToPost { id: r.get(0), text });
        }
        tx.commit().await?;
        Ok(posts)
    }

    /// Posts what was recorded, within the hourly cap; marks what went out.
    async fn post(
        &self,
        deps: &Deps,
        tenant: TenantId,
        posts: Vec<ToPost>,
        now: chrono::DateTime<chrono::Utc>,
        report: &mut AlertReport,
    ) -> Result<(), AlertError> {
        if posts.is_empty() {
            return Ok(());
        }
        let mut c = deps.pool.get().await.map_err(DbError::from)?;
        let tx = begin_tenant(&mut c, tenant).await?;
        let cap = self.defaults.max_per_hour;
        let posted_last_hour: i64 = tx
            .query_one(
                "SELECT count(*) FROM sent_alerts WHERE delivered AND sent_at > $1::timestamptz - interval '1 hour'",
                &[&now],
            )
            .await?
            .get(0);
        tx.commit().await?;
        let mut room = (cap - posted_last_hour).max(0) as usize;
        let mut delivered = Vec::new();
        for p in posts {
            let ok = match (&self.slack, room > 0) {
                (Some(slack), true) => {
                    let ctx = CallContext::new(tenant, None, None);
                    match slack.post(&ctx, &p.text).await {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::error!(error = %e, "alert not posted to Slack");
                            false
                        }
                    }
                }
                (None, _) => {
                    tracing::warn!(alert = %p.text, "no Slack webhook configured; alert recorded only");
                    false
                }
                (_, false) => {
                    tracing::warn!(alert = %p.text, "hourly alert cap reached; alert recorded only");
                    false
                }
            };
            if ok {
                room -= 1;
                report.posted += 1;
                delivered.push(p.id);
            } else {
                report.not_posted += 1;
            }
        }
        if !delivered.is_empty() {
            let tx = begin_tenant(&mut c, tenant).await?;
            tx.execute(
                "UPDATE sent_alerts SET delivered = true WHERE id = ANY($1)",
                &[&delivered],
            )
            .await?;
            tx.commit().await?;
        }
        Ok(())
    }
}

/// Ends, as dead, the run work of every message in a dead-letter queue that its function did
/// not record as failed (killed or timed out on its last receive): without this, its run would
/// wait for the idle check to be called stalled. Idempotent: each evaluation looks again.
async fn end_dead_letters(deps: &Deps) -> Result<(), AlertError> {
    use shared::pipeline::runs::DeadLettered;
    let mut by_tenant: std::collections::BTreeMap<TenantId, Vec<DeadLettered>> = Default::default();
    for q in queues::ALL {
        let letters =
            match shared::bus::dlq::peek(deps.bus.as_ref(), q, DEAD_LETTERS_PER_QUEUE).await {
                Ok(l) => l,
                Err(shared::bus::BusError::UnknownQueue(_)) => continue,
                Err(e) => return Err(e.into()),
            };
        for l in letters {
            let tenant = l.tenant.as_deref().and_then(|t| TenantId::parse(t).ok());
            let run = l
                .run
                .as_deref()
                .and_then(|r| shared::domain::RunId::parse(r).ok());
            if let (Some(tenant), Some(run), Some(key)) = (tenant, run, l.idempotency_key) {
                by_tenant.entry(tenant).or_default().push(DeadLettered {
                    queue: (*q).to_owned(),
                    run,
                    key,
                });
            }
        }
    }
    for (tenant, letters) in by_tenant {
        let mut c = deps.pool.get().await.map_err(DbError::from)?;
        let tx = begin_tenant(&mut c, tenant).await?;
        shared::pipeline::runs::end_dead_letters(&tx, &letters).await?;
        tx.commit().await.map_err(DbError::from)?;
    }
    Ok(())
}

/// How many messages of each DLQ an evaluation looks at.
const DEAD_LETTERS_PER_QUEUE: usize = 1_000;
