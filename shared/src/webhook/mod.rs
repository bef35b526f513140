//! Webhook signature verification, on the raw body, before anything parses it.

pub mod sendgrid;
pub mod stripe;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing signature header {0}")]
    MissingHeader(&'static str),
    #[error("malformed signature header: {0}")]
    Malformed(&'static str),
    #[error("timestamp is outside the {tolerance_secs} s tolerance")]
    Stale { tolerance_secs: i64 },
    #[error("signature does not match")]
    Mismatch,
    #[error("verification key is not valid: {0}")]
    BadKey(String),
}
