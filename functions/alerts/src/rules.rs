//! The rule set (one consistent set from the handbook): each rule reads its signal with one
//! query and grades it against thresholds. A rule below its minimum volume says nothing — no
//! alert and no recovery — so a quiet night cannot look healthy or broken.

use serde::{Deserialize, Serialize};
use shared::db::DbError;

/// Thresholds and volumes; defaults are the predecessors' values, overridable per tenant in
/// `tenants.settings.alerts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Thresholds {
    pub window_hours: i64,
    pub bounce_warn: f64,
    pub bounce_critical: f64,
    /// At this bounce rate sending pauses (delivery honours `send_pauses`).
    pub bounce_pause: f64,
    pub bounce_min_sent: i64,
    pub spam_critical: f64,
    pub spam_min_delivered: i64,
    /// The nightly must have finished by this hour (UTC).
    pub watchdog_hour_utc: u32,
    pub stall_minutes: i64,
    pub vendor_error_rate: f64,
    pub vendor_min_calls: i64,
    pub budget_warn: f64,
    pub budget_critical: f64,
    pub qa_pass_min: f64,
    pub qa_min_reviewed: i64,
    pub min_candidates: i64,
    pub cooldown_minutes: i64,
    pub max_per_hour: i64,
    /// Delivered / sent of outreach sent in the last hours (less a grace for SendGrid's events
    /// to arrive) below this warns.
    pub delivery_window_hours: i64,
    pub delivery_grace_minutes: i64,
    pub delivery_min_rate: f64,
    pub delivery_min_sent: i64,
    /// Cost per lead by tier over the last days, in dollars, above which a tier warns (the
    /// seeds' tier-specific thresholds).
    pub cost_window_days: i64,
    pub cost_per_lead_max_usd: std::collections::BTreeMap<String, f64>,
    pub cost_min_leads: i64,
    /// Checkout sessions started in the window that expired unpaid, as a share, above this warns.
    pub checkout_window_hours: i64,
    pub checkout_expired_max: f64,
    pub checkout_min_started: i64,
    /// The database's size against the storage it is given (operators' alert): warn and
    /// critical shares.
    pub db_storage_limit_gb: f64,
    pub db_storage_warn: f64,
    pub db_storage_critical: f64,
    /// The monthly restore drill must have passed within this many days (operators' alert).
    pub restore_drill_max_age_days: i64,
    /// Health checks a component must fail in a row before it alerts
    /// (`HEALTH_CHECK_FAILURES_THRESHOLD`).
    pub health_failures: i32,
    /// The deployment's daily compute budget in dollars (operators' alert, the template's
    /// `InfraDailyBudgetUsd`): warn and critical shares of it spent since midnight UTC.
    pub infra_daily_budget_usd: f64,
    pub infra_budget_warn: f64,
    pub infra_budget_critical: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            window_hours: 24,
            bounce_warn: 0.02,
            bounce_critical: 0.05,
            bounce_pause: 0.10,
            bounce_min_sent: 50,
            spam_critical: 0.001,
            spam_min_delivered: 200,
            watchdog_hour_utc: 5,
            stall_minutes: 120,
            vendor_error_rate: 0.30,
            vendor_min_calls: 20,
            budget_warn: 0.75,
            budget_critical: 0.90,
            qa_pass_min: 0.80,
            qa_min_reviewed: 5,
            min_candidates: 20,
            cooldown_minutes: 60,
            max_per_hour: 10,
            delivery_window_hours: 4,
            delivery_grace_minutes: 30,
            delivery_min_rate: 0.90,
            delivery_min_sent: 50,
            cost_window_days: 7,
            cost_per_lead_max_usd: [("A", 1.00), ("B", 0.75), ("C", 0.50), ("D", 0.25)]
                .into_iter()
                .map(|(t, usd)| (t.to_owned(), usd))
                .collect(),
            cost_min_leads: 20,
            checkout_window_hours: 24,
            checkout_expired_max: 0.80,
            checkout_min_started: 10,
            db_storage_limit_gb: 20.0,
            db_storage_warn: 0.80,
            db_storage_critical: 0.95,
            restore_drill_max_age_days: 35,
            health_failures: 2,
            infra_daily_budget_usd: 5.0,
            infra_budget_warn: 0.80,
            infra_budget_critical: 1.0,
        }
    }
}

