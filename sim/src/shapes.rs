//! Each vendor's error bodies and headers, and the fault gate every vendor handler passes first.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::faults::{Fault, Outcome};
use crate::state::SimState;

pub fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

pub fn with_headers(mut r: Response, headers: &[(&'static str, String)]) -> Response {
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            r.headers_mut().insert(*k, v);
        }
    }
    r
}

pub fn yelp_error(status: StatusCode, code: &str, description: serde_json::Value) -> Response {
    let mut error = serde_json::Map::new();
    error.insert("code".into(), code.into());
    error.insert("description".into(), description);
    json_response(status, json!({ "error": error }))
}

pub fn google_error(
    status: StatusCode,
    message: &str,
    google_status: &str,
    reason: &str,
    domain: &str,
) -> Response {
    json_response(
        status,
        json!({ "error": { "code": status.as_u16(), "message": message, "status": google_status,
                 "errors": [{ "message": message, "domain": domain, "reason": reason }] } }),
    )
}

pub fn openai_error(status: StatusCode, message: &str, kind: &str, code: Option<&str>) -> Response {
    json_response(
        status,
        json!({ "error": { "message": message, "type": kind, "param": null, "code": code } }),
    )
}

pub fn sendgrid_error(status: StatusCode, field: Option<&str>, message: &str) -> Response {
    json_response(
        status,
        json!({ "errors": [{ "field": field, "message": message, "help": null }] }),
    )
}

pub fn stripe_error(
    status: StatusCode,
    kind: &str,
    message: &str,
    code: Option<&str>,
    param: Option<&str>,
) -> Response {
    json_response(
        status,
        json!({ "error": { "type": kind, "message": message, "code": code, "param": param } }),
    )
}

pub fn yelp_rate_headers(state: &SimState) -> Vec<(&'static str, String)> {
    let used = crate::state::lock(&state.requests)
        .get("yelp")
        .copied()
        .unwrap_or(0);
    let limit = u64::from(state.cfg.yelp_daily_limit);
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1)).date_naive();
    vec![
        ("RateLimit-DailyLimit", limit.to_string()),
        (
            "RateLimit-Remaining",
            limit.saturating_sub(used).to_string(),
        ),
        ("RateLimit-ResetTime", format!("{tomorrow}T00:00:00+00:00")),
    ]
}

