//! Fulfilment: a paid purchase's buyer gets an email with a signed, time-limited link to the
//! full report (served by the storefront), once — and again once per operator request
//! (`leadfactory purchase resend`, `POST /v1/purchases/{id}/resend`), each with a new link. The
//! fulfilment email row is unique per (purchase, request key) and goes through the same
//! claim → send → state steps as outreach; the purchase is marked fulfilled in the transaction
//! that records the first send. A purchase refunded, failed or disputed gets no email. Fulfilment is transactional mail: the buyer asked for it,
//! so the marketing suppression list does not apply and there is no unsubscribe footer.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;
use shared::bus::Envelope;
use shared::bus::Queue;
use shared::db::{DbError, Tx, cached};
use shared::domain::TenantId;
use shared::links::Purpose;
use shared::pipeline::Stage;
use shared::pipeline::messages::Fulfil;
use shared::pipeline::{Deps, EventInfo, Outgoing, StageHandler, StageItem, WorkError};
use shared::vendors::CallContext;

use crate::Mailer;
use crate::send::{self, Outbound, Sent};
use crate::{Done, Plan};

/// The fulfilment queue's handler.
pub struct Fulfilment(Arc<Mailer>);

impl From<Arc<Mailer>> for Fulfilment {
    fn from(mailer: Arc<Mailer>) -> Self {
        Self(mailer)
    }
}

/// One fulfilment email row per (purchase, request key), created `queued` (an existing row is
/// kept) and addressed from the campaign that sold the report: the first (key `''`) for a paid,
/// unfulfilled purchase; a resend (an operator's key) for a purchase still the buyer's — paid or
/// partly refunded, with no dispute open or lost.
const PREPARE: &str = "
INSERT INTO emails (id, tenant_id, campaign_id, business_id, report_id, kind, purchase_id, request_key, to_email, subject, send_state, generated_by)
SELECT gen_random_uuid(), p.tenant_id,
       coalesce(p.campaign_id, (SELECT o.campaign_id FROM emails o WHERE o.business_id = p.business_id AND o.kind = 'outreach' ORDER BY o.created_at LIMIT 1)),
       p.business_id, p.report_id, 'fulfilment', p.id, x.k, p.customer_email,
       'Your full website audit for ' || b.name, 'queued', 'template'
FROM UNNEST($1::uuid[], $2::text[]) AS x(p, k)
JOIN purchases p ON p.id = x.p
JOIN businesses b ON b.id = p.business_id
WHERE p.customer_email IS NOT NULL
  AND ((x.k = '' AND p.status = 'paid' AND p.fulfilled_at IS NULL)
       OR (x.k <> '' AND p.status IN ('paid', 'partially_refunded') AND coalesce(p.dispute_status, 'won') = 'won'))
  AND coalesce(p.campaign_id, (SELECT o.campaign_id FROM emails o WHERE o.business_id = p.business_id AND o.kind = 'outreach' LIMIT 1)) IS NOT NULL
ON CONFLICT (purchase_id, request_key) WHERE kind = 'fulfilment' DO NOTHING";

const PARK_STALE: &str = "
UPDATE emails e SET send_state = 'unknown', last_error = 'cut off mid-send; not resent'
FROM UNNEST($1::uuid[], $2::text[]) AS x(p, k)
WHERE e.purchase_id = x.p AND e.request_key = x.k AND e.kind = 'fulfilment'
  AND e.send_state = 'sending' AND e.sending_at < now() - make_interval(secs => $3)";

const CLAIM: &str = "
UPDATE emails e SET send_state = 'sending', sending_at = now(), attempts = attempts + 1, last_error = NULL
FROM UNNEST($1::uuid[], $2::text[]) AS x(p, k)
WHERE e.purchase_id = x.p AND e.request_key = x.k AND e.kind = 'fulfilment' AND e.send_state = 'queued'
RETURNING e.id";

const READ: &str = "
SELECT p.id AS purchase_id, x.k AS request_key, p.status, p.fulfilled_at IS NOT NULL AS fulfilled,
       p.dispute_status, p.customer_email, b.name AS business_name, p.amount_cents,
       e.id AS email_id, e.send_state, e.subject, c.sender_email, c.sender_name
