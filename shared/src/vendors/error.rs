//! What a vendor call can end in. Callers match on these: `BadRequest` and `Unauthorized` are
//! permanent (DLQ), `RateLimited`, `Unavailable` and `CircuitOpen` are transient (retry later),
//! `QuotaExhausted` and `BudgetRefused` mean "skip the paid step today".

use std::time::Duration;

use super::Vendor;

#[derive(Debug, thiserror::Error)]
pub enum VendorError {
    #[error("{vendor}: rate limited after {attempts} attempts")]
    RateLimited {
        vendor: Vendor,
        attempts: u32,
        retry_after: Option<Duration>,
    },
    #[error("{vendor}: quota exhausted: {message}")]
    QuotaExhausted { vendor: Vendor, message: String },
    #[error("{vendor}: unauthorised ({status}): {message}")]
    Unauthorized {
        vendor: Vendor,
        status: u16,
        message: String,
    },
    #[error("{vendor}: bad request ({status}): {message}")]
    BadRequest {
        vendor: Vendor,
        status: u16,
        message: String,
    },
    #[error("{vendor}: unavailable after {attempts} attempts: {detail}")]
    Unavailable {
        vendor: Vendor,
        attempts: u32,
        detail: String,
    },
    #[error("{vendor}: circuit open, retry in {retry_in:?}")]
    CircuitOpen { vendor: Vendor, retry_in: Duration },
    #[error("{vendor}: malformed response: {detail}; body starts {excerpt:?}")]
    Malformed {
        vendor: Vendor,
        detail: String,
        excerpt: String,
    },
    #[error("{vendor}: the model refused: {message}")]
    Refused { vendor: Vendor, message: String },
    #[error("{vendor}: budget gate refused the call")]
    BudgetRefused { vendor: Vendor },
    #[error("{vendor}: invalid request built by us: {detail}")]
    InvalidInput { vendor: Vendor, detail: String },
    /// A request that must not be repeated (an email send) may or may not have been acted on:
    /// the connection failed after it was sent. Not retried; someone must look.
    #[error("{vendor}: outcome unknown: {detail}")]
    Ambiguous { vendor: Vendor, detail: String },
}

impl VendorError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            VendorError::RateLimited { .. }
                | VendorError::Unavailable { .. }
                | VendorError::CircuitOpen { .. }
        )
    }

    /// A short machine-readable code for run events and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            VendorError::RateLimited { .. } => "rate_limited",
            VendorError::QuotaExhausted { .. } => "quota_exhausted",
            VendorError::Unauthorized { .. } => "unauthorized",
            VendorError::BadRequest { .. } => "bad_request",
            VendorError::Unavailable { .. } => "unavailable",
            VendorError::CircuitOpen { .. } => "circuit_open",
            VendorError::Malformed { .. } => "malformed_response",
            VendorError::Refused { .. } => "refused",
            VendorError::BudgetRefused { .. } => "SKIPPED_DUE_TO_BUDGET",
            VendorError::InvalidInput { .. } => "invalid_input",
            VendorError::Ambiguous { .. } => "ambiguous",
        }
    }
}

/// The first `max` characters of a body, for error messages (never a whole body in a log).
pub(crate) fn excerpt(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(body);
    text.chars().take(max).collect()
}

/// The vendor's own error message from any of the error envelopes the vendors use: Yelp
/// `{"error":{"code","description"}}` (description may be an object), Google
/// `{"error":{"code","message","status"}}`, OpenAI/Stripe `{"error":{"message","type","code"}}`,
/// SendGrid `{"errors":[{"message","field"}]}`, Slack plain text.
pub(crate) fn vendor_message(body: &[u8]) -> (String, Option<String>) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (excerpt(body, 200), None);
    };
    if let Some(errors) = v.get("errors").and_then(|e| e.as_array()) {
        let msg = errors
            .iter()
            .map(|e| {
                let m = e.get("message").and_then(|m| m.as_str()).unwrap_or("error");
                match e.get("field").and_then(|f| f.as_str()) {
                    Some(f) => format!("{f}: {m}"),
                    None => m.to_owned(),
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
        return (msg, None);
    }
    let Some(err) = v.get("error") else {
        return (excerpt(body, 200), None);
    };
    if let Some(s) = err.as_str() {
        return (s.to_owned(), None);
    }
    let code = err
        .get("code")
        .and_then(|c| c.as_str().map(str::to_owned))
        .or_else(|| err.get("type").and_then(|t| t.as_str()).map(str::to_owned))
        .or_else(|| {
            err.get("status")
                .and_then(|s| s.as_str())
                .map(str::to_owned)
        });
    let message = match (err.get("message"), err.get("description")) {
        (Some(serde_json::Value::String(m)), _) => m.clone(),
        (_, Some(serde_json::Value::String(d))) => d.clone(),
        (_, Some(other)) => other.to_string(),
        _ => err.to_string(),
    };
    let message = match err.get("param").and_then(|p| p.as_str()) {
        Some(p) => format!("{p}: {message}"),
        None => message,
    };
    (message, code)
}

/// Vendor codes meaning "no more calls today" rather than "slow down".
pub(crate) fn is_quota_code(code: Option<&str>, message: &str) -> bool {
    matches!(
        code,
        Some("insufficient_quota" | "credit_balance_exhausted" | "ACCESS_LIMIT_REACHED")
    ) || message.contains("per day")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_vendor_error_envelope() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            (
                r#"{"error":{"code":"VALIDATION_ERROR","description":"The supplied limit: 100 is invalid"}}"#,
                "The supplied limit: 100 is invalid",
                Some("VALIDATION_ERROR"),
            ),
            (
                r#"{"error":{"code":"VALIDATION_ERROR","description":{"error":{"code":"LOCATION_NOT_FOUND"}}}}"#,
                r#"{"error":{"code":"LOCATION_NOT_FOUND"}}"#,
                Some("VALIDATION_ERROR"),
            ),
            (
                r#"{"error":{"code":400,"message":"FieldMask is a required parameter","status":"INVALID_ARGUMENT"}}"#,
                "FieldMask is a required parameter",
                Some("INVALID_ARGUMENT"),
            ),
            (
                r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
                "You exceeded your current quota",
                Some("insufficient_quota"),
            ),
            (
                r#"{"errors":[{"message":"The from email does not contain a valid address.","field":"from.email"}]}"#,
                "from.email: The from email does not contain a valid address.",
                None,
            ),
            (
                r#"{"error":{"message":"No such checkout session","type":"invalid_request_error","param":"id"}}"#,
                "id: No such checkout session",
                Some("invalid_request_error"),
            ),
            ("invalid_payload", "invalid_payload", None),
        ];
        for (body, msg, code) in cases {
            let (m, c) = vendor_message(body.as_bytes());
            assert_eq!(&m, msg, "{body}");
            assert_eq!(c.as_deref(), *code, "{body}");
        }
        assert!(is_quota_code(Some("insufficient_quota"), ""));
        assert!(is_quota_code(
            Some("RESOURCE_EXHAUSTED"),
            "limit 'Queries per day' of service"
        ));
        assert!(!is_quota_code(
            Some("rate_limit_exceeded"),
            "Rate limit reached"
        ));
    }
}
