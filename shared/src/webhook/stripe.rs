//! `Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]`: HMAC-SHA256 of `"{t}.{raw body}"` with the
//! endpoint secret; any `v1` may match (secret rotation); compared in constant time.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::SignatureError;
use crate::domain::capped;

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
                )
            }
            Some(("v1", v)) => {
                sigs.push(hex::decode(v).map_err(|_| SignatureError::Malformed("v1 is not hex"))?)
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
