//! The one HTTP path every vendor call takes: circuit breaker → rate limiter → request (with
//! timeouts) → classify → retry or return, recording each attempt.

use std::num::NonZeroU32;
use std::time::Instant;

use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use super::error::{excerpt, is_quota_code, vendor_message};
use super::{
    CallRecord, CircuitBreaker, HttpPolicy, Pause, Price, Vendor, VendorError, retry_delay,
};
use crate::domain::{BusinessId, RunId, TenantId};

/// Who a call is made for: lands in the call record (cost ledger, run usage).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallContext {
    pub tenant: Option<TenantId>,
    pub run: Option<RunId>,
    pub business: Option<BusinessId>,
}

impl CallContext {
    pub fn new(tenant: TenantId, run: Option<RunId>, business: Option<BusinessId>) -> Self {
        Self {
            tenant: Some(tenant),
            run,
            business,
        }
    }
}

/// A successful response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Token usage reported by a response, for pricing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub tokens_in: u32,
    pub tokens_out: u32,
}

/// One vendor's HTTP client with its policy, limiter, breaker and prices. Build once per
/// container; cheap to share behind an `Arc`.
pub struct VendorHttp {
    vendor: Vendor,
    base_url: String,
    http: crate::tls::LazyHttp,
    policy: HttpPolicy,
    limiter: DefaultDirectRateLimiter,
    breaker: CircuitBreaker,
    price: Price,
    pause: Pause,
}

impl std::fmt::Debug for VendorHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VendorHttp")
            .field("vendor", &self.vendor)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

enum Attempt {
    Done(Response),
    Retry {
        err: VendorError,
        server_delay: Option<std::time::Duration>,
    },
    Fail(VendorError),
}

impl VendorHttp {
    pub fn new(
        vendor: Vendor,
        base_url: &str,
        policy: HttpPolicy,
        price: Price,
    ) -> Result<Self, VendorError> {
        let (connect, request) = (policy.connect_timeout, policy.request_timeout);
        let http = crate::tls::LazyHttp::new(move |b| {
            b.connect_timeout(connect)
                .timeout(request)
                .user_agent(concat!("leadfactory/", env!("CARGO_PKG_VERSION")))
        });
        let rps = NonZeroU32::new(policy.requests_per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(policy.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Ok(Self {
            vendor,
            base_url: base_url.trim_end_matches('/').to_owned(),
            http,
            limiter: RateLimiter::direct(Quota::per_second(rps).allow_burst(burst)),
            breaker: CircuitBreaker::new(policy.breaker),
            policy,
            price,
            pause: Pause::Real,
        })
    }

    /// Replaces how retries wait (tests record the delays instead of sleeping).
    pub fn with_pause(mut self, pause: Pause) -> Self {
        self.pause = pause;
        self
    }

    pub fn vendor(&self) -> Vendor {
        self.vendor
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        ctx: &CallContext,
        endpoint: &'static str,
        status: Option<u16>,
        started: Instant,
        ok: bool,
        usage: Usage,
        rate_limited: bool,
        quota: bool,
    ) {
        let units = u32::from(ok);
        super::record::record(CallRecord {
            vendor: self.vendor,
            endpoint,
            tenant: ctx.tenant,
            run: ctx.run,
            business: ctx.business,
            status,
            latency_ms: started.elapsed().as_millis().min(u128::from(u32::MAX)) as u32,
            ok,
            rate_limited,
            quota_exhausted: quota,
            units,
            tokens_in: usage.tokens_in,
            tokens_out: usage.tokens_out,
            cost_micros: if ok {
                self.price.cost(units, usage.tokens_in, usage.tokens_out)
            } else {
                0
            },
            at: chrono::Utc::now(),
        });
    }

    /// The vendor did not answer usefully: counts against the breaker and may be retried.
    fn unavailable(&self, attempt: u32, detail: String) -> Attempt {
        self.breaker.on_failure();
        Attempt::Retry {
            err: VendorError::Unavailable {
                vendor: self.vendor,
                attempts: attempt,
                detail,
            },
            server_delay: None,
        }
    }

    async fn attempt(
        &self,
        ctx: &CallContext,
        endpoint: &'static str,
        req: reqwest::RequestBuilder,
        attempt: u32,
        repeatable: bool,
    ) -> Attempt {
        let vendor = self.vendor;
        let started = Instant::now();
        let sent = req.send().await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                self.record(
                    ctx,
                    endpoint,
                    None,
                    started,
                    false,
                    Usage::default(),
                    false,
                    false,
                );
                if !repeatable && !e.is_connect() {
                    // The request may have reached the vendor: repeating it could act twice.
                    return Attempt::Fail(VendorError::Ambiguous {
                        vendor,
                        detail: format!("no answer after the request was sent: {}", redacted(e)),
                    });
                }
                let kind = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "connection failed"
                } else {
                    "request failed"
                };
                return self.unavailable(attempt, format!("{kind}: {}", redacted(e)));
            }
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = match read_capped(resp, self.policy.max_body_bytes).await {
            Ok(b) => b,
            Err(detail) => {
                self.record(
                    ctx,
                    endpoint,
                    Some(status.as_u16()),
                    started,
                    false,
                    Usage::default(),
                    false,
                    false,
                );
                return self.unavailable(attempt, detail);
            }
        };
        let code = status.as_u16();
        if status.is_success() {
            self.breaker.on_success();
            // Recorded by the caller once usage is known (see `finish`).
            return Attempt::Done(Response {
                status,
                headers,
                body,
            });
        }
        let (message, vcode) = vendor_message(&body);
        if code == 429 {
            // Throttling says nothing about the service's health: the breaker is not touched.
            let quota = is_quota_code(vcode.as_deref(), &message);
            self.record(
                ctx,
                endpoint,
                Some(code),
                started,
                false,
                Usage::default(),
                !quota,
                quota,
            );
            if quota {
                return Attempt::Fail(VendorError::QuotaExhausted { vendor, message });
            }
            let server_delay = super::policy::retry_after(&headers);
            return Attempt::Retry {
                err: VendorError::RateLimited {
                    vendor,
                    attempts: attempt,
                    retry_after: server_delay,
                },
                server_delay,
            };
        }
        self.record(
            ctx,
            endpoint,
            Some(code),
            started,
            false,
            Usage::default(),
            false,
            false,
        );
        if !repeatable && matches!(code, 502 | 504) {
            // A gateway gave up waiting: the service behind it may have acted.
            return Attempt::Fail(VendorError::Ambiguous {
                vendor,
                detail: format!("HTTP {code} from a gateway: {message}"),
            });
        }
        if status.is_server_error() || code == 408 {
            return self.unavailable(attempt, format!("HTTP {code}: {message}"));
        }
        // A 4xx is our request's fault, not the vendor's health: the breaker counts it as a reply.
        self.breaker.on_success();
        if code == 401 || code == 403 {
            return Attempt::Fail(VendorError::Unauthorized {
                vendor,
                status: code,
                message,
            });
        }
        Attempt::Fail(VendorError::BadRequest {
            vendor,
            status: code,
            message,
        })
    }

