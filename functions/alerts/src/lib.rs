//! alerts: every five minutes, the handbook's rules per tenant — bounce rate (with a send pause),
//! spam reports, the 05:00 nightly watchdog, stalled runs, vendor errors, rate limits and
//! quotas, budgets at 75 % / 90 % / exhausted, QA pass rate, too few candidates, exhausted
//! campaigns, paid purchases whose report never reached the buyer — and, once for the whole
//! deployment, the operator's: health checks (every queue readable; an alert after
//! `HEALTH_CHECK_FAILURES_THRESHOLD` failures in a row), dead-lettered messages, paid Stripe
//! sessions naming no tenant, the database's storage and the monthly restore drill.
//!
//! Each alert is recorded before it is posted to Slack (through the vendor client): a tenant's
//! in `sent_alerts` (under its RLS), posted to the tenant's own channel when it has one (the
//! webhook is a secret in Secrets Manager, named by `settings.alerts.slack_secret`) and else to
//! the operator's; the operator's in `operator_alerts`, posted once to the operator's channel
//! (`SLACK_WEBHOOK_URL`). An evaluation holds a transaction-scoped advisory lock per ledger, and
//! each record's `dedupe_key` (rule, subject, grade, cooldown window) is unique, so two
//! overlapping runs send one alert. A grade already sent within the cooldown is not repeated; a
//! rule that is healthy again after an alert sends one recovery message; at most `max_per_hour`
//! alerts a ledger are posted in an hour (the rest are recorded, not posted); a post that failed
//! is tried again by the next evaluations (up to `MAX_POST_ATTEMPTS`, within a day).

pub mod rules;

use std::sync::Arc;

use secrecy::SecretString;
use serde::Serialize;
use shared::bus::Queue;
use shared::db::{DbError, begin_tenant};
use shared::domain::TenantId;
use shared::pipeline::Deps;
use shared::vendors::slack::SlackClient;
use shared::vendors::{CallContext, VendorError};

pub use rules::{Finding, Level, Thresholds};

/// This function sends to no queue.
pub const SENDS_TO: &[Queue] = &[];

/// Tries of one alert's post, the first included, before it is left recorded only.
pub const MAX_POST_ATTEMPTS: i16 = 5;

/// Builds the Slack client of one webhook URL (the vendor configuration's, in production).
pub type MakeSlack = Box<dyn Fn(SecretString) -> Result<SlackClient, VendorError> + Send + Sync>;

/// Tenants' own Slack channels: each webhook URL is a secret (JSON `{"SLACK_WEBHOOK_URL": …}`)
/// whose name, under `prefix` (the template grants this function exactly that prefix), is in the
/// tenant's `settings.alerts.slack_secret`.
pub struct TenantChannels {
    pub secrets: shared::aws::LazyClient<shared::secrets::Client>,
    pub prefix: String,
    pub make: MakeSlack,
}

pub struct Alerts {
    slack: Option<SlackClient>,
    tenants: Option<TenantChannels>,
    /// Each tenant channel's client, built once per container (as the functions' own secrets
    /// are read once): its limiter and breaker persist between evaluations, and Secrets Manager
    /// is asked once per secret, not every five minutes.
    channels: tokio::sync::Mutex<std::collections::HashMap<String, Arc<SlackClient>>>,
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
    /// Posts that had failed before and went out this time.
    pub retried: usize,
    pub recoveries: usize,
    pub pauses: usize,
    /// Domain events the sweep published, and those still waiting (the bus refused them).
    pub events_published: usize,
    pub events_waiting: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("queue depth: {0}")]
    Bus(#[from] shared::bus::BusError),
    #[error("domain events: {0}")]
    Events(#[from] shared::events::EventError),
}

impl From<tokio_postgres::Error> for AlertError {
    fn from(e: tokio_postgres::Error) -> Self {
        AlertError::Db(DbError::Postgres(e))
    }
}

impl From<deadpool_postgres::PoolError> for AlertError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        AlertError::Db(DbError::from(e))
    }
}

/// Where an alert is recorded and whose cap it counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ledger {
    Tenant(TenantId),
    Operator,
}