FROM UNNEST($1::uuid[], $2::text[]) AS x(p, k)
JOIN purchases p ON p.id = x.p
JOIN businesses b ON b.id = p.business_id
LEFT JOIN emails e ON e.purchase_id = p.id AND e.kind = 'fulfilment' AND e.request_key = x.k
LEFT JOIN campaigns c ON c.id = e.campaign_id";

/// A fulfilment's plan is per (purchase, request key): a batch may hold a purchase's first
/// fulfilment and a resend of it.
type Request = (uuid::Uuid, String);

fn request(f: &Fulfil) -> Request {
    (f.purchase_id, f.request_key.clone())
}

const MARK_FULFILLED: &str = "UPDATE purchases p SET fulfilled_at = coalesce(p.fulfilled_at, now()), fulfilment_email_id = coalesce(p.fulfilment_email_id, x.e)
 FROM UNNEST($1::uuid[], $2::uuid[]) AS x(p, e) WHERE p.id = x.p";

#[async_trait]
impl StageHandler for Fulfilment {
    type Payload = Fulfil;
    type Work = Done;
    type Context = HashMap<Request, Plan>;

    const STAGE: Stage = Stage::Fulfilment;
    const INPUT: Queue = Queue::Fulfilment;
    const SENDS_TO: &'static [Queue] = &[];
    const VENDORS: &'static [shared::vendors::Vendor] = &[shared::vendors::Vendor::SendGrid];

    /// A purchase is fulfilled outside any run.
    fn takes_runless(&self) -> bool {
        true
    }

    fn worst_case_work(
        &self,
        vendors: &shared::vendors::config::VendorsConfig,
    ) -> std::time::Duration {
        vendors.sendgrid.call_time
    }

    /// It parks stale sends and claims the ones it will make.
    fn load_writes(&self) -> bool {
        true
    }

    async fn load(
        &self,
        tx: &dyn Tx,
        tenant: TenantId,
        envs: &[&Envelope<Fulfil>],
    ) -> Result<Self::Context, DbError> {
        let ids: Vec<uuid::Uuid> = envs.iter().map(|e| e.payload.purchase_id).collect();
        let keys: Vec<&str> = envs
            .iter()
            .map(|e| e.payload.request_key.as_str())
            .collect();
        cached::execute(tx, PREPARE, &[&ids, &keys]).await?;
        cached::execute(
            tx,
            PARK_STALE,
            &[&ids, &keys, &self.0.settings.stale_sending.as_secs_f64()],
        )
        .await?;
        let claimed: std::collections::HashSet<uuid::Uuid> =
            cached::query(tx, CLAIM, &[&ids, &keys])
                .await?
                .iter()
                .map(|r| r.get("id"))
                .collect();
        let now = chrono::Utc::now().timestamp();
        let mut plans = HashMap::new();
        for r in cached::query(tx, READ, &[&ids, &keys]).await? {
            let purchase: uuid::Uuid = r.get("purchase_id");
            let key: String = r.get("request_key");
            let status: String = r.get("status");
            let email: Option<uuid::Uuid> = r.get("email_id");
            let state: Option<String> = r.get("send_state");
            let plan = match (email, state.as_deref()) {
                (Some(id), Some("sending")) if claimed.contains(&id) => {
                    let token = self.0.links.sign(
                        Purpose::Download,
                        tenant,
                        purchase,
                        now + self.0.settings.download_ttl.as_secs() as i64,
                    );
                    let days = self.0.settings.download_ttl.as_secs() / 86_400;
                    let name: String = r.get("business_name");
                    let amount: i64 = r.get("amount_cents");
                    let body = format!(
                        "Hello,\n\nThank you for buying the full website audit for {name}.\n\nDownload it here (the link works for {days} days): {}/d/{token}\n\nIt walks through every score, the Core Web Vitals against their thresholds, and the three fixes that matter most, step by step. If you have a question, just reply to this email.\n\nReceipt: ${}.{:02} paid by card through Stripe.",
                        self.0.base,
                        amount / 100,
                        amount % 100,
                    );
                    let mut args = BTreeMap::from([
                        ("tenant_id".to_owned(), tenant.to_string()),
                        ("email_id".to_owned(), id.to_string()),
                        ("purchase_id".to_owned(), purchase.to_string()),
                    ]);
                    if !key.is_empty() {
                        args.insert("request_key".into(), key.clone());
                    }
                    Plan::Send(
                        Box::new(Outbound {
                            email_id: id,
                            to: r
                                .get::<_, Option<String>>("customer_email")
                                .unwrap_or_default(),
                            from_email: r
                                .get::<_, Option<String>>("sender_email")
                                .unwrap_or_default(),
                            from_name: r
                                .get::<_, Option<String>>("sender_name")
                                .unwrap_or_default(),
                            subject: r.get("subject"),
                            body,
                            footer: None,
                            custom_args: args,
                            category: "fulfilment",
                            attachment: None,
                        }),
                        name,
                        None,
                    )
                }
                (Some(_), Some("sending")) => Plan::InFlight,
                (Some(_), Some("sent")) => Plan::Skip("already_sent"),
                (Some(_), Some(s)) => Plan::Skip(if s == "unknown" {
                    "parked_unknown"
                } else {
                    "already_failed"
                }),
                _ if key.is_empty() && r.get::<_, bool>("fulfilled") => {
                    Plan::Skip("already_fulfilled")
                }
                _ if !matches!(status.as_str(), "paid" | "partially_refunded")
                    || (key.is_empty() && status != "paid") =>
                {
                    Plan::Skip("not_paid")
                }
                _ if matches!(
                    r.get::<_, Option<String>>("dispute_status").as_deref(),
                    Some("open" | "lost")
                ) =>
                {
                    Plan::Skip("disputed")
                }
                _ => Plan::Skip("no_buyer_address_or_campaign"),
            };
            plans.insert((purchase, key), plan);
        }
        Ok(plans)
    }

