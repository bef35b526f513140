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
//! kept for an operator (`unattributed_stripe_events`), never only logged.

use aws_lambda_events::event::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use serde_json::{Value, json};
use shared::bus::{Bus, Envelope, Queue};
use shared::db::{Pool, begin_tenant};
use shared::domain::TenantId;
use shared::lambda::StartError;
use shared::lambda::http::{HttpError, body_bytes, header, method};
use shared::webhook::stripe::{self, Event};

/// The queues this function sends to (the template grants exactly these).
pub const SENDS_TO: &[Queue] = &[Queue::Fulfilment];

/// Stripe events are small; a large body is not Stripe.
pub const MAX_BODY_BYTES: usize = 512 * 1024;

pub struct WebhookDeps {
    pub pool: Pool,
    pub bus: std::sync::Arc<dyn Bus>,
    pub secret: secrecy::SecretString,
    pub tolerance_secs: i64,
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
        r.finish(())?;
        let bus = shared::bus::SqsBus::lazy(
            &shared::aws::LazySdk::new(endpoint),
            std::collections::HashMap::from([(Queue::Fulfilment.name().to_owned(), queue)]),
        );
        Ok(Self {
            pool: shared::db::connect(&url, 2)?,
            bus: std::sync::Arc::new(bus),
            secret,
            tolerance_secs,
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
            e.into_response()
        }
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
    // Verified on the bytes Stripe signed; read and stored as storable text.
    let body = shared::domain::storable_json(&body).into_owned();
    let event: Event = serde_json::from_slice(&body)
        .map_err(|e| HttpError::bad_request(format!("body is not a Stripe event: {e}")))?;
    let object = &event.data.object;
    let mut handled = Handled {
        event_id: event.id.clone(),
        kind: event.kind.clone(),
        outcome: "processed",
        fulfilment_sent: false,
    };
    let mut client = deps.pool.get().await.map_err(internal)?;
    // Stripe's rule: fulfil when the payment status is not `unpaid` (a 100 % coupon is
    // `no_payment_required`).
    let paid = matches!(
        object.get("payment_status").and_then(Value::as_str),
        Some("paid" | "no_payment_required")
    );
    let Some(tenant) = attribute(&client, &event.kind, object).await? else {
        // No tenant we can find. A type we act on is kept for an operator (a paid session among
        // them is money taken for nothing delivered: the alerts function reports it); anything
        // else is not ours. Either way Stripe is answered, so it stops retrying.
        handled.outcome = "unattributed";
        if acted_on(&event.kind) {
            record_unattributed(&client, &event, paid, &body).await?;
            tracing::error!(event_id = %event.id, kind = %event.kind, paid, "Stripe event names no tenant; kept for an operator");
        } else {
            tracing::warn!(event_id = %event.id, kind = %event.kind, "Stripe event names no tenant; acknowledged");
        }
        return Ok(handled);
    };
    let tx = begin_tenant(&mut client, tenant).await.map_err(internal)?;
    let created = chrono::DateTime::from_timestamp(event.created, 0).unwrap_or_default();
    let payload = stored_payload(&body)?;
    let inserted = tx
        .execute(
            "INSERT INTO stripe_events (event_id, tenant_id, type, created, payload) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING",
            &[&event.id, &tenant.as_uuid(), &event.kind, &created, &payload],
        )
        .await
        .map_err(internal)?;
    let processed: Option<chrono::DateTime<chrono::Utc>> = tx
        .query_one(
            "SELECT processed_at FROM stripe_events WHERE event_id = $1",
            &[&event.id],
        )
        .await
        .map_err(internal)?
        .get(0);
    if processed.is_some() {
        tx.commit().await.map_err(internal)?;
        handled.outcome = "duplicate";
        return Ok(handled);
    }
    let mut fulfil: Option<Fulfil> = None;
    match event.kind.as_str() {
        "checkout.session.completed" | "checkout.session.async_payment_succeeded" if paid => {
            fulfil = record_paid(&tx, tenant, object)
                .await
                .map_err(session_error)?;
        }
        "checkout.session.completed" => {
            // Paid later by an async method: the async_payment_* event decides.
        }
        "checkout.session.async_payment_failed" | "checkout.session.expired" => {
            let status = if event.kind.ends_with("failed") {
                "failed"
            } else {
                "expired"
            };
            record_unpaid(&tx, tenant, object, status)
                .await
                .map_err(session_error)?;
        }
        "charge.refunded" => {
            let intent = object
                .get("payment_intent")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let refunded = object
                .get("amount_refunded")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                .max(0);
            tx.execute(
                "UPDATE purchases SET refunded_cents = LEAST(GREATEST(refunded_cents, $2), amount_cents),
                        status = CASE WHEN LEAST(GREATEST(refunded_cents, $2), amount_cents) >= amount_cents THEN 'refunded' ELSE 'partially_refunded' END
                 WHERE stripe_payment_intent = $1",
                &[&intent, &refunded],
            )
            .await
            .map_err(internal)?;
        }
        "charge.dispute.created" | "charge.dispute.closed" => {
            record_dispute(&tx, &event.kind, object).await?;
        }
        _ => handled.outcome = "ignored",
    }
    tx.commit().await.map_err(internal)?;
    if let Some(f) = &fulfil {
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
            .map_err(internal)?;
        handled.fulfilment_sent = true;
    }
    let tx = begin_tenant(&mut client, tenant).await.map_err(internal)?;
    tx.execute(
        "UPDATE stripe_events SET processed_at = now() WHERE event_id = $1",
        &[&event.id],
    )
    .await
    .map_err(internal)?;
    tx.commit().await.map_err(internal)?;
    if inserted == 0 {
        tracing::info!(event_id = %event.id, "finished an event a previous delivery had stored but not processed");
    }
    Ok(handled)
}

/// The event types this function acts on (the others are acknowledged and stored).
fn acted_on(kind: &str) -> bool {
    kind.starts_with("checkout.session.")
        || matches!(
            kind,
            "charge.refunded" | "charge.dispute.created" | "charge.dispute.closed"
        )
}

/// Keeps an event that names no tenant where only operators read it (a definer function: the
/// table is outside every tenant and the application role's reach).
async fn record_unattributed(
    client: &tokio_postgres::Client,
    event: &Event,
    paid: bool,
    body: &[u8],
) -> Result<(), HttpError> {
    let object = &event.data.object;
    let session = event.kind.starts_with("checkout.session.");
    let paid_session = session
        && paid
        && matches!(
            event.kind.as_str(),
            "checkout.session.completed" | "checkout.session.async_payment_succeeded"
        );
    let payload = stored_payload(body)?;
    let created = chrono::DateTime::from_timestamp(event.created, 0).unwrap_or_default();
    client
        .execute(
            "SELECT record_unattributed_stripe_event($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &event.id,
                &event.kind,
                &created,
                &paid_session,
                &object.get("id").and_then(Value::as_str).filter(|_| session),
                &object
                    .get("amount_total")
                    .or_else(|| object.get("amount"))
                    .and_then(Value::as_i64),
                &object.get("currency").and_then(Value::as_str),
                &payload,
            ],
        )
        .await
        .map_err(internal)?;
    Ok(())
}

