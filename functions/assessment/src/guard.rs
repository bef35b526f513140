//! The SSRF guard for homepage fetches. A business's "website" is attacker-controlled input:
//! it may point at 169.254.169.254, at localhost, or at a name that resolves to a private
//! address, directly or after a redirect. Three checks close every path:
//! * the URL: http(s) only, no credentials, IP literals checked (reqwest does not resolve them);
//! * DNS: our resolver refuses a name if *any* address it resolves to is forbidden;
//! * redirects: every hop's URL is checked again, and the hop count is capped.
//!
//! Development mode (the local run and tests) may allow local targets for the simulator.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("scheme {0} is not http(s)")]
    Scheme(String),
    #[error("credentials in the URL")]
    Credentials,
    #[error("no host")]
    NoHost,
    #[error("{0} is a forbidden address (private, loopback, link-local, metadata or reserved)")]
    ForbiddenAddress(IpAddr),
    #[error("port {0} is not allowed")]
    Port(u16),
}

fn v4_forbidden(a: Ipv4Addr) -> bool {
    let o = a.octets();
    a.is_private()
        || a.is_loopback()
        || a.is_link_local()
        || a.is_broadcast()
        || a.is_unspecified()
        || a.is_multicast()
        || a.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10 carrier-grade NAT
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24 protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15 benchmarking
        || o[0] >= 240 // reserved and broadcast
}

/// Whether an address must never be fetched in production.
pub fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => v4_forbidden(a),
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return v4_forbidden(v4);
            }
            let s = a.segments();
            a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x64 && s[1] == 0xff9b && v4_forbidden(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8))) // NAT64
                || (s[0..6] == [0, 0, 0, 0, 0, 0] && v4_forbidden(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8))) // IPv4-compatible
        }
    }
}

/// The guard's settings.
#[derive(Debug, Clone, Copy)]
pub struct Guard {
    pub allow_private: bool,
    /// Production: only ports 80, 443, 8080 and 8443.
    pub restrict_ports: bool,
    /// Development: `*.test` names resolve here.
    pub test_tld_addr: Option<IpAddr>,
}

impl Guard {
    /// Checks a URL before any connection (and each redirect target).
    pub fn check_url(&self, url: &Url) -> Result<(), Refusal> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refusal::Scheme(url.scheme().to_owned()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refusal::Credentials);
        }
        let ip = match url.host() {
            None => return Err(Refusal::NoHost),
            Some(Host::Ipv4(a)) => Some(IpAddr::V4(a)),
            Some(Host::Ipv6(a)) => Some(IpAddr::V6(a)),
            Some(Host::Domain(_)) => None,
        };
        if !self.allow_private
            && let Some(ip) = ip
            && forbidden(ip)
        {
            return Err(Refusal::ForbiddenAddress(ip));
        }
        if self.restrict_ports
            && let Some(port) = url.port()
            && ![80, 443, 8080, 8443].contains(&port)
        {
            return Err(Refusal::Port(port));
        }
        Ok(())
    }

    /// Resolves `host`, refusing it if any address is forbidden.
    pub async fn resolve(&self, host: &str) -> Result<Vec<SocketAddr>, String> {
        let host = host.trim_end_matches('.');
        if let Some(addr) = self.test_tld_addr
            && host.ends_with(".test")
        {
            return Ok(vec![SocketAddr::new(addr, 0)]);
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect();
        if addrs.is_empty() {
            return Err(format!("{host} has no addresses"));
        }
        if !self.allow_private
            && let Some(bad) = addrs.iter().find(|a| forbidden(a.ip()))
        {
            return Err(format!(
                "{host} resolves to {}: {}",
                bad.ip(),
                Refusal::ForbiddenAddress(bad.ip())
            ));
        }
        Ok(addrs)
    }
}

