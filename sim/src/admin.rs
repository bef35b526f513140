//! Slack's incoming webhook and the simulator's own admin endpoints (`/_sim/...`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::faults::Fault;
use crate::shapes::gate;
use crate::state::{SimState, lock};

pub async fn slack(
    State(state): State<Arc<SimState>>,
    Path((a, b, c)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> Response {
    if !(a.starts_with('T') && b.starts_with('B') && !c.is_empty()) {
        return (StatusCode::NOT_FOUND, "no_service").into_response();
    }
    let Ok(mut v) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "invalid_payload").into_response();
    };
    let has_text = v
        .get("text")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty());
    if !has_text && v.get("blocks").is_none() {
        return (StatusCode::BAD_REQUEST, "no_text").into_response();
    }
    if let Err(r) = gate(&state, "slack").await {
        return r;
    }
    // Which incoming webhook (channel) it was posted to, for tests that tell channels apart.
    if let Some(o) = v.as_object_mut() {
        o.insert("_webhook".into(), json!(format!("/services/{a}/{b}/{c}")));
    }
    lock(&state.slack).push(v);
    (StatusCode::OK, "ok").into_response()
}

pub async fn slack_messages(State(state): State<Arc<SimState>>) -> Response {
    axum::Json(json!({ "messages": *lock(&state.slack) })).into_response()
}

pub async fn get_faults(State(state): State<Arc<SimState>>) -> Response {
    axum::Json(json!(*lock(&state.faults))).into_response()
}

/// Replaces the fault settings of the vendors named in the body.
pub async fn set_faults(
    State(state): State<Arc<SimState>>,
    axum::Json(body): axum::Json<HashMap<String, Fault>>,
) -> Response {
    let mut faults = lock(&state.faults);
    for (vendor, f) in body {
        let known = crate::faults::names();
        if !known.contains(&vendor.as_str()) {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(
                    json!({ "error": format!("unknown vendor {vendor:?}; known: {known:?}") }),
                ),
            )
                .into_response();
        }
        faults.insert(vendor, f);
    }
    axum::Json(json!(*faults)).into_response()
}

pub async fn requests(State(state): State<Arc<SimState>>) -> Response {
    axum::Json(json!(*lock(&state.requests))).into_response()
}

pub async fn health() -> Response {
    axum::Json(json!({ "ok": true })).into_response()
}

/// Clears outbox, Slack messages, sessions, counters and faults (not the seed).
pub async fn reset(State(state): State<Arc<SimState>>) -> Response {
    lock(&state.outbox).clear();
    lock(&state.slack).clear();
    lock(&state.sessions).clear();
    lock(&state.idempotency).clear();
    lock(&state.requests).clear();
    *lock(&state.faults) = state.cfg.faults.clone();
    axum::Json(json!({ "ok": true })).into_response()
}
