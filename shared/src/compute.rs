//! Compute cost beside vendor cost: what AWS bills for the functions' own work — Lambda
//! GB-seconds and requests, and the SQS, S3 and EventBridge requests the work makes — measured
//! per invocation, priced at list prices ([`ComputePrices`], overridable with
//! `LF_COMPUTE_PRICES`) and written to `compute_usage` per tenant and run.
//!
//! A batch's SQS, S3 and event requests are counted where they are made (the SQS bus, the S3
//! store, the event publisher) into the scope of the work that makes them ([`metered`]), as the
//! vendor calls are; the duration is the invocation's, billed per millisecond at the function's
//! configured memory (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE` in Lambda; the template's `MemorySize`
//! for the local run, which is priced as if it ran there).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::db::{DbError, Pool};
use crate::domain::{RunId, TenantId};

/// AWS list prices (us-east-1, arm64), in nano-dollars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComputePrices {
    /// Lambda on Graviton: $0.0000133334 per GB-second.
    pub lambda_gb_second_nanos: i64,
    /// Lambda: $0.20 per million requests.
    pub lambda_request_nanos: i64,
    /// SQS standard queues: $0.40 per million requests.
    pub sqs_request_nanos: i64,
    /// S3 Standard: PUT, COPY, POST and LIST $0.005 per 1,000; GET $0.0004 per 1,000 (the
    /// store's requests are mostly writes and listings, so every request is priced as one).
    pub s3_request_nanos: i64,
    /// EventBridge custom events: $1.00 per million.
    pub event_nanos: i64,
}

impl Default for ComputePrices {
    fn default() -> Self {
        Self {
            lambda_gb_second_nanos: 13_333,
            lambda_request_nanos: 200,
            sqs_request_nanos: 400,
            s3_request_nanos: 5_000,
            event_nanos: 1_000,
        }
    }
}

impl ComputePrices {
    /// `LF_COMPUTE_PRICES` (JSON with every field) or the list prices.
    pub fn from_json(text: Option<&str>) -> Result<Self, serde_json::Error> {
        text.map_or_else(|| Ok(Self::default()), serde_json::from_str)
    }
}

/// The requests one piece of work made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Requests {
    pub sqs: u32,
    pub s3: u32,
    pub events: u32,
}

impl std::ops::Sub for Requests {
    type Output = Requests;

    fn sub(self, o: Self) -> Requests {
        Requests {
            sqs: self.sqs.saturating_sub(o.sqs),
            s3: self.s3.saturating_sub(o.s3),
            events: self.events.saturating_sub(o.events),
        }
    }
}

impl std::ops::AddAssign for Requests {
    fn add_assign(&mut self, o: Self) {
        self.sqs += o.sqs;
        self.s3 += o.s3;
        self.events += o.events;
    }
}

/// What a request is to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Sqs,
    S3,
    Events,
}

tokio::task_local! {
    static REQUESTS: Cell<Requests>;
}

/// Counts `n` requests to `service` into the running [`metered`] scope (outside one, nothing:
/// a CLI's or a test's own requests are not a function's).
pub fn count(service: Service, n: u32) {
    let _ = REQUESTS.try_with(|c| {
        let mut r = c.get();
        match service {
            Service::Sqs => r.sqs += n,
            Service::S3 => r.s3 += n,
            Service::Events => r.events += n,
        }
        c.set(r);
    });
}

/// The requests counted so far in the running [`metered`] scope (none outside one).
pub fn so_far() -> Requests {
    REQUESTS.try_with(Cell::get).unwrap_or_default()
}

/// Runs `work`, returning its output with how long it took and the requests it made.
pub async fn metered<F: std::future::Future>(work: F) -> (F::Output, Duration, Requests) {
    let started = std::time::Instant::now();
    REQUESTS
        .scope(Cell::new(Requests::default()), async {
            let out = work.await;
            (out, started.elapsed(), REQUESTS.with(Cell::get))
        })
        .await
}

/// One row of `compute_usage`: a function's invocations (or its share of one) for a tenant's
/// run, or the platform's own (no tenant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub tenant: Option<TenantId>,
    pub run: Option<RunId>,
    pub function: String,
    pub invocations: u32,
    pub billed_ms: u64,
    pub memory_mb: u32,
    pub requests: Requests,
}

impl Usage {
    /// What AWS bills for it, in nano-dollars. Lambda bills each invocation's duration rounded
    /// up to the millisecond; a share of one invocation carries its share of the milliseconds.
    pub fn cost_nanos(&self, p: &ComputePrices) -> i64 {
        let mb_ms = i128::from(self.billed_ms) * i128::from(self.memory_mb);
        let gb_s = mb_ms * i128::from(p.lambda_gb_second_nanos) / (1024 * 1000);
        let requests = i128::from(self.invocations) * i128::from(p.lambda_request_nanos)
            + i128::from(self.requests.sqs) * i128::from(p.sqs_request_nanos)
            + i128::from(self.requests.s3) * i128::from(p.s3_request_nanos)
            + i128::from(self.requests.events) * i128::from(p.event_nanos);
        i64::try_from(gb_s + requests).unwrap_or(i64::MAX)
    }
}

