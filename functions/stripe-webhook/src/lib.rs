//! stripe-webhook: Stripe's signed events.
//!
//! `Stripe-Signature` (HMAC-SHA256 over `t.body`, any `v1`, 300 s tolerance, constant-time) is
//! checked on the raw body before it is parsed. Each event is stored once by its id; a repeated
//! delivery changes nothing. `checkout.session.completed` with `payment_status=paid` (and
//! `checkout.session.async_payment_succeeded`) records the purchase as paid and hands it to the
//! fulfilment queue exactly once: the event is stored unprocessed, the purchase committed, the
//! fulfilment message sent, and only then the event marked processed — a delivery that stopped
//! in between is finished by Stripe's retry. `async_payment_failed` and `expired` mark the
//! purchase; `charge.refunded` records the refund; `charge.dispute.created` / `.closed` record
//! the dispute (the download is refused while it is open or once it is lost). Other types are
//! acknowledged and stored. An event of a type we act on that names no tenant we can find is
//! kept for an operator (`unattributed_stripe_events`), never only logged. A purchase paid or
//! refunded records `PurchasePaid` / `PurchaseRefunded` in its transaction; they are published
//! before the event is marked processed.

use aws_lambda_events::event::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use serde_json::{Value, json};
use shared::bus::{Bus, Envelope, Queue};
use shared::db::{Pool, begin_tenant};
use shared::domain::TenantId;
use shared::lambda::StartError;
use shared::lambda::http::{HttpError, body_bytes, header, method};
use shared::vendors::stripe::CheckoutSession;
use shared::webhook::stripe::{self, Action, DisputeChange, Event};

/// The queues this function sends to (the template grants exactly these).
pub const SENDS_TO: &[Queue] = &[Queue::Fulfilment];

/// Stripe events are small; a large body is not Stripe.
pub const MAX_BODY_BYTES: usize = 512 * 1024;

pub struct WebhookDeps {
    pub pool: Pool,
    pub bus: std::sync::Arc<dyn Bus>,
    pub secret: secrecy::SecretString,
    pub tolerance_secs: i64,
    /// Where `PurchasePaid` and `PurchaseRefunded` are published (`LF_EVENT_BUS_NAME`).
    pub events: Option<std::sync::Arc<dyn shared::events::Publisher>>,
}

impl WebhookDeps {
    /// `DATABASE_URL`, `STRIPE_WEBHOOK_SECRET` and `LF_QUEUE_FULFILMENT_URL`, from the
    /// environment or the secrets in `LF_SECRET_ARNS`.
    pub async fn from_env() -> Result<Self, StartError> {
        let source = shared::secrets::from_env().await?;
        let mut r = shared::config::Reader::new(&source);
        let url = r.secret("DATABASE_URL");
        let secret = r.secret("STRIPE_WEBHOOK_SECRET");
        let queue = r.required("LF_QUEUE_FULFILMENT_URL");
        let tolerance_secs =
            r.parsed_or("LF_WEBHOOK_TOLERANCE_SECS", stripe::DEFAULT_TOLERANCE_SECS);
        let endpoint = r.optional("AWS_ENDPOINT_URL");
        let event_bus = r.optional("LF_EVENT_BUS_NAME");
        r.finish(())?;
        let sdk = shared::aws::LazySdk::new(endpoint);
        let bus = shared::bus::SqsBus::lazy(
            &sdk,
            std::collections::HashMap::from([(Queue::Fulfilment.name().to_owned(), queue)]),
        );
        let events = event_bus.map(|name| {
            std::sync::Arc::new(shared::events::EventBridgePublisher::lazy(&sdk, name))
                as std::sync::Arc<dyn shared::events::Publisher>
        });
        Ok(Self {
            pool: shared::db::connect(&url, 2)?,
            bus: std::sync::Arc::new(bus),
            secret,
            tolerance_secs,
            events,
        })
    }
}

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Handled {
    pub event_id: String,
    pub kind: String,
    /// `processed`, `duplicate`, `ignored` (a type we do not act on) or `unattributed`.
    pub outcome: &'static str,
    pub fulfilment_sent: bool,
}

/// The payload of a fulfilment message (consumed by the delivery function).
pub use shared::pipeline::messages::Fulfil;

