//! The day counters an outreach send counts against (its campaign's and its sending
//! domain's), and what they allow today.

use std::collections::BTreeMap;

use shared::db::{DbError, Tx, cached};

use crate::Settings;

/// The counter scope of a campaign's outreach.
pub fn campaign_scope(c: uuid::Uuid) -> String {
    format!("campaign:{c}")
}

/// The counter scope of a sending domain (the part of the sender address after `@`).
pub fn domain_scope(sender_email: &str) -> String {
    let domain = sender_email.rsplit_once('@').map_or("", |(_, d)| d);
    format!("domain:{}", domain.to_lowercase())
}

/// The counters one outreach send counts against: its campaign's and its sending domain's.
pub fn send_scopes(campaign: uuid::Uuid, sender_email: &str) -> [String; 2] {
    [campaign_scope(campaign), domain_scope(sender_email)]
}

/// One send counter's day: what it allows today, what it sent, and what waits behind it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CounterDay {
    /// `campaign:<id>` or `domain:<sending domain>`.
    pub scope: String,
    /// The campaign's name, or the domain.
    pub label: String,
    pub cap: i32,
    pub sent: i32,
    /// Outreach still `queued` (for a domain: of all its active campaigns).
    pub waiting: i64,
}

const COUNTER_DAYS: &str = "
SELECT c.id, c.name, c.daily_quota, lower(split_part(c.sender_email, '@', 2)) AS domain,
       (SELECT min(day) FROM send_counters k WHERE k.scope = 'campaign:' || c.id AND k.sent > 0) AS campaign_first_day,
       (SELECT min(day) FROM send_counters k
         WHERE k.scope = 'domain:' || lower(split_part(c.sender_email, '@', 2)) AND k.sent > 0) AS domain_first_day,
       coalesce((SELECT sent FROM send_counters k WHERE k.scope = 'campaign:' || c.id AND k.day = $1), 0) AS campaign_sent,
       coalesce((SELECT sent FROM send_counters k
                  WHERE k.scope = 'domain:' || lower(split_part(c.sender_email, '@', 2)) AND k.day = $1), 0) AS domain_sent,
       (SELECT count(*) FROM emails e WHERE e.campaign_id = c.id AND e.kind = 'outreach' AND e.send_state = 'queued') AS waiting
FROM campaigns c WHERE c.status = 'active' ORDER BY c.name, c.id";

/// Today's caps of the tenant's active campaigns and of their sending domains, as delivery
/// applies them (an email needs room in both; the smaller wins).
pub async fn counter_days(
    tx: &dyn Tx,
    settings: &Settings,
    today: chrono::NaiveDate,
) -> Result<Vec<CounterDay>, DbError> {
    let rows = cached::query(tx, COUNTER_DAYS, &[&today]).await?;
    let day_index = |r: &tokio_postgres::Row, first: &str| {
        r.get::<_, Option<chrono::NaiveDate>>(first)
            .map_or(0, |f| (today - f).num_days())
    };
    let mut out = Vec::new();
    let mut domains: BTreeMap<String, CounterDay> = BTreeMap::new();
    for r in &rows {
        let id: uuid::Uuid = r.get("id");
        let domain: String = r.get("domain");
        out.push(CounterDay {
            scope: campaign_scope(id),
            label: r.get("name"),
            cap: settings.cap(r.get("daily_quota"), day_index(r, "campaign_first_day")),
            sent: r.get("campaign_sent"),
            waiting: r.get("waiting"),
        });
        let d = domains.entry(domain.clone()).or_insert_with(|| CounterDay {
            scope: format!("domain:{domain}"),
            label: domain.clone(),
            cap: settings.cap(settings.domain_daily_cap, day_index(r, "domain_first_day")),
            sent: r.get("domain_sent"),
            waiting: 0,
        });
        d.waiting += r.get::<_, i64>("waiting");
    }
    out.extend(domains.into_values());
    Ok(out)
}