/// A function's meter: its memory, the prices, and the usage not yet written.
#[derive(Debug)]
pub struct Meter {
    /// Configured memory by function (binary) name; `default_mb` for one not named.
    memory: BTreeMap<String, u32>,
    default_mb: u32,
    pub prices: ComputePrices,
    /// How long usage may wait before it is written: zero writes each invocation's at its end;
    /// the HTTP functions, many short requests, write at most once a minute (a container
    /// reclaimed in between loses that minute's record — the price of not writing a row per
    /// request).
    flush_after: Duration,
    pending: std::sync::Mutex<Pending>,
}

#[derive(Debug)]
struct Pending {
    rows: Vec<Usage>,
    since: std::time::Instant,
}

impl Pending {
    fn new() -> Self {
        Self {
            rows: Vec::new(),
            since: std::time::Instant::now(),
        }
    }

    /// Adds `u` to the row of the same tenant, run, function and memory, if there is one.
    fn add(&mut self, u: Usage) {
        match self.rows.iter_mut().find(|r| {
            (r.tenant, r.run, r.memory_mb, r.function.as_str())
                == (u.tenant, u.run, u.memory_mb, u.function.as_str())
        }) {
            Some(r) => {
                r.invocations += u.invocations;
                r.billed_ms += u.billed_ms;
                r.requests += u.requests;
            }
            None => self.rows.push(u),
        }
    }
}

/// How long an HTTP function's usage may wait before it is written.
pub const HTTP_FLUSH_AFTER: Duration = Duration::from_secs(60);

/// Lambda's smallest memory, for a process that does not say.
const DEFAULT_MEMORY_MB: u32 = 128;

impl Meter {
    /// In Lambda: the function's configured memory (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`) for
    /// every invocation of the process.
    pub fn configured(memory_mb: Option<u32>, prices: ComputePrices) -> Self {
        Self {
            memory: BTreeMap::new(),
            default_mb: memory_mb.unwrap_or(DEFAULT_MEMORY_MB),
            prices,
            flush_after: Duration::ZERO,
            pending: std::sync::Mutex::new(Pending::new()),
        }
    }