pub async fn handler(deps: &WebhookDeps, req: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    match handle(deps, &req, chrono::Utc::now().timestamp()).await {
        Ok(h) => shared::lambda::http::json(200, &json!(h)),
        Err(e) => {
            tracing::warn!(status = e.status, reason = %e.reason, "stripe webhook refused");
            use shared::obs::metrics::{MetricLine, Unit};
            MetricLine::new()
                .dimension("Function", "stripe-webhook")
                .value(failure_metric(e.status), 1.0, Unit::Count)
                .emit();
            e.into_response()
        }
    }
}

/// The metrics a delivery Stripe did not get a 2xx for counts toward (each with a template
/// alarm): refused (4xx: a bad signature, a stale timestamp, a body that is no event) or failed
/// (5xx: Stripe retries, but payments wait).
pub const FAILURE_METRICS: [&str; 2] = ["DeliveriesRefused", "DeliveriesFailed"];

/// Which of [`FAILURE_METRICS`] an answer of `status` counts toward.
pub fn failure_metric(status: u16) -> &'static str {
    if status >= 500 {
        FAILURE_METRICS[1]
    } else {
        FAILURE_METRICS[0]
    }
}

fn internal(e: impl std::fmt::Display) -> HttpError {
    tracing::error!(error = %e, "stripe webhook failed; Stripe will retry");
    HttpError::new(503, "temporarily unable to process the event")
}

/// Verifies and processes one delivery; `now` is unix seconds.
pub async fn handle(
    deps: &WebhookDeps,
    req: &ApiGatewayV2httpRequest,
    now: i64,
) -> Result<Handled, HttpError> {
    let body = verified_body(deps, req, now)?;
    let event: Event = serde_json::from_slice(&body)
        .map_err(|e| HttpError::bad_request(format!("body is not a Stripe event: {e}")))?;
    let action = Action::of(&event).map_err(HttpError::bad_request)?;
    let mut handled = Handled {
        event_id: event.id.clone(),
        kind: event.kind.clone(),
        outcome: outcome(&action),
        fulfilment_sent: false,
    };
    let mut client = deps.pool.get().await.map_err(internal)?;
    let Some(tenant) = attribute(&client, &event, &action).await? else {
        keep_unattributed(&client, &event, &action, &body).await?;
        handled.outcome = "unattributed";
        return Ok(handled);
    };
    let tx = begin_tenant(&mut client, tenant).await.map_err(internal)?;
    let Stored { new, processed } = store_event(&tx, tenant, &event, &body).await?;
    if processed {
        tx.commit().await.map_err(internal)?;
        handled.outcome = "duplicate";
        return Ok(handled);
    }
    let fulfil = act(&tx, tenant, &event.kind, &action).await?;
    tx.commit().await.map_err(internal)?;
    if let Some(f) = &fulfil {
        send_fulfilment(deps, tenant, f).await?;
        handled.fulfilment_sent = true;
    }
    publish_events(deps, &mut client, tenant).await?;
    mark_processed(&mut client, tenant, &event.id).await?;
    if !new {
        tracing::info!(event_id = %event.id, "finished an event a previous delivery had stored but not processed");
    }
    Ok(handled)
}

/// 1. The body, once its `Stripe-Signature` is verified on the bytes Stripe signed, as
///    storable text.
fn verified_body(
    deps: &WebhookDeps,
    req: &ApiGatewayV2httpRequest,
    now: i64,
) -> Result<Vec<u8>, HttpError> {
    use secrecy::ExposeSecret;
    if method(req) != "POST" {
        return Err(HttpError::method_not_allowed("POST"));
    }
    let body = body_bytes(req, MAX_BODY_BYTES)?;
    stripe::verify(
        deps.secret.expose_secret(),
        header(req, "Stripe-Signature"),
        &body,
        now,
        deps.tolerance_secs,
    )
    .map_err(|e| HttpError::unauthorized(e.to_string()))?;
    Ok(shared::domain::storable_json(&body).into_owned())
}

/// What a delivery that acts (not a duplicate, not unattributed) reports.
fn outcome(action: &Action) -> &'static str {
    match action {
        Action::Ignored | Action::OtherSession(_) => "ignored",
        _ => "processed",
    }
}

const TENANT_BY_PAYMENT_INTENT: &str = "SELECT purchase_tenant_by_payment_intent($1) AS tenant_id";

