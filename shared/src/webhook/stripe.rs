//! `Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]`: HMAC-SHA256 of `"{t}.{raw body}"` with the
//! endpoint secret; any `v1` may match (secret rotation); compared in constant time.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::SignatureError;
use crate::domain::capped;
use crate::vendors::stripe::CheckoutSession;

pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

fn mac(secret: &[u8], t: i64, body: &[u8]) -> Result<Vec<u8>, SignatureError> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret)
        .map_err(|e| SignatureError::BadKey(e.to_string()))?;
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    Ok(m.finalize().into_bytes().to_vec())
}

/// The header value Stripe would send (used by the simulator and tests).
pub fn sign(secret: &str, t: i64, body: &[u8]) -> Result<String, SignatureError> {
    Ok(format!(
        "t={t},v1={}",
        hex::encode(mac(secret.as_bytes(), t, body)?)
    ))
}

/// Verifies `header` for `body` at time `now` (unix seconds).
pub fn verify(
    secret: &str,
    header: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<i64, SignatureError> {
    let header = header.ok_or(SignatureError::MissingHeader("Stripe-Signature"))?;
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => {
                t = Some(
                    v.parse::<i64>()
                        .map_err(|_| SignatureError::Malformed("t is not a number"))?,
                );
            }
            Some(("v1", v)) => {
                sigs.push(hex::decode(v).map_err(|_| SignatureError::Malformed("v1 is not hex"))?);
            }
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed("no t="))?;
    if sigs.is_empty() {
        return Err(SignatureError::Malformed("no v1="));
    }
    if (now - t).abs() > tolerance_secs {
        return Err(SignatureError::Stale { tolerance_secs });
    }
    let expected = mac(secret.as_bytes(), t, body)?;
    let matched = sigs.iter().fold(subtle::Choice::from(0u8), |acc, s| {
        acc | s.as_slice().ct_eq(&expected)
    });
    if bool::from(matched) {
        Ok(t)
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_and_refuses_tampering() {
        let body = br#"{"id":"evt_1","type":"checkout.session.completed"}"#;
        let h = sign("whsec_test", 1_700_000_000, body).unwrap();
        assert_eq!(
            verify("whsec_test", Some(&h), body, 1_700_000_100, 300),
            Ok(1_700_000_000)
        );
        assert_eq!(
            verify("whsec_other", Some(&h), body, 1_700_000_100, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("whsec_test", Some(&h), b"{}", 1_700_000_100, 300),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            verify("whsec_test", Some(&h), body, 1_700_000_400, 300),
            Err(SignatureError::Stale { .. })
        ));
        assert!(matches!(
            verify("whsec_test", None, body, 0, 300),
            Err(SignatureError::MissingHeader(_))
        ));
        assert!(matches!(
            verify("whsec_test", Some("t=x,v1=00"), body, 0, 300),
            Err(SignatureError::Malformed(_))
        ));
        // Any v1 may match (rotation).
        let rotated = format!(
            "{},v1={}",
            h.replace("v1=", "v1=00"),
            &h[h.find("v1=").unwrap() + 3..]
        );
        assert!(verify("whsec_test", Some(&rotated), body, 1_700_000_000, 300).is_ok());
    }

    /// A reference value computed independently, with Python:
    /// `hmac.new(b"whsec_test", b"1700000000.{}", hashlib.sha256).hexdigest()`.
    #[test]
    fn matches_a_reference_computation() {
        assert_eq!(
            sign("whsec_test", 1_700_000_000, b"{}").unwrap(),
            "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
        );
    }
}

/// A Stripe event envelope; `data.object` is kept raw and read per event type.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    #[serde(deserialize_with = "capped::text::<{ capped::ID }, _>")]
    pub id: String,
    #[serde(
        rename = "type",
        deserialize_with = "capped::text::<{ capped::ID }, _>"
    )]
    pub kind: String,
    pub created: i64,
    #[serde(default)]
    pub livemode: bool,
    pub data: EventData,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EventData {
    #[serde(deserialize_with = "capped::json")]
    pub object: serde_json::Value,
}

