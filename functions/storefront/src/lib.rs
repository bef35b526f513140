//! storefront: what a business owner's browser and mail client reach.
//!
//! - `GET /r/{token}` — the report preview page (business, score, first problems, price, buy);
//!   `GET /r/{token}/preview.pdf` — the two-page preview.
//! - `POST /r/{token}/buy` — creates a Stripe Checkout session (Idempotency-Key per report and
//!   day, so a double click is one session), records the purchase as pending, answers 303 to
//!   Stripe. `GET /checkout/success` and `GET /checkout/cancel` are the return pages.
//! - `GET /u/{token}` — an unsubscribe page and nothing else (link scanners must not unsubscribe
//!   anyone); `POST /u/{token}` — RFC 8058 one-click (no session, no cookie): writes the
//!   suppression. A signed unsubscribe link keeps working after its expiry: an opt-out must.
//! - `GET /d/{token}` — the full report of a paid purchase, by a signed link that expires.
//!
//! Report tokens are resolved through the one definer function `report_tenant_by_token`; every
//! other read runs under the token's tenant with row-level security. Bad input gets a 4xx page
//! with the reason and writes nothing.

pub mod pages;

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_lambda_events::encodings::Body;
use aws_lambda_events::event::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use shared::bus::Queue;
use shared::db::{Pool, begin_tenant};
use shared::domain::TenantId;
use shared::lambda::StartError;
use shared::lambda::http::{HttpError, body_bytes, method, path, text, with_header};
use shared::links::{LinkError, LinkSigner, Purpose};
use shared::store::{ObjectKey, ObjectStore};
use shared::vendors::CallContext;
use shared::vendors::stripe::{CheckoutRequest, StripeClient};

/// This function sends to no queue.
pub const SENDS_TO: &[Queue] = &[];

/// Form posts are tiny.
pub const MAX_BODY_BYTES: usize = 4 * 1024;

pub struct StorefrontDeps {
    pub pool: Pool,
    pub store: Arc<dyn ObjectStore>,
    pub stripe: StripeClient,
    pub links: LinkSigner,
    pub public_base_url: String,
    pub currency: String,
}

impl StorefrontDeps {
    pub fn new(
        pool: Pool,
        store: Arc<dyn ObjectStore>,
        vendors: &shared::vendors::config::VendorsConfig,
        policy: &shared::vendors::HttpPolicy,
        links: LinkSigner,
        public_base_url: &str,
    ) -> Result<Self, StartError> {
        Ok(Self {
            pool,
            store,
            stripe: vendors.stripe(policy)?,
            links,
            public_base_url: public_base_url.trim_end_matches('/').to_owned(),
            currency: "usd".into(),
        })
    }

    /// `DATABASE_URL`, the store (`LF_BUCKET`), `STRIPE_SECRET_KEY`, `LF_LINK_SECRET` and
    /// `LF_PUBLIC_BASE_URL`, from the environment or the secrets in `LF_SECRET_ARNS`.
    pub async fn from_env() -> Result<Self, StartError> {
        let source = shared::secrets::from_env().await?;
        let core = shared::config::CoreConfig::load(&source)?;
        let vendors = shared::vendors::config::VendorsConfig::load(&source)?;
        let mut r = shared::config::Reader::new(&source);
        let secret = r.secret("LF_LINK_SECRET");
        let base = r.required("LF_PUBLIC_BASE_URL");
        r.finish(())?;
        let sdk = shared::aws::LazySdk::new(core.aws_endpoint_url.clone());
        let store = shared::store::from_config(&core.store, &sdk);
        Self::new(
            shared::db::connect(&core.database_url, core.db_pool_size)?,
            store,
            &vendors,
            &shared::vendors::HttpPolicy::default(),
            LinkSigner::new(secret).map_err(|e| StartError::Invalid {
                variable: "LF_LINK_SECRET",
                reason: e.to_string(),
            })?,
            &base,
        )
    }
}

pub async fn handler(
    deps: &StorefrontDeps,
    req: ApiGatewayV2httpRequest,
) -> ApiGatewayV2httpResponse {
    match handle(deps, &req, chrono::Utc::now().timestamp()).await {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(status = e.status, reason = %e.reason, "storefront refused a request");
            let title = match e.status {
                404 => "Not found",
                410 => "No longer available",
                s if s >= 500 => "Please try again",
                _ => "That did not work",
            };
            text(
                e.status,
                "text/html; charset=utf-8",
                pages::message(title, &e.reason),
            )
        }
    }
}

fn internal(e: impl std::fmt::Display) -> HttpError {
    tracing::error!(error = %e, "storefront failed");
    HttpError::new(
        503,
        "something went wrong on our side; please try again in a minute",
    )
}