impl Thresholds {
    /// The defaults with what a deployment sets for the operator's rules: the storage the
    /// database is given (`LF_DB_STORAGE_LIMIT_GB`, the template's `DatabaseStorageGb`) and the
    /// failed health checks in a row that alert (`HEALTH_CHECK_FAILURES_THRESHOLD`, the
    /// template's `HealthCheckFailuresThreshold`).
    pub fn configured(
        source: &dyn shared::config::Source,
    ) -> Result<Self, shared::config::ConfigError> {
        let mut t = Self::default();
        let mut r = shared::config::Reader::new(source);
        t.db_storage_limit_gb = r.parsed_or("LF_DB_STORAGE_LIMIT_GB", t.db_storage_limit_gb);
        if t.db_storage_limit_gb.is_nan() || t.db_storage_limit_gb <= 0.0 {
            r.invalid("LF_DB_STORAGE_LIMIT_GB", "must be a positive number of GB");
        }
        t.health_failures = r.parsed_or("HEALTH_CHECK_FAILURES_THRESHOLD", t.health_failures);
        if t.health_failures < 1 {
            r.invalid("HEALTH_CHECK_FAILURES_THRESHOLD", "must be at least 1");
        }
        t.infra_daily_budget_usd =
            r.parsed_or("LF_INFRA_DAILY_BUDGET_USD", t.infra_daily_budget_usd);
        if t.infra_daily_budget_usd.is_nan() || t.infra_daily_budget_usd <= 0.0 {
            r.invalid(
                "LF_INFRA_DAILY_BUDGET_USD",
                "must be a positive number of dollars",
            );
        }
        r.finish(t)
    }

    /// These defaults with a tenant's overrides (a partial JSON object) on top.
    pub fn with_overrides(&self, overrides: Option<&serde_json::Value>) -> Self {
        let Some(serde_json::Value::Object(o)) = overrides else {
            return self.clone();
        };
        let mut base = serde_json::to_value(self).unwrap_or_default();
        if let serde_json::Value::Object(b) = &mut base {
            for (k, v) in o {
                if b.contains_key(k) {
                    b.insert(k.clone(), v.clone());
                }
            }
        }
        serde_json::from_value(base).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "tenant alert overrides ignored");
            self.clone()
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warning,
    Critical,
}

/// What a rule found for one subject (the tenant, a vendor, a queue, a run).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub rule: &'static str,
    pub subject: String,
    pub level: Level,
    /// Names the step within a level (e.g. budget `75`, `90`, `exhausted`): a new grade alerts
    /// even within the cooldown.
    pub grade: &'static str,
    pub value: f64,
    pub threshold: f64,
    pub message: String,
    /// Pause sending (the bounce rule at its pause threshold).
    pub pause: bool,
}

impl Finding {
    pub(crate) fn new(rule: &'static str, subject: impl Into<String>) -> Self {
        Self {
            rule,
            subject: subject.into(),
            level: Level::Ok,
            grade: "ok",
            value: 0.0,
            threshold: 0.0,
            message: String::new(),
            pause: false,
        }
    }

    pub(crate) fn at(
        mut self,
        level: Level,
        grade: &'static str,
        value: f64,
        threshold: f64,
        message: String,
    ) -> Self {
        self.level = level;
        self.grade = grade;
        self.value = value;
        self.threshold = threshold;
        self.message = message;
        self
    }
}

impl Finding {
    /// `value` graded against two thresholds where higher is worse: critical at or above
    /// `critical`, warning at or above `warn` (`alert` writes the message for the threshold
    /// crossed), otherwise ok with the `recovered` message.
    pub(crate) fn graded(
        self,
        value: f64,
        (warn, critical): (f64, f64),
        alert: impl Fn(f64) -> String,
        recovered: String,
    ) -> Self {
        if value >= critical {
            self.at(
                Level::Critical,
                "critical",
                value,
                critical,
                alert(critical),
            )
        } else if value >= warn {
            self.at(Level::Warning, "warning", value, warn, alert(warn))
        } else {
            self.at(Level::Ok, "ok", value, warn, recovered)
        }
    }
}

pub(crate) fn pct(x: f64) -> String {
    format!("{:.1} %", x * 100.0)
}

const BOUNCES_SINCE: &str = "SELECT count(*) FILTER (WHERE send_state = 'sent') AS sent, count(*) FILTER (WHERE delivery_status = 'bounced') AS bounced
 FROM emails WHERE kind = 'outreach' AND sent_at > $1";
const SPAM_REPORTS_SINCE: &str = "SELECT count(*) FILTER (WHERE event = 'delivered') AS delivered, count(*) FILTER (WHERE event = 'spamreport') AS spam
 FROM email_events WHERE occurred_at > $1";
