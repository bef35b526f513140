//! A business's website. Normalised (scheme added when missing, host lower-cased, fragment and
//! default port dropped) and carrying its registrable domain (`shop.joes.co.uk` → `joes.co.uk`,
//! from the public suffix list), which is a de-duplication key. Whether a URL may be *fetched* is a
//! separate, network-level decision (the SSRF guard in the assessment stage); this type only
//! refuses what can never be a public website: non-HTTP schemes, credentials, IP literals,
//! single-label hosts and hosts without a registrable domain.

use std::fmt;

use serde::{Deserialize, Serialize};
use url::{Host, Url};

use super::DomainError;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WebsiteUrl {
    url: String,
    domain: String,
}

impl WebsiteUrl {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(DomainError::new("website url", "empty"));
        }
        let with_scheme = if trimmed.contains("://") {
            trimmed.to_owned()
        } else {
            format!("http://{trimmed}")
        };
        let mut url = Url::parse(&with_scheme)
            .map_err(|e| DomainError::new("website url", format!("{trimmed:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(DomainError::new(
                "website url",
                format!("{trimmed:?}: scheme {} is not http(s)", url.scheme()),
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(DomainError::new(
                "website url",
                format!("{trimmed:?}: credentials in a URL are not allowed"),
            ));
        }
        let host = match url.host() {
            Some(Host::Domain(d)) => d.trim_end_matches('.').to_ascii_lowercase(),
            Some(Host::Ipv4(_) | Host::Ipv6(_)) => {
                return Err(DomainError::new(
                    "website url",
                    format!("{trimmed:?}: an IP address is not a business website"),
                ));
            }
            None => {
                return Err(DomainError::new(
                    "website url",
                    format!("{trimmed:?}: no host"),
                ));
            }
        };
        // Numeric-only labels (e.g. decimal IPv4 forms) are never real hosts.
        if host
            .split('.')
            .all(|l| l.chars().all(|c| c.is_ascii_digit() || c == 'x'))
        {
            return Err(DomainError::new(
                "website url",
                format!("{trimmed:?}: numeric host {host:?}"),
            ));
        }
        let domain = psl::domain_str(&host)
            .filter(|d| d.contains('.'))
            .ok_or_else(|| {
                DomainError::new(
                    "website url",
                    format!("{trimmed:?}: host {host:?} has no registrable domain"),
                )
            })?
            .to_owned();
        url.set_fragment(None);
        if url.host_str() != Some(host.as_str()) {
            url.set_host(Some(&host))
                .map_err(|e| DomainError::new("website url", format!("{trimmed:?}: {e}")))?;
        }
        Ok(Self {
            url: url.to_string(),
            domain,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// The registrable domain (eTLD+1), e.g. `joes-pizza.com`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    pub fn is_https(&self) -> bool {
        self.url.starts_with("https://")
    }
}

impl fmt::Display for WebsiteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

impl TryFrom<String> for WebsiteUrl {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<WebsiteUrl> for String {
    fn from(w: WebsiteUrl) -> String {
        w.url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_extracts_registrable_domain() {
        for (raw, url, domain) in [
            ("joes-pizza.com", "http://joes-pizza.com/", "joes-pizza.com"),
            (
                "HTTPS://WWW.Joes-Pizza.com/Menu#top",
                "https://www.joes-pizza.com/Menu",
                "joes-pizza.com",
            ),
            (
                "http://shop.joes.co.uk:80/",
                "http://shop.joes.co.uk/",
                "joes.co.uk",
            ),
            (
                "https://a.b.example.org/x?y=1",
                "https://a.b.example.org/x?y=1",
                "example.org",
            ),
            ("www.example.com.", "http://www.example.com/", "example.com"),
        ] {
            let w = WebsiteUrl::parse(raw).unwrap();
            assert_eq!(w.as_str(), url, "{raw}");
            assert_eq!(w.domain(), domain, "{raw}");
        }
        assert!(WebsiteUrl::parse("https://x.com").unwrap().is_https());
    }

    #[test]
    fn rejects_what_cannot_be_a_public_site() {
        for raw in [
            "",
            "ftp://example.com/",
            "javascript:alert(1)",
            "http://user:pw@example.com/",
            "http://127.0.0.1/",
            "http://[::1]/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://localhost/",
            "http://co.uk/",
            "http:///nohost",
        ] {
            assert!(
                WebsiteUrl::parse(raw).is_err(),
                "{raw:?} should be rejected"
            );
        }
    }
}