/// The statements that read and update one ledger's table: the same for both tables, which
/// share their columns.
struct LedgerStatements {
    /// The rule's latest alert for a subject (by dedupe-key prefix).
    latest: &'static str,
    /// Whether the rule alerted for a subject at this grade since the cooldown began.
    recent: &'static str,
    /// Alerts whose post failed and may be tried again.
    retries: &'static str,
    /// Alerts posted in the hour before now (the hourly cap).
    posted_last_hour: &'static str,
    /// Each post's outcome.
    record_posts: &'static str,
    /// A new alert, once per dedupe key; the tenant's table takes the tenant as `$9`.
    insert: &'static str,
}

macro_rules! ledger_statements {
    ($table:literal, insert: $insert:literal) => {
        LedgerStatements {
            latest: concat!("SELECT id, severity FROM ", $table, " WHERE rule = $1 AND starts_with(dedupe_key, $2) ORDER BY sent_at DESC, id LIMIT 1"),
            recent: concat!("SELECT EXISTS (SELECT 1 FROM ", $table, " WHERE rule = $1 AND starts_with(dedupe_key, $2) AND sent_at > $3) AS recent"),
            retries: concat!("SELECT id, message FROM ", $table, " WHERE NOT delivered AND post_attempts BETWEEN 1 AND $1
 AND sent_at > $2::timestamptz - interval '1 day' ORDER BY sent_at, id LIMIT 50"),
            posted_last_hour: concat!("SELECT count(*) AS posted FROM ", $table, " WHERE delivered AND sent_at > $1::timestamptz - interval '1 hour'"),
            record_posts: concat!("UPDATE ", $table, " a SET delivered = x.ok, post_attempts = a.post_attempts + 1, last_post_error = x.err
 FROM UNNEST($1::uuid[], $2::bool[], $3::text[]) AS x(id, ok, err) WHERE a.id = x.id"),
            insert: $insert,
        }
    };
}

const TENANT_LEDGER: LedgerStatements = ledger_statements!(
    "sent_alerts",
    insert: "INSERT INTO sent_alerts (id, rule, severity, dedupe_key, message, value, threshold, sent_at, tenant_id)
 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (tenant_id, dedupe_key) DO NOTHING RETURNING id"
);
const OPERATOR_LEDGER: LedgerStatements = ledger_statements!(
    "operator_alerts",
    insert: "INSERT INTO operator_alerts (id, rule, severity, dedupe_key, message, value, threshold, sent_at)
 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (dedupe_key) DO NOTHING RETURNING id"
);

impl Ledger {
    fn statements(self) -> &'static LedgerStatements {
        match self {
            Ledger::Tenant(_) => &TENANT_LEDGER,
            Ledger::Operator => &OPERATOR_LEDGER,
        }
    }

    /// A transaction in the ledger's scope: the tenant's RLS, or none (the operator's table).
    async fn begin(
        self,
        c: &mut deadpool_postgres::Client,
    ) -> Result<deadpool_postgres::Transaction<'_>, DbError> {
        match self {
            Ledger::Tenant(t) => begin_tenant(c, t).await,
            Ledger::Operator => Ok(c.transaction().await?),
        }
    }

    fn lock_name(self) -> String {
        match self {
            Ledger::Tenant(t) => format!("leadfactory:alerts:{t}"),
            Ledger::Operator => "leadfactory:alerts:operator".to_owned(),
        }
    }
}

struct ToPost {
    id: uuid::Uuid,
    text: String,
}

/// How a post failed, for the record: never the error's text, which may carry the webhook URL
/// (the URL is the secret).
fn post_failure(e: &VendorError) -> &'static str {
    if e.is_transient() {
        "Slack unavailable; tried again by the next evaluation"
    } else {
        "Slack refused the post"
    }
}

/// The rules whose values are also CloudWatch metrics (namespace `LeadFactory`, dimension
/// `Function=alerts`), each with an alarm in the template: the worst tenant's value raises it.
pub const METRICS: &[(&str, &str)] = &[
    ("bounce_rate", "BounceRate"),
    ("spam_rate", "SpamRate"),
    ("delivery_rate", "DeliveryRate"),
    // The cost per lead over its tier's threshold (above 1 is over).
    ("cost_per_lead", "CostPerLeadOverThreshold"),
    // 1 when the day's nightly had finished by the watchdog's hour, 0 when not (from then on).
    ("nightly_watchdog", "NightlyFinishedByDeadline"),
];

