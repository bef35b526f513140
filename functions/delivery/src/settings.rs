//! How fast delivery may send: the warm-up schedule of a new sender and the daily cap of a
//! sending domain, with their defaults and settings.

use std::time::Duration;

/// Sends per day in a campaign's first days of sending (then only its daily quota applies):
/// a new sender's reputation is built slowly.
pub const DEFAULT_WARMUP: &[i32] = &[20, 40, 80, 150, 300, 500];

/// Sends per day from one sending domain, whatever the campaigns that share it (they share its
/// reputation): the warm-up's last step.
pub const DEFAULT_DOMAIN_DAILY_CAP: i32 = 500;

#[derive(Debug, Clone)]
pub struct Settings {
    pub warmup: Vec<i32>,
    /// The daily cap of a sending domain, held by the same warm-up from the domain's first day.
    pub domain_daily_cap: i32,
    pub unsubscribe_ttl: Duration,
    pub download_ttl: Duration,
    /// A row `sending` for longer than this was cut off mid-send (above the function timeout).
    pub stale_sending: Duration,
    pub attach_preview: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            warmup: DEFAULT_WARMUP.to_vec(),
            domain_daily_cap: DEFAULT_DOMAIN_DAILY_CAP,
            unsubscribe_ttl: Duration::from_secs(30 * 86_400),
            download_ttl: Duration::from_secs(7 * 86_400),
            stale_sending: Duration::from_secs(15 * 60),
            attach_preview: true,
        }
    }
}

impl Settings {
    /// `LF_WARMUP` (comma-separated sends per day), `LF_DOMAIN_DAILY_CAP`,
    /// `LF_UNSUBSCRIBE_TTL_DAYS`, `LF_DOWNLOAD_TTL_DAYS`, `LF_ATTACH_PREVIEW`.
    pub fn load(r: &mut shared::config::Reader<'_>) -> Self {
        let d = Self::default();
        let warmup = match r.optional("LF_WARMUP") {
            None => d.warmup.clone(),
            Some(s) => match s
                .split(',')
                .map(|p| p.trim().parse::<i32>().ok().filter(|n| *n > 0))
                .collect::<Option<Vec<_>>>()
            {
                Some(v) => v,
                None => {
                    r.invalid("LF_WARMUP", "positive whole numbers separated by commas");
                    d.warmup.clone()
                }
            },
        };
        let days = |r: &mut shared::config::Reader<'_>, var: &str, def: Duration| {
            Duration::from_secs(r.parsed_or::<u64>(var, def.as_secs() / 86_400) * 86_400)
        };
        let domain_daily_cap = r.parsed_or("LF_DOMAIN_DAILY_CAP", d.domain_daily_cap);
        if domain_daily_cap < 0 {
            r.invalid("LF_DOMAIN_DAILY_CAP", "a whole number of sends, 0 or more");
        }
        Self {
            warmup,
            domain_daily_cap: domain_daily_cap.max(0),
            unsubscribe_ttl: days(r, "LF_UNSUBSCRIBE_TTL_DAYS", d.unsubscribe_ttl),
            download_ttl: days(r, "LF_DOWNLOAD_TTL_DAYS", d.download_ttl),
            stale_sending: d.stale_sending,
            attach_preview: r.parsed_or("LF_ATTACH_PREVIEW", d.attach_preview),
        }
    }

    /// Today's cap: the quota, held by the warm-up schedule on sending day `day_index` (0-based).
    pub fn cap(&self, daily_quota: i32, day_index: i64) -> i32 {
        let warm = usize::try_from(day_index)
            .ok()
            .and_then(|i| self.warmup.get(i).copied())
            .unwrap_or(i32::MAX);
        daily_quota.min(warm).max(0)
    }
}
