//! SendGrid signed event webhook: `X-Twilio-Email-Event-Webhook-Signature` is a base64 DER
//! ECDSA P-256 / SHA-256 signature over `timestamp + raw body`, with the timestamp in
//! `X-Twilio-Email-Event-Webhook-Timestamp`; the verification key is the base64 DER public key
//! SendGrid shows for the endpoint. (An HMAC shared secret — the predecessors' check — is wrong.)

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePublicKey, EncodePublicKey};

use super::SignatureError;
use crate::domain::capped;

pub const SIGNATURE_HEADER: &str = "X-Twilio-Email-Event-Webhook-Signature";
pub const TIMESTAMP_HEADER: &str = "X-Twilio-Email-Event-Webhook-Timestamp";
pub const DEFAULT_TOLERANCE_SECS: i64 = 600;

/// A parsed verification key; parse once per container.
#[derive(Debug, Clone)]
pub struct SendGridKey(VerifyingKey);

impl SendGridKey {
    /// From the base64 DER (SubjectPublicKeyInfo) form SendGrid displays.
    pub fn from_base64_der(b64: &str) -> Result<Self, SignatureError> {
        let der = STANDARD
            .decode(b64.trim())
            .map_err(|e| SignatureError::BadKey(format!("not base64: {e}")))?;
        VerifyingKey::from_public_key_der(&der)
            .map(Self)
            .map_err(|e| SignatureError::BadKey(e.to_string()))
    }

    /// Verifies a delivery; returns the timestamp.
    pub fn verify(
        &self,
        signature: Option<&str>,
        timestamp: Option<&str>,
        body: &[u8],
        now: i64,
        tolerance_secs: i64,
    ) -> Result<i64, SignatureError> {
        let sig_b64 = signature.ok_or(SignatureError::MissingHeader(SIGNATURE_HEADER))?;
        let ts = timestamp.ok_or(SignatureError::MissingHeader(TIMESTAMP_HEADER))?;
        let t: i64 = ts
            .trim()
            .parse()
            .map_err(|_| SignatureError::Malformed("timestamp is not a number"))?;
        if (now - t).abs() > tolerance_secs {
            return Err(SignatureError::Stale { tolerance_secs });
        }
        let der = STANDARD
            .decode(sig_b64.trim())
            .map_err(|_| SignatureError::Malformed("signature is not base64"))?;
        let sig = Signature::from_der(&der)
            .map_err(|_| SignatureError::Malformed("signature is not DER ECDSA"))?;
        let sig = sig.normalize_s();
        let mut msg = Vec::with_capacity(ts.len() + body.len());
        msg.extend_from_slice(ts.trim().as_bytes());
        msg.extend_from_slice(body);
        self.0
            .verify(&msg, &sig)
            .map(|_| t)
            .map_err(|_| SignatureError::Mismatch)
    }
}

/// Signs as SendGrid does (the simulator's side): base64 DER signature over `timestamp + body`.
pub fn sign(key: &SigningKey, timestamp: i64, body: &[u8]) -> String {
    let mut msg = timestamp.to_string().into_bytes();
    msg.extend_from_slice(body);
    let sig: Signature = key.sign(&msg);
    STANDARD.encode(sig.to_der().as_bytes())
}

/// The base64 DER public key for `key`, as SendGrid's settings page shows it.
pub fn public_key_base64(key: &SigningKey) -> Result<String, SignatureError> {
    key.verifying_key()
        .to_public_key_der()
        .map(|d| STANDARD.encode(d.as_bytes()))
        .map_err(|e| SignatureError::BadKey(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_slice(&[seed; 32]).unwrap()
    }

    #[test]
    fn signs_verifies_and_refuses() {
        let k = key(7);
        let vk = SendGridKey::from_base64_der(&public_key_base64(&k).unwrap()).unwrap();
        let body = br#"[{"email":"a@b.com","event":"delivered","sg_event_id":"e1"}]"#;
        let sig = sign(&k, 1_700_000_000, body);
        assert_eq!(
            vk.verify(Some(&sig), Some("1700000000"), body, 1_700_000_010, 600),
            Ok(1_700_000_000)
        );
        assert_eq!(
            vk.verify(Some(&sig), Some("1700000000"), b"[]", 1_700_000_010, 600),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            vk.verify(Some(&sig), Some("1700000001"), body, 1_700_000_010, 600),
            Err(SignatureError::Mismatch)
        );
        let other = SendGridKey::from_base64_der(&public_key_base64(&key(9)).unwrap()).unwrap();
        assert_eq!(
            other.verify(Some(&sig), Some("1700000000"), body, 1_700_000_010, 600),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            vk.verify(Some(&sig), Some("1700000000"), body, 1_700_009_999, 600),
            Err(SignatureError::Stale { .. })
        ));
        assert!(matches!(
            vk.verify(None, Some("1"), body, 1, 600),
            Err(SignatureError::MissingHeader(_))
        ));
        assert!(matches!(
            vk.verify(Some("%%%"), Some("1"), body, 1, 600),
            Err(SignatureError::Malformed(_))
        ));
        assert!(SendGridKey::from_base64_der("bm90IGEga2V5").is_err());
    }
}

/// One event of SendGrid's event webhook. Custom args come back as top-level keys (`extra`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    #[serde(deserialize_with = "capped::text::<{ capped::EMAIL }, _>")]
    pub email: String,
    pub timestamp: i64,
    #[serde(deserialize_with = "capped::text::<{ capped::SHORT }, _>")]
    pub event: String,
    /// Absent on some events: deduplicate on a hash of (message id, event, timestamp) then.
    #[serde(default, deserialize_with = "capped::opt::<{ capped::ID }, _>")]
    pub sg_event_id: Option<String>,
    #[serde(default, deserialize_with = "capped::opt::<{ capped::ID }, _>")]
    pub sg_message_id: Option<String>,
    #[serde(default, deserialize_with = "capped::opt::<{ capped::MESSAGE }, _>")]
    pub reason: Option<String>,
    #[serde(default, deserialize_with = "capped::opt::<{ capped::SHORT }, _>")]
    pub status: Option<String>,
    /// `bounce` or `blocked` on bounce events.
    #[serde(
        default,
        rename = "type",
        deserialize_with = "capped::opt::<{ capped::SHORT }, _>"
    )]
    pub bounce_type: Option<String>,
    #[serde(default, deserialize_with = "capped::opt::<{ capped::URL }, _>")]
    pub url: Option<String>,
    #[serde(flatten)]
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
}

impl Event {
    /// The message id SendGrid returned on send (`X-Message-Id`): the part before the first dot.
    pub fn message_id(&self) -> Option<&str> {
        self.sg_message_id
            .as_deref()
            .map(|m| m.split('.').next().unwrap_or(m))
    }

    /// The dedupe key: `sg_event_id`, or a hash of (message id, event, timestamp, email).
    pub fn dedupe_key(&self) -> String {
        match &self.sg_event_id {
            Some(id) if !id.is_empty() => id.clone(),
            _ => {
                use sha2::Digest;
                let mut h = sha2::Sha256::new();
                h.update(format!(
                    "{}|{}|{}|{}",
                    self.message_id().unwrap_or_default(),
                    self.event,
                    self.timestamp,
                    self.email.to_lowercase()
                ));
                format!("h:{}", hex::encode(&h.finalize()[..16]))
            }
        }
    }

    /// A custom arg as text.
    pub fn arg(&self, name: &str) -> Option<&str> {
        self.extra.get(name).and_then(|v| v.as_str())
    }
}