const ANY_ACTIVE_CAMPAIGN: &str = "SELECT EXISTS (SELECT 1 FROM campaigns WHERE status = 'active')
 AND EXISTS (SELECT 1 FROM runs WHERE kind = 'nightly' AND run_date < $1) AS active,
 (SELECT status FROM runs WHERE kind = 'nightly' AND run_date = $1) AS status";
const VENDOR_HEALTH_SINCE: &str = "SELECT u.vendor, sum(u.calls)::int8 AS calls, sum(u.errors)::int8 AS errors, sum(u.rate_limit_hits)::int8 AS limited,
        bool_or(u.quota_exhausted) AS quota
 FROM run_vendor_usage u JOIN runs r ON r.id = u.run_id WHERE r.started_at > $1 GROUP BY u.vendor ORDER BY u.vendor";
const BUDGET_USE_TODAY: &str = "SELECT vendor_class, greatest(spent_micros, reserved_micros)::float8 / nullif(limit_micros, 0)::float8 AS used
 FROM budgets WHERE day = $1 ORDER BY vendor_class";
const QA_PASS_RATE: &str = "SELECT count(*) FILTER (WHERE result = 'pass') AS pass, count(*) FILTER (WHERE result IN ('pass', 'fail')) AS reviewed
 FROM qa_samples WHERE reviewed_at > $1::timestamptz - interval '7 days'";
const RUN_CANDIDATES: &str = "SELECT r.id, count(l.id) FILTER (WHERE l.stage = 'sourcing' AND l.event IN ('sourced', 'stale', 'known', 'duplicate')) AS candidates
 FROM runs r LEFT JOIN run_event_logs l ON l.run_id = r.id
 WHERE r.status <> 'running' AND r.finished_at > $1 GROUP BY r.id";
const CAMPAIGNS_EXHAUSTED: &str = "SELECT c.id, c.name, NOT EXISTS (SELECT 1 FROM targeting_cursors t WHERE t.campaign_id = c.id AND t.exhausted_at IS NULL) AS exhausted
 FROM campaigns c
 WHERE c.status = 'active' AND EXISTS (SELECT 1 FROM targeting_cursors t WHERE t.campaign_id = c.id)";
const UNFULFILLED_PURCHASES: &str = "SELECT DISTINCT e.purchase_id FROM emails e JOIN purchases p ON p.id = e.purchase_id
 WHERE e.kind = 'fulfilment' AND e.send_state IN ('failed', 'unknown')
   AND p.status IN ('paid', 'partially_refunded') AND coalesce(p.dispute_status, 'won') = 'won'
   AND NOT EXISTS (SELECT 1 FROM emails s WHERE s.purchase_id = e.purchase_id AND s.kind = 'fulfilment'
                                            AND s.send_state = 'sent')
 ORDER BY 1";

const DELIVERED_SINCE: &str = "SELECT count(*) AS sent, count(delivered_at) AS delivered
 FROM emails WHERE kind = 'outreach' AND send_state = 'sent' AND sent_at > $1 AND sent_at <= $2";
const CHECKOUTS_SINCE: &str =
    "SELECT count(*) AS started, count(*) FILTER (WHERE status = 'expired') AS expired
 FROM purchases WHERE created_at > $1";

