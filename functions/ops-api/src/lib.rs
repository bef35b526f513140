//! ops-api: the operations API, one tenant per API key (`Authorization: Bearer lf_…`).
//!
//! Every query runs in a transaction scoped to the key's tenant, so row-level security — not
//! this code — keeps tenants apart. Routes (all under `/v1`, described in `docs/openapi.yaml`):
//! health; runs and one run's stage percentiles, vendor usage and cost; campaigns (list,
//! create, update — validated by `shared::campaign`); a campaign's funnel; experiment results;
//! cost per lead by tier and compute beside vendor cost per day; erasure; a purchase (its buyer included) and its resend (`Idempotency-Key`); the tenant's vendor
//! pauses (list, pause, resume — the kill switch for its own work); and CSV exports of leads, emails, purchases and costs,
//! paged by a keyset cursor so memory stays bounded however large the table (`X-Next-After`
//! carries the cursor of the next page).

pub mod keys;

use std::collections::HashMap;
use std::sync::Arc;

use aws_lambda_events::event::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use futures_util::{StreamExt, pin_mut};
use serde_json::{Value, json};
use shared::bus::{Bus, Queue};
use shared::db::{Pool, begin_tenant};
use shared::domain::{CampaignId, TenantId};
use shared::lambda::http::{HttpError, body_bytes, header, method, path, text, with_header};
use shared::store::ObjectStore;
use shared::vendors::pauses;

/// The queues this function sends to (the template grants exactly these): a purchase's resend.
pub const SENDS_TO: &[Queue] = &[Queue::Fulfilment];
/// Request bodies are small JSON documents.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Rows per CSV page by default, and at most.
pub const DEFAULT_PAGE: i64 = 5_000;
pub const MAX_PAGE: i64 = 20_000;
/// A CSV page's body, JSON-escaped, stays under this: Lambda returns at most 6 MB, headers and
/// the response's JSON envelope included.
pub const MAX_PAGE_JSON_BYTES: usize = 5 * 1024 * 1024;
/// A cell longer than this is cut (with a marker): one row can never outgrow a page.
pub const MAX_CELL_CHARS: usize = 16 * 1024;

/// A cell as a spreadsheet may safely open it: text starting with `=`, `+`, `-`, `@`, a tab or
/// a carriage return would be read as a formula, so it gets a leading `'` (OWASP's rule against
/// CSV injection through business names, subjects and addresses); and at most `MAX_CELL_CHARS`.
pub fn safe_cell(v: String) -> String {
    let v = if v.chars().count() > MAX_CELL_CHARS {
        let mut cut: String = v.chars().take(MAX_CELL_CHARS).collect();
        cut.push_str("…[cut]");
        cut
    } else {
        v
    };
    if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{v}")
    } else {
        v
    }
}

/// One CSV record (quoted as needed, with its line end).
fn csv_record(fields: impl IntoIterator<Item = String>) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(fields)?;
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

/// The length of `bytes` (UTF-8) as a JSON string's contents: quotes, backslashes and control
/// characters are escaped.
fn json_len(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum()
}

pub struct OpsApi {
    pub pool: Pool,
    pub bus: Arc<dyn Bus>,
    pub store: Arc<dyn ObjectStore>,
    /// The queues whose depth health reports.
    pub queues: Vec<String>,
}

/// Every hop and its DLQ.
pub fn wired_queues() -> Vec<String> {
    Queue::ALL
        .iter()
        .flat_map(|q| [q.name().to_owned(), q.dlq().to_owned()])
        .collect()
}

/// A JSON request body as `T`; a 400 naming what was wrong, and in which field, otherwise.
fn body_of<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, HttpError> {
    shared::lambda::http::parse_json(body).map_err(|e| HttpError::bad_request(format!("body: {e}")))
}

/// A person's address from a request; a 400 naming what was wrong otherwise.
fn email_of(raw: &str) -> Result<shared::domain::Email, HttpError> {
    shared::domain::Email::parse(raw).map_err(|e| HttpError::bad_request(format!("email: {e}")))
}

fn internal(e: impl std::fmt::Display) -> HttpError {
    tracing::error!(error = %e, "ops api failed");
    HttpError::new(503, "temporarily unable to answer; try again")
}

fn ok(v: &Value) -> ApiGatewayV2httpResponse {
    shared::lambda::http::json(200, v)
}

fn query(req: &ApiGatewayV2httpRequest) -> HashMap<String, String> {
    req.raw_query_string
        .as_deref()
        .map(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).unwrap_or_default())
        .unwrap_or_default()
        .into_iter()
        .collect()
}

fn date(
    q: &HashMap<String, String>,
    name: &str,
    default: chrono::NaiveDate,
) -> Result<chrono::NaiveDate, HttpError> {
    // RFC 3339's full-date exactly (chrono alone would take one-digit months and signed years).
    let shaped = |v: &str| {
        let b = v.as_bytes();
        b.len() == 10
            && b.iter().enumerate().all(|(i, c)| {
                if i == 4 || i == 7 {
                    *c == b'-'
                } else {
                    c.is_ascii_digit()
                }
            })
    };
    match q.get(name) {
        None => Ok(default),
        Some(v) => chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
            .ok()
            .filter(|_| shaped(v))
            .ok_or_else(|| {
                HttpError::bad_request(format!("{name}: {v:?} is not a date (YYYY-MM-DD)"))
            }),
    }
}