impl Event {
    /// The tenant its object's metadata names (`metadata.tenant_id`), whatever its type.
    pub fn metadata_tenant(&self) -> Option<crate::domain::TenantId> {
        self.data.object["metadata"]["tenant_id"]
            .as_str()
            .and_then(|t| crate::domain::TenantId::parse(t).ok())
    }
}

/// A charge, as `charge.refunded` carries it.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Charge {
    #[serde(deserialize_with = "capped::text::<{ capped::ID }, _>")]
    pub id: String,
    #[serde(deserialize_with = "capped::opt::<{ capped::ID }, _>")]
    pub payment_intent: Option<String>,
    pub amount: Option<i64>,
    pub amount_refunded: i64,
    #[serde(deserialize_with = "capped::opt::<{ capped::SHORT }, _>")]
    pub currency: Option<String>,
    #[serde(deserialize_with = "capped::map::<{ capped::LINE }, _>")]
    pub metadata: std::collections::BTreeMap<String, String>,
}

/// A dispute, as `charge.dispute.*` carries it.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Dispute {
    #[serde(deserialize_with = "capped::text::<{ capped::ID }, _>")]
    pub id: String,
    #[serde(deserialize_with = "capped::opt::<{ capped::ID }, _>")]
    pub payment_intent: Option<String>,
    pub amount: Option<i64>,
    #[serde(deserialize_with = "capped::opt::<{ capped::SHORT }, _>")]
    pub currency: Option<String>,
    /// `won`, `lost`, `warning_closed`, … once closed.
    #[serde(deserialize_with = "capped::opt::<{ capped::SHORT }, _>")]
    pub status: Option<String>,
    #[serde(deserialize_with = "capped::map::<{ capped::LINE }, _>")]
    pub metadata: std::collections::BTreeMap<String, String>,
}

/// How a checkout session ended without payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unpaid {
    Failed,
    Expired,
}

impl Unpaid {
    /// The purchase status it leaves.
    pub fn status(self) -> &'static str {
        match self {
            Unpaid::Failed => "failed",
            Unpaid::Expired => "expired",
        }
    }
}

/// What a dispute event says: one opened, or one closed (won or lost).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisputeChange {
    Opened,
    Closed,
}

/// What an event asks of us, decided once from its type and its typed object.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A session paid: `completed` with a payment status that is not `unpaid` (Stripe's rule; a
    /// 100 % coupon is `no_payment_required`), or `async_payment_succeeded`.
    Paid(CheckoutSession),
    /// `completed` but not paid yet (an async method): the `async_payment_*` event decides.
    AwaitingPayment(CheckoutSession),
    /// A session that ended unpaid.
    Unpaid(CheckoutSession, Unpaid),
    /// Another `checkout.session.*` event: nothing to do, but it is ours.
    OtherSession(CheckoutSession),
    Refunded(Charge),
    Dispute(Dispute, DisputeChange),
    /// A type we do not act on.
    Ignored,
}

