//! The payloads of each hop, inside an [`crate::bus::Envelope`].

use serde::{Deserialize, Serialize};

use crate::domain::{BusinessId, CampaignId};

/// targeting → sourcing: one Yelp search page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
#[serde(deny_unknown_fields)]
pub struct LeadRef {
    pub business_id: BusinessId,
    pub campaign_id: CampaignId,
}

/// stripe-webhook → fulfilment queue: one paid purchase whose report must be delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fulfil {
    pub purchase_id: uuid::Uuid,
    pub stripe_session_id: String,
    /// Empty for the purchase's fulfilment; an operator's request key for a resend (a new email
    /// with a new download link, once per key).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request_key: String,
}

/// The id columns of a batch of leads, for one `UNNEST($1::uuid[], $2::uuid[], $3::uuid[])` query.
pub struct LeadColumns {
    pub businesses: Vec<uuid::Uuid>,
    pub campaigns: Vec<uuid::Uuid>,
    pub runs: Vec<Option<uuid::Uuid>>,
}

impl LeadColumns {
    pub fn of(envs: &[&crate::bus::Envelope<LeadRef>]) -> Self {
        Self {
            businesses: envs
                .iter()
                .map(|e| e.payload.business_id.as_uuid())
                .collect(),
            campaigns: envs
                .iter()
                .map(|e| e.payload.campaign_id.as_uuid())
                .collect(),
            runs: envs.iter().map(|e| e.run_id.map(|r| r.as_uuid())).collect(),
        }
    }
}