/// A dispute opened or closed on a purchase's payment: while it is open or once it is lost,
/// the storefront refuses the download.
async fn record_dispute(
    tx: &tokio_postgres::Transaction<'_>,
    kind: &str,
    dispute: &Value,
) -> Result<(), HttpError> {
    let intent = dispute
        .get("payment_intent")
        .and_then(Value::as_str)
        .ok_or_else(|| HttpError::bad_request("dispute lacks payment_intent"))?;
    let id = dispute.get("id").and_then(Value::as_str);
    let status = match (kind, dispute.get("status").and_then(Value::as_str)) {
        ("charge.dispute.created", _) => "open",
        (_, Some("lost")) => "lost",
        // `won`, or `warning_closed` (an inquiry that never became a chargeback).
        _ => "won",
    };
    tx.execute(
        "UPDATE purchases SET dispute_status = $2, dispute_id = coalesce($3, dispute_id),
                disputed_at = coalesce(disputed_at, now())
         WHERE stripe_payment_intent = $1",
        &[&intent, &status, &id],
    )
    .await
    .map_err(internal)?;
    Ok(())
}

/// The tenant an event belongs to: its object's `metadata.tenant_id`, or — for a charge, which
/// Stripe does not promise carries its payment intent's metadata — the tenant of the purchase
/// paid through that payment intent.
async fn attribute(
    client: &tokio_postgres::Client,
    kind: &str,
    object: &Value,
) -> Result<Option<TenantId>, HttpError> {
    if let Some(t) = object
        .get("metadata")
        .and_then(|m| m.get("tenant_id"))
        .and_then(Value::as_str)
        .and_then(|t| TenantId::parse(t).ok())
    {
        return Ok(Some(t));
    }
    let intent = object.get("payment_intent").and_then(Value::as_str);
    let (true, Some(intent)) = (kind.starts_with("charge."), intent) else {
        return Ok(None);
    };
    let row = client
        .query_one("SELECT purchase_tenant_by_payment_intent($1)", &[&intent])
        .await
        .map_err(internal)?;
    Ok(row.get::<_, Option<uuid::Uuid>>(0).map(TenantId::from_uuid))
}