fn fault_response(state: &SimState, vendor: &str, outcome: Outcome, fault: &Fault) -> Response {
    let retry = fault
        .retry_after_secs
        .map(|s| vec![("Retry-After", format!("{s}"))])
        .unwrap_or_default();
    let r = match (vendor, outcome) {
        ("yelp", Outcome::RateLimited) => with_headers(
            yelp_error(
                StatusCode::TOO_MANY_REQUESTS,
                "TOO_MANY_REQUESTS_PER_SECOND",
                json!(
                    "You have exceeded the queries-per-second limit for this endpoint. Try reducing the rate at which you make queries."
                ),
            ),
            &yelp_rate_headers(state),
        ),
        ("yelp", Outcome::QuotaExhausted) => yelp_error(
            StatusCode::TOO_MANY_REQUESTS,
            "ACCESS_LIMIT_REACHED",
            json!("You've reached the access limit for this client."),
        ),
        ("yelp", Outcome::ServerError) => yelp_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            json!("Something went wrong internally, please try your request again"),
        ),
        ("yelp", Outcome::Unauthorized) => yelp_error(
            StatusCode::UNAUTHORIZED,
            "TOKEN_INVALID",
            json!("Invalid access token or authorization header."),
        ),
        ("places" | "pagespeed", Outcome::RateLimited) => google_error(
            StatusCode::TOO_MANY_REQUESTS,
            "Quota exceeded for quota group 'default' and limit 'Queries per 100 seconds' of service 'pagespeedonline.googleapis.com' for consumer 'project_number:000000'.",
            "RESOURCE_EXHAUSTED",
            "rateLimitExceeded",
            "global",
        ),
        ("places" | "pagespeed", Outcome::QuotaExhausted) => google_error(
            StatusCode::TOO_MANY_REQUESTS,
            "Quota exceeded for quota group 'default' and limit 'Queries per day' of service 'pagespeedonline.googleapis.com' for consumer 'project_number:000000'.",
            "RESOURCE_EXHAUSTED",
            "rateLimitExceeded",
            "global",
        ),
        ("places" | "pagespeed", Outcome::ServerError) => google_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal error encountered.",
            "INTERNAL",
            "backendError",
            "global",
        ),
        ("places" | "pagespeed", Outcome::Unauthorized) => google_error(
            StatusCode::FORBIDDEN,
            "The caller does not have permission",
            "PERMISSION_DENIED",
            "forbidden",
            "global",
        ),
        ("openai", Outcome::RateLimited) => with_headers(
            openai_error(
                StatusCode::TOO_MANY_REQUESTS,
                "Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 500, Used 500, Requested 1.",
                "requests",
                Some("rate_limit_exceeded"),
            ),
            &[
                ("x-ratelimit-limit-requests", "500".into()),
                ("x-ratelimit-remaining-requests", "0".into()),
                ("x-ratelimit-reset-requests", "120ms".into()),
            ],
        ),
        ("openai", Outcome::QuotaExhausted) => openai_error(
            StatusCode::TOO_MANY_REQUESTS,
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            Some("insufficient_quota"),
        ),
        ("openai", Outcome::ServerError) => openai_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
        ),
        ("openai", Outcome::Unauthorized) => openai_error(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided: sk-****. You can find your API key at https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            Some("invalid_api_key"),
        ),
        ("sendgrid", Outcome::RateLimited) => with_headers(
            sendgrid_error(StatusCode::TOO_MANY_REQUESTS, None, "too many requests"),
            &[
                ("X-RateLimit-Limit", "600".into()),
                ("X-RateLimit-Remaining", "0".into()),
                (
                    "X-RateLimit-Reset",
                    (chrono::Utc::now().timestamp() + 1).to_string(),
                ),
            ],
        ),
        ("sendgrid", Outcome::ServerError) => {
            sendgrid_error(StatusCode::INTERNAL_SERVER_ERROR, None, "internal error")
        }
        ("sendgrid", Outcome::Unauthorized) => sendgrid_error(
            StatusCode::UNAUTHORIZED,
            None,
            "The provided authorization grant is invalid, expired, or revoked",
        ),
        ("stripe", Outcome::RateLimited) => stripe_error(
            StatusCode::TOO_MANY_REQUESTS,
            "invalid_request_error",
            "Too many requests hit the API too quickly.",
            Some("rate_limit"),
            None,
        ),
        ("stripe", Outcome::ServerError) => stripe_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "An unknown error occurred",
            None,
            None,
        ),
        ("stripe", Outcome::Unauthorized) => stripe_error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "Invalid API Key provided: sk_test_****",
            None,
            None,
        ),
        ("slack", Outcome::RateLimited) => {
            (StatusCode::TOO_MANY_REQUESTS, "rate_limited").into_response()
        }
        ("slack", Outcome::ServerError) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "internal_error").into_response()
        }
        ("slack", Outcome::Unauthorized) => {
            (StatusCode::FORBIDDEN, "invalid_token").into_response()
        }
        (_, Outcome::Malformed) => (
            StatusCode::OK,
            [("content-type", "application/json")],
            "{\"truncated\": [1, 2,",
        )
            .into_response(),
        (_, Outcome::ArrayIn200) => json_response(StatusCode::OK, json!([])),
        (_, Outcome::ErrorIn200) => json_response(
            StatusCode::OK,
            json!({ "error": { "code": 500, "message": "backend error, try again" } }),
        ),
        (_, Outcome::Timeout) => {
            (StatusCode::GATEWAY_TIMEOUT, "upstream timed out").into_response()
        }
        (_, Outcome::QuotaExhausted | Outcome::RateLimited) => {
            (StatusCode::TOO_MANY_REQUESTS, "rate limited").into_response()
        }
        (_, Outcome::Unauthorized) => (StatusCode::UNAUTHORIZED, "unauthorized").into_response(),
        (_, _) => (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response(),
    };
    if outcome == Outcome::RateLimited {
        with_headers(r, &retry)
    } else {
        r
    }
}

/// Counts the request, adds the configured latency, and returns the fault response if the fault
/// table says this request fails.
pub async fn gate(state: &SimState, vendor: &str) -> Result<(), Response> {
    let (outcome, fault) = state.outcome(vendor);
    if fault.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(fault.latency_ms)).await;
    }
    match outcome {
        Outcome::Ok => Ok(()),
        Outcome::Timeout => {
            tokio::time::sleep(Duration::from_millis(if fault.timeout_ms == 0 {
                30_000
            } else {
                fault.timeout_ms
            }))
            .await;
            Err(fault_response(state, vendor, outcome, &fault))
        }
        o => Err(fault_response(state, vendor, o, &fault)),
    }
}

/// `Authorization: Bearer <key>` equals the expected key.
pub fn bearer_ok(headers: &HeaderMap, key: &str) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|k| k == key)
}
