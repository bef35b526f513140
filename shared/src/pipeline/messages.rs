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

/// The wire shape of each hop's message, pinned: a renamed or retyped field breaks these before
/// it breaks a deployment where one function is newer than the next (the model is crates.io's
/// `jobs` message tests).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Envelope;
    use crate::domain::{RunId, TenantId};
    use serde_json::json;

    const TENANT: &str = "00000000-0000-4000-8000-00000000000a";
    const RUN: &str = "00000000-0000-4000-8000-0000000000b1";
    const CAMPAIGN: &str = "00000000-0000-4000-8000-0000000000c1";
    const BUSINESS: &str = "00000000-0000-4000-8000-0000000000d1";

    /// `payload` in an envelope: its body is `wire` (field for field), and `wire` parses back
    /// into `payload`.
    #[expect(
        clippy::needless_pass_by_value,
        reason = "each case builds its payload and wire in place"
    )]
    fn pinned<P>(payload: P, wire: serde_json::Value)
    where
        P: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug + Clone,
    {
        let env = Envelope {
            v: crate::bus::ENVELOPE_VERSION,
            tenant_id: TenantId::parse(TENANT).unwrap(),
            run_id: Some(RunId::parse(RUN).unwrap()),
            idempotency_key: "k".into(),
            trace_id: "t".into(),
            payload: payload.clone(),
        };
        let body: serde_json::Value = serde_json::from_str(&env.to_body().unwrap()).unwrap();
        let expected = json!({
            "v": crate::bus::ENVELOPE_VERSION, "tenant_id": TENANT, "run_id": RUN,
            "idempotency_key": "k", "trace_id": "t", "payload": wire,
        });
        assert_eq!(body, expected);
        let back = Envelope::<P>::parse(&expected.to_string()).unwrap();
        assert_eq!(back.payload, payload);
    }

    #[test]
    fn each_hops_message_has_the_wire_shape_its_consumer_reads() {
        pinned(
            SourcingJob {
                campaign_id: CampaignId::parse(CAMPAIGN).unwrap(),
                location: "95113".into(),
                category: "restaurants".into(),
                offset: 50,
                limit: 50,
            },
            json!({"campaign_id": CAMPAIGN, "location": "95113", "category": "restaurants", "offset": 50, "limit": 50}),
        );
        pinned(
            LeadRef {
                business_id: BusinessId::parse(BUSINESS).unwrap(),
                campaign_id: CampaignId::parse(CAMPAIGN).unwrap(),
            },
            json!({"business_id": BUSINESS, "campaign_id": CAMPAIGN}),
        );
        let purchase = uuid::Uuid::parse_str(BUSINESS).unwrap();
        pinned(
            Fulfil {
                purchase_id: purchase,
                stripe_session_id: "cs_1".into(),
                request_key: String::new(),
            },
            json!({"purchase_id": BUSINESS, "stripe_session_id": "cs_1"}),
        );
        pinned(
            Fulfil {
                purchase_id: purchase,
                stripe_session_id: "cs_1".into(),
                request_key: "resend-1".into(),
            },
            json!({"purchase_id": BUSINESS, "stripe_session_id": "cs_1", "request_key": "resend-1"}),
        );
    }

    #[test]
    fn a_payload_with_a_field_its_consumer_does_not_know_is_refused() {
        let body = json!({
            "v": crate::bus::ENVELOPE_VERSION, "tenant_id": TENANT, "run_id": RUN,
            "idempotency_key": "k", "trace_id": "t",
            "payload": {"business_id": BUSINESS, "campaign_id": CAMPAIGN, "extra": 1},
        });
        assert!(Envelope::<LeadRef>::parse(&body.to_string()).is_err());
    }
}