/// An integer query parameter within `min..=max` (the document's bounds): anything else is a
/// 400 naming them, never silently clamped.
fn number(
    q: &HashMap<String, String>,
    name: &str,
    default: i64,
    (min, max): (i64, i64),
) -> Result<i64, HttpError> {
    let Some(v) = q.get(name) else {
        return Ok(default);
    };
    match v.parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(HttpError::bad_request(format!(
            "{name}: {v:?} is not a whole number from {min} to {max}"
        ))),
    }
}

/// A database error as the caller should see it: a constraint or data error the validation
/// did not catch is the request's fault (400, or 409 for a conflict with another row), named by
/// the constraint; only the rest is unavailability (503, retry).
fn db_error(e: &shared::db::DbError) -> HttpError {
    use tokio_postgres::error::SqlState;
    let Some(code) = e.sqlstate() else {
        return internal(e);
    };
    let constraint = match e {
        shared::db::DbError::Postgres(pg) => pg
            .as_db_error()
            .and_then(|d| d.constraint().or(d.column()))
            .map(str::to_owned),
        _ => None,
    }
    .unwrap_or_else(|| "a rule of the stored data".to_owned());
    if *code == SqlState::UNIQUE_VIOLATION || *code == SqlState::EXCLUSION_VIOLATION {
        HttpError::new(409, format!("conflicts with another row ({constraint})"))
    } else if code.code().starts_with("23") {
        HttpError::bad_request(format!("breaks {constraint}"))
    } else if code.code().starts_with("22") {
        HttpError::bad_request("a value cannot be stored as given (encoding or range)")
    } else {
        internal(e)
    }
}

/// Why a resend was refused, as the caller should see it.
fn resend_error(e: shared::pipeline::resend::ResendError) -> HttpError {
    use shared::pipeline::resend::ResendError as E;
    match e {
        E::BadKey(_) => HttpError::bad_request(format!("Idempotency-Key: {e}")),
        E::NotFound(_) => HttpError::not_found("no such purchase"),
        E::NotPaid { .. } | E::Disputed { .. } | E::NoAddress(_) => {
            HttpError::new(409, e.to_string())
        }
        E::Db(e) => internal(e),
        E::Bus(e) => internal(e),
    }
}

/// The longest pause the API sets with an end (30 days); a longer one is open-ended.
const MAX_PAUSE_MINUTES: u32 = 43_200;

fn pause_json(p: &pauses::VendorPause) -> Value {
    json!({
        "vendor": p.vendor, "scope": if p.tenant.is_some() { "tenant" } else { "all" },
        "reason": p.reason, "paused_at": p.paused_at, "until": p.until,
    })
}

/// Why a pause or resume was refused, as the caller should see it.
fn pause_error(e: pauses::PauseError) -> HttpError {
    use pauses::PauseError as E;
    match e {
        E::UnknownVendor(_) => HttpError::bad_request(format!("vendor: {e}")),
        E::BadReason(_) | E::EndPassed(_) => HttpError::bad_request(e.to_string()),
        E::Db(e) => db_error(&e),
    }
}

/// A UUID in its hyphenated form only (the document's `format: uuid`; the crate alone would
/// also take the simple, braced and URN forms).
fn uuid_of(what: &str, v: &str) -> Result<uuid::Uuid, HttpError> {
    uuid::Uuid::parse_str(v)
        .ok()
        .filter(|_| v.len() == 36)
        .ok_or_else(|| HttpError::bad_request(format!("{what}: {v:?} is not a UUID")))
}

const TOUCH_KEY: &str = "UPDATE api_keys SET last_used_at = now() WHERE id = $1";
const CAMPAIGN_EXISTS: &str = "SELECT 1 FROM campaigns WHERE id = $1";
const LATEST_RUN: &str =
    "SELECT id, kind, status, started_at, finished_at FROM runs ORDER BY started_at DESC LIMIT 1";
const RECENT_RUNS: &str = "SELECT id, kind, status, run_date, started_at, finished_at, stats FROM runs ORDER BY started_at DESC LIMIT $1";
const RUN: &str = "SELECT kind, status, started_at, finished_at, stats FROM runs WHERE id = $1";
const RUN_STAGES: &str = "SELECT stage, total, success, errors, skipped, p50_ms, p95_ms, p99_ms FROM run_stage_stats WHERE run_id = $1 ORDER BY stage";
const RUN_VENDORS: &str = "SELECT vendor, calls, errors, tokens_in, tokens_out, cost_micros, rate_limit_hits, quota_exhausted FROM run_vendor_usage WHERE run_id = $1 ORDER BY vendor";
const CAMPAIGNS: &str = "SELECT id, name, vertical, status, daily_quota, zip_codes, city, qualify_tiers,
        EXISTS (SELECT 1 FROM targeting_cursors t WHERE t.campaign_id = c.id)
        AND NOT EXISTS (SELECT 1 FROM targeting_cursors t WHERE t.campaign_id = c.id AND t.exhausted_at IS NULL) AS exhausted
 FROM campaigns c ORDER BY name";

