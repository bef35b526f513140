//! The recipients' side of a night: SendGrid's events, clicks and purchases, played against
//! the real HTTP handlers.

use shared::db::{DbError, Pool, begin_tenant};
use shared::domain::TenantId;

use super::{LocalError, Progress};

/// The recipients' side, simulated against the real handlers: SendGrid posts signed events
/// for every sent email to the local webhook (twice, as SendGrid retries); a share of the
/// recipients who clicked open their report page and buy through the storefront; Stripe
/// posts the signed completion (twice) to the webhook. `gateway_url` is where the HTTP
/// functions are served (the local gateway or the stand-in account's HTTP API).
pub async fn simulate_recipients(
    sim: &str,
    gateway_url: &str,
    pool: &Pool,
    tenant: TenantId,
    buy_share: f64,
    progress: &dyn Progress,
) -> Result<FunnelActivity, LocalError> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| LocalError::Gateway(e.to_string()))?;
    let fail = |e: reqwest::Error| LocalError::Gateway(e.to_string());
    let emitted: serde_json::Value = http
        .post(format!("{sim}/_sim/sendgrid/events"))
        .json(&serde_json::json!({ "target_url": format!("{}/webhooks/sendgrid", gateway_url) }))
        .send()
        .await
        .map_err(fail)?
        .json()
        .await
        .map_err(fail)?;
    let mut activity = FunnelActivity {
        sendgrid_events: emitted["events"].as_u64().unwrap_or(0),
        ..FunnelActivity::default()
    };
    progress.stage("sendgrid events", activity.sendgrid_events as usize, 0);
    let mut c = pool.get().await.map_err(DbError::from)?;
    let tx = begin_tenant(&mut c, tenant).await?;
    let clicked = tx
        .query(
            // Tonight's clickers: each campaign's emails sent in the last day, by its index.
            "SELECT e.id, r.token, e.to_email FROM campaigns c
             JOIN emails e ON e.tenant_id = c.tenant_id AND e.campaign_id = c.id AND e.sent_at > now() - interval '1 day'
             JOIN reports r ON r.id = e.report_id
             WHERE e.kind = 'outreach' AND e.clicked_at IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM purchases p WHERE p.email_id = e.id) ORDER BY e.id",
            &[],
        )
        .await
        .map_err(DbError::from)?;
    tx.commit().await.map_err(DbError::from)?;
    drop(c);
    for row in clicked {
        // Who buys depends on the address only (not on generated ids), so a clicker buys
        // or not the same way in every run. Which recipients click still varies with the
        // order SendGrid's simulated events are drawn in.
        let to: String = row.get("to_email");
        let draw = <sha2::Sha256 as sha2::Digest>::digest(to.as_bytes());
        if f64::from(draw[0]) / 256.0 >= buy_share {
            continue;
        }
        let token: String = row.get("token");
        let page = http
            .get(format!("{}/r/{token}", gateway_url))
            .send()
            .await
            .map_err(fail)?;
        if !page.status().is_success() {
            return Err(LocalError::Gateway(format!(
                "report page answered {}",
                page.status()
            )));
        }
        let buy = http
            .post(format!("{}/r/{token}/buy", gateway_url))
            .send()
            .await
            .map_err(fail)?;
        let location = buy
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| {
                LocalError::Gateway(format!("buy answered {} without a redirect", buy.status()))
            })?;
        let session = location.rsplit('/').next().unwrap_or_default().to_owned();
        http.post(format!("{sim}/_sim/stripe/complete"))
            .json(&serde_json::json!({ "session_id": session, "target_url": format!("{}/webhooks/stripe", gateway_url), "duplicate": true }))
            .send()
            .await
            .map_err(fail)?
            .error_for_status()
            .map_err(fail)?;
        activity.checkouts += 1;
        progress.stage("checkouts", activity.checkouts, 0);
    }
    Ok(activity)
}

/// What the simulated recipients did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FunnelActivity {
    pub sendgrid_events: u64,
    pub checkouts: usize,
}
