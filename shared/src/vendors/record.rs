//! Every vendor call becomes a [`CallRecord`] with its cost. Clients record it synchronously
//! (no I/O on the call path) into the scope of the work that made it ([`recorded`]); the runner
//! stores a batch's records in the cost ledger in one statement per tenant
//! ([`write_cost_ledger`]), and run tracking sums the same records into vendor usage.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::Vendor;
use crate::db::{DbError, Tx, cached};
use crate::domain::{BusinessId, RunId, TenantId};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallRecord {
    pub vendor: Vendor,
    pub endpoint: &'static str,
    pub tenant: Option<TenantId>,
    pub run: Option<RunId>,
    pub business: Option<BusinessId>,
    /// HTTP status, or `None` when no response arrived (timeout, connection error).
    pub status: Option<u16>,
    pub latency_ms: u32,
    pub ok: bool,
    pub rate_limited: bool,
    pub quota_exhausted: bool,
    pub units: u32,
    pub tokens_in: u32,
    pub tokens_out: u32,
    pub cost_micros: i64,
    pub at: chrono::DateTime<chrono::Utc>,
}

tokio::task_local! {
    /// The records of the calls made by the work [`recorded`] is running.
    static CALLS: std::cell::RefCell<Vec<CallRecord>>;
}

/// Runs `work` and returns, with its output, the record of every vendor call it made. The
/// records travel with the work's result (the runner stores them with the message's outcome,
/// whether the work succeeded or failed), so no buffer is shared between concurrent work.
/// Scopes nest: a call is recorded by the innermost.
pub async fn recorded<F: std::future::Future>(work: F) -> (F::Output, Vec<CallRecord>) {
    CALLS
        .scope(std::cell::RefCell::new(Vec::new()), async {
            let out = work.await;
            (out, CALLS.with(std::cell::RefCell::take))
        })
        .await
}

/// Records one call in the running [`recorded`] scope. A call made outside any (an HTTP
/// function's Stripe or Slack call, which the ledger does not price) is only logged.
pub(super) fn record(record: CallRecord) {
    let (vendor, endpoint) = (record.vendor, record.endpoint);
    if CALLS
        .try_with(move |c| c.borrow_mut().push(record))
        .is_err()
    {
        tracing::debug!(?vendor, endpoint, "vendor call outside a recorded scope");
    }
}

/// What one vendor charges, in micro-dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    #[serde(default)]
    pub per_request_micros: i64,
    #[serde(default)]
    pub per_million_input_tokens_micros: i64,
    #[serde(default)]
    pub per_million_output_tokens_micros: i64,
}

impl Price {
    pub fn cost(&self, units: u32, tokens_in: u32, tokens_out: u32) -> i64 {
        self.per_request_micros * i64::from(units)
            + (self.per_million_input_tokens_micros * i64::from(tokens_in)).div_euclid(1_000_000)
            + (self.per_million_output_tokens_micros * i64::from(tokens_out)).div_euclid(1_000_000)
    }
}

/// Prices per vendor; configurable (`LF_PRICES` JSON), defaults from public list prices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceTable(pub BTreeMap<Vendor, Price>);

impl Default for PriceTable {
    fn default() -> Self {
        let p = |req, tin, tout| Price {
            per_request_micros: req,
            per_million_input_tokens_micros: tin,
            per_million_output_tokens_micros: tout,
        };
        Self(BTreeMap::from([
            // Yelp Places API starter plan: about $8 per 1,000 calls.
            (Vendor::Yelp, p(8_000, 0, 0)),
            // Places Text Search (New) at the SKU enrichment's field mask falls in.
            (
                Vendor::Places,
                p(
                    super::places::Sku::of_mask(super::places::SEARCH_FIELD_MASK)
                        .list_price_micros(),
                    0,
                    0,
                ),
            ),
            (Vendor::PageSpeed, p(0, 0, 0)),
            // gpt-4o-mini class: $0.15 / M input, $0.60 / M output tokens.
            (Vendor::OpenAi, p(0, 150_000, 600_000)),
            // SendGrid Essentials: about $0.0004 per email.
            (Vendor::SendGrid, p(400, 0, 0)),
            (Vendor::Stripe, p(0, 0, 0)),
            (Vendor::Slack, p(0, 0, 0)),
        ]))
    }
}

impl PriceTable {
    pub fn price(&self, vendor: Vendor) -> Price {
        self.0.get(&vendor).copied().unwrap_or_default()
    }

    /// Defaults overlaid with a JSON object such as `{"openai":{"per_million_input_tokens_micros":150000}}`.
    pub fn with_overrides(json: &str) -> Result<Self, String> {
        let overrides: HashMap<Vendor, Price> =
            serde_json::from_str(json).map_err(|e| e.to_string())?;
        let mut t = Self::default();
        t.0.extend(overrides);
        Ok(t)
    }
}

const INSERT_LEDGER: &str = "
INSERT INTO cost_ledger (tenant_id, run_id, business_id, vendor, endpoint, status, latency_ms, units, tokens_in, tokens_out, cost_micros, occurred_at)
SELECT $1, r, b, v, e, s, l, u, ti, tto, c, t
FROM UNNEST($2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::int2[], $7::int4[], $8::int4[], $9::int4[], $10::int4[], $11::int8[], $12::timestamptz[])
     AS x(r, b, v, e, s, l, u, ti, tto, c, t)";