impl OpsApi {
    pub async fn handler(&self, req: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
        match self.handle(&req).await {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(status = e.status, reason = %e.reason, "ops api refused a request");
                e.into_response()
            }
        }
    }

    async fn tenant(&self, req: &ApiGatewayV2httpRequest) -> Result<TenantId, HttpError> {
        let presented = header(req, "authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| {
                HttpError::unauthorized("an API key is required: Authorization: Bearer lf_…")
            })?;
        let (key, tenant) = keys::authenticate(&self.pool, presented.trim())
            .await
            .map_err(internal)?
            .ok_or_else(|| {
                HttpError::unauthorized("the API key is not valid or has been revoked")
            })?;
        let mut c = self.pool.get().await.map_err(internal)?;
        let tx = begin_tenant(&mut c, tenant).await.map_err(internal)?;
        tx.execute(TOUCH_KEY, &[&key]).await.map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        Ok(tenant)
    }

    pub async fn handle(
        &self,
        req: &ApiGatewayV2httpRequest,
    ) -> Result<ApiGatewayV2httpResponse, HttpError> {
        let body = body_bytes(req, MAX_BODY_BYTES)?;
        let tenant = self.tenant(req).await?;
        let m = method(req).to_owned();
        let p = path(req).to_owned();
        let parts: Vec<&str> = p.trim_matches('/').split('/').collect();
        let q = query(req);
        match (m.as_str(), parts.as_slice()) {
            ("GET", ["v1", "health"]) => self.health(tenant).await,
            ("GET", ["v1", "runs"]) => self.runs(tenant, &q).await,
            ("GET", ["v1", "runs", id]) => self.run(tenant, uuid_of("run id", id)?).await,
            ("GET", ["v1", "campaigns"]) => self.campaigns(tenant).await,
            ("POST", ["v1", "campaigns"]) => {
                let spec = shared::campaign::CampaignFile::from_json(&body)
                    .map_err(|e| HttpError::bad_request(e.to_string()))?;
                let id = spec
                    .upsert(&mut self.pool.clone(), tenant)
                    .await
                    .map_err(campaign_error)?;
                Ok(shared::lambda::http::json(201, &json!({ "id": id })))
            }
            ("PUT", ["v1", "campaigns", id]) => {
                let id = CampaignId::from_uuid(uuid_of("campaign id", id)?);
                let spec = shared::campaign::CampaignFile::from_json(&body)
                    .map_err(|e| HttpError::bad_request(e.to_string()))?;
                if spec
                    .update(&self.pool, tenant, id)
                    .await
                    .map_err(campaign_error)?
                {
                    Ok(ok(&json!({ "id": id })))
                } else {
                    Err(HttpError::not_found("no such campaign"))
                }
            }
            ("GET", ["v1", "campaigns", id, "funnel"]) => {
                let id = uuid_of("campaign id", id)?;
                let today = chrono::Utc::now().date_naive();
                let to = date(&q, "to", today)?;
                let from = date(&q, "from", to - chrono::Duration::days(29))?;
                // A period that ends before it starts is empty: its funnel is zeros.
                let mut c = self.pool.get().await.map_err(internal)?;
                let tx = begin_tenant(&mut c, tenant).await.map_err(internal)?;
                let known = tx
                    .query_opt(CAMPAIGN_EXISTS, &[&id])
                    .await
                    .map_err(internal)?
                    .is_some();
                if !known {
                    return Err(HttpError::not_found("no such campaign"));
                }
                // A period with no activity is a funnel of zeros, not an absent one.
                let funnel = shared::analytics::funnels(&tx, Some(id), from, to)
                    .await
                    .map_err(internal)?
                    .into_iter()
                    .next()
                    .unwrap_or(shared::analytics::Funnel {
                        campaign_id: id,
                        ..shared::analytics::Funnel::default()
                    });
                tx.commit().await.map_err(internal)?;
                Ok(ok(&json!({ "from": from, "to": to, "funnel": funnel })))
            }
            ("GET", ["v1", "experiments"]) => {
                self.with_tx(tenant, async |tx| {
                    Ok(json!({ "variants": shared::analytics::experiment_results(tx).await? }))
                })
                .await
            }
            ("GET", ["v1", "costs", "tiers"]) => {
                let days = number(&q, "days", 30, (1, 3650))?;
                let since = chrono::Utc::now() - chrono::Duration::days(days);
                self.with_tx(tenant, async |tx| {
                    Ok(json!({ "tiers": shared::analytics::cost_per_tier(tx, since).await? }))
                })
                .await
            }
            ("GET", ["v1", "costs", "daily"]) => {
                let to = date(&q, "to", chrono::Utc::now().date_naive())?;
                let from = date(&q, "from", to - chrono::Duration::days(29))?;
                self.with_tx(tenant, async |tx| {
                    let days = shared::analytics::daily_costs(tx, from, to).await?;
                    Ok(json!({ "from": from, "to": to, "days": days }))
                })
                .await
            }
            ("POST", ["v1", "erasure"]) => self.erase(tenant, &body).await,
            ("POST", ["v1", "subject-export"]) => self.subject_export(tenant, &body).await,
            ("GET", ["v1", "purchases", id]) => {
                self.purchase(tenant, uuid_of("purchase id", id)?).await
            }
            ("POST", ["v1", "purchases", id, "resend"]) => {
                let id = uuid_of("purchase id", id)?;
                let key = header(req, "idempotency-key").ok_or_else(|| {
                    HttpError::bad_request(
                        "Idempotency-Key is required: a resend is made once per key",
                    )
                })?;
                let resend = shared::pipeline::resend::request_resend(
                    &self.pool,
                    self.bus.as_ref(),
                    tenant,
                    id,
                    key,
                )
                .await
                .map_err(resend_error)?;
                Ok(shared::lambda::http::json(202, &json!(resend)))
            }
            ("GET", ["v1", "exports", file]) => self.export(tenant, file, &q).await,
            ("GET", ["v1", "vendors", "pauses"]) => self.vendor_pauses(tenant).await,
            ("POST", ["v1", "vendors", vendor, "pause"]) => {
                self.pause_vendor(tenant, vendor, &body).await
            }
            ("POST", ["v1", "vendors", vendor, "resume"]) => {
                self.resume_vendor(tenant, vendor).await
            }
            (
                _,
                ["v1", "health" | "runs" | "experiments"]
                | ["v1", "runs" | "exports" | "purchases", _]
                | ["v1", "vendors", "pauses"]
                | ["v1", "costs", "tiers" | "daily"]
                | ["v1", "campaigns", _, "funnel"],
            ) => Err(HttpError::method_not_allowed("GET")),
            (_, ["v1", "campaigns"]) => Err(HttpError::method_not_allowed("GET, POST")),
            (_, ["v1", "campaigns", _]) => Err(HttpError::method_not_allowed("PUT")),
            (
                _,
                ["v1", "erasure"]
                | ["v1", "subject-export"]
                | ["v1", "purchases", _, "resend"]
                | ["v1", "vendors", _, "pause" | "resume"],
            ) => Err(HttpError::method_not_allowed("POST")),
            _ => Err(HttpError::not_found("no such endpoint")),
        }
    }

    /// One statement's rows under the tenant's RLS, in one round trip ([`shared::db::query_alone`]),
    /// shaped by `f`: the reads that need no more than one statement.
    async fn read_alone(
        &self,
        tenant: TenantId,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        f: impl FnOnce(&[tokio_postgres::Row]) -> Value,
    ) -> Result<ApiGatewayV2httpResponse, HttpError> {
        let c = self.pool.get().await.map_err(internal)?;
        let rows = shared::db::query_alone(&c, tenant, sql, params)
            .await
            .map_err(internal)?;
        Ok(ok(&f(&rows)))
    }

    async fn with_tx(
        &self,
        tenant: TenantId,
        f: impl AsyncFnOnce(&tokio_postgres::Transaction<'_>) -> Result<Value, shared::db::DbError>,
    ) -> Result<ApiGatewayV2httpResponse, HttpError> {
        let mut c = self.pool.get().await.map_err(internal)?;
        let tx = begin_tenant(&mut c, tenant).await.map_err(internal)?;
        let v = f(&tx).await.map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        Ok(ok(&v))
    }

    async fn health(&self, tenant: TenantId) -> Result<ApiGatewayV2httpResponse, HttpError> {
        // Every queue is reported: its depth, or why it could not be read (a missing grant or
        // URL in the deployment is a finding, not a gap in the answer).
        let mut depths = serde_json::Map::new();
        let mut degraded = false;
        for q in &self.queues {
            let entry = match self.bus.depth(q).await {
                Ok(d) => json!({ "visible": d.visible, "in_flight": d.in_flight }),
                Err(e) => {
                    tracing::warn!(queue = %q, error = %e, "queue depth not readable");
                    degraded = true;
                    json!({ "error": e.to_string() })
                }
            };
            depths.insert(q.clone(), entry);
        }
        let status = if degraded { "degraded" } else { "ok" };
        self.with_tx(tenant, async |tx| {
            let last = tx
                .query_opt(LATEST_RUN, &[])
                .await?;
            Ok(json!({
                "status": status,
                "database": "ok",
                "queues": depths,
                "last_run": last.map(|r| json!({
                    "id": r.get::<_, uuid::Uuid>("id"), "kind": r.get::<_, String>("kind"), "status": r.get::<_, String>("status"),
                    "started_at": r.get::<_, chrono::DateTime<chrono::Utc>>("started_at"),
                    "finished_at": r.get::<_, Option<chrono::DateTime<chrono::Utc>>>("finished_at"),
                })),
            }))
        })
        .await
    }

    async fn runs(
        &self,
        tenant: TenantId,
        q: &HashMap<String, String>,
    ) -> Result<ApiGatewayV2httpResponse, HttpError> {
        let limit = number(q, "limit", 20, (1, 200))?;
        self.read_alone(tenant, RECENT_RUNS, &[&limit], |rows| {
            json!({ "runs": rows.iter().map(|r| json!({
                "id": r.get::<_, uuid::Uuid>("id"), "kind": r.get::<_, String>("kind"), "status": r.get::<_, String>("status"),
                "run_date": r.get::<_, chrono::NaiveDate>("run_date"), "started_at": r.get::<_, chrono::DateTime<chrono::Utc>>("started_at"),
                "finished_at": r.get::<_, Option<chrono::DateTime<chrono::Utc>>>("finished_at"), "stats": r.get::<_, Value>("stats"),
            })).collect::<Vec<_>>() })
        })
        .await
    }

    /// One purchase, the buyer's address included: what a `PurchasePaid` event's consumer reads
    /// (the event names the purchase, not the buyer).
    async fn purchase(
        &self,
        tenant: TenantId,
        id: uuid::Uuid,
    ) -> Result<ApiGatewayV2httpResponse, HttpError> {
        let mut c = self.pool.get().await.map_err(internal)?;
        let tx = begin_tenant(&mut c, tenant).await.map_err(internal)?;
        let p = tx
            .query_opt(PURCHASE, &[&id])
            .await
            .map_err(internal)?
            .ok_or_else(|| HttpError::not_found("no such purchase"))?;
        tx.commit().await.map_err(internal)?;
        type At = Option<chrono::DateTime<chrono::Utc>>;
        Ok(ok(&json!({
            "id": id, "report_id": p.get::<_, uuid::Uuid>("report_id"), "business_id": p.get::<_, uuid::Uuid>("business_id"),
            "business": p.get::<_, String>("business"), "campaign_id": p.get::<_, Option<uuid::Uuid>>("campaign_id"),
            "status": p.get::<_, String>("status"), "dispute_status": p.get::<_, Option<String>>("dispute_status"),
            "amount_cents": p.get::<_, i64>("amount_cents"), "refunded_cents": p.get::<_, i64>("refunded_cents"),
            "currency": p.get::<_, String>("currency"), "customer_email": p.get::<_, Option<String>>("customer_email"),
            "created_at": p.get::<_, chrono::DateTime<chrono::Utc>>("created_at"), "paid_at": p.get::<_, At>("paid_at"),
            "fulfilled_at": p.get::<_, At>("fulfilled_at"),
        })))
    }

    async fn run(
        &self,
        tenant: TenantId,
        id: uuid::Uuid,
    ) -> Result<ApiGatewayV2httpResponse, HttpError> {
        let mut c = self.pool.get().await.map_err(internal)?;
        let tx = begin_tenant(&mut c, tenant).await.map_err(internal)?;
        let run = tx
            .query_opt(RUN, &[&id])
            .await
            .map_err(internal)?
            .ok_or_else(|| HttpError::not_found("no such run"))?;
        let stages = tx.query(RUN_STAGES, &[&id]).await.map_err(internal)?;
        let vendors = tx.query(RUN_VENDORS, &[&id]).await.map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        let cost: i64 = vendors.iter().map(|v| v.get::<_, i64>("cost_micros")).sum();
        Ok(ok(&json!({
            "id": id, "kind": run.get::<_, String>("kind"), "status": run.get::<_, String>("status"),
            "started_at": run.get::<_, chrono::DateTime<chrono::Utc>>("started_at"),
            "finished_at": run.get::<_, Option<chrono::DateTime<chrono::Utc>>>("finished_at"), "stats": run.get::<_, Value>("stats"),
            "stages": stages.iter().map(|s| json!({
                "stage": s.get::<_, String>("stage"), "total": s.get::<_, i32>("total"), "success": s.get::<_, i32>("success"), "errors": s.get::<_, i32>("errors"),
                "skipped": s.get::<_, i32>("skipped"), "p50_ms": s.get::<_, Option<f64>>("p50_ms"), "p95_ms": s.get::<_, Option<f64>>("p95_ms"), "p99_ms": s.get::<_, Option<f64>>("p99_ms"),
            })).collect::<Vec<_>>(),
            "vendors": vendors.iter().map(|v| json!({
                "vendor": v.get::<_, String>("vendor"), "calls": v.get::<_, i32>("calls"), "errors": v.get::<_, i32>("errors"), "tokens_in": v.get::<_, i64>("tokens_in"),
                "tokens_out": v.get::<_, i64>("tokens_out"), "cost_micros": v.get::<_, i64>("cost_micros"), "rate_limit_hits": v.get::<_, i32>("rate_limit_hits"), "quota_exhausted": v.get::<_, bool>("quota_exhausted"),
            })).collect::<Vec<_>>(),
            "cost_micros": cost,
        })))
    }

    async fn campaigns(&self, tenant: TenantId) -> Result<ApiGatewayV2httpResponse, HttpError> {
        self.read_alone(tenant, CAMPAIGNS, &[], |rows| {
            json!({ "campaigns": rows.iter().map(|r| json!({
                "id": r.get::<_, uuid::Uuid>("id"), "name": r.get::<_, String>("name"), "vertical": r.get::<_, String>("vertical"),
                "status": r.get::<_, String>("status"), "daily_quota": r.get::<_, i32>("daily_quota"), "zip_codes": r.get::<_, Vec<String>>("zip_codes"),
                "city": r.get::<_, Option<String>>("city"), "qualify_tiers": r.get::<_, Vec<String>>("qualify_tiers"),
                "exhausted": r.get::<_, bool>("exhausted"),
            })).collect::<Vec<_>>() })
        })
        .await
    }

    /// The pauses that hold this tenant's work: its own and the fleet's.
    async fn vendor_pauses(&self, tenant: TenantId) -> Result<ApiGatewayV2httpResponse, HttpError> {
        let mut c = self.pool.get().await.map_err(internal)?;
        let tx = begin_tenant(&mut c, tenant).await.map_err(internal)?;
        let open = pauses::open(&tx).await.map_err(pause_error)?;
        tx.commit().await.map_err(internal)?;
        Ok(ok(
            &json!({ "pauses": open.iter().map(pause_json).collect::<Vec<_>>() }),
        ))
    }

    /// Pauses a vendor for this tenant's work (the fleet's pauses are the operator's, in the CLI).
    async fn pause_vendor(
        &self,
        tenant: TenantId,
        vendor: &str,
        body: &[u8],
    ) -> Result<ApiGatewayV2httpResponse, HttpError> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Req {
            reason: String,
            /// How long the pause lasts; absent: until resumed.
            #[serde(default, deserialize_with = "shared::campaign::whole_number_opt")]
            minutes: Option<u32>,
        }
        let vendor = pauses::vendor(vendor).map_err(pause_error)?;
        let r: Req = body_of(body)?;
        let until = match r.minutes {
            None => None,
            Some(m @ 1..=MAX_PAUSE_MINUTES) => {
                Some(chrono::Utc::now() + chrono::Duration::minutes(i64::from(m)))
            }
            Some(m) => {
                return Err(HttpError::bad_request(format!(
                    "minutes: {m} is outside 1..={MAX_PAUSE_MINUTES}"
                )));
            }
        };
        let mut c = self.pool.get().await.map_err(internal)?;
        let tx = begin_tenant(&mut c, tenant).await.map_err(internal)?;
        let p = pauses::pause(&tx, vendor, Some(tenant), &r.reason, until, "ops-api")
            .await
            .map_err(pause_error)?;
        tx.commit().await.map_err(internal)?;
        Ok(ok(&pause_json(&p)))
    }

    async fn resume_vendor(
        &self,
        tenant: TenantId,
        vendor: &str,
    ) -> Result<ApiGatewayV2httpResponse, HttpError> {
        let vendor = pauses::vendor(vendor).map_err(pause_error)?;
        let mut c = self.pool.get().await.map_err(internal)?;
        let tx = begin_tenant(&mut c, tenant).await.map_err(internal)?;
        let ended = pauses::resume(&tx, vendor, Some(tenant), "ops-api")
            .await
            .map_err(pause_error)?;
        tx.commit().await.map_err(internal)?;
        if ended {
            Ok(ok(&json!({ "vendor": vendor, "resumed": true })))
        } else {
            Err(HttpError::not_found(format!(
                "{vendor} is not paused for this tenant (a pause for every tenant is the operator's to end)"
            )))
        }
    }

    async fn erase(
        &self,
        tenant: TenantId,
        body: &[u8],
    ) -> Result<ApiGatewayV2httpResponse, HttpError> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Req {
            email: Option<String>,
            business_id: Option<String>,
        }
        let r: Req = body_of(body)?;
        let erased = match (r.email, r.business_id) {
            (Some(e), None) => {
                let email = email_of(&e)?;
                shared::erasure::erase_email(
                    &self.pool,
                    self.store.as_ref(),
                    tenant,
                    &email,
                    "ops-api",
                )
                .await
                .map_err(internal)?
            }
            (None, Some(b)) => {
                let id = shared::domain::BusinessId::from_uuid(uuid_of("business_id", &b)?);
                shared::erasure::erase_business(
                    &self.pool,
                    self.store.as_ref(),
                    tenant,
                    id,
                    "ops-api",
                )
                .await
                .map_err(internal)?
                .ok_or_else(|| HttpError::not_found("no such business"))?
            }
            _ => {
                return Err(HttpError::bad_request(
                    "give exactly one of email, business_id",
                ));
            }
        };
        Ok(ok(&json!({ "erased": erased })))
    }

    /// Everything held about an address (the access request; the address travels in the body,
    /// never in a URL that access logs keep).
    async fn subject_export(
        &self,
        tenant: TenantId,
        body: &[u8],
    ) -> Result<ApiGatewayV2httpResponse, HttpError> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Req {
            email: String,
        }
        let r: Req = body_of(body)?;
        let email = email_of(&r.email)?;
        let held = shared::subject::export_subject(&self.pool, self.store.as_ref(), tenant, &email)
            .await
            .map_err(internal)?;
        Ok(ok(&json!(held)))
    }

    async fn export(
        &self,
        tenant: TenantId,
        file: &str,
        q: &HashMap<String, String>,
    ) -> Result<ApiGatewayV2httpResponse, HttpError> {
        let (sql, key) = match file {
            "leads.csv" => (EXPORT_LEADS, ExportKey::Uuid),
            "emails.csv" => (EXPORT_EMAILS, ExportKey::Uuid),
            "purchases.csv" => (EXPORT_PURCHASES, ExportKey::Uuid),
            "costs.csv" => (EXPORT_COSTS, ExportKey::Int8),
            other => {
                return Err(HttpError::not_found(format!(
                    "no export {other:?}: leads.csv, emails.csv, purchases.csv, costs.csv"
                )));
            }
        };
        let today = chrono::Utc::now().date_naive();
        let to = date(q, "to", today)?;
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
        let from = date(q, "from", epoch)?;
        // A period that ends before it starts has no rows (the query finds none).
        let limit = number(q, "limit", DEFAULT_PAGE, (1, MAX_PAGE))?;
        let from_ts = from.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
        let to_ts = (to + chrono::Duration::days(1))
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc();
        // An empty cursor is the first page, as no cursor is; a page starts after the cursor
        // or at the period's start, whichever is later.
        let (start_ts, start_id) = match q.get("after").filter(|a| !a.is_empty()) {
            Some(a) => Some(key.cursor(a)?),
            None => None,
        }
        .filter(|(at, _)| *at >= from_ts)
        .unwrap_or((from_ts, key.least().to_owned()));
        let mut c = self.pool.get().await.map_err(internal)?;
        let tx = begin_tenant(&mut c, tenant).await.map_err(internal)?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
            [&start_ts, &start_id, &to_ts, &limit];
        let mut body: Vec<u8> = Vec::new();
        let mut n = 0i64;
        let mut last: Option<String> = None;
        // The page ends early, with a cursor, when one more row would take the response past
        // what Lambda can return (measured as the body's JSON-escaped size: the response is JSON).
        let (mut escaped, mut cut) = (0usize, false);
        {
            let rows = tx.query_raw(sql, params).await.map_err(internal)?;
            pin_mut!(rows);
            while let Some(row) = rows.next().await {
                let row = row.map_err(internal)?;
                let mut bytes = if n == 0 {
                    csv_record(row.columns().iter().skip(1).map(|c| c.name().to_owned()))
                        .map_err(internal)?
                } else {
                    Vec::new()
                };
                // The first column is the page's cursor, not part of the file.
                let cursor: Option<String> = row.get(0);
                let fields: Vec<String> = (1..row.len())
                    .map(|i| row.get::<_, Option<String>>(i).unwrap_or_default())
                    .collect();
                bytes.extend(csv_record(fields.into_iter().map(safe_cell)).map_err(internal)?);
                let grown = json_len(&bytes);
                if n > 0 && escaped + grown > MAX_PAGE_JSON_BYTES {
                    cut = true;
                    break;
                }
                body.extend(bytes);
                escaped += grown;
                last = cursor;
                n += 1;
            }
        }
        tx.commit().await.map_err(internal)?;
        let mut resp = text(
            200,
            "text/csv; charset=utf-8",
            String::from_utf8_lossy(&body).into_owned(),
        );
        resp = with_header(
            resp,
            "Content-Disposition",
            &format!("attachment; filename=\"{file}\""),
        );
        resp = with_header(resp, "X-Rows", &n.to_string());
        if (n == limit || cut)
            && let Some(l) = last
        {
            resp = with_header(resp, "X-Next-After", &l);
        }
        Ok(resp)
    }
}

