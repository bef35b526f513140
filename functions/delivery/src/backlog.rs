//! The morning release of the outreach that yesterday's caps or a pause held back.

use shared::bus::{Bus, Envelope, Queue};
use shared::db::{begin_tenant, cached};
use shared::domain::{BusinessId, CampaignId, RunId};
use shared::pipeline::Deps;
use shared::pipeline::messages::LeadRef;

/// What the morning release did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Released {
    pub tenants: usize,
    pub messages: usize,
}

const BACKLOG: &str = "SELECT e.id, e.business_id, e.campaign_id, e.run_id FROM emails e JOIN campaigns c ON c.id = e.campaign_id
 WHERE e.kind = 'outreach' AND e.send_state = 'queued' AND c.status = 'active'
   AND e.created_at < $1::date ORDER BY e.created_at LIMIT 10000";

/// Sends a delivery message for every outreach email still `queued` from before `today` (held
/// by a daily cap or a pause), keyed by the day so each is released once a day.
pub async fn release_backlog(
    deps: &Deps,
    bus: &dyn Bus,
    today: chrono::NaiveDate,
) -> Result<Released, shared::pipeline::StageError> {
    let tenants = shared::db::tenant_ids(&deps.pool.get().await?).await?;
    let mut out = Released::default();
    for tenant in tenants {
        let mut c = deps.pool.get().await?;
        let tx = begin_tenant(&mut c, tenant).await?;
        let rows = cached::query(&tx, BACKLOG, &[&today]).await?;
        tx.commit().await?;
        out.tenants += 1;
        let bodies: Vec<String> = rows
            .iter()
            .filter_map(|r| {
                let email: uuid::Uuid = r.get("id");
                Envelope::new(
                    tenant,
                    r.get::<_, Option<uuid::Uuid>>("run_id")
                        .map(RunId::from_uuid),
                    format!("backlog:{today}:{email}"),
                    LeadRef {
                        business_id: BusinessId::from_uuid(r.get("business_id")),
                        campaign_id: CampaignId::from_uuid(r.get("campaign_id")),
                    },
                )
                .to_body()
                .ok()
            })
            .collect();
        if !bodies.is_empty() {
            bus.send_batch(Queue::Delivery.name(), &bodies).await?;
            out.messages += bodies.len();
        }
    }
    Ok(out)
}
