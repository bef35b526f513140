//! The outbox: events recorded with their facts, published after commit, consumed once.

use serde::Serialize;

use super::publisher::{MAX_ENTRIES, Outgoing, Publisher};
use super::{
    AlertRaised, CampaignExhausted, DetailType, EventError, Header, PurchasePaid, PurchaseRefunded,
    RunFinished,
};
use crate::db::{DbError, Pool, Tx, begin_tenant, cached};
use crate::domain::TenantId;

/// A detail of a known type.
pub trait Detail: Serialize {
    const TYPE: DetailType;
    fn header(&self) -> &Header;
}

macro_rules! details {
    ($($ty:ident,)*) => {
        $(impl Detail for $ty {
            const TYPE: DetailType = DetailType::$ty;
            fn header(&self) -> &Header {
                &self.header
            }
        })*
    };
}

details! {
    RunFinished,
    PurchasePaid,
    PurchaseRefunded,
    AlertRaised,
    CampaignExhausted,
}

const RECORD: &str = "INSERT INTO domain_events (id, tenant_id, detail_type, detail, occurred_at)
 SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::jsonb[], $5::timestamptz[])
 ON CONFLICT (id) DO NOTHING";

/// Records `events` in `tx`, the transaction that makes their facts true; an event already
/// recorded (the same derived id) is left as it is. Returns how many are new.
pub async fn record<D: Detail>(tx: &dyn Tx, events: &[D]) -> Result<u64, EventError> {
    if events.is_empty() {
        return Ok(0);
    }
    let details = events
        .iter()
        .map(|e| serde_json::to_value(e).map_err(|err| EventError::Encode(D::TYPE, err)))
        .collect::<Result<Vec<_>, _>>()?;
    let headers: Vec<&Header> = events.iter().map(Detail::header).collect();
    Ok(cached::execute(
        tx,
        RECORD,
        &[
            &headers.iter().map(|h| h.event_id).collect::<Vec<_>>(),
            &headers.iter().map(|h| h.tenant_id).collect::<Vec<_>>(),
            &vec![D::TYPE.as_str(); events.len()],
            &details,
            &headers.iter().map(|h| h.occurred_at).collect::<Vec<_>>(),
        ],
    )
    .await?)
}

/// At most this many events per flush (the rest wait for the next one, or the sweep).
const FLUSH_LIMIT: i64 = 100;

const PENDING: &str = "SELECT id, detail_type, detail::text AS detail, occurred_at FROM domain_events
 WHERE tenant_id = $1 AND published_at IS NULL ORDER BY occurred_at LIMIT $2 FOR UPDATE SKIP LOCKED";
const MARK_ATTEMPTS: &str =
    "UPDATE domain_events d SET published_at = CASE WHEN x.err IS NULL THEN now() END,
     publish_attempts = d.publish_attempts + 1, last_publish_error = x.err
 FROM UNNEST($1::uuid[], $2::text[]) AS x(id, err) WHERE d.id = x.id";

/// What a flush did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Flushed {
    pub published: usize,
    /// Refused or not answered: still waiting, with the reason recorded.
    pub failed: usize,
}

/// Publishes the tenant's waiting events, oldest first, and records each one's outcome. Rows
/// another flush holds are skipped, so concurrent flushes publish each event once (a crash
/// between the publish and this commit publishes it again: consumers dedupe by id). With no
/// publisher (no bus configured) the events wait. A publish that fails is recorded on the rows
/// and counted, not returned: the fact is committed, and the next flush tries again.
pub async fn flush(
    pool: &Pool,
    publisher: Option<&dyn Publisher>,
    tenant: TenantId,
) -> Result<Flushed, EventError> {
    if publisher.is_none() {
        return Ok(Flushed::default());
    }
    let mut c = pool.get().await.map_err(DbError::from)?;
    flush_on(&mut c, publisher, tenant).await
}

/// As [`flush`], on a connection the caller holds: a handler that still holds its own must not
/// wait for a second from the pool (under load every connection is such a handler's, and none
/// would come back).
pub async fn flush_on(
    c: &mut crate::db::Client,
    publisher: Option<&dyn Publisher>,
    tenant: TenantId,
) -> Result<Flushed, EventError> {
    let Some(publisher) = publisher else {
        return Ok(Flushed::default());
    };
    let tx = begin_tenant(c, tenant).await?;
    let rows = cached::query(&tx, PENDING, &[&tenant.as_uuid(), &FLUSH_LIMIT]).await?;
    let mut flushed = Flushed::default();
    if rows.is_empty() {
        tx.commit().await?;
        return Ok(flushed);
    }
    let mut ids = Vec::with_capacity(rows.len());
    let mut errors: Vec<Option<String>> = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(MAX_ENTRIES) {
        let out: Vec<Outgoing> = chunk
            .iter()
            .map(|r| Outgoing {
                detail_type: r.get("detail_type"),
                detail: r.get("detail"),
                time: r.get("occurred_at"),
            })
            .collect();
        let results = match publisher.put(&out).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(%tenant, error = %e, "domain events not published; the next flush tries again");
                vec![Some(e.to_string()); out.len()]
            }
        };
        for (r, err) in chunk.iter().zip(results) {
            ids.push(r.get::<_, uuid::Uuid>("id"));
            if err.is_some() {
                flushed.failed += 1;
            } else {
                flushed.published += 1;
            }
            errors.push(err.map(|e| e.chars().take(500).collect()));
        }
    }
    cached::execute(&tx, MARK_ATTEMPTS, &[&ids, &errors]).await?;
    tx.commit().await?;
    Ok(flushed)
}

const CONSUME: &str =
    "INSERT INTO consumed_events (consumer, event_id, tenant_id) VALUES ($1, $2, $3)
 ON CONFLICT (consumer, event_id) DO NOTHING";

/// Records in `tx` that `consumer` acts on the event; `false` when it already did (the event
/// was published again), and the consumer does nothing. Call it in the transaction of the
/// consumer's effect, so the record and the effect commit together.
pub async fn consume(tx: &dyn Tx, consumer: &str, header: &Header) -> Result<bool, EventError> {
    let n = cached::execute(
        tx,
        CONSUME,
        &[&consumer, &header.event_id, &header.tenant_id],
    )
    .await?;
    Ok(n == 1)
}