/// 2. The tenant an event belongs to: its object's `metadata.tenant_id`, or — for a charge,
///    which Stripe does not promise carries its payment intent's metadata — the tenant of the
///    purchase paid through that payment intent.
async fn attribute(
    client: &tokio_postgres::Client,
    event: &Event,
    action: &Action,
) -> Result<Option<TenantId>, HttpError> {
    if let Some(t) = event.metadata_tenant() {
        return Ok(Some(t));
    }
    let Some(intent) = action.charge_payment_intent() else {
        return Ok(None);
    };
    let row = client
        .query_one(TENANT_BY_PAYMENT_INTENT, &[&intent])
        .await
        .map_err(internal)?;
    Ok(row
        .get::<_, Option<uuid::Uuid>>("tenant_id")
        .map(TenantId::from_uuid))
}

const KEEP_UNATTRIBUTED: &str =
    "SELECT record_unattributed_stripe_event($1, $2, $3, $4, $5, $6, $7, $8)";

/// An event that names no tenant we can find. One of a type we act on is kept where only
/// operators read it (a paid session among them is money taken for nothing delivered: the
/// alerts function reports it), through a definer function, as the table is outside every
/// tenant and the application role's reach; anything else is not ours. Either way Stripe is
/// answered, so it stops retrying.
async fn keep_unattributed(
    client: &tokio_postgres::Client,
    event: &Event,
    action: &Action,
    body: &[u8],
) -> Result<(), HttpError> {
    if !action.acted_on() {
        tracing::warn!(event_id = %event.id, kind = %event.kind, "Stripe event names no tenant; acknowledged");
        return Ok(());
    }
    let paid = matches!(action, Action::Paid(_));
    let (amount, currency) = action.amount();
    let created = chrono::DateTime::from_timestamp(event.created, 0).unwrap_or_default();
    client
        .execute(
            KEEP_UNATTRIBUTED,
            &[
                &event.id,
                &event.kind,
                &created,
                &paid,
                &action.session().map(|s| s.id.as_str()),
                &amount,
                &currency,
                &stored_payload(body)?,
            ],
        )
        .await
        .map_err(internal)?;
    tracing::error!(event_id = %event.id, kind = %event.kind, paid, "Stripe event names no tenant; kept for an operator");
    Ok(())
}

/// Whether the event's row is new, and whether it was processed already.
struct Stored {
    new: bool,
    processed: bool,
}

const INSERT_EVENT: &str = "INSERT INTO stripe_events (event_id, tenant_id, type, created, payload) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING";
const EVENT_PROCESSED_AT: &str = "SELECT processed_at FROM stripe_events WHERE event_id = $1";

/// 3. The event stored once by its id (a repeated delivery finds it, processed or not).
async fn store_event(
    tx: &tokio_postgres::Transaction<'_>,
    tenant: TenantId,
    event: &Event,
    body: &[u8],
) -> Result<Stored, HttpError> {
    let created = chrono::DateTime::from_timestamp(event.created, 0).unwrap_or_default();
    let inserted = tx
        .execute(
            INSERT_EVENT,
            &[
                &event.id,
                &tenant.as_uuid(),
                &event.kind,
                &created,
                &stored_payload(body)?,
            ],
        )
        .await
        .map_err(internal)?;
    let processed: Option<chrono::DateTime<chrono::Utc>> = tx
        .query_one(EVENT_PROCESSED_AT, &[&event.id])
        .await
        .map_err(internal)?
        .get("processed_at");
    Ok(Stored {
        new: inserted > 0,
        processed: processed.is_some(),
    })
}

/// 4. What the event changes, in the event's transaction; returns the fulfilment due, if any.
async fn act(
    tx: &tokio_postgres::Transaction<'_>,
    tenant: TenantId,
    kind: &str,
    action: &Action,
) -> Result<Option<Fulfil>, HttpError> {
    match action {
        Action::Paid(s) => record_paid(tx, tenant, s).await.map_err(session_error),
        Action::Unpaid(s, how) => {
            record_unpaid(tx, tenant, s, how.status())
                .await
                .map_err(session_error)?;
            Ok(None)
        }
        Action::Refunded(c) => {
            record_refund(tx, tenant, c).await?;
            Ok(None)
        }
        Action::Dispute(d, change) => {
            record_dispute(tx, kind, d, *change).await?;
            Ok(None)
        }
        Action::AwaitingPayment(_) | Action::OtherSession(_) | Action::Ignored => Ok(None),
    }
}