fn campaign_error(e: shared::campaign::CampaignError) -> HttpError {
    match e {
        shared::campaign::CampaignError::Db(d)
            if d.sqlstate() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) =>
        {
            HttpError::new(409, "another campaign already has this name")
        }
        shared::campaign::CampaignError::Db(d) => db_error(&d),
        other => HttpError::bad_request(other.to_string()),
    }
}

/// How an export's rows are keyed: a page is the rows after a (time, id) cursor, in the order
/// of the tenant's (time, id) index (V27) — the order the rows were written, so a page reads
/// neighbouring heap pages, not a random UUID's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExportKey {
    Uuid,
    Int8,
}

impl ExportKey {
    /// The least id, so that (the period's start, it) comes before every row of the period.
    fn least(self) -> &'static str {
        match self {
            ExportKey::Uuid => "00000000-0000-0000-0000-000000000000",
            ExportKey::Int8 => "-9223372036854775808",
        }
    }

    /// A cursor from `X-Next-After`: `<microseconds since the epoch>.<id>`.
    fn cursor(self, a: &str) -> Result<(chrono::DateTime<chrono::Utc>, String), HttpError> {
        let bad =
            || HttpError::bad_request(format!("after: {a:?} is not a cursor from X-Next-After"));
        let (micros, id) = a.split_once('.').ok_or_else(bad)?;
        let at = (1..=17)
            .contains(&micros.len())
            .then_some(micros)
            .filter(|m| m.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|m| m.parse::<i64>().ok())
            .and_then(chrono::DateTime::from_timestamp_micros)
            .ok_or_else(bad)?;
        let valid = match self {
            ExportKey::Uuid => uuid_of("after", id).is_ok(),
            ExportKey::Int8 => {
                (1..=18).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit())
            }
        };
        if !valid {
            return Err(bad());
        }
        Ok((at, id.to_owned()))
    }
}

