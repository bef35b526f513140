//! Stripe `POST /v1/checkout/sessions` (form-encoded, `Idempotency-Key` honoured) and `GET` of a
//! session; admin actions complete or refund a session and POST the signed event to a target.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::shapes::{bearer_ok, gate, stripe_error};
use crate::state::{Session, SimState, lock};

fn unauthorized() -> Response {
    stripe_error(
        StatusCode::UNAUTHORIZED,
        "invalid_request_error",
        "Invalid API Key provided: sk_test_****",
        None,
        None,
    )
}

pub async fn create_session(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !bearer_ok(&headers, &state.cfg.stripe_key) {
        return unauthorized();
    }
    let form: Vec<(String, String)> = match serde_urlencoded::from_bytes(&body) {
        Ok(f) => f,
        Err(_) => {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "Invalid form body",
                None,
                None,
            );
        }
    };
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    for required in [
        "mode",
        "success_url",
        "line_items[0][price_data][currency]",
        "line_items[0][price_data][unit_amount]",
        "line_items[0][price_data][product_data][name]",
    ] {
        if get(required).is_none() {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &format!("Missing required param: {required}."),
                Some("parameter_missing"),
                Some(required),
            );
        }
    }
    let Some(amount) = get("line_items[0][price_data][unit_amount]")
        .and_then(|a| a.parse::<i64>().ok())
        .filter(|a| *a >= 0)
    else {
        return stripe_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "Invalid integer: unit_amount",
            Some("parameter_invalid_integer"),
            Some("line_items[0][price_data][unit_amount]"),
        );
    };
    let fingerprint = {
        let mut f = form.clone();
        f.sort();
        serde_json::to_string(&f).unwrap_or_default()
    };
    let idem = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(k) = &idem {
        let existing = lock(&state.idempotency).get(k).cloned();
        if let Some(id) = existing {
            let sessions = lock(&state.sessions);
            if let Some(s) = sessions.get(&id) {
                if s.fingerprint != fingerprint {
                    return stripe_error(
                        StatusCode::BAD_REQUEST,
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                        None,
                        None,
                    );
                }
                return (
                    StatusCode::OK,
                    [("idempotent-replayed", "true")],
                    axum::Json(s.json.clone()),
                )
                    .into_response();
            }
        }
    }
    if let Err(r) = gate(&state, "stripe").await {
        return r;
    }
    let id = format!("cs_test_{}", state.token(40));
    let metadata: BTreeMap<String, String> = form
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("metadata[")
                .and_then(|k| k.strip_suffix(']'))
                .map(|k| (k.to_owned(), v.clone()))
        })
        .collect();
    let now = chrono::Utc::now().timestamp();
    let session = json!({
        "id": id, "object": "checkout.session", "mode": "payment",
        "url": format!("{}/_sim/stripe/pay/{id}", state.base_url()),
        "status": "open", "payment_status": "unpaid",
        "amount_total": amount, "amount_subtotal": amount,
        "currency": get("line_items[0][price_data][currency]"),
        "customer_email": get("customer_email"),
        "client_reference_id": get("client_reference_id"),
        "success_url": get("success_url"), "cancel_url": get("cancel_url"),
        "metadata": metadata, "payment_intent": null, "livemode": false,
        "created": now,
        "expires_at": get("expires_at").and_then(|e| e.parse::<i64>().ok()).unwrap_or(now + 86_400),
    });
    lock(&state.sessions).insert(
        id.clone(),
        Session {
            json: session.clone(),
            fingerprint,
        },
    );
    if let Some(k) = idem {
        lock(&state.idempotency).insert(k, id);
    }
    (StatusCode::OK, axum::Json(session)).into_response()
}

pub async fn get_session(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !bearer_ok(&headers, &state.cfg.stripe_key) {
        return unauthorized();
    }
    match lock(&state.sessions).get(&id) {
        Some(s) => axum::Json(s.json.clone()).into_response(),
        None => stripe_error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            &format!("No such checkout.session: '{id}'"),
            Some("resource_missing"),
            Some("id"),
        ),
    }
}