/// reqwest's resolver hook.
#[derive(Debug, Clone)]
pub struct GuardedResolver(pub Guard);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.0;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = guard
                .resolve(&host)
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// A reqwest client with the guard on DNS and on every redirect, and no proxies; built on the
/// first fetch.
pub fn client(
    guard: Guard,
    timeout: std::time::Duration,
    max_redirects: usize,
) -> shared::tls::LazyHttp {
    shared::tls::LazyHttp::new(move |builder| {
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= max_redirects {
                return attempt.error(format!("more than {max_redirects} redirects"));
            }
            match guard.check_url(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(r) => attempt.error(format!("redirect refused: {r}")),
            }
        });
        builder
            .dns_resolver(Arc::new(GuardedResolver(guard)))
            .redirect(policy)
            .no_proxy()
            // Each site is fetched once: an idle connection kept per host (reqwest keeps them
            // 90 s) only piles up sockets and buffers — measured, memory grew with run size.
            .pool_max_idle_per_host(0)
            .timeout(timeout)
            .connect_timeout(timeout.min(std::time::Duration::from_secs(5)))
            .user_agent("LeadFactoryAuditBot/1.0 (+website audit)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROD: Guard = Guard {
        allow_private: false,
        restrict_ports: true,
        test_tld_addr: None,
    };

    #[test]
    fn hostile_urls_are_refused() {
        for raw in [
            "http://127.0.0.1/",
            "http://10.0.0.5/",
            "http://172.16.3.4/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/",
            "http://[fe80::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://2130706433/",   // decimal 127.0.0.1
            "http://0x7f.0.0.1/",   // hex
            "http://0177.0.0.1/",   // octal
            "http://017700000001/", // octal whole
            "http://127.1/",        // short form
            "http://0.0.0.0/",
            "http://100.64.1.1/",
            "http://[::]/",
            "http://user:pw@example.com/",
            "ftp://example.com/",
            "file:///etc/passwd",
            "http://example.com:22/",
        ] {
            let url = Url::parse(raw).unwrap();
            assert!(PROD.check_url(&url).is_err(), "{raw} should be refused");
        }
    }

    #[test]
    fn public_urls_pass() {
        for raw in [
            "https://www.example.com/",
            "http://93.184.216.34/",
            "http://[2606:2800:220:1:248:1893:25c8:1946]/",
            "https://example.com:8443/x",
        ] {
            assert!(PROD.check_url(&Url::parse(raw).unwrap()).is_ok(), "{raw}");
        }
        let dev = Guard {
            allow_private: true,
            restrict_ports: false,
            test_tld_addr: None,
        };
        assert!(
            dev.check_url(&Url::parse("http://127.0.0.1:8123/").unwrap())
                .is_ok()
        );
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused() {
        // `localhost` resolves to loopback through the system resolver.
        let err = PROD.resolve("localhost").await.unwrap_err();
        assert!(
            err.contains("forbidden") || err.contains("cannot resolve"),
            "{err}"
        );
        let dev = Guard {
            allow_private: true,
            restrict_ports: false,
            test_tld_addr: Some(IpAddr::from([127, 0, 0, 1])),
        };
        assert_eq!(
            dev.resolve("www.joes.test").await.unwrap()[0].ip(),
            IpAddr::from([127, 0, 0, 1])
        );
        // Without the development mapping, .test names do not resolve at all.
        assert!(PROD.resolve("www.joes.test").await.is_err());
    }

    #[tokio::test]
    async fn a_redirect_to_a_private_address_is_refused() {
        // A public-looking server (allowed in this test) that redirects to the metadata address.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest/meta-data/\r\nContent-Length: 0\r\n\r\n").await;
            }
        });
        // The first hop reaches the test server through the explicit .test mapping; the
        // redirect target is judged by production address rules and refused.
        let g = Guard {
            allow_private: false,
            restrict_ports: false,
            test_tld_addr: Some(IpAddr::from([127, 0, 0, 1])),
        };
        let c = client(g, std::time::Duration::from_secs(5), 5)
            .get()
            .unwrap()
            .clone();
        let err = c
            .get(format!("http://www.redirector.test:{port}/"))
            .send()
            .await
            .unwrap_err();
        assert!(err.is_redirect(), "{err:?}");
        assert!(format!("{err:?}").contains("redirect refused"), "{err:?}");
    }
}