impl Action {
    /// Reads `event`'s object as its type says. A type we act on whose object does not read
    /// as that type is an error naming the type.
    pub fn of(event: &Event) -> Result<Action, String> {
        fn read<T: serde::de::DeserializeOwned>(event: &Event) -> Result<T, String> {
            T::deserialize(&event.data.object).map_err(|e| format!("{} object: {e}", event.kind))
        }
        let paid = |s: &CheckoutSession| {
            matches!(
                s.payment_status.as_deref(),
                Some("paid" | "no_payment_required")
            )
        };
        Ok(match event.kind.as_str() {
            "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
                let s: CheckoutSession = read(event)?;
                match (paid(&s), event.kind.ends_with("completed")) {
                    (true, _) => Action::Paid(s),
                    (false, true) => Action::AwaitingPayment(s),
                    (false, false) => Action::OtherSession(s),
                }
            }
            "checkout.session.async_payment_failed" => Action::Unpaid(read(event)?, Unpaid::Failed),
            "checkout.session.expired" => Action::Unpaid(read(event)?, Unpaid::Expired),
            k if k.starts_with("checkout.session.") => Action::OtherSession(read(event)?),
            "charge.refunded" => Action::Refunded(read(event)?),
            "charge.dispute.created" => Action::Dispute(read(event)?, DisputeChange::Opened),
            "charge.dispute.closed" => Action::Dispute(read(event)?, DisputeChange::Closed),
            _ => Action::Ignored,
        })
    }

    /// Whether the event is of a type we act on (kept for an operator when it names no tenant).
    pub fn acted_on(&self) -> bool {
        !matches!(self, Action::Ignored)
    }

    /// The payment intent of a charge's event (refund, dispute): the purchase it belongs to.
    pub fn charge_payment_intent(&self) -> Option<&str> {
        match self {
            Action::Refunded(c) => c.payment_intent.as_deref(),
            Action::Dispute(d, _) => d.payment_intent.as_deref(),
            _ => None,
        }
    }

    /// The session, for a session's event.
    pub fn session(&self) -> Option<&CheckoutSession> {
        match self {
            Action::Paid(s)
            | Action::AwaitingPayment(s)
            | Action::Unpaid(s, _)
            | Action::OtherSession(s) => Some(s),
            _ => None,
        }
    }

    /// The amount and currency the object states (a session's total, a charge's or a
    /// dispute's amount).
    pub fn amount(&self) -> (Option<i64>, Option<&str>) {
        match self {
            Action::Refunded(c) => (c.amount, c.currency.as_deref()),
            Action::Dispute(d, _) => (d.amount, d.currency.as_deref()),
            Action::Ignored => (None, None),
            _ => self
                .session()
                .map_or((None, None), |s| (s.amount_total, s.currency.as_deref())),
        }
    }
}

#[cfg(test)]
mod action_tests {
    use super::*;

    fn event(kind: &str, object: serde_json::Value) -> Event {
        Event {
            id: "evt_1".into(),
            kind: kind.into(),
            created: 0,
            livemode: false,
            data: EventData { object },
        }
    }

    #[test]
    fn each_type_reads_as_the_action_it_asks_for() {
        let session = |status: &str| {
            serde_json::json!({"id": "cs_1", "payment_status": status, "amount_total": 900,
                               "currency": "usd", "metadata": {"tenant_id": "00000000-0000-4000-8000-00000000000a"}})
        };
        let of = |k: &str, o| Action::of(&event(k, o)).unwrap();
        assert!(matches!(
            of("checkout.session.completed", session("paid")),
            Action::Paid(_)
        ));
        assert!(matches!(
            of("checkout.session.completed", session("no_payment_required")),
            Action::Paid(_)
        ));
        assert!(matches!(
            of("checkout.session.completed", session("unpaid")),
            Action::AwaitingPayment(_)
        ));
        assert!(matches!(
            of("checkout.session.async_payment_succeeded", session("paid")),
            Action::Paid(_)
        ));
        assert!(matches!(
            of(
                "checkout.session.async_payment_succeeded",
                session("unpaid")
            ),
            Action::OtherSession(_)
        ));
        assert!(matches!(
            of("checkout.session.expired", session("unpaid")),
            Action::Unpaid(_, Unpaid::Expired)
        ));
        assert!(matches!(
            of(
                "charge.dispute.closed",
                serde_json::json!({"id": "dp_1", "status": "lost"})
            ),
            Action::Dispute(_, DisputeChange::Closed)
        ));
        let refund = of(
            "charge.refunded",
            serde_json::json!({"id": "ch_1", "payment_intent": "pi_1", "amount": 900, "amount_refunded": 300}),
        );
        assert_eq!(refund.charge_payment_intent(), Some("pi_1"));
        assert_eq!(refund.amount(), (Some(900), None));
        let paid = of("checkout.session.completed", session("paid"));
        assert!(
            event("checkout.session.completed", session("paid"))
                .metadata_tenant()
                .is_some()
        );
        assert!(
            event("charge.refunded", serde_json::json!({}))
                .metadata_tenant()
                .is_none()
        );
        assert_eq!(paid.amount(), (Some(900), Some("usd")));
        assert_eq!(of("invoice.paid", serde_json::json!({})), Action::Ignored);
        assert!(!Action::Ignored.acted_on());
        let bad = Action::of(&event(
            "charge.refunded",
            serde_json::json!({"amount_refunded": "lots"}),
        ))
        .unwrap_err();
        assert!(bad.starts_with("charge.refunded object:"), "{bad}");
    }
}
