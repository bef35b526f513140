//! The budget gate. A paid step first reserves its estimated cost against the tenant's daily
//! budget for that vendor class. Reservation is atomic in PostgreSQL: the budget row is locked,
//! at most what is left is granted, and the table's CHECK (`reserved <= limit`) backs the rule,
//! so concurrent stages in many Lambdas can never overspend. A batch reserves all its units in
//! one statement and gets back how many it may spend.

use crate::db::{DbError, Tx, cached};
use crate::domain::TenantId;

/// A budgeted class of paid calls: each has its own daily limit (`budgets.vendor_class`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BudgetClass {
    Yelp,
    Places,
    /// Every LLM call, whichever stage makes it.
    Llm,
}

impl BudgetClass {
    pub const ALL: [BudgetClass; 3] = [BudgetClass::Yelp, BudgetClass::Places, BudgetClass::Llm];

    /// The name the `budgets` table uses (upper-cased, `LF_BUDGET_<CLASS>_MICROS`).
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetClass::Yelp => "yelp",
            BudgetClass::Places => "places",
            BudgetClass::Llm => "llm",
        }
    }

    /// The class a vendor's calls are charged to; `None` for vendors outside the gate.
    pub fn of(vendor: crate::vendors::Vendor) -> Option<Self> {
        use crate::vendors::Vendor;
        match vendor {
            Vendor::Yelp => Some(BudgetClass::Yelp),
            Vendor::Places => Some(BudgetClass::Places),
            Vendor::OpenAi => Some(BudgetClass::Llm),
            Vendor::PageSpeed | Vendor::SendGrid | Vendor::Stripe | Vendor::Slack => None,
        }
    }
}

/// The budget one LLM call of about `tokens_in` prompt and `tokens_out` completion tokens
/// reserves, at the configured price (at least one micro-dollar, so the gate counts it).
pub fn llm_call(
    prices: &crate::vendors::PriceTable,
    tokens_in: u32,
    tokens_out: u32,
) -> (BudgetClass, i64) {
    (
        BudgetClass::Llm,
        prices
            .price(crate::vendors::Vendor::OpenAi)
            .cost(1, tokens_in, tokens_out)
            .max(1),
    )
}