/// 5. The fulfilment handed to its queue, after the purchase is committed.
async fn send_fulfilment(
    deps: &WebhookDeps,
    tenant: TenantId,
    f: &Fulfil,
) -> Result<(), HttpError> {
    let env = Envelope::new(
        tenant,
        None,
        format!("fulfil:{}", f.stripe_session_id),
        f.clone(),
    );
    let body = env.to_body().map_err(internal)?;
    deps.bus
        .send_batch(Queue::Fulfilment.name(), &[body])
        .await
        .map_err(internal)
}

/// 6. The events the purchase's change recorded (and any an earlier delivery left waiting),
///    published before the event is marked processed: one that could not be is published by
///    Stripe's retry.
async fn publish_events(
    deps: &WebhookDeps,
    client: &mut shared::db::Client,
    tenant: TenantId,
) -> Result<(), HttpError> {
    let flushed = shared::events::flush_on(client, deps.events.as_deref(), tenant)
        .await
        .map_err(internal)?;
    if flushed.failed > 0 {
        return Err(internal(format!(
            "{} domain event(s) not published",
            flushed.failed
        )));
    }
    Ok(())
}

const MARK_PROCESSED: &str = "UPDATE stripe_events SET processed_at = now() WHERE event_id = $1";

/// 7. The event marked processed, only once everything it asked for is done: a delivery that
///    stopped before is finished by Stripe's retry.
async fn mark_processed(
    client: &mut shared::db::Client,
    tenant: TenantId,
    event_id: &str,
) -> Result<(), HttpError> {
    let tx = begin_tenant(client, tenant).await.map_err(internal)?;
    tx.execute(MARK_PROCESSED, &[&event_id])
        .await
        .map_err(internal)?;
    tx.commit().await.map_err(internal)
}

const RECORD_REFUND: &str = "UPDATE purchases SET refunded_cents = LEAST(GREATEST(refunded_cents, $2), amount_cents),
        status = CASE WHEN LEAST(GREATEST(refunded_cents, $2), amount_cents) >= amount_cents THEN 'refunded' ELSE 'partially_refunded' END
 WHERE stripe_payment_intent = $1
 RETURNING id, refunded_cents, amount_cents, currency::text AS currency, status";

/// A refund of a purchase's payment: the refunded amount only grows, up to the amount paid.
/// Each new refunded amount is a `PurchaseRefunded` event.
async fn record_refund(
    tx: &tokio_postgres::Transaction<'_>,
    tenant: TenantId,
    charge: &stripe::Charge,
) -> Result<(), HttpError> {
    let intent = charge.payment_intent.as_deref().unwrap_or_default();
    let refunded = charge.amount_refunded.max(0);
    let rows = tx
        .query(RECORD_REFUND, &[&intent, &refunded])
        .await
        .map_err(internal)?;
    let events: Vec<shared::events::PurchaseRefunded> = rows
        .iter()
        .filter(|r| r.get::<_, i64>("refunded_cents") > 0)
        .map(|r| {
            let purchase: uuid::Uuid = r.get("id");
            let refunded: i64 = r.get("refunded_cents");
            shared::events::PurchaseRefunded {
                header: shared::events::Header::derived(
                    shared::events::DetailType::PurchaseRefunded,
                    &format!("{purchase}:{refunded}"),
                    tenant,
                    chrono::Utc::now(),
                ),
                purchase_id: purchase,
                refunded_cents: refunded,
                amount_cents: r.get("amount_cents"),
                currency: r.get("currency"),
                fully_refunded: r.get::<_, &str>("status") == "refunded",
            }
        })
        .collect();
    shared::events::record(tx, &events)
        .await
        .map_err(internal)?;
    Ok(())
}

const RECORD_DISPUTE: &str =
    "UPDATE purchases SET dispute_status = $2, dispute_id = coalesce($3, dispute_id),
        disputed_at = coalesce(disputed_at, now())
 WHERE stripe_payment_intent = $1";