    /// Sends the request `build` makes (called once per attempt), retrying per the policy.
    /// On success the caller must `finish` with the usage, which records the billed call.
    pub async fn send(
        &self,
        ctx: &CallContext,
        endpoint: &'static str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<(Response, Instant), VendorError> {
        self.send_with(ctx, endpoint, true, build).await
    }

    /// As [`Self::send`], for a request that must not be repeated when it may have been acted
    /// on (no idempotency key): a lost answer or a gateway timeout is [`VendorError::Ambiguous`]
    /// instead of a retry. Refusals the vendor answered (429, 500, 503) are still retried.
    pub async fn send_unrepeatable(
        &self,
        ctx: &CallContext,
        endpoint: &'static str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<(Response, Instant), VendorError> {
        self.send_with(ctx, endpoint, false, build).await
    }

    async fn send_with(
        &self,
        ctx: &CallContext,
        endpoint: &'static str,
        repeatable: bool,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<(Response, Instant), VendorError> {
        // Our HTTP client could not be built (TLS roots, the environment): nothing reached the
        // vendor, and the request itself is not at fault — retried, then dead-lettered.
        let http = self.http.get().map_err(|e| VendorError::Unavailable {
            vendor: self.vendor,
            attempts: 0,
            detail: format!("HTTP client not available: {e}"),
        })?;
        let mut attempt = 0;
        let call_started = Instant::now();
        loop {
            attempt += 1;
            if let Err(retry_in) = self.breaker.allow() {
                return Err(VendorError::CircuitOpen {
                    vendor: self.vendor,
                    retry_in,
                });
            }
            self.limiter.until_ready().await;
            let started = Instant::now();
            match self
                .attempt(ctx, endpoint, build(http), attempt, repeatable)
                .await
            {
                Attempt::Done(r) => return Ok((r, started)),
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry { err, server_delay } => {
                    if attempt >= self.policy.max_attempts {
                        return Err(err);
                    }
                    if let Some(d) = server_delay
                        && d > self.policy.max_retry_after
                    {
                        return Err(err);
                    }
                    let delay =
                        retry_delay(&self.policy, attempt, server_delay, rand::random::<f64>());
                    // The next attempt must be able to end within the call's time.
                    if call_started.elapsed() + delay + self.policy.request_timeout
                        > self.policy.max_call_time
                    {
                        return Err(err);
                    }
                    tracing::info!(vendor = %self.vendor, endpoint, attempt, ?delay, error = %err, "retrying vendor call");
                    self.pause.wait(delay).await;
                }
            }
        }
    }

    /// Records a successful call with its usage (the billed record).
    pub fn finish(
        &self,
        ctx: &CallContext,
        endpoint: &'static str,
        resp: &Response,
        started: Instant,
        usage: Usage,
    ) {
        self.record(
            ctx,
            endpoint,
            Some(resp.status.as_u16()),
            started,
            true,
            usage,
            false,
            false,
        );
    }

    /// Sends, parses the JSON body as `T`, records with the usage `T` reports.
    pub async fn json<T: DeserializeOwned>(
        &self,
        ctx: &CallContext,
        endpoint: &'static str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
        usage: impl Fn(&T) -> Usage,
    ) -> Result<(T, Response), VendorError> {
        let (resp, started) = self.send(ctx, endpoint, build).await?;
        // Every answer we read is a JSON object: anything else at the top (an array, a string,
        // null — which serde would happily read as a struct of defaults, i.e. "no results") is
        // malformed; and a 2xx can carry an error, which is one, never an empty result.
        if !resp.body.trim_ascii_start().starts_with(b"{") {
            self.finish(ctx, endpoint, &resp, started, Usage::default());
            return Err(self.malformed("the answer is not a JSON object", &resp.body));
        }
        if let Some(detail) = error_inside(&resp.body) {
            self.finish(ctx, endpoint, &resp, started, Usage::default());
            return Err(self.malformed(
                &format!(
                    "an error inside a {} answer: {detail}",
                    resp.status.as_u16()
                ),
                &resp.body,
            ));
        }
        // Vendor text is outside text: escapes PostgreSQL or serde would refuse are made
        // storable before anything reads the answer (`shared::domain::storable_json`).
        match serde_json::from_slice::<T>(&crate::domain::storable_json(&resp.body)) {
            Ok(v) => {
                self.finish(ctx, endpoint, &resp, started, usage(&v));
                Ok((v, resp))
            }
            Err(e) => {
                // The vendor answered and was billed for it, even if we cannot read the answer.
                self.finish(ctx, endpoint, &resp, started, Usage::default());
                Err(self.malformed(&e.to_string(), &resp.body))
            }
        }
    }

    pub fn malformed(&self, detail: &str, body: &[u8]) -> VendorError {
        VendorError::Malformed {
            vendor: self.vendor,
            detail: detail.to_owned(),
            excerpt: excerpt(body, 120),
        }
    }
}

/// The error a successful-looking JSON answer carries at its top level — `"error"` (not null or
/// false) or a non-empty `"errors"` — as vendors and the gateways in front of them send it.
fn error_inside(body: &[u8]) -> Option<String> {
    // Most answers never mention an error: they are not parsed a second time.
    if !body.windows(6).any(|w| w == b"\"error") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&crate::domain::storable_json(body)).ok()?;
    let e = v
        .get("error")
        .filter(|e| !e.is_null() && e.as_bool() != Some(false))
        .or_else(|| {
            v.get("errors")
                .filter(|e| e.as_array().is_some_and(|a| !a.is_empty()))
        })?;
    let text = match e {
        serde_json::Value::String(s) => s.clone(),
        other => other
            .get("message")
            .or_else(|| other.get("description"))
            .and_then(serde_json::Value::as_str)
            .map_or_else(|| other.to_string(), str::to_owned),
    };
    Some(text.chars().take(200).collect())
}

/// A transport error as it may be logged or stored. reqwest puts the whole URL in its message,
/// and a vendor URL can be the secret itself (PageSpeed's key in the query, a Slack webhook's
/// path): only the scheme and host are kept, at the error's source, so no log line, event row or
/// error text downstream can carry more.
pub fn redacted(e: reqwest::Error) -> String {
    let origin = e
        .url()
        .map(|u| format!("{}://{}", u.scheme(), u.host_str().unwrap_or("?")));
    let e = e.without_url();
    match origin {
        Some(o) => format!("{e} ({o})"),
        None => e.to_string(),
    }
}

async fn read_capped(mut resp: reqwest::Response, max: usize) -> Result<Bytes, String> {
    if resp.content_length().is_some_and(|n| n as usize > max) {
        return Err(format!("response larger than {max} bytes"));
    }
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading body: {}", redacted(e)))?
    {
        if buf.len() + chunk.len() > max {
            return Err(format!("response larger than {max} bytes"));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}
