//! sendgrid-webhook: SendGrid's signed event webhook.
//!
//! The ECDSA signature over `timestamp + raw body` is verified before anything is parsed, and a
//! stale timestamp is refused. The whole event array is then stored in one statement per tenant,
//! deduplicated by `sg_event_id` (or, when SendGrid sent none, a hash of message id, event,
//! timestamp and address): SendGrid retries deliveries, so duplicates are normal and change
//! nothing. Only events stored for the first time advance their email's state and write
//! suppressions — hard bounces, drops, spam reports and unsubscribes at once; soft bounces after
//! repeated failures within a window. Bad input gets a 4xx with the reason and writes nothing.

use std::collections::BTreeMap;

use aws_lambda_events::event::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use serde_json::json;
use shared::bus::Queue;
use shared::db::{DbError, Pool, begin_tenant};
use shared::domain::TenantId;
use shared::lambda::StartError;
use shared::lambda::http::{HttpError, body_bytes, header, method};
use shared::webhook::sendgrid::{self, Event, SendGridKey};

/// This function sends to no queue.
pub const SENDS_TO: &[Queue] = &[];

/// A SendGrid batch is at most a few hundred KB; anything much larger is not SendGrid.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// Soft bounces (`blocked`) within this many days before an address is suppressed …
pub const SOFT_BOUNCE_WINDOW_DAYS: i32 = 7;
/// … once there are this many.
pub const SOFT_BOUNCE_LIMIT: i64 = 3;

pub struct WebhookDeps {
    pub pool: Pool,
    pub key: SendGridKey,
    pub tolerance_secs: i64,
}

impl WebhookDeps {
    /// `DATABASE_URL` and `SENDGRID_WEBHOOK_PUBLIC_KEY` (base64 DER, as SendGrid shows it), from
    /// the environment or the secrets in `LF_SECRET_ARNS`.
    pub async fn from_env() -> Result<Self, StartError> {
        let source = shared::secrets::from_env().await?;
        let mut r = shared::config::Reader::new(&source);
        let url = r.secret("DATABASE_URL");
        let key = r.required("SENDGRID_WEBHOOK_PUBLIC_KEY");
        let tolerance_secs = r.parsed_or(
            "LF_WEBHOOK_TOLERANCE_SECS",
            sendgrid::DEFAULT_TOLERANCE_SECS,
        );
        r.finish(())?;
        Ok(Self {
            pool: shared::db::connect(&url, 2)?,
            key: SendGridKey::from_base64_der(&key).map_err(|e| StartError::Invalid {
                variable: "SENDGRID_WEBHOOK_PUBLIC_KEY",
                reason: e.to_string(),
            })?,
            tolerance_secs,
        })
    }
}

/// What one delivery did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Ingested {
    pub received: usize,
    pub stored: usize,
    pub duplicates: usize,
    pub unattributed: usize,
    pub suppressed: usize,
}

pub async fn handler(deps: &WebhookDeps, req: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    match ingest(deps, &req, chrono::Utc::now().timestamp()).await {
        Ok(i) => shared::lambda::http::json(200, &json!(i)),
        Err(e) => {
            tracing::warn!(status = e.status, reason = %e.reason, "sendgrid webhook refused");
            e.into_response()
        }
    }
}

/// Verifies, parses and stores one delivery; `now` is unix seconds (tests pin it).
pub async fn ingest(
    deps: &WebhookDeps,
    req: &ApiGatewayV2httpRequest,
    now: i64,
) -> Result<Ingested, HttpError> {
    let events = verified_events(deps, req, now)?;
    let mut out = Ingested {
        received: events.len(),
        ..Ingested::default()
    };
    let (by_tenant, unattributed) = by_tenant(&events);
    out.unattributed = unattributed;
    for (tenant, evs) in by_tenant {
        let stored = store(&deps.pool, tenant, &evs).await.map_err(|e| {
            tracing::error!(%tenant, error = %e, "storing events failed; SendGrid will retry");
            HttpError::new(503, "temporarily unable to store events")
        })?;
        out.stored += stored.events;
        out.duplicates += evs.len() - stored.events;
        out.suppressed += stored.suppressions;
    }
    Ok(out)
}

