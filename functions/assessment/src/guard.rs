//! The SSRF guard for homepage fetches. A business's "website" is attacker-controlled input:
//! it may point at 169.254.169.254, at localhost, or at a name that resolves to a private
//! address, directly or after a redirect. Three checks close every path:
//! * the URL: http(s) only, no credentials, IP literals checked (reqwest does not resolve them);
//! * DNS: our resolver refuses a name if *any* address it resolves to is forbidden;
//! * redirects: every hop's URL is checked again, and the hop count is capped.
//!
//! Development mode (the local run and tests) may allow local targets for the simulator.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::{Ipv4Net, Ipv6Net};
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
    #[error("{0} is a name that is never fetched (metadata, internal or local)")]
    ForbiddenName(String),
}

/// Addresses that are never a business's website: the IANA IPv4 and IPv6 special-purpose
/// address registries (every block not marked globally reachable, and the deprecated transition
/// forms), and the clouds' metadata and platform addresses outside them. Addresses that embed an
/// IPv4 address (IPv4-mapped, -compatible, -translated, NAT64) are judged by it.
const FORBIDDEN_V4: &[&str] = &[
    "0.0.0.0/8",        // "this network"
    "10.0.0.0/8",       // private
    "100.64.0.0/10",    // carrier-grade NAT (Alibaba Cloud metadata 100.100.100.200)
    "127.0.0.0/8",      // loopback
    "169.254.0.0/16",   // link-local (AWS, GCP, Azure, DigitalOcean, … metadata 169.254.169.254)
    "172.16.0.0/12",    // private
    "192.0.0.0/24",     // IETF protocol assignments (Oracle Cloud metadata 192.0.0.192)
    "192.0.2.0/24",     // documentation
    "192.31.196.0/24",  // AS112-v4
    "192.52.193.0/24",  // AMT
    "192.88.99.0/24",   // deprecated 6to4 relay anycast
    "192.168.0.0/16",   // private
    "192.175.48.0/24",  // AS112 direct delegation
    "198.18.0.0/15",    // benchmarking
    "198.51.100.0/24",  // documentation
    "203.0.113.0/24",   // documentation
    "224.0.0.0/4",      // multicast
    "240.0.0.0/4",      // reserved, and the limited broadcast 255.255.255.255
    "168.63.129.16/32", // Azure platform (WireServer, DNS, health probes)
];

const FORBIDDEN_V6: &[&str] = &[
    "::/128",         // unspecified
    "::1/128",        // loopback
    "100::/64",       // discard-only
    "64:ff9b:1::/48", // local-use IPv4/IPv6 translation
    "2001::/23",      // IETF protocol assignments (Teredo 2001::/32 among them)
    "2001:db8::/32",  // documentation
    "2002::/16",      // 6to4 (deprecated transition form, embeds an IPv4 address)
    "3fff::/20",      // documentation
    "5f00::/16",      // segment routing SIDs
    "fc00::/7",       // unique local (AWS IMDS fd00:ec2::254)
    "fe80::/10",      // link-local
    "fec0::/10",      // deprecated site-local
    "ff00::/8",       // multicast
];

/// Host names that are never fetched, whatever they resolve to: the clouds' metadata names,
/// and names that only mean something inside a network.
const FORBIDDEN_NAMES: &[&str] = &[
    "localhost",
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
];

/// Suffixes of names that only resolve inside a network.
const FORBIDDEN_SUFFIXES: &[&str] = &[
    ".localhost",
    ".internal",
    ".local",
    ".localdomain",
    ".home.arpa",
    ".intranet",
    ".lan",
    ".corp",
];

/// The forbidden blocks, parsed once per process.
static BLOCKS: std::sync::LazyLock<(Vec<Ipv4Net>, Vec<Ipv6Net>)> = std::sync::LazyLock::new(|| {
    (
        FORBIDDEN_V4.iter().filter_map(|n| n.parse().ok()).collect(),
        FORBIDDEN_V6.iter().filter_map(|n| n.parse().ok()).collect(),
    )
});

fn v4_forbidden(a: Ipv4Addr) -> bool {
    BLOCKS.0.iter().any(|n| n.contains(&a))
}

/// The IPv4 address an IPv6 address carries in its last 32 bits, for the forms that embed one:
/// IPv4-mapped `::ffff:a.b.c.d`, IPv4-translated `::ffff:0:a.b.c.d`, IPv4-compatible
/// `::a.b.c.d` and NAT64 `64:ff9b::a.b.c.d`.
fn embedded_v4(a: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = a.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _]
        | [0, 0, 0, 0, 0xffff, 0, _, _]
        | [0, 0, 0, 0, 0, 0, _, _]
        | [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        _ => None,
    }
}

/// Whether an address must never be fetched in production.
pub fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => v4_forbidden(a),
        IpAddr::V6(a) => {
            // `::` and `::1` are blocks of their own (their embedded "address" is 0.0.0.x).
            BLOCKS.1.iter().any(|n| n.contains(&a)) || embedded_v4(a).is_some_and(v4_forbidden)
        }
    }
}

