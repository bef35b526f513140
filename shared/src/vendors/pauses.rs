//! The vendor kill switch: an operator's pause of one vendor, for every tenant or for one, stored
//! in PostgreSQL (`vendor_pauses`) so the whole fleet honours it. The batch runner asks
//! [`PauseBoard::blocking`] before a batch's paid calls; the board reads the open pauses once per
//! container and keeps them for at most [`PauseBoard::ttl`], so a pause reaches every warm
//! container within that time and costs one query a minute, not one a batch.
//!
//! The CLI (`leadfactory vendor pause|resume|list`, as the schema owner, for the fleet or one
//! tenant) and the ops API (`/v1/vendors/…`, the key's tenant only) write through [`pause`] and
//! [`resume`], which hold the rules: a reason as a campaign's text (1–500 characters, not blank,
//! no NUL), an end in the future, one open pause per vendor and scope (pausing again changes its
//! reason and end).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Vendor;
use crate::db::DbError;
use crate::domain::TenantId;

/// How long a container trusts what it read when `LF_VENDOR_PAUSE_CACHE_SECS` is not set.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);

/// How long a batch that would call a paused vendor waits before it is tried again: until the
/// pause's end, within SQS's delay limits (a pause with no end is looked at again every five
/// minutes).
pub const RECHECK: Duration = Duration::from_secs(300);
pub const MAX_WAIT: Duration = Duration::from_secs(900);

/// One open pause.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VendorPause {
    pub vendor: Vendor,
    /// `None`: every tenant.
    pub tenant: Option<TenantId>,
    pub reason: String,
    pub paused_at: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
}

impl VendorPause {
    /// How long work held by this pause waits on its queue before it is looked at again.
    pub fn wait(&self, now: DateTime<Utc>) -> Duration {
        match self.until {
            Some(end) => (end - now)
                .to_std()
                .unwrap_or(Duration::ZERO)
                .clamp(Duration::from_secs(1), MAX_WAIT),
            None => RECHECK,
        }
    }

    fn holds(&self, tenant: TenantId, vendors: &[Vendor], now: DateTime<Utc>) -> bool {
        vendors.contains(&self.vendor)
            && self.tenant.is_none_or(|t| t == tenant)
            && self.until.is_none_or(|end| end > now)
    }
}

/// Why a pause or resume was refused.
#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    #[error(
        "unknown vendor {0:?}: one of yelp, places, pagespeed, openai, sendgrid, stripe, slack"
    )]
    UnknownVendor(String),
    #[error("reason {0}")]
    BadReason(String),
    #[error("until {0} is not in the future")]
    EndPassed(DateTime<Utc>),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<tokio_postgres::Error> for PauseError {
    fn from(e: tokio_postgres::Error) -> Self {
        PauseError::Db(DbError::Postgres(e))
    }
}

/// `name` as a vendor, or the error naming the ones there are.
pub fn vendor(name: &str) -> Result<Vendor, PauseError> {
    Vendor::ALL
        .into_iter()
        .find(|v| v.as_str() == name.trim().to_ascii_lowercase())
        .ok_or_else(|| PauseError::UnknownVendor(name.to_owned()))
}

/// A reason as the campaign's text fields are checked: 1–500 characters, not blank, no NUL.
fn check_reason(reason: &str) -> Result<&str, PauseError> {
    match crate::campaign::text_problem(reason, 1, crate::campaign::limits::TEXT) {
        Some(problem) => Err(PauseError::BadReason(problem)),
        None => Ok(reason),
    }
}

/// The stage-side reader: the open pauses, read at most once per `ttl` per container.
pub struct PauseBoard {
    ttl: Duration,
    read: tokio::sync::Mutex<Option<(Instant, Arc<Vec<VendorPause>>)>>,
}

const ACTIVE_PAUSES: &str =
    "SELECT vendor, tenant_id, reason, paused_at, until FROM active_vendor_pauses()";

impl PauseBoard {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            read: tokio::sync::Mutex::new(None),
        }
    }

    /// The board with the cache time a deployment sets (`LF_VENDOR_PAUSE_CACHE_SECS`; 0 reads
    /// the pauses for every batch).
    pub fn configured(
        source: &dyn crate::config::Source,
    ) -> Result<Self, crate::config::ConfigError> {
        let mut r = crate::config::Reader::new(source);
        let secs = r.parsed_or("LF_VENDOR_PAUSE_CACHE_SECS", DEFAULT_TTL.as_secs());
        r.finish(Self::new(Duration::from_secs(secs)))
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The pause, if any, that holds `tenant`'s calls to one of `vendors` now.
    pub async fn blocking(
        &self,
        pool: &crate::db::Pool,
        tenant: TenantId,
        vendors: &[Vendor],
    ) -> Result<Option<VendorPause>, DbError> {
        if vendors.is_empty() {
            return Ok(None);
        }
        let pauses = self.current(pool).await?;
        let now = Utc::now();
        Ok(pauses
            .iter()
            .find(|p| p.holds(tenant, vendors, now))
            .cloned())
    }

    async fn current(&self, pool: &crate::db::Pool) -> Result<Arc<Vec<VendorPause>>, DbError> {
        let mut read = self.read.lock().await;
        if let Some((at, pauses)) = read.as_ref()
            && at.elapsed() < self.ttl
        {
            return Ok(pauses.clone());
        }
        let c = pool.get().await?;
        let st = c.prepare_cached(ACTIVE_PAUSES).await?;
        let pauses = Arc::new(c.query(&st, &[]).await?.iter().filter_map(row).collect());
        *read = Some((Instant::now(), Arc::clone(&pauses)));
        Ok(pauses)
    }
}

