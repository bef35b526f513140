//! PII is never logged in the clear. Logs carry a short, stable hash instead, so an operator can
//! still find every line about one address (`leadfactory` hashes a known address the same way)
//! without the logs holding the address.

use sha2::{Digest, Sha256};

const DOMAIN_SEPARATOR: &[u8] = b"leadfactory-pii-v1:";

/// A 16-hex-digit hash of a trimmed, lower-cased value, prefixed `pii:`.
pub fn hash_pii(value: &str) -> String {
    let mut h = Sha256::new();
    h.update(DOMAIN_SEPARATOR);
    h.update(value.trim().to_lowercase().as_bytes());
    let digest = h.finalize();
    format!("pii:{}", hex::encode(&digest[..8]))
}

/// The hash of an email address (same normalisation as [`crate::domain::Email`]).
pub fn hash_email(email: &crate::domain::Email) -> String {
    hash_pii(email.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_normalised_and_not_the_value() {
        let a = hash_pii("Owner@Example.com ");
        assert_eq!(a, hash_pii("owner@example.com"));
        assert_ne!(a, hash_pii("other@example.com"));
        assert!(a.starts_with("pii:") && a.len() == 20);
        assert!(!a.contains("owner"));
    }
}