impl std::fmt::Display for BudgetClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Daily limits in micro-dollars per class (configuration; see `LF_BUDGET_<CLASS>_MICROS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetLimits {
    pub yelp: i64,
    pub places: i64,
    pub llm: i64,
}

impl Default for BudgetLimits {
    fn default() -> Self {
        // $10 of Yelp, $20 of Places, $5 of LLM a day per tenant.
        Self {
            yelp: 10_000_000,
            places: 20_000_000,
            llm: 5_000_000,
        }
    }
}

impl BudgetLimits {
    pub fn for_class(&self, class: BudgetClass) -> i64 {
        match class {
            BudgetClass::Yelp => self.yelp,
            BudgetClass::Places => self.places,
            BudgetClass::Llm => self.llm,
        }
    }
}

const ENSURE: &str = "INSERT INTO budgets (tenant_id, vendor_class, day, limit_micros) VALUES ($1, $2, current_date, $3)
                      ON CONFLICT (tenant_id, vendor_class, day) DO NOTHING";

// Locks the row, grants whole units of what is left, and adds them to the reservation.
const RESERVE: &str = "
WITH cur AS (
    SELECT limit_micros - reserved_micros AS left_micros FROM budgets
    WHERE tenant_id = $1 AND vendor_class = $2 AND day = current_date FOR UPDATE
), grant_units AS (
    SELECT LEAST($3::bigint, GREATEST(left_micros, 0) / GREATEST($4::bigint, 1)) AS units FROM cur
)
UPDATE budgets b SET reserved_micros = b.reserved_micros + g.units * $4::bigint, updated_at = now()
FROM grant_units g
WHERE b.tenant_id = $1 AND b.vendor_class = $2 AND b.day = current_date
RETURNING g.units";

/// Reserves up to `units` calls of `unit_cost_micros` each in a short transaction of its own;
/// returns how many were granted. Free calls are always granted.
pub async fn reserve(
    client: &mut deadpool_postgres::Client,
    tenant: TenantId,
    class: BudgetClass,
    limit_micros: i64,
    unit_cost_micros: i64,
    units: i64,
) -> Result<i64, DbError> {
    let tx = crate::db::begin_tenant(client, tenant).await?;
    let granted = reserve_in(&tx, tenant, class, limit_micros, unit_cost_micros, units).await?;
    tx.commit().await?;
    Ok(granted)
}

/// [`reserve`] inside the caller's transaction, which should commit soon after: the budget row
/// stays locked until it does, so a caller never holds it across the vendor calls it pays for.
/// Today's row is created on the day's first reservation only (a miss), so a reservation is one
/// statement.
pub async fn reserve_in(
    tx: &dyn Tx,
    tenant: TenantId,
    class: BudgetClass,
    limit_micros: i64,
    unit_cost_micros: i64,
    units: i64,
) -> Result<i64, DbError> {
    if let Some(granted) = try_reserve(tx, tenant, class, unit_cost_micros, units).await? {
        return Ok(granted);
    }
    cached::execute(
        tx,
        ENSURE,
        &[&tenant.as_uuid(), &class.as_str(), &limit_micros],
    )
    .await?;
    Ok(try_reserve(tx, tenant, class, unit_cost_micros, units)
        .await?
        .unwrap_or(0))
}

/// The reservation's one statement, without creating today's row: `None` when the row does not
/// exist yet (then [`reserve`] or [`reserve_in`]). Being one statement started when first polled,
/// it can travel with a pipelined commit.
pub async fn try_reserve(
    tx: &dyn Tx,
    tenant: TenantId,
    class: BudgetClass,
    unit_cost_micros: i64,
    units: i64,
) -> Result<Option<i64>, DbError> {
    if units <= 0 {
        return Ok(Some(0));
    }
    if unit_cost_micros <= 0 {
        return Ok(Some(units));
    }
    Ok(cached::query_opt(
        tx,
        RESERVE,
        &[
            &tenant.as_uuid(),
            &class.as_str(),
            &units,
            &unit_cost_micros,
        ],
    )
    .await?
    .map(|r| r.get("units")))
}

const RELEASE: &str =
    "UPDATE budgets SET reserved_micros = GREATEST(reserved_micros - $3, 0), updated_at = now()
 WHERE tenant_id = $1 AND vendor_class = $2 AND day = current_date";

/// Gives back `micros` of today's reservation (work that was granted a paid call but failed).
pub async fn release(
    tx: &dyn Tx,
    tenant: TenantId,
    class: BudgetClass,
    micros: i64,
) -> Result<(), DbError> {
    if micros <= 0 {
        return Ok(());
    }
    cached::execute(tx, RELEASE, &[&tenant.as_uuid(), &class.as_str(), &micros]).await?;
    Ok(())
}

const RECORD_SPEND: &str =
    "UPDATE budgets b SET spent_micros = b.spent_micros + x.m, updated_at = now()
 FROM UNNEST($2::text[], $3::int8[]) AS x(c, m)
 WHERE b.tenant_id = $1 AND b.vendor_class = x.c AND b.day = current_date";

/// Adds actual spend (from the call records) to the day's budget rows, one statement for all
/// classes, inside the caller's transaction.
pub async fn record_spend(
    tx: &dyn Tx,
    tenant: TenantId,
    spend: &[(BudgetClass, i64)],
) -> Result<(), DbError> {
    let spend: Vec<&(BudgetClass, i64)> = spend.iter().filter(|(_, m)| *m > 0).collect();
    if spend.is_empty() {
        return Ok(());
    }
    let classes: Vec<&str> = spend.iter().map(|(c, _)| c.as_str()).collect();
    let micros: Vec<i64> = spend.iter().map(|(_, m)| *m).collect();
    cached::execute(tx, RECORD_SPEND, &[&tenant.as_uuid(), &classes, &micros]).await?;
    Ok(())
}