/// A dispute opened or closed on a purchase's payment: while it is open or once it is lost,
/// the storefront refuses the download.
async fn record_dispute(
    tx: &tokio_postgres::Transaction<'_>,
    kind: &str,
    dispute: &stripe::Dispute,
    change: DisputeChange,
) -> Result<(), HttpError> {
    let intent = dispute
        .payment_intent
        .as_deref()
        .ok_or_else(|| HttpError::bad_request(format!("{kind} lacks payment_intent")))?;
    let id = Some(dispute.id.as_str()).filter(|i| !i.is_empty());
    let status = match (change, dispute.status.as_deref()) {
        (DisputeChange::Opened, _) => "open",
        (DisputeChange::Closed, Some("lost")) => "lost",
        // `won`, or `warning_closed` (an inquiry that never became a chargeback).
        (DisputeChange::Closed, _) => "won",
    };
    tx.execute(RECORD_DISPUTE, &[&intent, &status, &id])
        .await
        .map_err(internal)?;
    Ok(())
}

const MARK_UNPAID: &str =
    "UPDATE purchases SET status = $2 WHERE stripe_session_id = $1 AND status = 'pending'";
const PURCHASE_EXISTS: &str = "SELECT 1 FROM purchases WHERE stripe_session_id = $1";
const INSERT_UNPAID: &str = "INSERT INTO purchases (id, tenant_id, report_id, business_id, campaign_id, email_id, stripe_session_id, stripe_payment_intent,
                        status, amount_cents, currency, customer_email)
 VALUES ($1, $3, $4, $5, $6, $7, $2, $8, $12, $9, $10, $11)
 ON CONFLICT (stripe_session_id) DO NOTHING";

/// Records a session that ended unpaid (`failed`, `expired`): the pending purchase moves to it,
/// and a session with no purchase row yet (its `completed` event not seen) gets one, so the
/// outcome is kept instead of dropped. A paid purchase is never downgraded.
async fn record_unpaid(
    tx: &tokio_postgres::Transaction<'_>,
    tenant: TenantId,
    s: &CheckoutSession,
    status: &str,
) -> Result<(), PaidError> {
    let session_id = session_id(s)?;
    let updated = tx.execute(MARK_UNPAID, &[&session_id, &status]).await?;
    let known = updated > 0
        || tx
            .query_opt(PURCHASE_EXISTS, &[&session_id])
            .await?
            .is_some();
    if known {
        return Ok(());
    }
    let session = SessionFacts::read(s)?;
    tx.execute(
        INSERT_UNPAID,
        &[
            &uuid::Uuid::new_v4(),
            &session_id,
            &tenant.as_uuid(),
            &session.report,
            &session.business,
            &session.campaign,
            &session.email_id,
            &session.intent,
            &session.amount,
            &session.currency,
            &session.customer_email,
            &status,
        ],
    )
    .await?;
    Ok(())
}

fn session_id(s: &CheckoutSession) -> Result<&str, PaidError> {
    Some(s.id.as_str())
        .filter(|i| !i.is_empty())
        .ok_or(PaidError::Missing("id"))
}

/// What a checkout session says about its purchase (our metadata, Stripe's amounts).
struct SessionFacts<'a> {
    report: uuid::Uuid,
    business: uuid::Uuid,
    campaign: Option<uuid::Uuid>,
    email_id: Option<uuid::Uuid>,
    amount: i64,
    currency: String,
    intent: Option<&'a str>,
    /// Normalised as `shared::domain::Email` normalises (trimmed, lower-cased), as every stored
    /// address is (V22's checks).
    customer_email: Option<String>,
}

impl<'a> SessionFacts<'a> {
    fn read(s: &'a CheckoutSession) -> Result<Self, PaidError> {
        let meta = |k: &'static str| {
            s.metadata
                .get(k)
                .and_then(|v| uuid::Uuid::parse_str(v).ok())
        };
        Ok(Self {
            report: meta("report_id").ok_or(PaidError::Missing("metadata.report_id"))?,
            business: meta("business_id").ok_or(PaidError::Missing("metadata.business_id"))?,
            campaign: meta("campaign_id"),
            email_id: meta("email_id"),
            amount: s
                .amount_total
                .ok_or(PaidError::Missing("amount_total"))?
                .max(0),
            currency: s.currency.as_deref().unwrap_or("usd").to_lowercase(),
            intent: s.payment_intent.as_deref(),
            customer_email: s
                .customer_details
                .as_ref()
                .and_then(|c| c.email.as_deref())
                .or(s.customer_email.as_deref())
                .map(|e| e.trim().to_lowercase()),
        })
    }
}