pub async fn list_sessions(State(state): State<Arc<SimState>>) -> Response {
    let all: Vec<Value> = lock(&state.sessions)
        .values()
        .map(|s| s.json.clone())
        .collect();
    axum::Json(json!({ "data": all })).into_response()
}

#[derive(Debug, Deserialize)]
pub struct EventRequest {
    pub session_id: String,
    pub target_url: String,
    /// Post the event twice (Stripe delivers at least once).
    #[serde(default)]
    pub duplicate: bool,
}

/// Posts a signed event; returns the HTTP statuses the target answered.
async fn post_event(
    state: &SimState,
    target: &str,
    kind: &str,
    object: Value,
    times: usize,
) -> Value {
    let event = json!({
        "id": format!("evt_{}", state.token(24)), "object": "event", "api_version": "2024-06-20",
        "created": chrono::Utc::now().timestamp(), "type": kind, "livemode": false,
        "data": { "object": object }, "pending_webhooks": 1, "request": { "id": null, "idempotency_key": null }
    });
    let body = event.to_string();
    let mut statuses = Vec::new();
    for _ in 0..times {
        let t = chrono::Utc::now().timestamp();
        let sig =
            shared::webhook::stripe::sign(&state.cfg.stripe_webhook_secret, t, body.as_bytes())
                .unwrap_or_default();
        let s = state
            .http
            .post(target)
            .header("content-type", "application/json")
            .header("Stripe-Signature", sig)
            .body(body.clone())
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        statuses.push(s);
    }
    json!({ "event": event, "deliveries": statuses })
}

pub async fn complete(
    State(state): State<Arc<SimState>>,
    axum::Json(req): axum::Json<EventRequest>,
) -> Response {
    let session = {
        let mut sessions = lock(&state.sessions);
        let Some(s) = sessions.get_mut(&req.session_id) else {
            return (StatusCode::NOT_FOUND, "no such session").into_response();
        };
        if let Some(o) = s.json.as_object_mut() {
            o.insert("status".into(), json!("complete"));
            o.insert("payment_status".into(), json!("paid"));
            o.insert(
                "payment_intent".into(),
                json!(format!(
                    "pi_{}",
                    &req.session_id[8..32.min(req.session_id.len())]
                )),
            );
            let email = o
                .get("customer_email")
                .cloned()
                .filter(|e| !e.is_null())
                .unwrap_or(json!("buyer@example.com"));
            o.insert(
                "customer_details".into(),
                json!({ "email": email, "name": "Sim Buyer" }),
            );
        }
        s.json.clone()
    };
    let times = if req.duplicate { 2 } else { 1 };
    axum::Json(
        post_event(
            &state,
            &req.target_url,
            "checkout.session.completed",
            session,
            times,
        )
        .await,
    )
    .into_response()
}

pub async fn refund(
    State(state): State<Arc<SimState>>,
    axum::Json(req): axum::Json<EventRequest>,
) -> Response {
    let Some((session, form)) = lock(&state.sessions)
        .get(&req.session_id)
        .map(|s| (s.json.clone(), s.fingerprint.clone()))
    else {
        return (StatusCode::NOT_FOUND, "no such session").into_response();
    };
    // As Stripe does: a charge carries the PaymentIntent's metadata (`payment_intent_data`),
    // not the session's.
    let intent_metadata: BTreeMap<String, String> =
        serde_json::from_str::<Vec<(String, String)>>(&form)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("payment_intent_data[metadata][")
                    .and_then(|k| k.strip_suffix(']'))
                    .map(|k| (k.to_owned(), v))
            })
            .collect();
    let amount = session.get("amount_total").cloned().unwrap_or(json!(0));
    let charge = json!({
        "id": format!("ch_{}", state.token(24)), "object": "charge", "amount": amount, "amount_refunded": amount,
        "refunded": true, "currency": session.get("currency"), "payment_intent": session.get("payment_intent"),
        "metadata": intent_metadata,
    });
    let times = if req.duplicate { 2 } else { 1 };
    axum::Json(post_event(&state, &req.target_url, "charge.refunded", charge, times).await)
        .into_response()
}