/// Whether a host name is one that is never fetched: a metadata name, a name without a dot,
/// or one under a suffix that only resolves inside a network.
pub fn forbidden_name(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    !host.contains('.')
        || FORBIDDEN_NAMES.contains(&host.as_str())
        || FORBIDDEN_SUFFIXES.iter().any(|s| host.ends_with(s))
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
            // Names are refused whatever the mode: the simulator is reached by address or by
            // `.test` names, never by these.
            Some(Host::Domain(name)) if forbidden_name(name) => {
                return Err(Refusal::ForbiddenName(name.to_owned()));
            }
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

    /// The address `d` steps from `a` (`None` past either end of the space).
    fn step(a: IpAddr, d: i128) -> Option<IpAddr> {
        match a {
            IpAddr::V4(v) => u32::try_from(i128::from(u32::from(v)) + d)
                .ok()
                .map(|n| IpAddr::V4(n.into())),
            IpAddr::V6(v) => u128::try_from(i128::try_from(u128::from(v)).ok()? + d)
                .ok()
                .map(|n| IpAddr::V6(n.into())),
        }
    }

    fn in_any_block(ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => BLOCKS.0.iter().any(|n| n.contains(&a)),
            IpAddr::V6(a) => BLOCKS.1.iter().any(|n| n.contains(&a)),
        }
    }

    #[test]
    fn every_block_is_refused_at_both_edges_and_its_neighbours_are_not() {
        assert_eq!(
            BLOCKS.0.len(),
            FORBIDDEN_V4.len(),
            "every IPv4 block parses"
        );
        assert_eq!(
            BLOCKS.1.len(),
            FORBIDDEN_V6.len(),
            "every IPv6 block parses"
        );
        let edges: Vec<(IpAddr, IpAddr)> = BLOCKS
            .0
            .iter()
            .map(|n| (IpAddr::V4(n.network()), IpAddr::V4(n.broadcast())))
            .chain(
                BLOCKS
                    .1
                    .iter()
                    .map(|n| (IpAddr::V6(n.network()), IpAddr::V6(n.broadcast()))),
            )
            .collect();
        for (first, last) in edges {
            assert!(forbidden(first), "{first} (first of its block)");
            assert!(forbidden(last), "{last} (last of its block)");
            for outside in [step(first, -1), step(last, 1)].into_iter().flatten() {
                // A neighbour inside another block, or an embedded IPv4 form, is judged by it.
                let embedded = matches!(outside, IpAddr::V6(a) if embedded_v4(a).is_some());
                if !in_any_block(outside) && !embedded {
                    assert!(!forbidden(outside), "{outside} (just outside a block)");
                }
            }
        }
    }

    #[test]
    fn metadata_platform_and_transition_addresses_are_refused() {
        for raw in [
            "169.254.169.254",        // AWS, GCP, Azure, DigitalOcean, Oracle (v2) metadata
            "169.254.170.2",          // AWS ECS task metadata
            "100.100.100.200",        // Alibaba Cloud metadata
            "192.0.0.192",            // Oracle Cloud metadata
            "168.63.129.16",          // Azure WireServer
            "fd00:ec2::254",          // AWS IMDS over IPv6
            "::ffff:169.254.169.254", // IPv4-mapped
            "::ffff:0:127.0.0.1",     // IPv4-translated (SIIT)
            "::127.0.0.1",            // IPv4-compatible
            "64:ff9b::10.0.0.1",      // NAT64 of a private address
            "64:ff9b:1::1",           // local-use NAT64
            "2002:a9fe:a9fe::1",      // 6to4 of the metadata address
            "2001:0:4136:e378:8000:63bf:3fff:fdd2", // Teredo
            "3fff::1",                // documentation (2024)
            "100::1",                 // discard-only
            "255.255.255.255",
        ] {
            let ip: IpAddr = raw.parse().unwrap();
            assert!(forbidden(ip), "{raw}");
        }
        for raw in [
            "93.184.216.34",
            "2606:2800:220:1:248:1893:25c8:1946",
            "64:ff9b::93.184.216.34",
            "8.8.8.8",
        ] {
            assert!(!forbidden(raw.parse().unwrap()), "{raw}");
        }
    }

    #[test]
    fn names_that_are_never_fetched_are_refused_by_name() {
        for raw in [
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://metadata/",
            "http://instance-data/latest/",
            "http://localhost:8080/",
            "http://shop.localhost/",
            "http://db.internal/",
            "http://printer.local/",
            "http://router.home.arpa/",
            "http://intranet/",
            "http://METADATA.GOOGLE.INTERNAL./",
        ] {
            let url = Url::parse(raw).unwrap();
            for g in [
                PROD,
                Guard {
                    allow_private: true,
                    restrict_ports: false,
                    test_tld_addr: None,
                },
            ] {
                assert!(
                    matches!(g.check_url(&url), Err(Refusal::ForbiddenName(_))),
                    "{raw}: {:?}",
                    g.check_url(&url)
                );
            }
        }
        assert!(
            PROD.check_url(&Url::parse("https://internal-affairs.example.com/").unwrap())
                .is_ok()
        );
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