/// A session we cannot record is the request's fault when it lacks a field we put there; a
/// database failure is unavailability (Stripe retries).
fn session_error(e: PaidError) -> HttpError {
    match e {
        PaidError::Missing(f) => HttpError::bad_request(format!("checkout session lacks {f}")),
        PaidError::Db(e) => internal(e),
        PaidError::Event(e) => internal(e),
    }
}

#[derive(Debug, thiserror::Error)]
enum PaidError {
    #[error("missing {0}")]
    Missing(&'static str),
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Event(#[from] shared::events::EventError),
}

const UPSERT_PAID: &str = "INSERT INTO purchases (id, tenant_id, report_id, business_id, campaign_id, email_id, stripe_session_id, stripe_payment_intent,
                        status, amount_cents, currency, customer_email, paid_at)
 VALUES ($1, $3, $4, $5, $6, $7, $2, $8, 'paid', $9, $10, $11, now())
 ON CONFLICT (stripe_session_id) DO UPDATE SET status = CASE WHEN purchases.status IN ('pending', 'failed', 'expired') THEN 'paid' ELSE purchases.status END,
     stripe_payment_intent = coalesce(purchases.stripe_payment_intent, EXCLUDED.stripe_payment_intent),
     customer_email = coalesce(purchases.customer_email, EXCLUDED.customer_email),
     paid_at = coalesce(purchases.paid_at, now())
 RETURNING id, status, status = 'paid' AND fulfilled_at IS NULL AS due, report_id, business_id, campaign_id,
     amount_cents, currency::text AS currency, paid_at";

/// Upserts the purchase as paid and records `PurchasePaid` (once per purchase: its id is
/// derived from the purchase's); returns the fulfilment to send while one is due.
async fn record_paid(
    tx: &tokio_postgres::Transaction<'_>,
    tenant: TenantId,
    s: &CheckoutSession,
) -> Result<Option<Fulfil>, PaidError> {
    let session_id = session_id(s)?;
    let f = SessionFacts::read(s)?;
    // Fulfilment is due while the purchase is paid and not yet fulfilled: a retry of a delivery
    // that stopped after this commit sends it again, and the fulfilment consumer's idempotency
    // key (`fulfil:<session>`) makes the second message a no-op.
    let row = tx
        .query_one(
            UPSERT_PAID,
            &[
                &uuid::Uuid::new_v4(),
                &session_id,
                &tenant.as_uuid(),
                &f.report,
                &f.business,
                &f.campaign,
                &f.email_id,
                &f.intent,
                &f.amount,
                &f.currency,
                &f.customer_email,
            ],
        )
        .await?;
    let purchase: uuid::Uuid = row.get("id");
    if row.get::<_, &str>("status") != "pending" {
        let paid = shared::events::PurchasePaid {
            header: shared::events::Header::derived(
                shared::events::DetailType::PurchasePaid,
                &purchase.to_string(),
                tenant,
                row.get::<_, Option<chrono::DateTime<chrono::Utc>>>("paid_at")
                    .unwrap_or_else(chrono::Utc::now),
            ),
            purchase_id: purchase,
            report_id: row.get("report_id"),
            business_id: row.get("business_id"),
            campaign_id: row.get("campaign_id"),
            amount_cents: row.get("amount_cents"),
            currency: row.get("currency"),
        };
        shared::events::record(tx, &[paid]).await?;
    }
    let due: bool = row.get("due");
    Ok(due.then(|| Fulfil {
        purchase_id: row.get("id"),
        stripe_session_id: session_id.to_owned(),
        request_key: String::new(),
    }))
}

/// The event as it is kept (`stripe_events.payload`, `unattributed_stripe_events`): the signed
/// body, every string in it at most `capped::RAW_STRING` characters.
fn stored_payload(body: &[u8]) -> Result<Value, HttpError> {
    let mut payload: Value =
        serde_json::from_slice(body).map_err(|e| HttpError::bad_request(e.to_string()))?;
    shared::domain::capped::cap_strings(&mut payload, shared::domain::capped::RAW_STRING);
    Ok(payload)
}
