//! The common HTTP policy: timeouts, retry count, backoff, rate limit and breaker settings, and
//! how a retry delay is chosen.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderMap;

use super::BreakerConfig;

#[derive(Debug, Clone)]
pub struct HttpPolicy {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// The whole call — every attempt and every wait between them — ends within this: a retry
    /// that could not finish inside it is not made. It is what a function's worst case is
    /// computed from (one call can take no longer), so a retry policy cannot outlast the
    /// function's timeout.
    pub max_call_time: Duration,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// A `Retry-After` longer than this is not waited for: the call fails as rate limited.
    pub max_retry_after: Duration,
    /// Client-side rate limit: sustained requests per second and burst.
    pub requests_per_second: u32,
    pub burst: u32,
    pub breaker: BreakerConfig,
    /// Largest response body read; anything longer is a malformed response.
    pub max_body_bytes: usize,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_call_time: Duration::from_secs(60),
            max_attempts: 4,
            base_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
            requests_per_second: 10,
            burst: 10,
            breaker: BreakerConfig::default(),
            max_body_bytes: 8 * 1024 * 1024,
        }
    }
}

/// How the client waits between attempts. `Recorded` waits for nothing and keeps the delays it
/// was asked for, so tests can check the retry schedule without sleeping.
#[derive(Debug, Clone, Default)]
pub enum Pause {
    #[default]
    Real,
    Recorded(Arc<Mutex<Vec<Duration>>>),
}

impl Pause {
    pub fn recorded() -> (Pause, Arc<Mutex<Vec<Duration>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        (Pause::Recorded(log.clone()), log)
    }

    pub(crate) async fn wait(&self, d: Duration) {
        match self {
            Pause::Real => tokio::time::sleep(d).await,
            Pause::Recorded(log) => log
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(d),
        }
    }
}

/// The server's requested delay: `retry-after-ms` (OpenAI), else `Retry-After` in seconds or as
/// an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let v = get("retry-after")?;
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// The delay before attempt `attempt + 1`: the server's `Retry-After` when given (and within
/// `max_retry_after`), otherwise exponential backoff with full jitter (`jitter` in 0..1).
pub fn retry_delay(
    policy: &HttpPolicy,
    attempt: u32,
    server: Option<Duration>,
    jitter: f64,
) -> Duration {
    if let Some(d) = server {
        return d;
    }
    let exp = policy
        .base_backoff
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(policy.max_backoff);
    exp.mul_f64(jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_retry_after_in_each_form() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", "150".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(150)));
        let mut h = HeaderMap::new();
        let future = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        h.insert("retry-after", future.parse().unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        let mut h = HeaderMap::new();
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let p = HttpPolicy::default();
        assert_eq!(retry_delay(&p, 1, None, 1.0), Duration::from_millis(250));
        assert_eq!(retry_delay(&p, 3, None, 1.0), Duration::from_secs(1));
        assert_eq!(retry_delay(&p, 30, None, 1.0), Duration::from_secs(8));
        assert_eq!(retry_delay(&p, 3, None, 0.5), Duration::from_millis(500));
        assert_eq!(
            retry_delay(&p, 3, Some(Duration::from_secs(2)), 0.1),
            Duration::from_secs(2)
        );
    }
}