/// Inserts one tenant's records into the cost ledger in one statement, inside `tx`.
pub async fn insert_ledger(
    tx: &dyn Tx,
    tenant: TenantId,
    recs: &[CallRecord],
) -> Result<u64, DbError> {
    if recs.is_empty() {
        return Ok(0);
    }
    let col = |f: &dyn Fn(&CallRecord) -> i32| recs.iter().map(f).collect::<Vec<i32>>();
    cached::execute(
        tx,
        INSERT_LEDGER,
        &[
            &tenant.as_uuid(),
            &recs
                .iter()
                .map(|r| r.run.map(|x| x.as_uuid()))
                .collect::<Vec<_>>(),
            &recs
                .iter()
                .map(|r| r.business.map(|x| x.as_uuid()))
                .collect::<Vec<_>>(),
            &recs.iter().map(|r| r.vendor.as_str()).collect::<Vec<_>>(),
            &recs.iter().map(|r| r.endpoint).collect::<Vec<_>>(),
            &recs
                .iter()
                .map(|r| r.status.map(|s| s as i16))
                .collect::<Vec<_>>(),
            &col(&|r| r.latency_ms.min(i32::MAX as u32) as i32),
            &col(&|r| r.units as i32),
            &col(&|r| r.tokens_in as i32),
            &col(&|r| r.tokens_out as i32),
            &recs.iter().map(|r| r.cost_micros).collect::<Vec<_>>(),
            &recs.iter().map(|r| r.at).collect::<Vec<_>>(),
        ],
    )
    .await
}

/// Writes records to the cost ledger: one transaction and one statement per tenant. Records
/// without a tenant (e.g. simulator admin calls) are not ledger entries and are skipped.
pub async fn write_cost_ledger(
    client: &mut deadpool_postgres::Client,
    records: &[CallRecord],
) -> Result<u64, DbError> {
    let mut by_tenant: BTreeMap<TenantId, Vec<CallRecord>> = BTreeMap::new();
    for r in records {
        if let Some(t) = r.tenant {
            by_tenant.entry(t).or_default().push(r.clone());
        }
    }
    let mut written = 0;
    for (tenant, recs) in by_tenant {
        let tx = crate::db::begin_tenant(client, tenant).await?;
        written += insert_ledger(&tx, tenant, &recs).await?;
        tx.commit().await?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(vendor: Vendor) -> CallRecord {
        CallRecord {
            vendor,
            endpoint: "test",
            tenant: None,
            run: None,
            business: None,
            status: Some(200),
            latency_ms: 1,
            ok: true,
            rate_limited: false,
            quota_exhausted: false,
            units: 1,
            tokens_in: 0,
            tokens_out: 0,
            cost_micros: 1,
            at: chrono::Utc::now(),
        }
    }

    /// Interleaved work keeps its own records; a nested scope takes its calls from the outer.
    #[tokio::test]
    async fn each_recorded_scope_gets_the_calls_its_work_made() {
        use futures_util::StreamExt;
        let work = |v: Vendor, n: usize| async move {
            for _ in 0..n {
                record(call(v));
                tokio::task::yield_now().await;
            }
            v
        };
        let runs: Vec<(Vendor, Vec<CallRecord>)> = futures_util::stream::iter([
            (Vendor::Yelp, 3),
            (Vendor::Places, 2),
            (Vendor::OpenAi, 4),
        ])
        .map(|(v, n)| recorded(work(v, n)))
        .buffer_unordered(3)
        .collect()
        .await;
        for (v, calls) in &runs {
            assert!(calls.iter().all(|c| c.vendor == *v), "{v}: {calls:?}");
        }
        let count = |v| runs.iter().find(|(w, _)| *w == v).map(|(_, c)| c.len());
        assert_eq!(count(Vendor::Yelp), Some(3));
        assert_eq!(count(Vendor::Places), Some(2));
        assert_eq!(count(Vendor::OpenAi), Some(4));

        let ((_, inner), outer) = recorded(async {
            record(call(Vendor::Slack));
            recorded(work(Vendor::Stripe, 2)).await
        })
        .await;
        assert_eq!(inner.len(), 2);
        assert_eq!(outer.len(), 1);
        // Outside any scope a call is only logged.
        record(call(Vendor::Slack));
    }

    #[test]
    fn prices_tokens_and_requests() {
        let t = PriceTable::default();
        // 1,000 input + 500 output tokens of gpt-4o-mini = $0.00015 + $0.0003 = 450 micros.
        assert_eq!(t.price(Vendor::OpenAi).cost(1, 1_000, 500), 450);
        assert_eq!(t.price(Vendor::Places).cost(2, 0, 0), 70_000);
        let o = PriceTable::with_overrides(r#"{"pagespeed":{"per_request_micros":5}}"#).unwrap();
        assert_eq!(o.price(Vendor::PageSpeed).cost(3, 0, 0), 15);
        assert_eq!(o.price(Vendor::Places), t.price(Vendor::Places));
        assert!(PriceTable::with_overrides(r#"{"nope":{}}"#).is_err());
    }
}
