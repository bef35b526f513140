//! Each event's `detail`, as published and as a consumer reads it back. The JSON Schemas in
//! `docs/events/` describe exactly these (a test validates every published event against its
//! schema).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{DETAIL_VERSION, DetailType, EventError, SOURCE};
use crate::domain::TenantId;

/// What every detail starts with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub version: u32,
    /// The event's own id, the same however often it is published: consumers dedupe by it.
    pub event_id: Uuid,
    pub tenant_id: Uuid,
    /// When the fact became true.
    pub occurred_at: DateTime<Utc>,
}

impl Header {
    /// A header whose id is derived from `detail_type` and `fact` (what makes this occurrence
    /// unique), so recording the same fact twice records one event.
    pub fn derived(
        detail_type: DetailType,
        fact: &str,
        tenant: TenantId,
        occurred_at: DateTime<Utc>,
    ) -> Self {
        Self {
            version: DETAIL_VERSION,
            event_id: Uuid::new_v5(
                &EVENT_NAMESPACE,
                format!("{}:{fact}", detail_type.as_str()).as_bytes(),
            ),
            tenant_id: tenant.as_uuid(),
            occurred_at,
        }
    }
}

/// The UUID namespace of derived event ids.
const EVENT_NAMESPACE: Uuid = Uuid::from_u128(0x6c65_6164_6661_6374_6f72_7965_7665_6e74);

/// One stage's counts in a finished run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageCounts {
    pub total: i64,
    pub errors: i64,
    pub skipped: i64,
}

/// A run was finalised (recorded by the SQL function `run_finish`, so every path that finishes
/// a run records it): its data is ready for sampling and roll-ups. A run finalised again (a
/// redrive ended its dead messages) is a new event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFinished {
    #[serde(flatten)]
    pub header: Header,
    pub run_id: Uuid,
    /// `nightly`, `manual` or `local`.
    pub kind: String,
    /// `succeeded`, `partial`, `failed` or `stalled`.
    pub status: String,
    pub run_date: NaiveDate,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// Per stage: messages processed, failed and skipped.
    pub stages: BTreeMap<String, StageCounts>,
}

/// A purchase was paid (Stripe's completed, paid checkout session).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PurchasePaid {
    #[serde(flatten)]
    pub header: Header,
    pub purchase_id: Uuid,
    pub report_id: Uuid,
    pub business_id: Uuid,
    pub campaign_id: Option<Uuid>,
    pub amount_cents: i64,
    pub currency: String,
}

/// A purchase's payment was refunded, in part or in full; a larger refund later is a new event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PurchaseRefunded {
    #[serde(flatten)]
    pub header: Header,
    pub purchase_id: Uuid,
    pub refunded_cents: i64,
    pub amount_cents: i64,
    pub currency: String,
    pub fully_refunded: bool,
}

/// A tenant's alert was raised (recorded when it is, before it is posted to Slack).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRaised {
    #[serde(flatten)]
    pub header: Header,
    pub alert_id: Uuid,
    pub rule: String,
    /// `warning` or `critical`.
    pub severity: String,
    pub message: String,
    pub value: f64,
    pub threshold: f64,
}

/// Tonight's targeting found every area of a campaign searched to its end: nothing new is left
/// to find there. Once per campaign per run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignExhausted {
    #[serde(flatten)]
    pub header: Header,
    pub campaign_id: Uuid,
    pub campaign_name: String,
    pub run_id: Uuid,
}

/// An EventBridge event as a Lambda target receives it, read for a consumer: one of ours
/// (`source` leadfactory), or anything else (a schedule's `aws.events`), which is `Other`.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    RunFinished(RunFinished),
    /// An event of ours this consumer does not act on.
    Ours(DetailType, Header),
    Other,
}

impl Received {
    /// Reads `event`. One that claims our source with an unknown `detail-type` or a detail that
    /// does not read as its type's is an error naming what is wrong.
    pub fn of(event: &serde_json::Value) -> Result<Received, EventError> {
        if event.get("source").and_then(|s| s.as_str()) != Some(SOURCE) {
            return Ok(Received::Other);
        }
        let name = event
            .get("detail-type")
            .and_then(|t| t.as_str())
            .ok_or_else(|| EventError::Malformed("no detail-type".into()))?;
        let ty = DetailType::named(name)
            .ok_or_else(|| EventError::Malformed(format!("unknown detail-type {name:?}")))?;
        let detail = event
            .get("detail")
            .cloned()
            .ok_or_else(|| EventError::Malformed(format!("{name} without a detail")))?;
        let bad = |e: serde_json::Error| EventError::Malformed(format!("{name} detail: {e}"));
        Ok(match ty {
            DetailType::RunFinished => {
                Received::RunFinished(serde_json::from_value(detail).map_err(bad)?)
            }
            other => Received::Ours(other, serde_json::from_value(detail).map_err(bad)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_the_same_fact_for_the_same_fact_only() {
        let t = TenantId::from_uuid(Uuid::nil());
        let at = Utc::now();
        let a = Header::derived(DetailType::PurchasePaid, "p1", t, at);
        let b = Header::derived(DetailType::PurchasePaid, "p1", t, at);
        let c = Header::derived(DetailType::PurchaseRefunded, "p1", t, at);
        let d = Header::derived(DetailType::PurchasePaid, "p2", t, at);
        assert_eq!(a.event_id, b.event_id);
        assert_ne!(a.event_id, c.event_id);
        assert_ne!(a.event_id, d.event_id);
        assert_eq!(a.version, DETAIL_VERSION);
    }

    #[test]
    fn incoming_events_are_ours_theirs_or_refused_with_the_reason() {
        let schedule = serde_json::json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
        assert_eq!(Received::of(&schedule).unwrap(), Received::Other);
        let unknown =
            serde_json::json!({"source": "leadfactory", "detail-type": "Nope", "detail": {}});
        assert!(
            Received::of(&unknown)
                .unwrap_err()
                .to_string()
                .contains("unknown detail-type \"Nope\"")
        );
        let short = serde_json::json!({"source": "leadfactory", "detail-type": "RunFinished", "detail": {"version": 1}});
        assert!(
            Received::of(&short)
                .unwrap_err()
                .to_string()
                .contains("RunFinished detail")
        );
        let header = Header::derived(
            DetailType::PurchasePaid,
            "x",
            TenantId::from_uuid(Uuid::nil()),
            Utc::now(),
        );
        let paid = serde_json::json!({"source": "leadfactory", "detail-type": "PurchasePaid", "detail": header});
        assert_eq!(
            Received::of(&paid).unwrap(),
            Received::Ours(DetailType::PurchasePaid, header)
        );
    }
}
