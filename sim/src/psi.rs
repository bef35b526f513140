//! PageSpeed Insights v5 `GET /pagespeedonline/v5/runPagespeed`, consistent with each simulated
//! site: a bloated, outdated site scores low, a good one high; a site that errors makes
//! Lighthouse error as it does in reality.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::data::{self, SiteProfile};
use crate::shapes::{gate, google_error};
use crate::state::SimState;

/// (performance, seo, accessibility, best practices, LCP ms, CLS, TBT ms, FCP ms, SI ms)
fn lab(profile: SiteProfile) -> (f64, f64, f64, f64, f64, f64, f64, f64, f64) {
    match profile {
        SiteProfile::Good => (94.0, 98.0, 95.0, 100.0, 1600.0, 0.02, 60.0, 900.0, 1500.0),
        SiteProfile::NoViewport => (58.0, 72.0, 70.0, 83.0, 3900.0, 0.18, 320.0, 2100.0, 4200.0),
        SiteProfile::NoHttpsRedirect => {
            (71.0, 90.0, 84.0, 75.0, 2800.0, 0.08, 210.0, 1500.0, 3000.0)
        }
        SiteProfile::MissingMeta => (66.0, 48.0, 72.0, 83.0, 3100.0, 0.12, 260.0, 1700.0, 3500.0),
        SiteProfile::Outdated => (34.0, 69.0, 61.0, 58.0, 6200.0, 0.31, 900.0, 3200.0, 7100.0),
        SiteProfile::Slow => (
            19.0, 80.0, 78.0, 75.0, 9800.0, 0.22, 1800.0, 4500.0, 11000.0,
        ),
        SiteProfile::Huge => (27.0, 75.0, 70.0, 67.0, 8400.0, 0.41, 1400.0, 3800.0, 9000.0),
        SiteProfile::RedirectChain => (52.0, 83.0, 80.0, 75.0, 4300.0, 0.10, 450.0, 2500.0, 4800.0),
        SiteProfile::NotFound | SiteProfile::ServerError => {
            (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        }
    }
}

fn lighthouse_error(status: StatusCode, detail: &str) -> Response {
    google_error(
        status,
        &format!(
            "Lighthouse returned error: {detail}. Lighthouse was unable to reliably load the page you requested."
        ),
        if status == StatusCode::BAD_REQUEST {
            "INVALID_ARGUMENT"
        } else {
            "INTERNAL"
        },
        "lighthouseUserError",
        "lighthouse",
    )
}

/// The slug of a simulated site URL (`http://www.<slug>.test:<port>/...`).
pub fn slug_of(url: &str) -> Option<String> {
    let host = url.split("://").nth(1)?.split(['/', ':', '?']).next()?;
    host.strip_prefix("www.")?
        .strip_suffix(".test")
        .map(str::to_owned)
}

pub async fn run(State(state): State<Arc<SimState>>, RawQuery(raw): RawQuery) -> Response {
    let q: Vec<(String, String)> =
        serde_urlencoded::from_str(raw.as_deref().unwrap_or("")).unwrap_or_default();
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if let Some(k) = get("key")
        && k != state.cfg.google_key
    {
        return google_error(
            StatusCode::BAD_REQUEST,
            "API key not valid. Please pass a valid API key.",
            "INVALID_ARGUMENT",
            "keyInvalid",
            "global",
        );
    }
    let Some(url) = get("url").filter(|u| u.starts_with("http://") || u.starts_with("https://"))
    else {
        return google_error(
            StatusCode::BAD_REQUEST,
            "Invalid value at 'url' (TYPE_STRING), must match pattern (?i)(url:|origin:)?http(s)?://.*",
            "INVALID_ARGUMENT",
            "badRequest",
            "global",
        );
    };
    let strategy = get("strategy").unwrap_or("desktop").to_lowercase();
    if strategy != "mobile" && strategy != "desktop" {
        return google_error(
            StatusCode::BAD_REQUEST,
            "Invalid value at 'strategy'",
            "INVALID_ARGUMENT",
            "badRequest",
            "global",
        );
    }
    let valid = [
        "performance",
        "seo",
        "accessibility",
        "best-practices",
        "best_practices",
        "pwa",
    ];
    let mut categories: Vec<String> = Vec::new();
    for (k, v) in &q {
        if k == "category" {
            let c = v.to_lowercase();
            if !valid.contains(&c.as_str()) {
                return google_error(
                    StatusCode::BAD_REQUEST,
                    &format!("Invalid value at 'category' ({v})"),
                    "INVALID_ARGUMENT",
                    "badRequest",
                    "global",
                );
            }
            categories.push(c.replace('_', "-"));
        }
    }
    if categories.is_empty() {
        categories.push("performance".into());
    }
    if let Err(r) = gate(&state, "pagespeed").await {
        return r;
    }
    let Some(business) = slug_of(url).and_then(|s| data::by_slug(state.cfg.seed, &s)) else {
        return lighthouse_error(
            StatusCode::BAD_REQUEST,
            "FAILED_DOCUMENT_REQUEST. (Details: net::ERR_NAME_NOT_RESOLVED)",
        );
    };
    let profile = business.site.unwrap_or(SiteProfile::Good);
    match profile {
        SiteProfile::NotFound => {
            return lighthouse_error(
                StatusCode::BAD_REQUEST,
                "ERRORED_DOCUMENT_REQUEST. (Status code: 404)",
            );
        }
        SiteProfile::ServerError => {
            return lighthouse_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ERRORED_DOCUMENT_REQUEST. (Status code: 500)",
            );
        }
        _ => {}
    }
    let (perf, seo, a11y, bp, lcp, cls, tbt, fcp, si) = lab(profile);
    // A little per-site variation, stable for the site.
    let j = f64::from(business.review_count % 11) - 5.0;
    let s = |x: f64| ((x + j).clamp(0.0, 100.0) / 100.0 * 100.0).round() / 100.0;
    let mut cats = serde_json::Map::new();
    for c in &categories {
        let (score, title) = match c.as_str() {
            "performance" => (s(perf), "Performance"),
            "seo" => (s(seo), "SEO"),
            "accessibility" => (s(a11y), "Accessibility"),
            "best-practices" => (s(bp), "Best Practices"),
            _ => (0.5, "PWA"),
        };
        cats.insert(
            c.clone(),
            json!({ "id": c, "title": title, "score": score, "auditRefs": [] }),
        );
    }
    let audit = |id: &str, v: f64, unit: &str| json!({ "id": id, "title": id, "score": if v > 0.0 { 0.5 } else { 1.0 }, "scoreDisplayMode": "numeric", "numericValue": v, "displayValue": format!("{v:.1} {unit}") });
    let final_url = if profile == SiteProfile::RedirectChain {
        format!("{}home", url.trim_end_matches('/').to_owned() + "/")
    } else {
        url.to_owned()
    };
    let now = chrono::Utc::now().to_rfc3339();
    let body = json!({
        "kind": "pagespeedonline#result",
        "id": final_url,
        "analysisUTCTimestamp": now,
        "lighthouseResult": {
            "requestedUrl": url, "finalUrl": final_url, "lighthouseVersion": "12.2.1", "fetchTime": now,
            "userAgent": "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) Chrome-Lighthouse",
            "categories": cats,
            "audits": {
                "largest-contentful-paint": audit("largest-contentful-paint", lcp + j * 20.0, "s"),
                "first-contentful-paint": audit("first-contentful-paint", fcp + j * 10.0, "s"),
                "speed-index": audit("speed-index", si + j * 30.0, "s"),
                "total-blocking-time": audit("total-blocking-time", (tbt + j * 5.0).max(0.0), "ms"),
                "cumulative-layout-shift": audit("cumulative-layout-shift", cls, ""),
            },
            "runWarnings": []
        }
        // No loadingExperience: low-traffic local sites have no CrUX field data.
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}