fn html(status: u16, body: String) -> ApiGatewayV2httpResponse {
    with_header(
        text(status, "text/html; charset=utf-8", body),
        "Cache-Control",
        "no-store",
    )
}

/// Report tokens are 40 URL-safe characters; anything else is not one.
fn report_token(t: &str) -> Result<&str, HttpError> {
    if (32..=64).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(t)
    } else {
        Err(HttpError::not_found("no such report"))
    }
}

/// Routes one request; `now` is unix seconds.
pub async fn handle(
    deps: &StorefrontDeps,
    req: &ApiGatewayV2httpRequest,
    now: i64,
) -> Result<ApiGatewayV2httpResponse, HttpError> {
    let m = method(req).to_owned();
    let p = path(req).to_owned();
    let parts: Vec<&str> = p.trim_matches('/').split('/').collect();
    match (m.as_str(), parts.as_slice()) {
        ("GET", ["r", t]) => preview_page(deps, report_token(t)?).await,
        ("GET", ["r", t, "preview.pdf"]) => preview_pdf(deps, report_token(t)?).await,
        ("POST", ["r", t, "buy"]) => buy(deps, report_token(t)?, now).await,
        ("GET", ["checkout", "success"]) => Ok(html(
            200,
            pages::message(
                "Thank you",
                "Your payment went through. The full report is on its way to the email address you gave at checkout.",
            ),
        )),
        ("GET", ["checkout", "cancel"]) => Ok(html(
            200,
            pages::message(
                "Checkout cancelled",
                "Nothing was charged. The link in our email still shows your preview whenever you want it.",
            ),
        )),
        ("GET", ["u", t]) => {
            unsubscribe_claim(deps, t)?;
            Ok(html(200, pages::unsubscribe_form(t)))
        }
        ("POST", ["u", t]) => {
            body_bytes(req, MAX_BODY_BYTES)?;
            unsubscribe(deps, t).await
        }
        ("GET", ["d", t]) => download(deps, t, now).await,
        (_, ["r", _] | ["r", _, "preview.pdf"] | ["d", _] | ["checkout", _]) => {
            Err(HttpError::method_not_allowed("GET"))
        }
        (_, ["r", _, "buy"]) => Err(HttpError::method_not_allowed("POST")),
        (_, ["u", _]) => Err(HttpError::method_not_allowed("GET, POST")),
        _ => Err(HttpError::not_found("no such page")),
    }
}

const REPORT_TENANT: &str = "SELECT report_tenant_by_token($1) AS tenant_id";

async fn tenant_of_report(c: &shared::db::Client, token: &str) -> Result<TenantId, HttpError> {
    let st = c.prepare_cached(REPORT_TENANT).await.map_err(internal)?;
    let t: Option<uuid::Uuid> = c
        .query_one(&st, &[&token])
        .await
        .map_err(internal)?
        .get("tenant_id");
    t.map(TenantId::from_uuid)
        .ok_or_else(|| HttpError::not_found("no such report"))
}

struct ReportRow {
    id: uuid::Uuid,
    business_id: uuid::Uuid,
    business: String,
    score: i16,
    tier: String,
    problems: Vec<String>,
    price_cents: i64,
    preview_key: String,
    campaign_id: Option<uuid::Uuid>,
    email_id: Option<uuid::Uuid>,
    to_email: Option<String>,
}

const REPORT_PAGE: &str = "SELECT r.id AS report_id, b.id AS business_id, b.name AS business, coalesce(s.score, 0::smallint) AS score,
        coalesce(s.tier::text, '?') AS tier, a.insights, r.price_cents, r.preview_key,
        e.campaign_id, e.id AS email_id, e.to_email
 FROM reports r JOIN businesses b ON b.id = r.business_id
 LEFT JOIN scores s ON s.id = r.score_id
 LEFT JOIN assessments a ON a.id = s.assessment_id
 LEFT JOIN LATERAL (SELECT id, campaign_id, to_email FROM emails WHERE report_id = r.id AND kind = 'outreach' LIMIT 1) e ON true
 WHERE r.token = $1";

/// The report of `token` and its tenant: two round trips on prepared statements — the token's
/// tenant (the definer lookup), then the page's read in a tenant-scoped transaction of its own.
async fn report(deps: &StorefrontDeps, token: &str) -> Result<(TenantId, ReportRow), HttpError> {
    let c = deps.pool.get().await.map_err(internal)?;
    let tenant = tenant_of_report(&c, token).await?;
    let row = shared::db::query_alone(&c, tenant, REPORT_PAGE, &[&token])
        .await
        .map_err(internal)?
        .into_iter()
        .next()
        .ok_or_else(|| HttpError::not_found("no such report"))?;
    let insights: Option<serde_json::Value> = row.get("insights");
    let problems = shared::domain::recommendation_titles(insights.as_ref());
    Ok((
        tenant,
        ReportRow {
            id: row.get("report_id"),
            business_id: row.get("business_id"),
            business: row.get("business"),
            score: row.get("score"),
            tier: row.get("tier"),
            problems,
            price_cents: row.get("price_cents"),
            preview_key: row.get("preview_key"),
            campaign_id: row.get("campaign_id"),
            email_id: row.get("email_id"),
            to_email: row.get("to_email"),
        },
    ))
}