/// 1. The delivery's events, once its signature is verified on the bytes SendGrid signed. An
///    escape PostgreSQL would refuse in one event must not fail the batch: the body is read as
///    storable text.
fn verified_events(
    deps: &WebhookDeps,
    req: &ApiGatewayV2httpRequest,
    now: i64,
) -> Result<Vec<Event>, HttpError> {
    if method(req) != "POST" {
        return Err(HttpError::method_not_allowed("POST"));
    }
    let body = body_bytes(req, MAX_BODY_BYTES)?;
    deps.key
        .verify(
            header(req, sendgrid::SIGNATURE_HEADER),
            header(req, sendgrid::TIMESTAMP_HEADER),
            &body,
            now,
            deps.tolerance_secs,
        )
        .map_err(|e| HttpError::unauthorized(e.to_string()))?;
    serde_json::from_slice(&shared::domain::storable_json(&body))
        .map_err(|e| HttpError::bad_request(format!("body is not a SendGrid event array: {e}")))
}

/// 2. The events by the tenant their `tenant_id` custom arg names, and how many name none
///    (they are not stored: no tenant can read them).
fn by_tenant(events: &[Event]) -> (BTreeMap<TenantId, Vec<&Event>>, usize) {
    let mut by_tenant: BTreeMap<TenantId, Vec<&Event>> = BTreeMap::new();
    let mut unattributed = 0;
    for e in events {
        match e.arg("tenant_id").and_then(|t| TenantId::parse(t).ok()) {
            Some(t) => by_tenant.entry(t).or_default().push(e),
            None => unattributed += 1,
        }
    }
    if unattributed > 0 {
        tracing::warn!(
            count = unattributed,
            "events without a tenant_id custom arg were not stored"
        );
    }
    (by_tenant, unattributed)
}

/// Public for the plan test (`tests/tests/suite/sendgrid_webhook.rs`), which EXPLAINs it at scale.
pub const INSERT_EVENTS: &str = "
WITH x AS (
    SELECT * FROM jsonb_to_recordset($2::jsonb)
        AS x(key text, email_id uuid, event text, msg text, at timestamptz, reason text, bounce_type text, url text, raw jsonb)
), ins AS (
    INSERT INTO email_events (tenant_id, email_id, sg_event_id, event, sg_message_id, occurred_at, reason, bounce_type, url, raw,
                              recipient)
    SELECT $1, coalesce(
               (SELECT e.id FROM emails e WHERE e.id = x.email_id),
               (SELECT e.id FROM emails e WHERE e.sg_message_id = x.msg)),
           x.key, x.event, x.msg, x.at, x.reason, x.bounce_type, x.url, x.raw, lower(btrim(x.raw->>'email'))
    FROM x
    ON CONFLICT (tenant_id, sg_event_id) DO NOTHING
    RETURNING email_id, event, occurred_at, bounce_type, raw->>'email' AS address
)
SELECT email_id, event, occurred_at, bounce_type, address FROM ins";

const ADVANCE: &str = "
UPDATE emails m SET
    delivery_status = CASE
        WHEN x.rank > coalesce(array_position(ARRAY['processed','deferred','delivered','bounced','dropped','spamreport'], m.delivery_status), 0)
        THEN (ARRAY['processed','deferred','delivered','bounced','dropped','spamreport'])[x.rank] ELSE m.delivery_status END,
    delivered_at = coalesce(m.delivered_at, x.delivered_at),
    opened_at = coalesce(m.opened_at, x.opened_at),
    clicked_at = coalesce(m.clicked_at, x.clicked_at),
    unsubscribed_at = coalesce(m.unsubscribed_at, x.unsubscribed_at)
