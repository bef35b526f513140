//! The payloads of each hop, inside an [`crate::bus::Envelope`].

use serde::{Deserialize, Serialize};

use crate::domain::{BusinessId, CampaignId};

/// targeting → sourcing: one Yelp search page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourcingJob {
    pub campaign_id: CampaignId,
    /// A ZIP code or a city.
    pub location: String,
    pub category: String,
    pub offset: u32,
    pub limit: u32,
}

/// sourcing → enrichment → assessment → scoring → reports: one business of one campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadRef {
    pub business_id: BusinessId,
    pub campaign_id: CampaignId,
}

/// Pipeline stage names, as used in events, idempotency keys and stats.
pub mod stage {
    pub const TARGETING: &str = "targeting";
    pub const SOURCING: &str = "sourcing";
    pub const ENRICHMENT: &str = "enrichment";
    pub const ASSESSMENT: &str = "assessment";
    pub const SCORING: &str = "scoring";
    pub const ALL: &[&str] = &[TARGETING, SOURCING, ENRICHMENT, ASSESSMENT, SCORING];
}