async fn preview_page(
    deps: &StorefrontDeps,
    token: &str,
) -> Result<ApiGatewayV2httpResponse, HttpError> {
    let (_, r) = report(deps, token).await?;
    Ok(html(
        200,
        pages::preview(&pages::Preview {
            business: &r.business,
            score: r.score,
            tier: &r.tier,
            problems: &r.problems,
            price_cents: r.price_cents,
            token,
        }),
    ))
}

fn pdf(bytes: Vec<u8>, filename: &str) -> ApiGatewayV2httpResponse {
    let mut resp = ApiGatewayV2httpResponse::default();
    resp.status_code = 200;
    resp.is_base64_encoded = true;
    resp.body = Some(Body::Binary(bytes));
    let resp = with_header(resp, "Content-Type", "application/pdf");
    let resp = with_header(resp, "Cache-Control", "private, no-store");
    with_header(
        resp,
        "Content-Disposition",
        &format!("inline; filename=\"{filename}\""),
    )
}

async fn object(deps: &StorefrontDeps, key: &str) -> Result<Vec<u8>, HttpError> {
    let key = ObjectKey::parse(key).map_err(internal)?;
    match deps.store.get(&key).await {
        Ok(b) => Ok(b.to_vec()),
        Err(shared::store::StoreError::NotFound(_)) => {
            Err(HttpError::new(410, "this report is no longer available"))
        }
        Err(e) => Err(internal(e)),
    }
}

async fn preview_pdf(
    deps: &StorefrontDeps,
    token: &str,
) -> Result<ApiGatewayV2httpResponse, HttpError> {
    let (_, r) = report(deps, token).await?;
    Ok(pdf(
        object(deps, &r.preview_key).await?,
        "website-audit-preview.pdf",
    ))
}

const INSERT_PURCHASE: &str = "INSERT INTO purchases (id, tenant_id, report_id, business_id, campaign_id, email_id, stripe_session_id, status, amount_cents, currency)
 VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9) ON CONFLICT (stripe_session_id) DO NOTHING";

async fn buy(
    deps: &StorefrontDeps,
    token: &str,
    now: i64,
) -> Result<ApiGatewayV2httpResponse, HttpError> {
    let (tenant, r) = report(deps, token).await?;
    let base = &deps.public_base_url;
    let mut metadata = BTreeMap::from([
        ("tenant_id".to_owned(), tenant.to_string()),
        ("report_id".to_owned(), r.id.to_string()),
        ("business_id".to_owned(), r.business_id.to_string()),
        ("source".to_owned(), "storefront".to_owned()),
    ]);
    if let Some(c) = r.campaign_id {
        metadata.insert("campaign_id".into(), c.to_string());
    }
    if let Some(e) = r.email_id {
        metadata.insert("email_id".into(), e.to_string());
    }
    let req = CheckoutRequest {
        amount_cents: r.price_cents,
        currency: deps.currency.clone(),
        product_name: format!("Full website audit — {}", r.business),
        success_url: format!("{base}/checkout/success?session_id={{CHECKOUT_SESSION_ID}}"),
        cancel_url: format!("{base}/checkout/cancel"),
        customer_email: r.to_email.clone(),
        client_reference_id: Some(r.id.to_string()),
        metadata,
        payment_intent_metadata: BTreeMap::from([
            ("tenant_id".to_owned(), tenant.to_string()),
            ("report_id".to_owned(), r.id.to_string()),
        ]),
        expires_at: None,
    };
    // One session per report per day: a double click or a retried POST gets the same one.
    let day = chrono::DateTime::from_timestamp(now, 0)
        .unwrap_or_default()
        .format("%Y-%m-%d");
    let key = format!("buy:{}:{day}", r.id);
    let ctx = CallContext::new(
        tenant,
        None,
        Some(shared::domain::BusinessId::from_uuid(r.business_id)),
    );
    let session = deps
        .stripe
        .create_checkout_session(&ctx, &req, &key)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "checkout session not created");
            HttpError::new(
                503,
                "the payment page is not available right now; please try again in a minute",
            )
        })?;
    let url = session
        .url
        .clone()
        .ok_or_else(|| internal("Stripe returned a session without a url"))?;
    let mut c = deps.pool.get().await.map_err(internal)?;
    let tx = begin_tenant(&mut c, tenant).await.map_err(internal)?;
    tx.execute(
        INSERT_PURCHASE,
        &[
            &uuid::Uuid::new_v4(),
            &tenant.as_uuid(),
            &r.id,
            &r.business_id,
            &r.campaign_id,
            &r.email_id,
            &session.id,
            &r.price_cents,
            &deps.currency,
        ],
    )
    .await
    .map_err(internal)?;
    tx.commit().await.map_err(internal)?;
    let resp = text(303, "text/plain; charset=utf-8", "Redirecting to checkout");
    Ok(with_header(
        with_header(resp, "Location", &url),
        "Cache-Control",
        "no-store",
    ))
}

