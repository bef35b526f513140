//! Validated domain values. Each type's only constructor checks its input ("parse, don't
//! validate"), so code holding one never re-checks it.

pub mod capped;
mod email;
mod external;
mod ids;
mod insights;
mod money;
mod phone;
mod score;
mod text;
mod website;

pub use email::Email;
pub use external::{ExternalText, storable, storable_json};
pub use ids::{BusinessId, CampaignId, RunId, TenantId};
pub use insights::{Insights, Recommendation, recommendation_titles};
pub use money::Money;
pub use phone::Phone;
pub use score::{Score, Tier, TierThresholds};
pub use text::{normalize_address, normalize_name, slug};
pub use website::WebsiteUrl;

/// Why a raw value was refused: names the kind of value and what was wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind}: {reason}")]
pub struct DomainError {
    pub kind: &'static str,
    pub reason: String,
}

impl DomainError {
    pub(crate) fn new(kind: &'static str, reason: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
        }
    }
}