/// One EMF line with the metric of each finding of a [`METRICS`] rule (the worst subject's
/// value where a rule has several, as the alarm reads the worst tenant's).
pub fn metrics(findings: &[Finding]) -> shared::obs::metrics::MetricLine {
    use shared::obs::metrics::{MetricLine, Unit};
    let mut line = MetricLine::new().dimension("Function", "alerts");
    for (rule, name) in METRICS {
        let values = findings.iter().filter(|f| f.rule == *rule).map(|f| {
            if *rule == "cost_per_lead" && f.threshold > 0.0 {
                f.value / f.threshold
            } else {
                f.value
            }
        });
        // Higher is worse but for the delivery rate and the watchdog.
        let worst = if matches!(*rule, "delivery_rate" | "nightly_watchdog") {
            values.reduce(f64::min)
        } else {
            values.reduce(f64::max)
        };
        if let Some(v) = worst {
            line = line.value(name, v, Unit::None);
        }
    }
    line
}

/// The database's size and its three largest tables (with their indexes and TOAST).
const DATABASE_SIZE: &str = "SELECT pg_database_size(current_database())::int8 AS bytes,
        (SELECT string_agg(c.relname || ' ' || pg_size_pretty(c.size), ', ' ORDER BY c.size DESC)
         FROM (SELECT relname, pg_total_relation_size(oid) AS size FROM pg_class
               WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace
               ORDER BY 2 DESC LIMIT 3) c) AS largest";

/// One evaluation's health checks, each component's run of failures counted on.
const COMPUTE_SINCE: &str = "SELECT function, invocations, cost_nanos FROM compute_cost_since($1)";
const RECORD_HEALTH: &str = "INSERT INTO health_checks AS h (component, failures, last_error, checked_at, failing_since)
 SELECT x.c, CASE WHEN x.e IS NULL THEN 0 ELSE 1 END, x.e, $3, CASE WHEN x.e IS NULL THEN NULL ELSE $3::timestamptz END
 FROM UNNEST($1::text[], $2::text[]) AS x(c, e)
 ON CONFLICT (component) DO UPDATE SET
   failures = CASE WHEN EXCLUDED.last_error IS NULL THEN 0
                   WHEN h.last_error IS NOT NULL AND h.checked_at > EXCLUDED.checked_at - interval '1 minute' THEN h.failures
                   ELSE h.failures + 1 END,
   failing_since = CASE WHEN EXCLUDED.last_error IS NULL THEN NULL ELSE coalesce(h.failing_since, EXCLUDED.checked_at) END,
   last_error = EXCLUDED.last_error, checked_at = EXCLUDED.checked_at
 RETURNING component, failures, last_error, failing_since";

const UNATTRIBUTED_PAID: &str = "SELECT waiting, oldest FROM unattributed_paid_sessions()";
const LATEST_DRILL: &str = "SELECT prefix, ran_at, passed, tables, rows, failure FROM backup_drills ORDER BY ran_at DESC LIMIT 1";
const TENANT_ALERT_SETTINGS: &str =
    "SELECT name, settings->'alerts' AS alerts FROM tenants WHERE id = $1";
const LOCK_RULE: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))";
const PAUSE_SENDING: &str = "INSERT INTO send_pauses (tenant_id, scope, reason, paused_at)
 SELECT $1, 'all', $2, $3 WHERE NOT EXISTS (SELECT 1 FROM send_pauses WHERE resumed_at IS NULL AND scope = 'all')";

impl Alerts {
    pub fn new(slack: Option<SlackClient>, defaults: Thresholds) -> Self {
        Self {
            slack,
            tenants: None,
            channels: Default::default(),
            defaults,
        }
    }

    /// Posts each tenant's alerts to its own channel when it has one.
    pub fn with_tenant_channels(mut self, channels: TenantChannels) -> Self {
        self.tenants = Some(channels);
        self
    }