fn unsubscribe_claim(
    deps: &StorefrontDeps,
    token: &str,
) -> Result<shared::links::Claim, HttpError> {
    // Expiry is not applied: a signed opt-out link must always work.
    deps.links
        .verify(Purpose::Unsubscribe, token, i64::MIN)
        .map_err(|_| HttpError::not_found("this unsubscribe link is not valid"))
}

const EMAIL_ADDRESS: &str = "SELECT to_email FROM emails WHERE id = $1";
const SUPPRESS: &str = "INSERT INTO suppressions (tenant_id, kind, value, reason, source) VALUES ($1, 'email', $2, 'unsubscribe', 'one-click')
 ON CONFLICT (tenant_id, kind, value) DO NOTHING";
const MARK_UNSUBSCRIBED: &str =
    "UPDATE emails SET unsubscribed_at = coalesce(unsubscribed_at, now()) WHERE id = $1";

async fn unsubscribe(
    deps: &StorefrontDeps,
    token: &str,
) -> Result<ApiGatewayV2httpResponse, HttpError> {
    let claim = unsubscribe_claim(deps, token)?;
    let mut c = deps.pool.get().await.map_err(internal)?;
    let tx = begin_tenant(&mut c, claim.tenant).await.map_err(internal)?;
    let to: String = tx
        .query_opt(EMAIL_ADDRESS, &[&claim.id])
        .await
        .map_err(internal)?
        .ok_or_else(|| HttpError::not_found("this unsubscribe link is not valid"))?
        .get("to_email");
    let value = shared::domain::Email::parse(&to)
        .map(|e| e.to_string())
        .unwrap_or_else(|_| to.to_lowercase());
    tx.execute(SUPPRESS, &[&claim.tenant.as_uuid(), &value])
        .await
        .map_err(internal)?;
    tx.execute(MARK_UNSUBSCRIBED, &[&claim.id])
        .await
        .map_err(internal)?;
    tx.commit().await.map_err(internal)?;
    tracing::info!(email = %shared::obs::hash_pii(&value), "unsubscribed");
    Ok(html(
        200,
        pages::message(
            "You are unsubscribed",
            "We will not email this address again.",
        ),
    ))
}

const PURCHASE_DOWNLOAD: &str = "SELECT p.status, r.full_key, p.dispute_status FROM purchases p JOIN reports r ON r.id = p.report_id WHERE p.id = $1";

async fn download(
    deps: &StorefrontDeps,
    token: &str,
    now: i64,
) -> Result<ApiGatewayV2httpResponse, HttpError> {
    let claim = deps
        .links
        .verify(Purpose::Download, token, now)
        .map_err(|e| match e {
            LinkError::Expired => HttpError::new(
                410,
                "this download link has expired; reply to the receipt email for a new one",
            ),
            _ => HttpError::not_found("this download link is not valid"),
        })?;
    let mut c = deps.pool.get().await.map_err(internal)?;
    let tx = begin_tenant(&mut c, claim.tenant).await.map_err(internal)?;
    let row = tx
        .query_opt(PURCHASE_DOWNLOAD, &[&claim.id])
        .await
        .map_err(internal)?
        .ok_or_else(|| HttpError::not_found("this download link is not valid"))?;
    tx.commit().await.map_err(internal)?;
    let status: String = row.get("status");
    if !matches!(status.as_str(), "paid" | "partially_refunded") {
        return Err(HttpError::new(410, format!("this purchase is {status}")));
    }
    // A chargeback in progress, or one the buyer won: the report is no longer theirs to fetch.
    if let Some(d @ ("open" | "lost")) = row.get::<_, Option<String>>("dispute_status").as_deref() {
        return Err(HttpError::new(
            410,
            format!("this purchase's payment is disputed ({d})"),
        ));
    }
    Ok(pdf(
        object(deps, &row.get::<_, String>("full_key")).await?,
        "website-audit.pdf",
    ))
}