/// Records a session that ended unpaid (`failed`, `expired`): the pending purchase moves to it,
/// and a session with no purchase row yet (its `completed` event not seen) gets one, so the
/// outcome is kept instead of dropped. A paid purchase is never downgraded.
async fn record_unpaid(
    tx: &tokio_postgres::Transaction<'_>,
    tenant: TenantId,
    s: &Value,
    status: &str,
) -> Result<(), PaidError> {
    let session_id = s
        .get("id")
        .and_then(Value::as_str)
        .ok_or(PaidError::Missing("id"))?;
    let updated = tx
        .execute(
            "UPDATE purchases SET status = $2 WHERE stripe_session_id = $1 AND status = 'pending'",
            &[&session_id, &status],
        )
        .await?;
    let known = updated > 0
        || tx
            .query_opt(
                "SELECT 1 FROM purchases WHERE stripe_session_id = $1",
                &[&session_id],
            )
            .await?
            .is_some();
    if known {
        return Ok(());
    }
    let session = SessionFacts::read(s)?;
    tx.execute(
        "INSERT INTO purchases (id, tenant_id, report_id, business_id, campaign_id, email_id, stripe_session_id, stripe_payment_intent,
                                status, amount_cents, currency, customer_email)
         VALUES ($1, $3, $4, $5, $6, $7, $2, $8, $12, $9, $10, $11)
         ON CONFLICT (stripe_session_id) DO NOTHING",
        &[&uuid::Uuid::new_v4(), &session_id, &tenant.as_uuid(), &session.report, &session.business, &session.campaign,
          &session.email_id, &session.intent, &session.amount, &session.currency, &session.customer_email, &status],
    )
    .await?;
    Ok(())
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
    customer_email: Option<&'a str>,
}

impl<'a> SessionFacts<'a> {
    fn read(s: &'a Value) -> Result<Self, PaidError> {
        let meta = |k: &'static str| {
            s.get("metadata")
                .and_then(|m| m.get(k))
                .and_then(Value::as_str)
                .and_then(|v| uuid::Uuid::parse_str(v).ok())
        };
        Ok(Self {
            report: meta("report_id").ok_or(PaidError::Missing("metadata.report_id"))?,
            business: meta("business_id").ok_or(PaidError::Missing("metadata.business_id"))?,
            campaign: meta("campaign_id"),
            email_id: meta("email_id"),
            amount: s
                .get("amount_total")
                .and_then(Value::as_i64)
                .ok_or(PaidError::Missing("amount_total"))?
                .max(0),
            currency: s
                .get("currency")
                .and_then(Value::as_str)
                .unwrap_or("usd")
                .to_lowercase(),
            intent: s.get("payment_intent").and_then(Value::as_str),
            customer_email: s
                .get("customer_details")
                .and_then(|c| c.get("email"))
                .and_then(Value::as_str)
                .or_else(|| s.get("customer_email").and_then(Value::as_str)),
        })
    }
}

/// A session we cannot record is the request's fault when it lacks a field we put there; a
/// database failure is unavailability (Stripe retries).
fn session_error(e: PaidError) -> HttpError {
    match e {
        PaidError::Missing(f) => HttpError::bad_request(format!("checkout session lacks {f}")),
        PaidError::Db(e) => internal(e),
    }
}

#[derive(Debug, thiserror::Error)]
enum PaidError {
    #[error("missing {0}")]
    Missing(&'static str),
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
}

/// Upserts the purchase as paid; returns the fulfilment to send while one is due.
async fn record_paid(
    tx: &tokio_postgres::Transaction<'_>,
    tenant: TenantId,
    s: &Value,
) -> Result<Option<Fulfil>, PaidError> {
    let session_id = s
        .get("id")
        .and_then(Value::as_str)
        .ok_or(PaidError::Missing("id"))?;
    let f = SessionFacts::read(s)?;
    // Fulfilment is due while the purchase is paid and not yet fulfilled: a retry of a delivery
    // that stopped after this commit sends it again, and the fulfilment consumer's idempotency
    // key (`fulfil:<session>`) makes the second message a no-op.
    let row = tx
        .query_one(
            "INSERT INTO purchases (id, tenant_id, report_id, business_id, campaign_id, email_id, stripe_session_id, stripe_payment_intent,
                                    status, amount_cents, currency, customer_email, paid_at)
             VALUES ($1, $3, $4, $5, $6, $7, $2, $8, 'paid', $9, $10, $11, now())
             ON CONFLICT (stripe_session_id) DO UPDATE SET status = CASE WHEN purchases.status IN ('pending', 'failed', 'expired') THEN 'paid' ELSE purchases.status END,
                 stripe_payment_intent = coalesce(purchases.stripe_payment_intent, EXCLUDED.stripe_payment_intent),
                 customer_email = coalesce(purchases.customer_email, EXCLUDED.customer_email),
                 paid_at = coalesce(purchases.paid_at, now())
             RETURNING id, status = 'paid' AND fulfilled_at IS NULL",
            &[&uuid::Uuid::new_v4(), &session_id, &tenant.as_uuid(), &f.report, &f.business, &f.campaign, &f.email_id, &f.intent, &f.amount, &f.currency, &f.customer_email],
        )
        .await?;
    let due: bool = row.get(1);
    Ok(due.then(|| Fulfil {
        purchase_id: row.get(0),
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