    /// The operator's findings: the health checks, dead-lettered messages per queue (shared
    /// infrastructure), paid Stripe sessions that name no tenant, the database's storage and the
    /// restore drill.
    async fn operator_findings(
        &self,
        deps: &Deps,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Finding>, AlertError> {
        let mut out = Vec::new();
        let mut checks = Vec::new();
        for q in Queue::ALL {
            for name in [q.name(), q.dlq()] {
                match deps.bus.depth(name).await {
                    Ok(d) => {
                        checks.push((format!("queue:{name}"), None));
                        if name == q.dlq() {
                            out.push(dead_letters(*q, d.visible + d.in_flight));
                        }
                    }
                    // A queue this deployment does not wire (no URL) has nothing to report.
                    Err(shared::bus::BusError::UnknownQueue(_)) => {}
                    Err(e) => checks.push((format!("queue:{name}"), Some(e.to_string()))),
                }
            }
        }
        let c = deps.pool.get().await?;
        out.extend(self.health(&c, checks, now).await?);
        let row = c.query_one(UNATTRIBUTED_PAID, &[]).await?;
        let waiting: i64 = row.get("waiting");
        let f = Finding::new("unattributed_payment", "stripe");
        out.push(if waiting > 0 {
            let oldest: Option<chrono::DateTime<chrono::Utc>> = row.get("oldest");
            f.at(
                Level::Critical,
                "critical",
                waiting as f64,
                0.0,
                format!(
                    "{waiting} paid Stripe session(s) name no tenant (the oldest received {}): nothing was delivered for the money; see `leadfactory purchase unattributed`.",
                    oldest.map_or_else(|| "?".into(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                ),
            )
        } else {
            f.at(
                Level::Ok,
                "ok",
                0.0,
                0.0,
                "Every paid Stripe session is attributed again.".to_owned(),
            )
        });
        out.push(self.storage(&c).await?);
        out.extend(self.restore_drill(&c, now).await?);
        out.push(self.infra_budget(&c, now).await?);
        Ok(out)
    }

    /// Records this evaluation's health checks (`component`, and the error of a failed one)
    /// and finds each component that has failed `health_failures` checks in a row. A second
    /// failed check within a minute of the last (an overlapping evaluation) is the same check.
    async fn health(
        &self,
        c: &shared::db::Client,
        checks: Vec<(String, Option<String>)>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Finding>, AlertError> {
        let (components, errors): (Vec<String>, Vec<Option<String>>) = checks
            .into_iter()
            .map(|(c, e)| (c, e.map(|e| e.chars().take(500).collect::<String>())))
            .unzip();
        let rows = c
            .query(RECORD_HEALTH, &[&components, &errors, &now])
            .await?;
        let threshold = self.defaults.health_failures.max(1);
        Ok(rows
            .iter()
            .map(|r| {
                let component: String = r.get("component");
                let failures: i32 = r.get("failures");
                let f = Finding::new("health", component.clone());
                if failures >= threshold {
                    let since: Option<chrono::DateTime<chrono::Utc>> = r.get("failing_since");
                    let error: Option<String> = r.get("last_error");
                    f.at(
                        Level::Critical,
                        "critical",
                        f64::from(failures),
                        f64::from(threshold),
                        format!(
                            "{component} failed {failures} health checks in a row (since {}): {}",
                            since.map_or_else(
                                || "?".into(),
                                |t| t.format("%Y-%m-%d %H:%M UTC").to_string()
                            ),
                            error.as_deref().unwrap_or("?")
                        ),
                    )
                } else {
                    f.at(
                        Level::Ok,
                        "ok",
                        f64::from(failures),
                        f64::from(threshold),
                        format!("{component} answers its health checks again."),
                    )
                }
            })
            .collect())
    }

    /// The latest monthly restore drill: failed is critical; passed, but longer ago than a
    /// month and a few days (the schedule stopped), a warning. No drill yet says nothing.
    async fn restore_drill(
        &self,
        c: &shared::db::Client,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Finding>, AlertError> {
        let Some(r) = c.query_opt(LATEST_DRILL, &[]).await? else {
            return Ok(None);
        };
        let ran_at: chrono::DateTime<chrono::Utc> = r.get("ran_at");
        let prefix: Option<String> = r.get("prefix");
        let prefix = prefix.as_deref().unwrap_or("(no backup)");
        let when = ran_at.format("%Y-%m-%d %H:%M UTC");
        let f = Finding::new("restore_drill", "backups");
        let age_days = (now - ran_at).num_days();
        Ok(Some(if !r.get::<_, bool>("passed") {
            let failure: Option<String> = r.get("failure");
            f.at(
                Level::Critical,
                "critical",
                0.0,
                1.0,
                format!(
                    "The restore drill of {prefix} on {when} failed: {}. The backups may not restore: see docs/runbook.md (Backups), drill by hand with `leadfactory restore --from s3://<bucket>/{prefix} --verify`.",
                    failure.as_deref().unwrap_or("no reason recorded")
                ),
            )
        } else if age_days > self.defaults.restore_drill_max_age_days {
            f.at(
                Level::Warning,
                "stale",
                age_days as f64,
                self.defaults.restore_drill_max_age_days as f64,
                format!("No restore drill has passed since {when} ({age_days} days): the monthly drill's schedule may have stopped."),
            )
        } else {
            f.at(
                Level::Ok,
                "ok",
                1.0,
                1.0,
                format!(
                    "The restore drill of {prefix} on {when} passed: {} tables, {} rows read back exactly.",
                    r.get::<_, i32>("tables"),
                    r.get::<_, i64>("rows")
                ),
            )
        }))
    }

    /// The deployment's compute since midnight UTC (every tenant's and the platform's) against
    /// the daily infra budget, naming the functions that cost most (the seeds' burst-compute
    /// spend gauge).
    async fn infra_budget(
        &self,
        c: &shared::db::Client,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Finding, AlertError> {
        let t = &self.defaults;
        let midnight = now
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map_or(now, |m| m.and_utc());
        let rows = c.query(COMPUTE_SINCE, &[&midnight]).await?;
        let nanos: i64 = rows.iter().map(|r| r.get::<_, i64>("cost_nanos")).sum();
        let spent_usd = nanos as f64 / 1e9;
        let top = rows
            .iter()
            .take(3)
            .map(|r| {
                format!(
                    "{} ${:.2} ({} invocations)",
                    r.get::<_, String>("function"),
                    r.get::<_, i64>("cost_nanos") as f64 / 1e9,
                    r.get::<_, i64>("invocations")
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let used = spent_usd / t.infra_daily_budget_usd;
        Ok(Finding::new("infra_budget", "compute").graded(
            used,
            (t.infra_budget_warn, t.infra_budget_critical),
            |th| {
                format!(
                    "Compute today is ${spent_usd:.2}, {} of the ${:.2} daily infra budget — at or above {}. Most: {top}.",
                    rules::pct(used),
                    t.infra_daily_budget_usd,
                    rules::pct(th)
                )
            },
            format!(
                "Compute today is back to {} of the daily infra budget.",
                rules::pct(used)
            ),
        ))
    }

    /// The database's size against the storage it is given, naming its largest tables.
    async fn storage(&self, c: &shared::db::Client) -> Result<Finding, AlertError> {
        let t = &self.defaults;
        let row = c.query_one(DATABASE_SIZE, &[]).await?;
        let bytes: i64 = row.get("bytes");
        let largest: Option<String> = row.get("largest");
        let limit = t.db_storage_limit_gb * 1e9;
        let used = if limit > 0.0 {
            bytes as f64 / limit
        } else {
            0.0
        };
        let f = Finding::new("database_storage", "database");
        let msg = |what: &str, th: f64| {
            format!(
                "The database holds {:.1} GB, {} of its {} GB — {what} {}. Largest: {}.",
                bytes as f64 / 1e9,
                rules::pct(used),
                t.db_storage_limit_gb,
                rules::pct(th),
                largest.as_deref().unwrap_or("-")
            )
        };
        Ok(f.graded(
            used,
            (t.db_storage_warn, t.db_storage_critical),
            |th| msg("at or above", th),
            format!(
                "The database is back to {} of its storage.",
                rules::pct(used)
            ),
        ))
    }

    /// One evaluation of every rule for every tenant, and of the operator's, at `now`.
    pub async fn run(
        &self,
        deps: &Deps,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<AlertReport, AlertError> {
        let tenants = shared::db::tenant_ids(&deps.pool.get().await?).await?;
        end_dead_letters(deps).await?;
        let mut report = AlertReport {
            tenants: tenants.len(),
            ..AlertReport::default()
        };
        let operator = self.operator_findings(deps, now).await?;
        report.findings += operator.len();
        let posts = {
            let mut c = deps.pool.get().await?;
            let tx = c.transaction().await?;
            let posts = self
                .record(
                    &tx,
                    Ledger::Operator,
                    "",
                    &self.defaults,
                    operator,
                    now,
                    &mut report,
                )
                .await?;
            tx.commit().await?;
            posts
        };
        self.post(
            deps,
            Ledger::Operator,
            self.slack.as_ref(),
            posts,
            now,
            &mut report,
        )
        .await?;
        for tenant in tenants {
            let mut c = deps.pool.get().await?;
            let tx = begin_tenant(&mut c, tenant).await?;
            let row = tx
                .query_opt(TENANT_ALERT_SETTINGS, &[&tenant.as_uuid()])
                .await?;
            let (name, settings): (String, Option<serde_json::Value>) = row
                .map(|r| (r.get("name"), r.get("alerts")))
                .unwrap_or_else(|| (tenant.to_string(), None));
            let t = self.defaults.with_overrides(settings.as_ref());
            let findings = rules::evaluate(&tx, &t, now).await?;
            report.findings += findings.len();
            metrics(&findings).emit();
            let posts = self
                .record(
                    &tx,
                    Ledger::Tenant(tenant),
                    &name,
                    &t,
                    findings,
                    now,
                    &mut report,
                )
                .await?;
            tx.commit().await?;
            let own = self.tenant_channel(tenant, settings.as_ref()).await;
            let channel = own.as_deref().or(self.slack.as_ref());
            self.post(
                deps,
                Ledger::Tenant(tenant),
                channel,
                posts,
                now,
                &mut report,
            )
            .await?;
            // The sweep: this tenant's waiting events (its alerts' and runs' just recorded, and
            // any a function recorded but did not publish).
            let flushed = shared::events::flush_on(&mut c, deps.events.as_deref(), tenant).await?;
            report.events_published += flushed.published;
            report.events_waiting += flushed.failed;
        }
        Ok(report)
    }

    /// The tenant's own channel, when its settings name one this function can read.
    async fn tenant_channel(
        &self,
        tenant: TenantId,
        settings: Option<&serde_json::Value>,
    ) -> Option<Arc<SlackClient>> {
        let name = settings?.get("slack_secret")?.as_str()?;
        let Some(ch) = &self.tenants else {
            tracing::warn!(%tenant, "tenant Slack channel configured, but this deployment reads no tenant secrets; the operator's channel is used");
            return None;
        };
        if !name.starts_with(&ch.prefix) {
            tracing::warn!(%tenant, secret = name, prefix = %ch.prefix, "tenant Slack secret outside the tenants' prefix; the operator's channel is used");
            return None;
        }
        let mut built = self.channels.lock().await;
        if let Some(c) = built.get(name) {
            return Some(c.clone());
        }
        let read = shared::secrets::load(ch.secrets.get().await, &[name.to_owned()]).await;
        let url = match read {
            Ok(mut values) => values.remove("SLACK_WEBHOOK_URL"),
            Err(e) => {
                tracing::error!(%tenant, error = %e, "tenant Slack secret not readable; the operator's channel is used");
                None
            }
        }?;
        let client = Arc::new(
            (ch.make)(SecretString::from(url))
                .map_err(|e| tracing::error!(%tenant, error = %e, "tenant Slack client not built"))
                .ok()?,
        );
        built.insert(name.to_owned(), client.clone());
        Some(client)
    }

    /// Records what is new in `ledger` (once per grade and cooldown window, a recovery once) and
    /// returns what to post. A tenant's pause finding pauses its sending in the same transaction.
    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        ledger: Ledger,
        name: &str,
        t: &Thresholds,
        findings: Vec<Finding>,
        now: chrono::DateTime<chrono::Utc>,
        report: &mut AlertReport,
    ) -> Result<Vec<ToPost>, AlertError> {
        let sql = ledger.statements();
        // Overlapping runs take turns per ledger; the second sees what the first recorded.
        tx.execute(LOCK_RULE, &[&ledger.lock_name()]).await?;
        let label = if name.is_empty() {
            "LeadFactory".to_owned()
        } else {
            name.to_owned()
        };
        let window = now.timestamp() / (t.cooldown_minutes.max(1) * 60);
        let cooldown_start = now - chrono::Duration::minutes(t.cooldown_minutes);
        let mut posts = Vec::new();
        for f in findings {
            let prefix = format!("{}:{}:", f.rule, f.subject);
            let (key, severity, text) = if f.level == Level::Ok {
                let last = tx.query_opt(sql.latest, &[&f.rule, &prefix]).await?;
                match last {
                    Some(r) if r.get::<_, String>("severity") != "recovered" => (
                        format!("{prefix}recovered:{}", r.get::<_, uuid::Uuid>("id")),
                        "recovered",
                        format!("[RECOVERED] {label}: {}", f.message),
                    ),
                    _ => continue,
                }
            } else {
                let graded = format!("{prefix}{}:", f.grade);
                let recent: bool = tx
                    .query_one(sql.recent, &[&f.rule, &graded, &cooldown_start])
                    .await?
                    .get("recent");
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
                    format!("[{}] {label}: {}", severity.to_uppercase(), f.message),
                )
            };
            let id = uuid::Uuid::new_v4();
            let tenant = match ledger {
                Ledger::Tenant(t) => Some(t.as_uuid()),
                Ledger::Operator => None,
            };
            let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![
                &id,
                &f.rule,
                &severity,
                &key,
                &text,
                &f.value,
                &f.threshold,
                &now,
            ];
            if let Some(t) = &tenant {
                params.push(t);
            }
            let inserted = tx.query_opt(sql.insert, &params).await?;
            if inserted.is_none() {
                continue;
            }
            if severity == "recovered" {
                report.recoveries += 1;
            } else if let Ledger::Tenant(tenant) = ledger {
                let raised = shared::events::AlertRaised {
                    header: shared::events::Header::derived(
                        shared::events::DetailType::AlertRaised,
                        &id.to_string(),
                        tenant,
                        now,
                    ),
                    alert_id: id,
                    rule: f.rule.to_owned(),
                    severity: severity.to_owned(),
                    message: text.clone(),
                    value: f.value,
                    threshold: f.threshold,
                };
                shared::events::record(tx, &[raised]).await?;
            }
            if let (true, Ledger::Tenant(tenant)) = (f.pause, ledger) {
                let paused = tx
                    .execute(PAUSE_SENDING, &[&tenant.as_uuid(), &f.message, &now])
                    .await?;
                report.pauses += paused as usize;
            }
            shared::obs::metrics::MetricLine::new()
                .dimension("Rule", f.rule)
                .dimension("Severity", severity)
                .value("Alerts", 1.0, shared::obs::metrics::Unit::Count)
                .emit();
            posts.push(ToPost { id, text });
        }
        Ok(posts)
    }

    /// Posts what was recorded, and what failed to post before, within the hourly cap; records
    /// each attempt's outcome.
    async fn post(
        &self,
        deps: &Deps,
        ledger: Ledger,
        channel: Option<&SlackClient>,
        fresh: Vec<ToPost>,
        now: chrono::DateTime<chrono::Utc>,
        report: &mut AlertReport,
    ) -> Result<(), AlertError> {
        let sql = ledger.statements();
        let mut c = deps.pool.get().await?;
        let tx = ledger.begin(&mut c).await?;
        let retries: Vec<ToPost> = tx
            .query(sql.retries, &[&(MAX_POST_ATTEMPTS - 1), &now])
            .await?
            .iter()
            .map(|r| ToPost {
                id: r.get("id"),
                text: r.get("message"),
            })
            .collect();
        let posted_last_hour: i64 = tx
            .query_one(sql.posted_last_hour, &[&now])
            .await?
            .get("posted");
        tx.commit().await?;
        let retried: std::collections::HashSet<uuid::Uuid> = retries.iter().map(|p| p.id).collect();
        if fresh.is_empty() && retries.is_empty() {
            return Ok(());
        }
        let mut room = (self.defaults.max_per_hour - posted_last_hour).max(0) as usize;
        let (mut ids, mut delivered, mut errors) = (Vec::new(), Vec::new(), Vec::new());
        for p in retries.into_iter().chain(fresh) {
            let outcome = match (channel, room > 0) {
                (Some(slack), true) => {
                    let ctx = match ledger {
                        Ledger::Tenant(t) => CallContext::new(t, None, None),
                        Ledger::Operator => {
                            CallContext::new(TenantId::from_uuid(uuid::Uuid::nil()), None, None)
                        }
                    };
                    Some(slack.post(&ctx, &p.text).await)
                }
                (None, _) => {
                    tracing::warn!(alert = %p.text, "no Slack webhook configured; alert recorded only");
                    None
                }
                (_, false) => {
                    tracing::warn!(alert = %p.text, "hourly alert cap reached; alert recorded only");
                    None
                }
            };
            match outcome {
                Some(Ok(())) => {
                    room -= 1;
                    report.posted += 1;
                    if retried.contains(&p.id) {
                        report.retried += 1;
                    }
                    ids.push(p.id);
                    delivered.push(true);
                    errors.push(None);
                }
                Some(Err(e)) => {
                    tracing::error!(error = %e, "alert not posted to Slack");
                    report.not_posted += 1;
                    ids.push(p.id);
                    delivered.push(false);
                    errors.push(Some(post_failure(&e)));
                }
                None => report.not_posted += 1,
            }
        }
        if !ids.is_empty() {
            let tx = ledger.begin(&mut c).await?;
            tx.execute(sql.record_posts, &[&ids, &delivered, &errors])
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }
}

/// The finding of one queue's dead-letter queue holding `depth` messages.
fn dead_letters(q: Queue, depth: u64) -> Finding {
    let dlq = q.dlq();
    let f = Finding::new("dlq", dlq.to_owned());
    if depth > 0 {
        f.at(
            Level::Critical,
            "critical",
            depth as f64,
            0.0,
            format!("{depth} message(s) in {dlq}: inspect with `leadfactory dlq list --queue {q}`, redrive with `leadfactory dlq redrive --queue {q}`."),
        )
    } else {
        f.at(Level::Ok, "ok", 0.0, 0.0, format!("{dlq} is empty again."))
    }
}

/// Ends, as dead, the run work of every message in a dead-letter queue that its function did
/// not record as failed (killed or timed out on its last receive): without this, its run would
/// wait for the idle check to be called stalled. Idempotent: each evaluation looks again.
async fn end_dead_letters(deps: &Deps) -> Result<(), AlertError> {
    use shared::pipeline::runs::DeadLettered;
    let mut by_tenant: std::collections::BTreeMap<TenantId, Vec<DeadLettered>> = Default::default();
    for q in Queue::ALL {
        let letters =
            match shared::bus::dlq::peek(deps.bus.as_ref(), *q, DEAD_LETTERS_PER_QUEUE).await {
                Ok(l) => l,
                Err(shared::bus::BusError::UnknownQueue(_)) => continue,
                // An unreadable queue is the health check's finding, not a failed evaluation.
                Err(e) => {
                    tracing::warn!(queue = %q.dlq(), error = %e, "dead-letter queue not readable");
                    continue;
                }
            };
        for l in letters {
            let tenant = l.tenant.as_deref().and_then(|t| TenantId::parse(t).ok());
            let run = l
                .run
                .as_deref()
                .and_then(|r| shared::domain::RunId::parse(r).ok());
            if let (Some(tenant), Some(run), Some(key)) = (tenant, run, l.idempotency_key) {
                by_tenant.entry(tenant).or_default().push(DeadLettered {
                    queue: q.name().to_owned(),
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
