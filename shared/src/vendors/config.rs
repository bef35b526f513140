//! Vendor configuration: base URL, key and rate per vendor, from the environment. Real URLs are
//! the defaults; the local run and tests point every base URL at the simulator.

use std::time::Duration;

use secrecy::SecretString;

use super::openai::OpenAiClient;
use super::pagespeed::PageSpeedClient;
use super::places::PlacesClient;
use super::sendgrid::SendGridClient;
use super::slack::SlackClient;
use super::stripe::StripeClient;
use super::yelp::YelpClient;
use super::{HttpPolicy, PriceTable, Vendor, VendorError, VendorHttp};
use crate::config::{ConfigError, Reader, Source};

#[derive(Debug, Clone)]
pub struct VendorSettings {
    pub base_url: String,
    pub key: Option<SecretString>,
    pub requests_per_second: u32,
    pub request_timeout: Duration,
    /// The most one call may take, retries included (`LF_<VENDOR>_CALL_SECS`; by default two
    /// full attempts): what a stage's worst-case work time is computed from.
    pub call_time: Duration,
}

#[derive(Debug, Clone)]
pub struct VendorsConfig {
    pub yelp: VendorSettings,
    pub places: VendorSettings,
    pub pagespeed: VendorSettings,
    pub openai: VendorSettings,
    pub sendgrid: VendorSettings,
    pub stripe: VendorSettings,
    /// The whole incoming-webhook URL is the secret.
    pub slack_webhook_url: Option<SecretString>,
    pub prices: PriceTable,
}

/// Every vendor's variable prefix: `LF_<PREFIX>_URL`, `_RPS`, `_TIMEOUT_SECS`, `_CALL_SECS`.
pub const VENDOR_PREFIXES: &[&str] = &[
    "YELP",
    "PLACES",
    "PAGESPEED",
    "OPENAI",
    "SENDGRID",
    "STRIPE",
];

#[derive(Clone, Copy)]
struct Defaults {
    prefix: &'static str,
    url: &'static str,
    key_var: &'static str,
    rps: u32,
    timeout_secs: u64,
}

fn settings(r: &mut Reader<'_>, d: Defaults) -> VendorSettings {
    let base_url = r
        .optional(&format!("LF_{}_URL", d.prefix))
        .unwrap_or_else(|| d.url.to_owned());
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        r.invalid(&format!("LF_{}_URL", d.prefix), "must be an http(s) URL");
    }
    let timeout_secs = r.parsed_or(&format!("LF_{}_TIMEOUT_SECS", d.prefix), d.timeout_secs);
    let call_secs = r.parsed_or(&format!("LF_{}_CALL_SECS", d.prefix), 2 * timeout_secs);
    if call_secs < timeout_secs {
        r.invalid(
            &format!("LF_{}_CALL_SECS", d.prefix),
            "must be at least the request timeout",
        );
    }
    VendorSettings {
        base_url,
        key: r.optional_secret(d.key_var),
        requests_per_second: r.parsed_or(&format!("LF_{}_RPS", d.prefix), d.rps),
        request_timeout: Duration::from_secs(timeout_secs),
        call_time: Duration::from_secs(call_secs),
    }
}

impl VendorsConfig {
    pub fn load(source: &dyn Source) -> Result<Self, ConfigError> {
        let mut r = Reader::new(source);
        let d = |prefix, url, key_var, rps, timeout_secs| Defaults {
            prefix,
            url,
            key_var,
            rps,
            timeout_secs,
        };
        let yelp = settings(
            &mut r,
            d("YELP", "https://api.yelp.com", "YELP_API_KEY", 5, 15),
        );
        let places = settings(
            &mut r,
            d(
                "PLACES",
                "https://places.googleapis.com",
                "GOOGLE_PLACES_API_KEY",
                10,
                15,
            ),
        );
        // A PageSpeed run takes 10–60 s.
        let pagespeed = settings(
            &mut r,
            d(
                "PAGESPEED",
                "https://www.googleapis.com",
                "GOOGLE_PAGESPEED_API_KEY",
                4,
                90,
            ),
        );
        let openai = settings(
            &mut r,
            d("OPENAI", "https://api.openai.com", "OPENAI_API_KEY", 20, 60),
        );
        let sendgrid = settings(
            &mut r,
            d(
                "SENDGRID",
                "https://api.sendgrid.com",
                "SENDGRID_API_KEY",
                50,
                15,
            ),
        );
        let stripe = settings(
            &mut r,
            d(
                "STRIPE",
                "https://api.stripe.com",
                "STRIPE_SECRET_KEY",
                25,
                20,
            ),
        );
        let slack_webhook_url = r.optional_secret("SLACK_WEBHOOK_URL");
        let prices = match r.optional("LF_PRICES") {
            None => PriceTable::default(),
            Some(json) => PriceTable::with_overrides(&json).unwrap_or_else(|e| {
                r.invalid("LF_PRICES", e);
                PriceTable::default()
            }),
        };
        r.finish(Self {
            yelp,
            places,
            pagespeed,
            openai,
            sendgrid,
            stripe,
            slack_webhook_url,
            prices,
        })
    }

