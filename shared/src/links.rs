//! Signed, expiring links in emails: the unsubscribe link and the paid report's download link.
//!
//! A token is `base64url(purpose ‖ tenant ‖ id ‖ expiry) . base64url(HMAC-SHA256)`, so the
//! storefront learns the tenant (for row-level security) and the row from the link itself and
//! needs no lookup table; nothing personal is in the URL. Verification is constant-time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::domain::TenantId;

/// What a token grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Unsubscribe the address of one email.
    Unsubscribe = 1,
    /// Download the full report of one purchase.
    Download = 2,
}

/// What a valid token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub tenant: TenantId,
    pub id: uuid::Uuid,
    /// Unix seconds.
    pub expires_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link secret must be at least 32 bytes")]
    WeakSecret,
    #[error("the link is malformed")]
    Malformed,
    #[error("the link is not valid")]
    BadSignature,
    #[error("the link has expired")]
    Expired,
}

/// Signs and verifies link tokens with the server's secret (`LF_LINK_SECRET`).
#[derive(Clone)]
pub struct LinkSigner {
    secret: SecretString,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSigner(..)")
    }
}

const PAYLOAD_LEN: usize = 1 + 16 + 16 + 8;

impl LinkSigner {
    pub fn new(secret: SecretString) -> Result<Self, LinkError> {
        if secret.expose_secret().len() < 32 {
            return Err(LinkError::WeakSecret);
        }
        Ok(Self { secret })
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length: this cannot fail.
        Hmac::<Sha256>::new_from_slice(self.secret.expose_secret().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
    }

    pub fn sign(
        &self,
        purpose: Purpose,
        tenant: TenantId,
        id: uuid::Uuid,
        expires_at: i64,
    ) -> String {
        let mut payload = Vec::with_capacity(PAYLOAD_LEN);
        payload.push(purpose as u8);
        payload.extend_from_slice(tenant.as_uuid().as_bytes());
        payload.extend_from_slice(id.as_bytes());
        payload.extend_from_slice(&expires_at.to_be_bytes());
        let mut m = self.mac();
        m.update(&payload);
        let tag = m.finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// Checks the signature first (constant-time), then purpose and expiry at `now`.
    pub fn verify(&self, purpose: Purpose, token: &str, now: i64) -> Result<Claim, LinkError> {
        let (p, t) = token.split_once('.').ok_or(LinkError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(p)
            .map_err(|_| LinkError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(t)
            .map_err(|_| LinkError::Malformed)?;
        if payload.len() != PAYLOAD_LEN {
            return Err(LinkError::Malformed);
        }
        let mut m = self.mac();
        m.update(&payload);
        m.verify_slice(&tag).map_err(|_| LinkError::BadSignature)?;
        if payload[0] != purpose as u8 {
            return Err(LinkError::BadSignature);
        }
        let uuid_at = |from: usize| {
            let mut b = [0u8; 16];
            b.copy_from_slice(&payload[from..from + 16]);
            uuid::Uuid::from_bytes(b)
        };
        let mut exp = [0u8; 8];
        exp.copy_from_slice(&payload[33..41]);
        let expires_at = i64::from_be_bytes(exp);
        if now > expires_at {
            return Err(LinkError::Expired);
        }
        Ok(Claim {
            tenant: TenantId::from_uuid(uuid_at(1)),
            id: uuid_at(17),
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(s: &str) -> LinkSigner {
        LinkSigner::new(SecretString::from(s.to_owned())).expect("secret")
    }

    #[test]
    fn round_trips_and_refuses_tampering_expiry_and_other_purposes() {
        let s = signer("0123456789abcdef0123456789abcdef");
        let tenant = TenantId::from_uuid(uuid::Uuid::new_v4());
        let id = uuid::Uuid::new_v4();
        let tok = s.sign(Purpose::Unsubscribe, tenant, id, 1_000);
        let c = s.verify(Purpose::Unsubscribe, &tok, 999).expect("valid");
        assert_eq!((c.tenant, c.id, c.expires_at), (tenant, id, 1_000));
        assert_eq!(
            s.verify(Purpose::Unsubscribe, &tok, 1_001),
            Err(LinkError::Expired)
        );
        assert_eq!(
            s.verify(Purpose::Download, &tok, 0),
            Err(LinkError::BadSignature)
        );
        let other = signer("another secret, also 32 bytes long!");
        assert_eq!(
            other.verify(Purpose::Unsubscribe, &tok, 0),
            Err(LinkError::BadSignature)
        );
        // Flip one character of the payload: the tag no longer matches.
        let mut bytes = tok.clone().into_bytes();
        bytes[3] = if bytes[3] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).expect("ascii");
        assert!(s.verify(Purpose::Unsubscribe, &tampered, 0).is_err());
        assert_eq!(
            s.verify(Purpose::Unsubscribe, "nodot", 0),
            Err(LinkError::Malformed)
        );
        assert!(matches!(
            LinkSigner::new(SecretString::from("short".to_owned())),
            Err(LinkError::WeakSecret)
        ));
    }
}