/// A pause row; one naming a vendor this build does not know (a newer release's) is skipped.
fn row(r: &tokio_postgres::Row) -> Option<VendorPause> {
    Some(VendorPause {
        vendor: vendor(r.get("vendor")).ok()?,
        tenant: r
            .get::<_, Option<uuid::Uuid>>("tenant_id")
            .map(TenantId::from_uuid),
        reason: r.get("reason"),
        paused_at: r.get("paused_at"),
        until: r.get("until"),
    })
}

const PAUSE: &str = "INSERT INTO vendor_pauses (id, vendor, tenant_id, reason, paused_by, until)
 VALUES ($1, $2, $3, $4, $5, $6)
 ON CONFLICT (vendor, (coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid))) WHERE resumed_at IS NULL
 DO UPDATE SET reason = EXCLUDED.reason, until = EXCLUDED.until, paused_by = EXCLUDED.paused_by
 RETURNING vendor, tenant_id, reason, paused_at, until";

/// Pauses `vendor` for `tenant` (`None`: every tenant, which only an operator's role may do)
/// until `until` or until resumed. Pausing what is paused changes its reason and end.
pub async fn pause(
    tx: &tokio_postgres::Transaction<'_>,
    vendor: Vendor,
    tenant: Option<TenantId>,
    reason: &str,
    until: Option<DateTime<Utc>>,
    by: &str,
) -> Result<VendorPause, PauseError> {
    let reason = check_reason(reason)?;
    if let Some(end) = until
        && end <= Utc::now()
    {
        return Err(PauseError::EndPassed(end));
    }
    let r = tx
        .query_one(
            PAUSE,
            &[
                &uuid::Uuid::new_v4(),
                &vendor.as_str(),
                &tenant.map(|t| t.as_uuid()),
                &reason,
                &by,
                &until,
            ],
        )
        .await?;
    row(&r).ok_or_else(|| PauseError::UnknownVendor(vendor.to_string()))
}

const RESUME: &str = "UPDATE vendor_pauses SET resumed_at = now(), resumed_by = $3
 WHERE resumed_at IS NULL AND vendor = $1 AND tenant_id IS NOT DISTINCT FROM $2";

/// Ends the open pause of `vendor` for `tenant` (`None`: the fleet's); whether there was one.
pub async fn resume(
    tx: &tokio_postgres::Transaction<'_>,
    vendor: Vendor,
    tenant: Option<TenantId>,
    by: &str,
) -> Result<bool, PauseError> {
    let n = tx
        .execute(
            RESUME,
            &[&vendor.as_str(), &tenant.map(|t| t.as_uuid()), &by],
        )
        .await?;
    Ok(n > 0)
}

const OPEN_PAUSES: &str = "SELECT vendor, tenant_id, reason, paused_at, until FROM vendor_pauses
 WHERE resumed_at IS NULL AND (until IS NULL OR until > now()) ORDER BY paused_at, vendor";

/// The open pauses the transaction's role may see (a tenant: its own and the fleet's).
pub async fn open(tx: &tokio_postgres::Transaction<'_>) -> Result<Vec<VendorPause>, PauseError> {
    Ok(tx
        .query(OPEN_PAUSES, &[])
        .await?
        .iter()
        .filter_map(row)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pause(tenant: Option<TenantId>, until: Option<DateTime<Utc>>) -> VendorPause {
        VendorPause {
            vendor: Vendor::Places,
            tenant,
            reason: "r".into(),
            paused_at: Utc::now(),
            until,
        }
    }

    #[test]
    fn a_pause_holds_its_vendor_for_its_scope_until_its_end() {
        let (a, b) = (
            TenantId::from_uuid(uuid::Uuid::new_v4()),
            TenantId::from_uuid(uuid::Uuid::new_v4()),
        );
        let now = Utc::now();
        assert!(pause(None, None).holds(a, &[Vendor::Places], now));
        assert!(!pause(None, None).holds(a, &[Vendor::Yelp], now));
        assert!(pause(Some(a), None).holds(a, &[Vendor::Yelp, Vendor::Places], now));
        assert!(!pause(Some(a), None).holds(b, &[Vendor::Places], now));
        let ended = pause(None, Some(now - chrono::Duration::seconds(1)));
        assert!(!ended.holds(a, &[Vendor::Places], now));
    }

    #[test]
    fn held_work_waits_until_the_end_within_sqs_limits() {
        let now = Utc::now();
        assert_eq!(pause(None, None).wait(now), RECHECK);
        let soon = pause(None, Some(now + chrono::Duration::seconds(90)));
        assert!((89..=90).contains(&soon.wait(now).as_secs()));
        let late = pause(None, Some(now + chrono::Duration::hours(5)));
        assert_eq!(late.wait(now), MAX_WAIT);
    }

    #[test]
    fn names_and_reasons_are_checked() {
        assert_eq!(vendor(" Places ").ok(), Some(Vendor::Places));
        assert!(matches!(
            vendor("twilio"),
            Err(PauseError::UnknownVendor(_))
        ));
        assert!(check_reason(" \t").is_err());
        assert!(check_reason("a\u{0}b").is_err());
        assert!(check_reason(&"x".repeat(501)).is_err());
        assert_eq!(check_reason(" quota burst").ok(), Some(" quota burst"));
    }
}