    fn http(
        &self,
        vendor: Vendor,
        s: &VendorSettings,
        base: &HttpPolicy,
    ) -> Result<VendorHttp, VendorError> {
        let policy = HttpPolicy {
            request_timeout: s.request_timeout,
            max_call_time: s.call_time,
            requests_per_second: s.requests_per_second,
            burst: s.requests_per_second.max(1),
            ..base.clone()
        };
        VendorHttp::new(vendor, &s.base_url, policy, self.prices.price(vendor))
    }

    fn missing(vendor: Vendor, var: &str) -> VendorError {
        VendorError::InvalidInput {
            vendor,
            detail: format!("{var} is not set"),
        }
    }

    pub fn yelp(&self, policy: &HttpPolicy) -> Result<YelpClient, VendorError> {
        let key = self
            .yelp
            .key
            .clone()
            .ok_or_else(|| Self::missing(Vendor::Yelp, "YELP_API_KEY"))?;
        Ok(YelpClient::new(
            self.http(Vendor::Yelp, &self.yelp, policy)?,
            key,
        ))
    }

    pub fn places(&self, policy: &HttpPolicy) -> Result<PlacesClient, VendorError> {
        let key = self
            .places
            .key
            .clone()
            .ok_or_else(|| Self::missing(Vendor::Places, "GOOGLE_PLACES_API_KEY"))?;
        Ok(PlacesClient::new(
            self.http(Vendor::Places, &self.places, policy)?,
            key,
        ))
    }

    pub fn pagespeed(&self, policy: &HttpPolicy) -> Result<PageSpeedClient, VendorError> {
        Ok(PageSpeedClient::new(
            self.http(Vendor::PageSpeed, &self.pagespeed, policy)?,
            self.pagespeed.key.clone(),
        ))
    }

    /// `None` when no key is configured: callers fall back to templates.
    pub fn openai(&self, policy: &HttpPolicy) -> Result<Option<OpenAiClient>, VendorError> {
        match &self.openai.key {
            None => Ok(None),
            Some(k) => Ok(Some(OpenAiClient::new(
                self.http(Vendor::OpenAi, &self.openai, policy)?,
                k.clone(),
            ))),
        }
    }

    pub fn sendgrid(&self, policy: &HttpPolicy) -> Result<SendGridClient, VendorError> {
        let key = self
            .sendgrid
            .key
            .clone()
            .ok_or_else(|| Self::missing(Vendor::SendGrid, "SENDGRID_API_KEY"))?;
        Ok(SendGridClient::new(
            self.http(Vendor::SendGrid, &self.sendgrid, policy)?,
            key,
        ))
    }

    pub fn stripe(&self, policy: &HttpPolicy) -> Result<StripeClient, VendorError> {
        let key = self
            .stripe
            .key
            .clone()
            .ok_or_else(|| Self::missing(Vendor::Stripe, "STRIPE_SECRET_KEY"))?;
        Ok(StripeClient::new(
            self.http(Vendor::Stripe, &self.stripe, policy)?,
            key,
        ))
    }

    /// `None` when no webhook is configured.
    pub fn slack(&self, policy: &HttpPolicy) -> Result<Option<SlackClient>, VendorError> {
        self.slack_webhook_url
            .clone()
            .map(|u| self.slack_webhook(u, policy))
            .transpose()
    }

    /// A client for one incoming webhook (a tenant's own channel): its own limiter and
    /// breaker, so one broken channel does not stop the others.
    pub fn slack_webhook(
        &self,
        webhook_url: SecretString,
        policy: &HttpPolicy,
    ) -> Result<SlackClient, VendorError> {
        let s = VendorSettings {
            base_url: String::new(),
            key: None,
            requests_per_second: 1,
            request_timeout: Duration::from_secs(10),
            call_time: Duration::from_secs(20),
        };
        Ok(SlackClient::new(
            self.http(Vendor::Slack, &s, policy)?,
            webhook_url,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn defaults_are_the_real_services_and_overrides_apply() {
        let env: HashMap<&str, &str> = HashMap::from([
            ("LF_YELP_URL", "http://127.0.0.1:9999"),
            ("YELP_API_KEY", "k"),
            ("LF_OPENAI_RPS", "3"),
        ]);
        let c = VendorsConfig::load(&env).unwrap();
        assert_eq!(c.yelp.base_url, "http://127.0.0.1:9999");
        assert_eq!(c.places.base_url, "https://places.googleapis.com");
        assert_eq!(c.openai.requests_per_second, 3);
        assert_eq!(c.pagespeed.request_timeout, Duration::from_secs(90));
        assert!(c.yelp(&HttpPolicy::default()).is_ok());
        let err = c.sendgrid(&HttpPolicy::default()).unwrap_err();
        assert!(err.to_string().contains("SENDGRID_API_KEY"), "{err}");
        assert!(c.openai(&HttpPolicy::default()).unwrap().is_none());
    }

    #[test]
    fn bad_values_are_named() {
        let env: HashMap<&str, &str> = HashMap::from([
            ("LF_STRIPE_URL", "ftp://x"),
            ("LF_PRICES", "{"),
            ("LF_YELP_RPS", "fast"),
        ]);
        let e = VendorsConfig::load(&env).unwrap_err().to_string();
        for v in ["LF_STRIPE_URL", "LF_PRICES", "LF_YELP_RPS"] {
            assert!(e.contains(v), "{e}");
        }
    }
}