    /// From a function's settings: `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` (Lambda sets it) and
    /// `LF_COMPUTE_PRICES` (JSON, every field of [`ComputePrices`]).
    pub fn from_source(
        source: &dyn crate::config::Source,
    ) -> Result<Self, crate::lambda::StartError> {
        let invalid = |variable: &'static str, reason: String| crate::lambda::StartError::Invalid {
            variable,
            reason,
        };
        let memory = source
            .get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
            .map(|m| {
                m.parse::<u32>()
                    .map_err(|e| invalid("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", e.to_string()))
            })
            .transpose()?;
        let prices = ComputePrices::from_json(source.get("LF_COMPUTE_PRICES").as_deref())
            .map_err(|e| invalid("LF_COMPUTE_PRICES", e.to_string()))?;
        Ok(Self::configured(memory, prices))
    }

    /// Writes usage at most every `after` (see [`HTTP_FLUSH_AFTER`]).
    pub fn flushing_after(mut self, after: Duration) -> Self {
        self.flush_after = after;
        self
    }

    /// For one process running many functions (the local run): each function's memory.
    pub fn per_function(memory: BTreeMap<String, u32>, prices: ComputePrices) -> Self {
        Self {
            memory,
            default_mb: DEFAULT_MEMORY_MB,
            prices,
            flush_after: Duration::ZERO,
            pending: std::sync::Mutex::new(Pending::new()),
        }
    }

    /// Adds `usage` to what is waiting and writes it all once it is due. A failed write is
    /// logged and the rows kept for the next: the record of spend is not worth failing work for.
    pub async fn add(&self, pool: &Pool, usage: Vec<Usage>) {
        let due = {
            let mut p = self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for u in usage {
                p.add(u);
            }
            if p.rows.is_empty() || p.since.elapsed() < self.flush_after {
                return;
            }
            std::mem::replace(&mut *p, Pending::new()).rows
        };
        if let Err(e) = self.record(pool, &due).await {
            // A row the database refuses (a constraint) would be refused again and hold back
            // every later one: dropped, named in the log. Anything else is kept for the next.
            let refused = matches!(&e, DbError::Postgres(pg)
                if pg.code().is_some_and(|c| c.code().starts_with("23")));
            if refused {
                tracing::error!(error = %e, rows = due.len(), "compute usage refused by the database; dropped");
                return;
            }
            tracing::warn!(error = %e, rows = due.len(), "compute usage not recorded; kept for the next write");
            let mut p = self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for u in due {
                p.add(u);
            }
        }
    }

    /// Runs one invocation of `function` that works for the platform (no single tenant: a
    /// schedule over every tenant, an HTTP request) and adds its usage.
    pub async fn platform<F: std::future::Future>(
        &self,
        pool: &Pool,
        function: &str,
        work: F,
    ) -> F::Output {
        let (out, elapsed, requests) = metered(work).await;
        let usage = self.invocation(function, elapsed, requests, 0, &BTreeMap::new());
        self.add(pool, usage).await;
        out
    }

    pub fn memory_mb(&self, function: &str) -> u32 {
        self.memory
            .get(function)
            .copied()
            .unwrap_or(self.default_mb)
    }

    /// One invocation of `function`, split over `shares` (messages per tenant and run; a share
    /// without a tenant, or none at all, is the platform's) in proportion, each share its part of
    /// the milliseconds and requests.
    /// The event source's own SQS requests (a receive and a delete per batch) are `source_sqs`.
    pub fn invocation(
        &self,
        function: &str,
        elapsed: Duration,
        mut requests: Requests,
        source_sqs: u32,
        shares: &BTreeMap<(Option<TenantId>, Option<RunId>), usize>,
    ) -> Vec<Usage> {
        requests.sqs += source_sqs;
        let billed_ms = u64::try_from(elapsed.as_micros().div_ceil(1000)).unwrap_or(u64::MAX);
        let memory_mb = self.memory_mb(function);
        if shares.values().sum::<usize>() == 0 {
            return vec![Usage {
                tenant: None,
                run: None,
                function: function.to_owned(),
                invocations: 1,
                billed_ms,
                memory_mb,
                requests,
            }];
        }
        let counts: Vec<u64> = shares.values().map(|n| *n as u64).collect();
        let ms = split(billed_ms, &counts);
        let sqs = split(u64::from(requests.sqs), &counts);
        let s3 = split(u64::from(requests.s3), &counts);
        let events = split(u64::from(requests.events), &counts);
        let narrow = |x: u64| u32::try_from(x).unwrap_or(u32::MAX);
        shares
            .keys()
            .enumerate()
            .map(|(i, (tenant, run))| Usage {
                tenant: *tenant,
                run: *run,
                function: function.to_owned(),
                // The invocation itself is counted once, with the first share.
                invocations: u32::from(i == 0),
                billed_ms: ms[i],
                memory_mb,
                requests: Requests {
                    sqs: narrow(sqs[i]),
                    s3: narrow(s3[i]),
                    events: narrow(events[i]),
                },
            })
            .collect()
    }

    /// Writes `usage` (through the definer function `record_compute_usage`, as a batch's
    /// tenants and the platform's own rows are written together).
    pub async fn record(&self, pool: &Pool, usage: &[Usage]) -> Result<(), DbError> {
        if usage.is_empty() {
            return Ok(());
        }
        let columns = self.columns(usage);
        let c = pool.get().await?;
        c.execute(RECORD, &columns.params()).await?;
        Ok(())
    }

    /// `usage` as the parameters of [`RECORD`], priced.
    pub fn columns(&self, usage: &[Usage]) -> Columns {
        let int = |f: fn(&Usage) -> u32| -> Vec<i32> {
            usage
                .iter()
                .map(|u| i32::try_from(f(u)).unwrap_or(i32::MAX))
                .collect()
        };
        Columns {
            tenants: usage
                .iter()
                .map(|u| u.tenant.map(|t| t.as_uuid()))
                .collect(),
            runs: usage.iter().map(|u| u.run.map(|r| r.as_uuid())).collect(),
            functions: usage.iter().map(|u| u.function.clone()).collect(),
            invocations: int(|u| u.invocations),
            billed_ms: usage
                .iter()
                .map(|u| i64::try_from(u.billed_ms).unwrap_or(i64::MAX))
                .collect(),
            memory: int(|u| u.memory_mb),
            sqs: int(|u| u.requests.sqs),
            s3: int(|u| u.requests.s3),
            events: int(|u| u.requests.events),
            cost: usage.iter().map(|u| u.cost_nanos(&self.prices)).collect(),
        }
    }
}

/// Usage rows as the columns [`RECORD`] takes: what a caller sends with a statement of its own
/// (the batch runner, in its last round trip).
#[derive(Debug, Clone, Default)]
pub struct Columns {
    tenants: Vec<Option<uuid::Uuid>>,
    runs: Vec<Option<uuid::Uuid>>,
    functions: Vec<String>,
    invocations: Vec<i32>,
    billed_ms: Vec<i64>,
    memory: Vec<i32>,
    sqs: Vec<i32>,
    s3: Vec<i32>,
    events: Vec<i32>,
    cost: Vec<i64>,
}