FROM (
    SELECT email_id,
           max(CASE event WHEN 'processed' THEN 1 WHEN 'deferred' THEN 2 WHEN 'delivered' THEN 3 WHEN 'open' THEN 3 WHEN 'click' THEN 3
                          WHEN 'bounce' THEN 4 WHEN 'dropped' THEN 5 WHEN 'spamreport' THEN 6 ELSE 0 END) AS rank,
           min(at) FILTER (WHERE event IN ('delivered', 'open', 'click')) AS delivered_at,
           min(at) FILTER (WHERE event = 'open') AS opened_at,
           min(at) FILTER (WHERE event = 'click') AS clicked_at,
           min(at) FILTER (WHERE event IN ('unsubscribe', 'group_unsubscribe')) AS unsubscribed_at
    FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[]) AS u(email_id, event, at)
    WHERE email_id IS NOT NULL
    GROUP BY email_id
) x
WHERE m.id = x.email_id";

const SUPPRESS: &str = "
INSERT INTO suppressions (tenant_id, kind, value, reason, source)
SELECT $1, 'email', lower(a), r, 'sendgrid' FROM UNNEST($2::text[], $3::text[]) AS u(a, r)
ON CONFLICT (tenant_id, kind, value) DO NOTHING";

/// Public for the plan test, like [`INSERT_EVENTS`].
pub const SOFT_BOUNCED: &str = "
SELECT recipient AS address FROM email_events
WHERE tenant_id = $4 AND recipient = ANY($1) AND event = 'bounce' AND bounce_type = 'blocked'
  AND occurred_at > now() - make_interval(days => $2)
GROUP BY recipient HAVING count(*) >= $3";

/// What storing one tenant's events wrote.
struct Stored {
    /// Events new to the table (a repeated delivery's are not).
    events: usize,
    /// Suppressions written.
    suppressions: usize,
}

/// One newly stored event, as the insert returns it.
struct Inserted {
    email_id: Option<uuid::Uuid>,
    event: String,
    at: chrono::DateTime<chrono::Utc>,
    bounce_type: Option<String>,
    address: Option<String>,
}

/// Why an event suppresses its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Suppress {
    /// At once, for this reason.
    Now(&'static str),
    /// A soft bounce: once there are [`SOFT_BOUNCE_LIMIT`] within the window.
    IfRepeated,
}

/// Whether an event suppresses its address: a hard bounce, a drop, a spam report or an
/// unsubscribe at once; a soft bounce (`blocked`) when repeated; anything else never.
fn suppression(event: &str, bounce_type: Option<&str>) -> Option<Suppress> {
    Some(match (event, bounce_type) {
        ("bounce", Some("blocked")) => Suppress::IfRepeated,
        ("bounce", _) => Suppress::Now("hard_bounce"),
        ("dropped", _) => Suppress::Now("dropped"),
        ("spamreport", _) => Suppress::Now("spamreport"),
        ("unsubscribe", _) => Suppress::Now("unsubscribe"),
        ("group_unsubscribe", _) => Suppress::Now("group_unsubscribe"),
        _ => return None,
    })
}

/// 3. Stores one tenant's events in one transaction: the new ones inserted (a repeated event
///    is a no-op), their emails' states advanced, and their addresses suppressed as
///    [`suppression`] says.
async fn store(pool: &Pool, tenant: TenantId, events: &[&Event]) -> Result<Stored, DbError> {
    let mut client = pool.get().await?;
    let tx = begin_tenant(&mut client, tenant).await?;
    let inserted = insert_events(&tx, tenant, events).await?;
    advance_emails(&tx, &inserted).await?;
    let suppressions = suppress_addresses(&tx, tenant, &inserted).await?;
    tx.commit().await?;
    Ok(Stored {
        events: inserted.len(),
        suppressions,
    })
}

async fn insert_events(
    tx: &tokio_postgres::Transaction<'_>,
    tenant: TenantId,
    events: &[&Event],
) -> Result<Vec<Inserted>, DbError> {
    let rows: Vec<serde_json::Value> = events
        .iter()
        .map(|e| {
            json!({
                // Only a well-formed id reaches SQL (as uuid, so the primary key is used); any
                // other value of a custom arg someone else can write is no id at all.
                "key": e.dedupe_key(),
                "email_id": e.arg("email_id").and_then(|v| uuid::Uuid::parse_str(v).ok()),
                "event": e.event, "msg": e.message_id(),
                "at": chrono::DateTime::from_timestamp(e.timestamp, 0).unwrap_or_default(),
                "reason": e.reason, "bounce_type": e.bounce_type, "url": e.url,
                "raw": raw(e)
            })
        })
        .collect();
    let inserted = tx
        .query(
            INSERT_EVENTS,
            &[&tenant.as_uuid(), &serde_json::Value::Array(rows)],
        )
        .await?;
    Ok(inserted
        .iter()
        .map(|r| Inserted {
            email_id: r.get("email_id"),
            event: r.get("event"),
            at: r.get("occurred_at"),
            bounce_type: r.get("bounce_type"),
            address: r.get("address"),
        })
        .collect())
}

