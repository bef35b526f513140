//! Outreach: the delivery queue's handler (claim under the day's counters, then send).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;
use shared::bus::{Envelope, Queue};
use shared::db::{DbError, Tx, cached};
use shared::domain::{BusinessId, TenantId};
use shared::links::Purpose;
use shared::pipeline::Stage;
use shared::pipeline::messages::LeadRef;
use shared::pipeline::{Deps, EventInfo, Outgoing, StageHandler, StageItem, WorkError};
use shared::store::ObjectKey;
use shared::vendors::CallContext;

use crate::send::{Footer, Outbound, Sent};
use crate::{Mailer, SENDS_TO, send, send_scopes};

/// Outreach: the delivery queue's handler.
/// Shares its [`Mailer`] (one SendGrid client, one rate limit) with [`Fulfilment`].
pub struct Delivery(Arc<Mailer>);

impl From<Arc<Mailer>> for Delivery {
    fn from(mailer: Arc<Mailer>) -> Self {
        Self(mailer)
    }
}

/// What the batch's read decided for one lead.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Claimed: send it.
    Send(Box<Outbound>, String, Option<String>),
    /// Nothing to send (already sent, parked, no email row).
    Skip(&'static str),
    /// Suppressed since it was written: the row fails, nothing is sent.
    Suppressed(uuid::Uuid),
    /// Stays `queued` (daily cap, pause, campaign paused); the backlog release sends it later.
    Defer(&'static str),
    /// Claimed by another invocation moments ago: retry later.
    InFlight,
    /// The message names a row its tenant does not hold (a forged or misrouted message): it
    /// fails, and dead-letters, rather than being acknowledged.
    Missing,
}

/// A claimed message: what to send, the business's name, the preview PDF's key to attach.
type Claimed = (Box<Outbound>, String, Option<String>);

impl Plan {
    /// The claimed message to send — or, as `Err(Ok(done))`, how the work ends without one.
    pub(crate) fn claimed(self, what: &str) -> Result<Claimed, Result<Done, WorkError>> {
        match self {
            Plan::Send(o, name, preview) => Ok((o, name, preview)),
            Plan::Skip(why) => Err(Ok(Done::Skipped(why))),
            Plan::Suppressed(id) => Err(Ok(Done::Suppressed(id))),
            Plan::Defer(why) => Err(Ok(Done::Deferred(why))),
            Plan::InFlight => Err(Err(WorkError::Transient(format!(
                "{what} is being sent by another invocation"
            )))),
            Plan::Missing => Err(Err(WorkError::Permanent(format!(
                "{what} is not this tenant's, or does not exist"
            )))),
        }
    }
}

/// What became of one lead.
#[derive(Debug, Clone)]
pub enum Done {
    Sent(uuid::Uuid, Sent),
    Suppressed(uuid::Uuid),
    Skipped(&'static str),
    Deferred(&'static str),
}

impl Done {
    /// The run event and its status; `sent_as` names a successful send ("sent", "fulfilled").
    pub fn event(&self, sent_as: &str) -> (String, &'static str) {
        match self {
            Done::Sent(_, Sent::Sent { .. }) => (sent_as.to_owned(), "ok"),
            Done::Sent(_, Sent::Failed { .. }) => ("failed:rejected".to_owned(), "error"),
            Done::Sent(_, Sent::Unknown { .. }) => ("unknown".to_owned(), "error"),
            Done::Suppressed(_) => ("skipped:suppressed".to_owned(), "skipped"),
            Done::Skipped(why) => (format!("skipped:{why}"), "skipped"),
            Done::Deferred(why) => (format!("deferred:{why}"), "skipped"),
        }
    }
}

const PARK_STALE: &str = "
UPDATE emails e SET send_state = 'unknown', last_error = 'cut off mid-send; not resent'
FROM UNNEST($1::uuid[], $2::uuid[]) AS x(c, b)
WHERE e.campaign_id = x.c AND e.business_id = x.b AND e.kind = 'outreach'
  AND e.send_state = 'sending' AND e.sending_at < now() - make_interval(secs => $3)";

const READ: &str = "
SELECT e.id AS email_id, e.business_id, e.campaign_id, e.send_state, e.to_email, e.subject, e.body_text,
       e.created_at, v.key AS variant, e.variant_id, e.run_id, rp.preview_key, b.name AS business_name,
       c.sender_email, c.sender_name, c.postal_address, c.daily_quota, c.status AS campaign_status,
       EXISTS (SELECT 1 FROM suppressions s WHERE (s.kind = 'email' AND s.value = lower(e.to_email))
               OR (s.kind = 'domain' AND (s.value = split_part(lower(e.to_email), '@', 2) OR s.value = b.website_domain))) AS suppressed,
       EXISTS (SELECT 1 FROM send_pauses p WHERE p.resumed_at IS NULL AND p.scope IN ('all', 'campaign:' || c.id)) AS paused,
       (SELECT min(day) FROM send_counters k WHERE k.scope = 'campaign:' || c.id AND k.sent > 0) AS campaign_first_day,
       (SELECT min(day) FROM send_counters k
         WHERE k.scope = 'domain:' || lower(split_part(c.sender_email, '@', 2)) AND k.sent > 0) AS domain_first_day
FROM UNNEST($1::uuid[], $2::uuid[]) AS x(c, b)
JOIN emails e ON e.campaign_id = x.c AND e.business_id = x.b AND e.kind = 'outreach'
JOIN campaigns c ON c.id = e.campaign_id
JOIN businesses b ON b.id = e.business_id
LEFT JOIN experiment_variants v ON v.id = e.variant_id
LEFT JOIN reports rp ON rp.id = e.report_id";

/// Creates today's counters if missing and locks them (the `DO UPDATE` takes the row lock), so
/// concurrent batches of one campaign or sending domain count against one number. Scopes come
/// sorted, so two batches lock shared counters in one order.
const LOCK_COUNTERS: &str = "
INSERT INTO send_counters (tenant_id, scope, day, sent) SELECT $1, s, $2, 0 FROM UNNEST($3::text[]) AS s ORDER BY s
ON CONFLICT (tenant_id, scope, day) DO UPDATE SET sent = send_counters.sent
RETURNING scope, sent";

/// For each candidate, how many outreach emails of its campaign still wait that were written
/// before it (counted up to `$4`, the most that could matter): under the counter locks, so it
/// sees every claim committed before them.
const OLDER: &str = "
SELECT x.id, (SELECT count(*) FROM (SELECT 1 FROM emails o
                WHERE o.campaign_id = x.c AND o.kind = 'outreach' AND o.send_state = 'queued'
                  AND (o.created_at, o.id) < (x.t, x.id) LIMIT x.n) l)::int4 AS older
FROM UNNEST($1::uuid[], $2::uuid[], $3::timestamptz[], $4::int4[]) AS x(id, c, t, n)";

const CLAIM: &str = "
UPDATE emails SET send_state = 'sending', sending_at = now(), attempts = attempts + 1, last_error = NULL
WHERE id = ANY($1) AND send_state = 'queued' RETURNING id";

const COUNT: &str = "
UPDATE send_counters k SET sent = k.sent + x.n
FROM UNNEST($3::text[], $4::int4[]) AS x(scope, n)
WHERE k.tenant_id = $1 AND k.day = $2 AND k.scope = x.scope";

/// An email that may go out today if its counters leave room.
struct Candidate {
    row: usize,
    campaign: String,
    domain: String,
    created_at: chrono::DateTime<chrono::Utc>,
    email_id: uuid::Uuid,
    campaign_id: uuid::Uuid,
}

/// Which candidates are claimed, in the order they were written: an email goes when fewer of
/// its campaign's waiting emails are older than the campaign's room today (the oldest go
/// first, whichever message arrives first) and its sending domain has room left; the rest wait
/// for the backlog release, named by the limit that held them.
fn allocate(
    candidates: &mut [Candidate],
    older: &HashMap<uuid::Uuid, i32>,
    room: &HashMap<String, i32>,
) -> (Vec<usize>, Vec<(usize, &'static str)>) {
    candidates.sort_by_key(|c| (c.created_at, c.email_id));
    let mut domain_used: HashMap<&str, i32> = HashMap::new();
    let (mut chosen, mut held) = (Vec::new(), Vec::new());
    for c in candidates.iter() {
        let campaign_room = room.get(&c.campaign).copied().unwrap_or(0);
        let domain_room = room.get(&c.domain).copied().unwrap_or(0);
        let used = domain_used.entry(c.domain.as_str()).or_default();
        if older.get(&c.email_id).copied().unwrap_or(i32::MAX) >= campaign_room {
            held.push((c.row, "daily_cap"));
        } else if *used >= domain_room {
            held.push((c.row, "domain_cap"));
        } else {
            *used += 1;
            chosen.push(c.row);
        }
    }
    (chosen, held)
}

fn pdf_name(business: &str) -> String {
    format!(
        "{}-website-audit-preview.pdf",
        shared::domain::slug(business)
    )
}

#[async_trait]
impl StageHandler for Delivery {
    type Payload = LeadRef;
    type Work = Done;
    type Context = HashMap<BusinessId, Plan>;

    const STAGE: Stage = Stage::Delivery;
    const INPUT: Queue = Queue::Delivery;
    const SENDS_TO: &'static [Queue] = SENDS_TO;
    const VENDORS: &'static [shared::vendors::Vendor] = &[shared::vendors::Vendor::SendGrid];

    /// The backlog's messages name the run of their email, which retention may have ended.
    fn takes_runless(&self) -> bool {
        true
    }

    fn worst_case_work(
        &self,
        vendors: &shared::vendors::config::VendorsConfig,
    ) -> std::time::Duration {
        vendors.sendgrid.call_time
    }

    /// SendGrid allows bursts of 100/s; a batch's sends go out together.
    fn concurrency(&self) -> usize {
        10
    }

    /// It parks stale sends and claims the ones it will make.
    fn load_writes(&self) -> bool {
        true
    }

    async fn load(
        &self,
        tx: &dyn Tx,
        tenant: TenantId,
        envs: &[&Envelope<LeadRef>],
    ) -> Result<Self::Context, DbError> {
        let campaigns: Vec<uuid::Uuid> = envs
            .iter()
            .map(|e| e.payload.campaign_id.as_uuid())
            .collect();
        let businesses: Vec<uuid::Uuid> = envs
            .iter()
            .map(|e| e.payload.business_id.as_uuid())
            .collect();
        let stale = self.0.settings.stale_sending.as_secs_f64();
        cached::execute(tx, PARK_STALE, &[&campaigns, &businesses, &stale]).await?;
        let rows = cached::query(tx, READ, &[&campaigns, &businesses]).await?;
        let today = chrono::Utc::now().date_naive();
        let mut plans: HashMap<BusinessId, Plan> = envs
            .iter()
            .map(|e| (e.payload.business_id, Plan::Missing))
            .collect();
        let settings = &self.0.settings;
        let mut candidates: Vec<Candidate> = Vec::new();
        let mut caps: HashMap<String, i32> = HashMap::new();
        for (i, r) in rows.iter().enumerate() {
            let business = BusinessId::from_uuid(r.get("business_id"));
            let state: String = r.get("send_state");
            let plan = match state.as_str() {
                "sent" => Plan::Skip("already_sent"),
                "failed" => Plan::Skip("already_failed"),
                "unknown" => Plan::Skip("parked_unknown"),
                "cancelled" => Plan::Skip("cancelled"),
                "sending" => Plan::InFlight,
                _ if r.get::<_, bool>("suppressed") => Plan::Suppressed(r.get("email_id")),
                _ if r.get::<_, String>("campaign_status") != "active" => {
                    Plan::Defer("campaign_not_active")
                }
                _ if r.get::<_, bool>("paused") => Plan::Defer("paused"),
                _ => {
                    let campaign_id: uuid::Uuid = r.get("campaign_id");
                    let sender: String = r.get("sender_email");
                    let [campaign, domain] = send_scopes(campaign_id, &sender);
                    let day_index = |first: &str| {
                        r.get::<_, Option<chrono::NaiveDate>>(first)
                            .map_or(0, |f| (today - f).num_days())
                    };
                    let campaign_cap =
                        settings.cap(r.get("daily_quota"), day_index("campaign_first_day"));
                    let domain_cap =
                        settings.cap(settings.domain_daily_cap, day_index("domain_first_day"));
                    caps.insert(campaign.clone(), campaign_cap);
                    caps.insert(domain.clone(), domain_cap);
                    candidates.push(Candidate {
                        row: i,
                        campaign,
                        domain,
                        created_at: r.get("created_at"),
                        email_id: r.get("email_id"),
                        campaign_id,
                    });
                    Plan::Defer("daily_cap")
                }
            };
            plans.insert(business, plan);
        }
        if candidates.is_empty() {
            return Ok(plans);
        }
        let scopes: Vec<String> = caps
            .keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let sent_today: HashMap<String, i32> =
            cached::query(tx, LOCK_COUNTERS, &[&tenant.as_uuid(), &today, &scopes])
                .await?
                .iter()
                .map(|r| (r.get("scope"), r.get("sent")))
                .collect();
        let room: HashMap<String, i32> = caps
            .iter()
            .map(|(s, cap)| {
                (
                    s.clone(),
                    (cap - sent_today.get(s).copied().unwrap_or(0)).max(0),
                )
            })
            .collect();
        let limits: Vec<i32> = candidates
            .iter()
            .map(|c| room.get(&c.campaign).copied().unwrap_or(0))
            .collect();
        let older: HashMap<uuid::Uuid, i32> = if limits.iter().any(|&n| n > 0) {
            let ids: Vec<uuid::Uuid> = candidates.iter().map(|c| c.email_id).collect();
            let cids: Vec<uuid::Uuid> = candidates.iter().map(|c| c.campaign_id).collect();
            let times: Vec<chrono::DateTime<chrono::Utc>> =
                candidates.iter().map(|c| c.created_at).collect();
            cached::query(tx, OLDER, &[&ids, &cids, &times, &limits])
                .await?
                .iter()
                .map(|r| (r.get("id"), r.get("older")))
                .collect()
        } else {
            HashMap::new()
        };
        let (chosen, held) = allocate(&mut candidates, &older, &room);
        for (row, why) in held {
            plans.insert(
                BusinessId::from_uuid(rows[row].get("business_id")),
                Plan::Defer(why),
            );
        }
        if chosen.is_empty() {
            return Ok(plans);
        }
        let ids: Vec<uuid::Uuid> = chosen.iter().map(|&i| rows[i].get("email_id")).collect();
        let claimed: std::collections::HashSet<uuid::Uuid> = cached::query(tx, CLAIM, &[&ids])
            .await?
            .iter()
            .map(|r| r.get("id"))
            .collect();
        let mut counts: BTreeMap<String, i32> = BTreeMap::new();
        let base = &self.0.base;
        let now = chrono::Utc::now().timestamp();
        for &i in &chosen {
            let r = &rows[i];
            let email_id: uuid::Uuid = r.get("email_id");
            let business = BusinessId::from_uuid(r.get("business_id"));
            if !claimed.contains(&email_id) {
                plans.insert(business, Plan::InFlight);
                continue;
            }
            let campaign: uuid::Uuid = r.get("campaign_id");
            let sender: String = r.get("sender_email");
            for scope in send_scopes(campaign, &sender) {
                *counts.entry(scope).or_default() += 1;
            }
            let token = self.0.links.sign(
                Purpose::Unsubscribe,
                tenant,
                email_id,
                now + settings.unsubscribe_ttl.as_secs() as i64,
            );
            let sender_domain = sender.rsplit('@').next().unwrap_or_default().to_owned();
            let variant: Option<String> = r.get("variant");
            let variant_id: Option<uuid::Uuid> = r.get("variant_id");
            let run: Option<uuid::Uuid> = r.get("run_id");
            let mut args = BTreeMap::from([
                ("tenant_id".to_owned(), tenant.to_string()),
                ("email_id".to_owned(), email_id.to_string()),
                ("business_id".to_owned(), business.to_string()),
                ("campaign_id".to_owned(), campaign.to_string()),
            ]);
            if let Some(v) = &variant {
                args.insert("variant".into(), v.clone());
            }
            if let Some(v) = variant_id {
                args.insert("variant_id".into(), v.to_string());
            }
            if let Some(run) = run {
                args.insert("run_id".into(), run.to_string());
            }
            let name: String = r.get("business_name");
            let outbound = Outbound {
                email_id,
                to: r.get("to_email"),
                from_email: sender,
                from_name: r.get("sender_name"),
                subject: r.get("subject"),
                body: r.get::<_, Option<String>>("body_text").unwrap_or_default(),
                footer: Some(Footer {
                    postal_address: r.get("postal_address"),
                    unsubscribe_url: format!("{base}/u/{token}"),
                    unsubscribe_mailto: format!(
                        "mailto:unsubscribe@{sender_domain}?subject=unsubscribe%20{token}"
                    ),
                }),
                custom_args: args,
                category: "outreach",
                attachment: None,
            };
            let preview: Option<String> = r.get("preview_key");
            plans.insert(
                business,
                Plan::Send(
                    Box::new(outbound),
                    name,
                    preview.filter(|_| settings.attach_preview),
                ),
            );
        }
        if !counts.is_empty() {
            let (s, n): (Vec<String>, Vec<i32>) = counts.into_iter().unzip();
            cached::execute(tx, COUNT, &[&tenant.as_uuid(), &today, &s, &n]).await?;
        }
        Ok(plans)
    }

    async fn work(
        &self,
        deps: &Deps,
        ctx: &Self::Context,
        env: &Envelope<LeadRef>,
        _paid_allowed: bool,
    ) -> Result<Done, WorkError> {
        let plan = ctx
            .get(&env.payload.business_id)
            .cloned()
            .unwrap_or(Plan::Missing);
        let (mut outbound, name, preview) = match plan.claimed("the email") {
            Ok(claimed) => claimed,
            Err(done) => return done,
        };
        let scopes = send_scopes(env.payload.campaign_id.as_uuid(), &outbound.from_email);
        if let Some(key) = preview {
            let attached = match ObjectKey::parse(&key) {
                Ok(k) => deps.store.get(&k).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match attached {
                Ok(bytes) => outbound.attachment = Some((pdf_name(&name), bytes.to_vec())),
                Err(e) => {
                    send::release_claim(&deps.pool, env.tenant_id, outbound.email_id, &scopes, &e)
                        .await?;
                    return Err(WorkError::Transient(format!(
                        "report preview unavailable: {e}"
                    )));
                }
            }
        }
        let call = CallContext::new(env.tenant_id, env.run_id, Some(env.payload.business_id));
        self.0
            .send(deps, env.tenant_id, &call, &outbound, &scopes)
            .await
    }

    async fn persist(
        &self,
        _deps: &Deps,
        tx: &dyn Tx,
        _tenant: TenantId,
        items: &[StageItem<LeadRef, Done>],
    ) -> Result<Vec<Vec<Outgoing>>, shared::pipeline::StageError> {
        send::write_states(tx, items.iter().map(|it| &it.work)).await?;
        Ok(items.iter().map(|_| Vec::new()).collect())
    }

    fn describe(&self, item: &StageItem<LeadRef, Done>, _next: &[Outgoing]) -> Vec<EventInfo> {
        let (event, status) = item.work.event("sent");
        let extra = match &item.work {
            Done::Sent(id, s) => json!({ "email_id": id, "outcome": format!("{s:?}") }),
            Done::Suppressed(id) => json!({ "email_id": id }),
            _ => json!({}),
        };
        vec![EventInfo {
            entity_id: Some(item.env.payload.business_id.to_string()),
            event,
            status,
            extra,
            marker: false,
        }]
    }
}