impl Columns {
    pub fn is_empty(&self) -> bool {
        self.functions.is_empty()
    }

    pub fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 10] {
        [
            &self.tenants,
            &self.runs,
            &self.functions,
            &self.invocations,
            &self.billed_ms,
            &self.memory,
            &self.sqs,
            &self.s3,
            &self.events,
            &self.cost,
        ]
    }
}

/// `x` split in proportion to `counts`, the first part taking the rounding remainder, so the
/// parts add up to `x`.
fn split(x: u64, counts: &[u64]) -> Vec<u64> {
    let total: u64 = counts.iter().sum::<u64>().max(1);
    let mut parts: Vec<u64> = counts
        .iter()
        .map(|n| u64::try_from(u128::from(x) * u128::from(*n) / u128::from(total)).unwrap_or(0))
        .collect();
    let others: u64 = parts.iter().skip(1).sum();
    if let Some(first) = parts.first_mut() {
        *first = x.saturating_sub(others);
    }
    parts
}

/// Writes usage rows: the columns of [`Columns`].
pub const RECORD: &str = "SELECT record_compute_usage($1::uuid[], $2::uuid[], $3::text[], $4::int4[], $5::int8[], $6::int4[], $7::int4[], $8::int4[], $9::int4[], $10::int8[])";

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: u128) -> TenantId {
        TenantId::from_uuid(uuid::Uuid::from_u128(n))
    }

    #[test]
    fn an_invocation_is_priced_at_its_milliseconds_memory_and_requests() {
        let m = Meter::configured(Some(512), ComputePrices::default());
        let u = m.invocation(
            "scoring",
            Duration::from_micros(200_400),
            Requests {
                sqs: 1,
                s3: 2,
                events: 1,
            },
            2,
            &BTreeMap::new(),
        );
        assert_eq!(u.len(), 1);
        assert_eq!(
            (u[0].billed_ms, u[0].memory_mb, u[0].tenant),
            (201, 512, None)
        );
        // 0.5 GB × 0.201 s × 13,333 n$ = 1,339.97 n$; 1 request 200; 3 SQS 1,200; 2 S3
        // 10,000; 1 event 1,000.
        assert_eq!(
            u[0].cost_nanos(&m.prices),
            1_339 + 200 + 1_200 + 10_000 + 1_000
        );
    }

    #[test]
    fn a_batch_of_several_tenants_is_split_by_messages_and_the_parts_add_up() {
        let m = Meter::configured(Some(256), ComputePrices::default());
        let run = Some(RunId::from_uuid(uuid::Uuid::from_u128(9)));
        let shares = BTreeMap::from([((Some(t(1)), run), 7), ((Some(t(2)), None), 3)]);
        let u = m.invocation(
            "enrichment",
            Duration::from_millis(1_001),
            Requests {
                sqs: 3,
                s3: 0,
                events: 1,
            },
            2,
            &shares,
        );
        assert_eq!(u.len(), 2);
        assert_eq!(u.iter().map(|x| x.billed_ms).sum::<u64>(), 1_001);
        assert_eq!(u.iter().map(|x| x.invocations).sum::<u32>(), 1);
        assert_eq!(u.iter().map(|x| x.requests.sqs).sum::<u32>(), 5);
        assert_eq!(u.iter().map(|x| x.requests.events).sum::<u32>(), 1);
        assert_eq!(u[1].billed_ms, 300);
        assert_eq!(u[0].run, run);
    }

    #[test]
    fn prices_are_overridable_and_a_partial_table_is_refused() {
        assert_eq!(
            ComputePrices::from_json(None).unwrap(),
            ComputePrices::default()
        );
        let p = ComputePrices::from_json(Some(
            r#"{"lambda_gb_second_nanos": 16667, "lambda_request_nanos": 200, "sqs_request_nanos": 400, "s3_request_nanos": 5000, "event_nanos": 1000}"#,
        ))
        .unwrap();
        assert_eq!(p.lambda_gb_second_nanos, 16_667);
        assert!(ComputePrices::from_json(Some(r#"{"lambda_gb_second_nanos": 1}"#)).is_err());
    }

    #[tokio::test]
    async fn requests_are_counted_into_the_work_that_makes_them() {
        let ((), _, r) = metered(async {
            count(Service::Sqs, 2);
            count(Service::S3, 1);
            count(Service::Events, 3);
        })
        .await;
        assert_eq!(
            r,
            Requests {
                sqs: 2,
                s3: 1,
                events: 3
            }
        );
        count(Service::Sqs, 1); // outside any scope: nothing, and no panic
    }
}