/// Delivered / sent of the outreach sent in the window (the last minutes excluded: their
/// delivery events may not have arrived).
async fn delivery_rate(
    tx: &deadpool_postgres::Transaction<'_>,
    t: &Thresholds,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<Finding>, DbError> {
    let until = now - chrono::Duration::minutes(t.delivery_grace_minutes);
    let since = now - chrono::Duration::hours(t.delivery_window_hours);
    let r = tx.query_one(DELIVERED_SINCE, &[&since, &until]).await?;
    let (sent, delivered): (i64, i64) = (r.get("sent"), r.get("delivered"));
    if sent < t.delivery_min_sent {
        return Ok(None);
    }
    let rate = delivered as f64 / sent as f64;
    let f = Finding::new("delivery_rate", "all");
    Ok(Some(if rate < t.delivery_min_rate {
        f.at(
            Level::Warning,
            "warning",
            rate,
            t.delivery_min_rate,
            format!(
                "Delivery rate {} of {sent} sent in {} h is below {}: check bounces, blocks and the sender's reputation.",
                pct(rate),
                t.delivery_window_hours,
                pct(t.delivery_min_rate)
            ),
        )
    } else {
        f.at(
            Level::Ok,
            "ok",
            rate,
            t.delivery_min_rate,
            format!("Delivery rate back to {}.", pct(rate)),
        )
    }))
}

/// Cost per lead of each tier scored in the window against the tier's threshold.
async fn cost_per_lead(
    tx: &deadpool_postgres::Transaction<'_>,
    t: &Thresholds,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Finding>, DbError> {
    let since = now - chrono::Duration::days(t.cost_window_days);
    let mut out = Vec::new();
    for tier in shared::analytics::cost_per_tier(tx, since).await? {
        let Some(max) = t.cost_per_lead_max_usd.get(&tier.tier) else {
            continue;
        };
        if tier.leads < t.cost_min_leads {
            continue;
        }
        let usd = tier.cost_per_lead_micros as f64 / 1e6;
        let f = Finding::new("cost_per_lead", format!("tier {}", tier.tier));
        out.push(if usd > *max {
            f.at(
                Level::Warning,
                "warning",
                usd,
                *max,
                format!(
                    "Cost per tier {} lead ${usd:.4} over {} leads in {} days is above ${max:.2}.",
                    tier.tier, tier.leads, t.cost_window_days
                ),
            )
        } else {
            f.at(
                Level::Ok,
                "ok",
                usd,
                *max,
                format!("Cost per tier {} lead back to ${usd:.4}.", tier.tier),
            )
        });
    }
    Ok(out)
}

/// The share of checkout sessions started in the window that expired unpaid.
async fn checkout_expiry(
    tx: &deadpool_postgres::Transaction<'_>,
    t: &Thresholds,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<Finding>, DbError> {
    let since = now - chrono::Duration::hours(t.checkout_window_hours);
    let r = tx.query_one(CHECKOUTS_SINCE, &[&since]).await?;
    let (started, expired): (i64, i64) = (r.get("started"), r.get("expired"));
    if started < t.checkout_min_started {
        return Ok(None);
    }
    let share = expired as f64 / started as f64;
    let f = Finding::new("checkout_expiry", "stripe");
    Ok(Some(if share > t.checkout_expired_max {
        f.at(
            Level::Warning,
            "warning",
            share,
            t.checkout_expired_max,
            format!(
                "{expired} of {started} checkouts in {} h expired unpaid ({}): check the checkout page and Stripe's status.",
                t.checkout_window_hours,
                pct(share)
            ),
        )
    } else {
        f.at(
            Level::Ok,
            "ok",
            share,
            t.checkout_expired_max,
            format!("Checkouts expiring unpaid back to {}.", pct(share)),
        )
    }))
}

/// Evaluates every database rule for one tenant (inside its RLS transaction). It is also the
/// scheduled check that finalises runs whose work stopped moving (`run_stalled`).
pub async fn evaluate(
    tx: &deadpool_postgres::Transaction<'_>,
    t: &Thresholds,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Finding>, DbError> {
    let mut out = Vec::new();
    let window = now - chrono::Duration::hours(t.window_hours);
    out.extend(delivery_rate(tx, t, now).await?);
    out.extend(cost_per_lead(tx, t, now).await?);
    out.extend(checkout_expiry(tx, t, now).await?);

    // Bounce rate of outreach sent in the window.
    let r = tx.query_one(BOUNCES_SINCE, &[&window]).await?;
    let (sent, bounced): (i64, i64) = (r.get("sent"), r.get("bounced"));
    if sent >= t.bounce_min_sent {
        let rate = bounced as f64 / sent as f64;
        let f = Finding::new("bounce_rate", "all");
        let msg = |what: &str, th: f64| {
            format!(
                "Bounce rate {} of {sent} sent in {} h is {what} {} ",
                pct(rate),
                t.window_hours,
                pct(th)
            )
        };
        out.push(if rate >= t.bounce_pause {
            let mut f = f.at(
                Level::Critical,
                "pause",
                rate,
                t.bounce_pause,
                format!(
                    "{}— sending is paused until an operator resumes it.",
                    msg("at or above the pause threshold", t.bounce_pause)
                ),
            );
            f.pause = true;
            f
        } else {
            f.graded(
                rate,
                (t.bounce_warn, t.bounce_critical),
                |th| msg("above", th),
                format!("Bounce rate back to {}.", pct(rate)),
            )
        });
    }

    // Spam reports per delivered email.
    let r = tx.query_one(SPAM_REPORTS_SINCE, &[&window]).await?;
    let (delivered, spam): (i64, i64) = (r.get("delivered"), r.get("spam"));
    if delivered >= t.spam_min_delivered {
        let rate = spam as f64 / delivered as f64;
        let f = Finding::new("spam_rate", "all");
        out.push(if rate >= t.spam_critical {
            f.at(
                Level::Critical,
                "critical",
                rate,
                t.spam_critical,
                format!(
                    "Spam reports {} of {delivered} delivered ({spam} reports) — above {}.",
                    pct(rate),
                    pct(t.spam_critical)
                ),
            )
        } else {
            f.at(
                Level::Ok,
                "ok",
                rate,
                t.spam_critical,
                format!("Spam-report rate back to {}.", pct(rate)),
            )
        });
    }

    // Watchdog: today's nightly finished by the hour — for tenants on the nightly schedule (an
    // active campaign and a nightly run on an earlier day).
    let today = now.date_naive();
    if now.time()
        >= chrono::NaiveTime::from_hms_opt(t.watchdog_hour_utc.min(23), 0, 0).unwrap_or_default()
    {
        let r = tx.query_one(ANY_ACTIVE_CAMPAIGN, &[&today]).await?;
        let active: bool = r.get("active");
        let status: Option<String> = r.get("status");
        if active {
            let f = Finding::new("nightly_watchdog", today.to_string());
            out.push(match status.as_deref() {
                None => f.at(
                    Level::Critical,
                    "critical",
                    0.0,
                    1.0,
                    format!(
                        "No nightly run started on {today} by {:02}:00 UTC.",
                        t.watchdog_hour_utc
                    ),
                ),
                Some("running") => f.at(
                    Level::Critical,
                    "critical",
                    0.0,
                    1.0,
                    format!(
                        "The nightly run of {today} has not finished by {:02}:00 UTC.",
                        t.watchdog_hour_utc
                    ),
                ),
                Some(s) => f.at(
                    Level::Ok,
                    "ok",
                    1.0,
                    1.0,
                    format!("The nightly run of {today} finished ({s})."),
                ),
            });
        }
    }

    // Runs whose work stopped moving: the scheduled check finalises them here (`stalled` when
    // work is still pending, so none stays `running`), and each one finalised stalled is
    // reported once, by the evaluation that finalised it.
    let idle_since = now - chrono::Duration::minutes(t.stall_minutes);
    for finished in shared::pipeline::runs::finish_idle(tx, idle_since).await? {
        if finished.status != "stalled" {
            continue;
        }
        let run = finished.run;
        out.push(Finding::new("run_stalled", run.to_string()).at(
            Level::Critical,
            "critical",
            t.stall_minutes as f64,
            t.stall_minutes as f64,
            format!(
                "Run {run} processed nothing for {} minutes with work still on its queues: finalised as stalled (see the DLQs).",
                t.stall_minutes
            ),
        ));
    }

    // Vendors: error rate, rate limiting and quota, over runs started in the window.
    for r in tx.query(VENDOR_HEALTH_SINCE, &[&window]).await? {
        let vendor: String = r.get("vendor");
        let (calls, errors, limited, quota): (i64, i64, i64, bool) = (
            r.get("calls"),
            r.get("errors"),
            r.get("limited"),
            r.get("quota"),
        );
        if calls >= t.vendor_min_calls {
            let rate = errors as f64 / calls as f64;
            let f = Finding::new("vendor_errors", vendor.clone());
            out.push(if rate > t.vendor_error_rate {
                f.at(
                    Level::Critical,
                    "critical",
                    rate,
                    t.vendor_error_rate,
                    format!("{vendor}: {} of {calls} calls failed.", pct(rate)),
                )
            } else {
                f.at(
                    Level::Ok,
                    "ok",
                    rate,
                    t.vendor_error_rate,
                    format!("{vendor}: error rate back to {}.", pct(rate)),
                )
            });
        }
        let f = Finding::new("vendor_limits", vendor.clone());
        out.push(if quota {
            f.at(
                Level::Critical,
                "quota",
                1.0,
                0.0,
                format!(
                    "{vendor}: daily quota exhausted — paid steps are skipped until it resets."
                ),
            )
        } else if limited > 0 {
            f.at(
                Level::Warning,
                "rate_limited",
                limited as f64,
                0.0,
                format!("{vendor}: rate limited {limited} times — calls were slowed and retried."),
            )
        } else {
            f.at(
                Level::Ok,
                "ok",
                0.0,
                0.0,
                format!("{vendor}: no rate limiting."),
            )
        });
    }

    // Budgets today.
    for r in tx.query(BUDGET_USE_TODAY, &[&today]).await? {
        let class: String = r.get("vendor_class");
        let Some(used) = r.get::<_, Option<f64>>("used") else {
            continue;
        };
        let f = Finding::new("budget", class.clone());
        out.push(if used >= 1.0 {
            f.at(
                Level::Critical,
                "exhausted",
                used,
                1.0,
                format!("Budget {class} exhausted today: its paid steps are skipped."),
            )
        } else if used >= t.budget_critical {
            f.at(
                Level::Critical,
                "critical",
                used,
                t.budget_critical,
                format!("Budget {class} at {} today.", pct(used)),
            )
        } else if used >= t.budget_warn {
            f.at(
                Level::Warning,
                "warning",
                used,
                t.budget_warn,
                format!("Budget {class} at {} today.", pct(used)),
            )
        } else {
            f.at(
                Level::Ok,
                "ok",
                used,
                t.budget_warn,
                format!("Budget {class} at {}.", pct(used)),
            )
        });
    }

    // QA pass rate over a week of reviews.
    let r = tx.query_one(QA_PASS_RATE, &[&now]).await?;
    let (pass, reviewed): (i64, i64) = (r.get("pass"), r.get("reviewed"));
    if reviewed >= t.qa_min_reviewed {
        let rate = pass as f64 / reviewed as f64;
        let f = Finding::new("qa_pass_rate", "all");
        out.push(if rate < t.qa_pass_min {
            f.at(
                Level::Warning,
                "warning",
                rate,
                t.qa_pass_min,
                format!(
                    "QA pass rate {} over {reviewed} reviews — below {}.",
                    pct(rate),
                    pct(t.qa_pass_min)
                ),
            )
        } else {
            f.at(
                Level::Ok,
                "ok",
                rate,
                t.qa_pass_min,
                format!("QA pass rate back to {}.", pct(rate)),
            )
        });
    }

    // Too few candidates in a run finished in the window.
    for r in tx.query(RUN_CANDIDATES, &[&window]).await? {
        let run: uuid::Uuid = r.get("id");
        let n: i64 = r.get("candidates");
        if n < t.min_candidates {
            out.push(Finding::new("few_candidates", run.to_string()).at(
                Level::Warning,
                "warning",
                n as f64,
                t.min_candidates as f64,
                format!("Run {run} found only {n} candidates (fewer than {}): check the campaigns' areas and categories.", t.min_candidates),
            ));
        }
    }
    // Campaigns whose every area has been searched to its end: they find nothing new.
    for r in tx.query(CAMPAIGNS_EXHAUSTED, &[]).await? {
        let (campaign, name, exhausted): (uuid::Uuid, String, bool) =
            (r.get("id"), r.get("name"), r.get("exhausted"));
        let f = Finding::new("campaign_exhausted", campaign.to_string());
        out.push(if exhausted {
            f.at(
                Level::Warning,
                "warning",
                1.0,
                1.0,
                format!("Campaign {name} has searched every area as deep as Yelp goes: it finds no new businesses until it gets new ZIP codes, a city or categories."),
            )
        } else {
            f.at(Level::Ok, "ok", 0.0, 1.0, format!("Campaign {name} has new areas to search."))
        });
    }

    // Paid purchases whose report never reached the buyer: a fulfilment email refused (SendGrid
    // 400) or of unknown outcome, and none sent since.
    let unsent: Vec<uuid::Uuid> = tx
        .query(UNFULFILLED_PURCHASES, &[])
        .await?
        .iter()
        .map(|r| r.get("purchase_id"))
        .collect();
    let f = Finding::new("fulfilment_failed", "all");
    out.push(if unsent.is_empty() {
        f.at(
            Level::Ok,
            "ok",
            0.0,
            1.0,
            "Every paid purchase's report has reached its buyer.".to_owned(),
        )
    } else {
        let shown: Vec<String> = unsent.iter().take(5).map(std::string::ToString::to_string).collect();
        f.at(
            Level::Critical,
            "critical",
            unsent.len() as f64,
            1.0,
            format!(
                "{} paid purchase(s) whose report email failed or ended unknown ({}{}): check the address, then `leadfactory purchase resend <id>`.",
                unsent.len(),
                shown.join(", "),
                if unsent.len() > 5 { ", …" } else { "" }
            ),
        )
    });
    Ok(out)
}