    async fn work(
        &self,
        deps: &Deps,
        ctx: &Self::Context,
        env: &Envelope<Fulfil>,
        _paid_allowed: bool,
    ) -> Result<Done, WorkError> {
        let plan = ctx.get(&request(&env.payload)).cloned().ok_or_else(|| {
            WorkError::Permanent(format!("no purchase {}", env.payload.purchase_id))
        })?;
        let (outbound, _, _) = match plan.claimed("the fulfilment email") {
            Ok(claimed) => claimed,
            Err(done) => return done,
        };
        let call = CallContext::new(env.tenant_id, env.run_id, None);
        self.0
            .send(deps, env.tenant_id, &call, &outbound, &[])
            .await
    }

    async fn persist(
        &self,
        _deps: &Deps,
        tx: &dyn Tx,
        _tenant: TenantId,
        items: &[StageItem<Fulfil, Done>],
    ) -> Result<Vec<Vec<Outgoing>>, shared::pipeline::StageError> {
        let mut fulfilled = Vec::new();
        let mut fulfilled_by = Vec::new();
        for it in items {
            // `unknown` may have reached the buyer: an operator decides; it is not resent.
            if let Done::Sent(id, Sent::Sent { .. } | Sent::Unknown { .. }) = &it.work {
                fulfilled.push(it.env.payload.purchase_id);
                fulfilled_by.push(*id);
            }
        }
        send::write_states(tx, items.iter().map(|it| &it.work)).await?;
        if !fulfilled.is_empty() {
            cached::execute(tx, MARK_FULFILLED, &[&fulfilled, &fulfilled_by]).await?;
        }
        Ok(items.iter().map(|_| Vec::new()).collect())
    }

    fn describe(&self, item: &StageItem<Fulfil, Done>, _next: &[Outgoing]) -> Vec<EventInfo> {
        let (event, status) = item.work.event("fulfilled");
        vec![EventInfo {
            entity_id: Some(item.env.payload.purchase_id.to_string()),
            event,
            status,
            extra: json!({ "stripe_session_id": item.env.payload.stripe_session_id, "request_key": item.env.payload.request_key }),
            marker: false,
        }]
    }
}
