//! Email addresses: syntax-checked by `email_address`, then normalised (trimmed, lower-cased) so
//! that suppression and de-duplication compare like with like.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::DomainError;

/// A syntactically valid, normalised email address with a dotted domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(DomainError::new("email", "empty"));
        }
        if trimmed.len() > 254 {
            return Err(DomainError::new("email", "longer than 254 characters"));
        }
        let lowered = trimmed.to_lowercase();
        let parsed = email_address::EmailAddress::parse_with_options(
            &lowered,
            email_address::Options::default()
                .without_display_text()
                .without_domain_literal(),
        )
        .map_err(|e| DomainError::new("email", format!("{trimmed:?}: {e}")))?;
        let domain = parsed.domain();
        if !domain.contains('.') || domain.ends_with('.') || domain.starts_with('.') {
            return Err(DomainError::new(
                "email",
                format!("{trimmed:?}: domain {domain:?} is not a public host name"),
            ));
        }
        Ok(Self(parsed.as_str().to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after `@`, used for per-domain send caps and domain suppressions.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
    }

    /// The part before `@`.
    pub fn local_part(&self) -> &str {
        self.0.rsplit_once('@').map(|(l, _)| l).unwrap_or_default()
    }

    /// The domain's registrable part (eTLD+1, from the public suffix list), to compare with a
    /// website's: `info@mail.joes.co.uk` → `joes.co.uk`.
    pub fn registrable_domain(&self) -> Option<&str> {
        psl::domain_str(self.domain()).filter(|d| d.contains('.'))
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Email {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_normalises() {
        for (raw, want) in [
            ("Owner@Example.COM", "owner@example.com"),
            ("  info@joes-pizza.net ", "info@joes-pizza.net"),
            (
                "first.last+tag@sub.example.co.uk",
                "first.last+tag@sub.example.co.uk",
            ),
        ] {
            let e = Email::parse(raw).unwrap();
            assert_eq!(e.as_str(), want, "{raw}");
        }
        assert_eq!(
            Email::parse("a@b.example.org").unwrap().domain(),
            "b.example.org"
        );
    }

    #[test]
    fn rejects_malformed() {
        for raw in [
            "",
            "   ",
            "plainaddress",
            "@example.com",
            "user@",
            "user@localhost",
            "user@@example.com",
            "user@exa mple.com",
            "Joe <joe@example.com>",
            "user@[127.0.0.1]",
        ] {
            assert!(Email::parse(raw).is_err(), "{raw:?} should be rejected");
        }
    }

    #[test]
    fn deserialising_validates() {
        assert!(serde_json::from_str::<Email>("\"x@y.com\"").is_ok());
        assert!(serde_json::from_str::<Email>("\"nope\"").is_err());
    }
}
