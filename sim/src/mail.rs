//! SendGrid `POST /v3/mail/send` (validated, kept in an outbox) and the signed event webhook the
//! simulator posts to a target on request.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use p256::ecdsa::SigningKey;
use serde::Deserialize;
use serde_json::{Value, json};
use shared::webhook::sendgrid;

use crate::shapes::{bearer_ok, gate, sendgrid_error};
use crate::state::{OutboxMail, SimState, lock};

fn valid_email(v: Option<&Value>) -> Option<String> {
    let e = v?.get("email")?.as_str()?;
    shared::domain::Email::parse(e).ok().map(|e| e.to_string())
}

pub async fn send(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !bearer_ok(&headers, &state.cfg.sendgrid_key) {
        return sendgrid_error(
            StatusCode::UNAUTHORIZED,
            None,
            "The provided authorization grant is invalid, expired, or revoked",
        );
    }
    let mail: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return sendgrid_error(StatusCode::BAD_REQUEST, None, "Bad Request"),
    };
    let Some(ps) = mail
        .get("personalizations")
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty())
    else {
        return sendgrid_error(
            StatusCode::BAD_REQUEST,
            Some("personalizations"),
            "The personalizations field is required and must have at least one personalization.",
        );
    };
    let mut to = Vec::new();
    let mut custom_args = json!({});
    for (i, p) in ps.iter().enumerate() {
        let Some(tos) = p
            .get("to")
            .and_then(Value::as_array)
            .filter(|t| !t.is_empty())
        else {
            return sendgrid_error(
                StatusCode::BAD_REQUEST,
                Some(&format!("personalizations.{i}.to")),
                "The to array is required for all personalization objects, and must have at least one email object with a valid email address.",
            );
        };
        for t in tos {
            match valid_email(Some(t)) {
                Some(e) => to.push(e),
                None => {
                    return sendgrid_error(
                        StatusCode::BAD_REQUEST,
                        Some(&format!("personalizations.{i}.to")),
                        "Does not contain a valid address.",
                    );
                }
            }
        }
        if let Some(a) = p.get("custom_args") {
            custom_args = a.clone();
        }
    }
    let Some(from) = valid_email(mail.get("from")) else {
        return sendgrid_error(
            StatusCode::BAD_REQUEST,
            Some("from.email"),
            "The from email does not contain a valid address.",
        );
    };
    let Some(subject) = mail
        .get("subject")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    else {
        return sendgrid_error(
            StatusCode::BAD_REQUEST,
            Some("subject"),
            "The subject is required. You can get around this requirement if you use a template with a subject defined or if every personalization has a subject defined.",
        );
    };
    let Some(content) = mail
        .get("content")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
    else {
        return sendgrid_error(
            StatusCode::BAD_REQUEST,
            Some("content"),
            "Unless a valid template_id is provided, the content parameter is required. There must be at least one defined content block.",
        );
    };
    let part = |t: &str| {
        content
            .iter()
            .find(|c| c.get("type").and_then(Value::as_str) == Some(t))
            .and_then(|c| c.get("value"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    if content.iter().any(|c| {
        c.get("value")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    }) {
        return sendgrid_error(
            StatusCode::BAD_REQUEST,
            Some("content.0.value"),
            "The content value must be a string at least one character in length.",
        );
    }
    if let Err(r) = gate(&state, "sendgrid").await {
        return r;
    }
    let message_id = state.token(22);
    lock(&state.outbox).push(OutboxMail {
        message_id: message_id.clone(),
        to,
        from,
        subject: subject.to_owned(),
        text: part("text/plain"),
        html: part("text/html"),
        headers: mail.get("headers").cloned().unwrap_or(json!({})),
        custom_args,
        attachments: mail
            .get("attachments")
            .and_then(Value::as_array)
            .map_or(0, Vec::len),
        received_at: chrono::Utc::now().timestamp(),
        evented: false,
    });
    (StatusCode::ACCEPTED, [("x-message-id", message_id)]).into_response()
}

#[expect(clippy::expect_used, reason = "a constant valid P-256 scalar")]
pub fn signing_key(state: &SimState) -> SigningKey {
    // A fixed test key pair: 32 bytes of the configured seed byte is a valid P-256 scalar.
    SigningKey::from_slice(&[state.cfg.sendgrid_signing_seed.max(1); 32])
        .unwrap_or_else(|_| SigningKey::from_slice(&[7; 32]).expect("constant key"))
}

pub async fn public_key(State(state): State<Arc<SimState>>) -> Response {
    match sendgrid::public_key_base64(&signing_key(&state)) {
        Ok(k) => axum::Json(json!({ "public_key": k })).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

pub async fn outbox(State(state): State<Arc<SimState>>) -> Response {
    axum::Json(json!({ "messages": *lock(&state.outbox) })).into_response()
}

/// Shares of each event among emailed messages.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Mix {
    pub bounce: f64,
    pub dropped: f64,
    pub open: f64,
    pub click: f64,
    pub spamreport: f64,
    pub unsubscribe: f64,
    /// Post the same batch twice (SendGrid retries deliveries).
    pub duplicate_delivery: bool,
    /// Share of events sent without `sg_event_id`.
    pub without_event_id: f64,
}

impl Default for Mix {
    fn default() -> Self {
        Self {
            bounce: 0.03,
            dropped: 0.01,
            open: 0.45,
            click: 0.15,
            spamreport: 0.002,
            unsubscribe: 0.01,
            duplicate_delivery: true,
            without_event_id: 0.05,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct EmitRequest {
    pub target_url: String,
    #[serde(default)]
    pub mix: Mix,
}

/// Builds events for every message not yet evented, signs them, POSTs them to the target.
pub async fn emit(
    State(state): State<Arc<SimState>>,
    axum::Json(req): axum::Json<EmitRequest>,
) -> Response {
    let mut events = Vec::new();
    let now = chrono::Utc::now().timestamp();
    let pending: Vec<OutboxMail> = {
        let mut ob = lock(&state.outbox);
        let p: Vec<OutboxMail> = ob.iter().filter(|m| !m.evented).cloned().collect();
        for m in ob.iter_mut() {
            m.evented = true;
        }
        p
    };
    for m in &pending {
        let Some(email) = m.to.first() else { continue };
        let mut ev = |event: &str, extra: Value| {
            let mut e = json!({
                "email": email, "timestamp": now, "event": event,
                "smtp-id": format!("<{}@sim.sendgrid.net>", m.message_id),
                "sg_message_id": format!("{}.filterdrecv-sim-1-{}", m.message_id, events.len()),
                "sg_event_id": state.token(22),
            });
            if let (Some(obj), Some(args)) = (e.as_object_mut(), m.custom_args.as_object()) {
                for (k, v) in args {
                    obj.insert(k.clone(), v.clone());
                }
                if let Some(x) = extra.as_object() {
                    for (k, v) in x {
                        obj.insert(k.clone(), v.clone());
                    }
                }
                if state.random() < req.mix.without_event_id {
                    obj.remove("sg_event_id");
                }
            }
            events.push(e);
        };
        ev("processed", json!({}));
        let r = state.random();
        if r < req.mix.bounce {
            ev(
                "bounce",
                json!({ "type": "bounce", "status": "5.1.1", "reason": "550 5.1.1 The email account that you tried to reach does not exist." }),
            );
            continue;
        }
        if r < req.mix.bounce + req.mix.dropped {
            ev("dropped", json!({ "reason": "Bounced Address" }));
            continue;
        }
        ev("delivered", json!({ "response": "250 OK" }));
        if state.random() < req.mix.open {
            ev(
                "open",
                json!({ "useragent": "Mozilla/5.0", "ip": "192.0.2.10" }),
            );
            if state.random() < req.mix.click / req.mix.open.max(f64::EPSILON) {
                ev(
                    "click",
                    json!({ "url": "https://example.invalid/r", "useragent": "Mozilla/5.0", "ip": "192.0.2.10" }),
                );
            }
        }
        if state.random() < req.mix.spamreport {
            ev("spamreport", json!({}));
        }
        if state.random() < req.mix.unsubscribe {
            ev("unsubscribe", json!({}));
        }
    }
    let body = Value::Array(events.clone()).to_string();
    let key = signing_key(&state);
    let deliveries = if req.mix.duplicate_delivery { 2 } else { 1 };
    let mut statuses = Vec::new();
    for _ in 0..deliveries {
        if events.is_empty() {
            break;
        }
        let ts = chrono::Utc::now().timestamp();
        let sig = sendgrid::sign(&key, ts, body.as_bytes());
        let status = state
            .http
            .post(&req.target_url)
            .header("content-type", "application/json")
            .header(sendgrid::SIGNATURE_HEADER, sig)
            .header(sendgrid::TIMESTAMP_HEADER, ts.to_string())
            .body(body.clone())
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        statuses.push(status);
    }
    axum::Json(json!({ "messages": pending.len(), "events": events.len(), "deliveries": statuses }))
        .into_response()
}