// Each export: ($1, $2) the (time, id) the page starts after, $3 the period's end, $4 the
// limit; the first column is the next page's cursor, every other column text. The plain
// `>= $1` beside the row comparison is the index's range bound.
const EXPORT_LEADS: &str = "
SELECT (extract(epoch FROM b.created_at) * 1000000)::int8::text || '.' || b.id::text AS cursor,
       b.id::text, b.name, b.website_url, b.email, b.phone_e164, b.city, b.zip, b.campaign_id::text,
       s.score::text, s.tier::text, s.qualified::text, b.created_at::text
FROM businesses b
LEFT JOIN LATERAL (SELECT score, tier, qualified FROM scores WHERE business_id = b.id ORDER BY scored_at DESC LIMIT 1) s ON true
WHERE b.created_at >= $1 AND (b.created_at, b.id) > ($1, $2::text::uuid) AND b.created_at < $3
ORDER BY b.created_at, b.id LIMIT $4";

const EXPORT_EMAILS: &str = "
SELECT (extract(epoch FROM e.created_at) * 1000000)::int8::text || '.' || e.id::text AS cursor,
       e.id::text, e.kind, e.campaign_id::text, e.business_id::text, e.to_email, e.subject, v.key AS variant, e.send_state,
       e.delivery_status, e.sent_at::text, e.delivered_at::text, e.opened_at::text, e.clicked_at::text, e.created_at::text