async fn advance_emails(
    tx: &tokio_postgres::Transaction<'_>,
    inserted: &[Inserted],
) -> Result<(), DbError> {
    if inserted.is_empty() {
        return Ok(());
    }
    let ids: Vec<Option<uuid::Uuid>> = inserted.iter().map(|i| i.email_id).collect();
    let kinds: Vec<&str> = inserted.iter().map(|i| i.event.as_str()).collect();
    let ats: Vec<chrono::DateTime<chrono::Utc>> = inserted.iter().map(|i| i.at).collect();
    tx.execute(ADVANCE, &[&ids, &kinds, &ats]).await?;
    Ok(())
}

/// Writes the suppressions the new events call for; returns how many were new.
async fn suppress_addresses(
    tx: &tokio_postgres::Transaction<'_>,
    tenant: TenantId,
    inserted: &[Inserted],
) -> Result<usize, DbError> {
    let mut suppress: BTreeMap<String, &'static str> = BTreeMap::new();
    let mut soft = Vec::new();
    for i in inserted {
        let Some(address) = i
            .address
            .as_deref()
            .and_then(|a| shared::domain::Email::parse(a).ok())
            .map(|a| a.to_string())
        else {
            continue;
        };
        match suppression(&i.event, i.bounce_type.as_deref()) {
            Some(Suppress::Now(reason)) => {
                suppress.entry(address).or_insert(reason);
            }
            Some(Suppress::IfRepeated) => soft.push(address),
            None => {}
        }
    }
    if !soft.is_empty() {
        let repeated = tx
            .query(
                SOFT_BOUNCED,
                &[
                    &soft,
                    &SOFT_BOUNCE_WINDOW_DAYS,
                    &SOFT_BOUNCE_LIMIT,
                    &tenant.as_uuid(),
                ],
            )
            .await?;
        for r in repeated {
            suppress.entry(r.get("address")).or_insert("soft_bounce");
        }
    }
    if suppress.is_empty() {
        return Ok(0);
    }
    let addrs: Vec<&str> = suppress.keys().map(String::as_str).collect();
    let reasons: Vec<&str> = suppress.values().copied().collect();
    Ok(tx
        .execute(SUPPRESS, &[&tenant.as_uuid(), &addrs, &reasons])
        .await? as usize)
}

/// The event as it is kept: its custom args and any other field SendGrid adds are stored as they
/// came, every string in them at most `capped::RAW_STRING` characters.
fn raw(e: &Event) -> serde_json::Value {
    let mut v = serde_json::to_value(e).unwrap_or_default();
    shared::domain::capped::cap_strings(&mut v, shared::domain::capped::RAW_STRING);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_delivery_failures_and_opt_outs_suppress_and_a_soft_bounce_only_when_repeated() {
        assert_eq!(
            suppression("bounce", Some("blocked")),
            Some(Suppress::IfRepeated)
        );
        assert_eq!(
            suppression("bounce", Some("bounce")),
            Some(Suppress::Now("hard_bounce"))
        );
        assert_eq!(
            suppression("bounce", None),
            Some(Suppress::Now("hard_bounce"))
        );
        for e in ["dropped", "spamreport", "unsubscribe", "group_unsubscribe"] {
            assert_eq!(suppression(e, None), Some(Suppress::Now(e)));
        }
        for e in [
            "processed",
            "deferred",
            "delivered",
            "open",
            "click",
            "anything",
        ] {
            assert_eq!(suppression(e, None), None, "{e}");
        }
    }
}