FROM emails e LEFT JOIN experiment_variants v ON v.id = e.variant_id
WHERE e.created_at >= $1 AND (e.created_at, e.id) > ($1, $2::text::uuid) AND e.created_at < $3
ORDER BY e.created_at, e.id LIMIT $4";

const PURCHASE: &str = "SELECT p.report_id, p.business_id, b.name AS business, p.campaign_id, p.status, p.dispute_status,
        p.amount_cents, p.refunded_cents, p.currency::text AS currency, p.customer_email, p.created_at, p.paid_at, p.fulfilled_at
 FROM purchases p JOIN businesses b ON b.id = p.business_id WHERE p.id = $1";

const EXPORT_PURCHASES: &str = "
SELECT (extract(epoch FROM p.created_at) * 1000000)::int8::text || '.' || p.id::text AS cursor,
       p.id::text, p.report_id::text, p.business_id::text, p.campaign_id::text, p.status, p.amount_cents::text,
       p.refunded_cents::text, p.currency::text, p.customer_email, p.paid_at::text, p.fulfilled_at::text, p.created_at::text
FROM purchases p
WHERE p.created_at >= $1 AND (p.created_at, p.id) > ($1, $2::text::uuid) AND p.created_at < $3
ORDER BY p.created_at, p.id LIMIT $4";

const EXPORT_COSTS: &str = "
SELECT (extract(epoch FROM l.occurred_at) * 1000000)::int8::text || '.' || l.id::text AS cursor,
       l.id::text, l.run_id::text, l.business_id::text, l.vendor, l.endpoint, l.status::text, l.units::text,
       l.tokens_in::text, l.tokens_out::text, l.cost_micros::text, l.occurred_at::text
FROM cost_ledger l
WHERE l.occurred_at >= $1 AND (l.occurred_at, l.id) > ($1, $2::text::int8) AND l.occurred_at < $3
ORDER BY l.occurred_at, l.id LIMIT $4";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_a_spreadsheet_would_run_are_quoted_and_long_ones_cut() {
        for (raw, want) in [
            ("=1+1", "'=1+1"),
            ("+14085550100", "'+14085550100"),
            ("-2", "'-2"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("Joe's Pizza", "Joe's Pizza"),
            ("", ""),
        ] {
            assert_eq!(safe_cell(raw.to_owned()), want, "{raw:?}");
        }
        let long = safe_cell("é".repeat(MAX_CELL_CHARS + 5));
        assert!(long.ends_with("…[cut]"));
        assert_eq!(
            long.chars().count(),
            MAX_CELL_CHARS + "…[cut]".chars().count()
        );
    }

    #[test]
    fn an_export_cursor_is_microseconds_and_an_id_of_the_exports_kind() {
        let id = "3fa85f64-5717-4562-b3fc-2c963f66afa6";
        let (at, got) = ExportKey::Uuid
            .cursor(&format!("1764850000123456.{id}"))
            .unwrap();
        assert_eq!(at.timestamp_micros(), 1_764_850_000_123_456);
        assert_eq!(got, id);
        assert_eq!(ExportKey::Int8.cursor("0.42").unwrap().1, "42");
        for bad in [
            "42",
            "",
            ".42",
            "x.42",
            "-5.42",
            "99999999999999999.42",
            "1764850000123456.",
            "1764850000123456.-1",
            &format!("1764850000123456.{}", id.replace('-', "")),
        ] {
            assert_eq!(
                ExportKey::Uuid.cursor(bad).err().map(|e| e.status),
                Some(400),
                "{bad:?}"
            );
        }
        assert!(ExportKey::Int8.cursor(&format!("1.{id}")).is_err());
    }

    #[test]
    fn json_length_counts_escapes() {
        for s in [
            "plain",
            "quo\"te",
            "back\\slash",
            "nl\nx",
            "\u{1}\u{1f}",
            "é€😀",
            "",
        ] {
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(json_len(s.as_bytes()), json.len() - 2, "{s:?}");
        }
    }
}
