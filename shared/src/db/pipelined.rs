//! A tenant-scoped transaction whose start travels with its first statements and whose commit
//! travels with its last ones: the batch runner's transactions cost no round trip of their own.
//!
//! `tokio_postgres` sends a request when its future is first polled and the server answers in
//! that order, so requests polled together travel together (pipelining). Three rules keep that safe:
//! * the start (`START TRANSACTION; SET LOCAL app.tenant_id`) goes before any statement: the
//!   first statement takes it and queues it before its own request, and no statement of this
//!   transaction can be queued before that first one;
//! * `COMMIT` goes after every statement of the transaction: [`PipelinedTx::commit_after`] counts
//!   the statements that have started but not yet queued their request (one that must first
//!   prepare waits for that answer) and queues `COMMIT` only when none is left. A statement that
//!   starts after the `COMMIT` went is refused ([`DbError::AfterCommit`]) — it would otherwise
//!   run outside the transaction, without a tenant — so the statements given to `commit_after`
//!   must all start when it is first polled (e.g. a `join` of single-statement futures);
//! * a statement that fails, even before reaching the server (a parameter that cannot be
//!   encoded), turns the end into `ROLLBACK`: a pipelined `COMMIT` must never keep the other
//!   statements of a transaction one of whose statements did not run.
//!
//! Statements joined together must not depend on one another's effects: one used for the first
//! time on a connection is prepared first and queued only after that answer, behind statements
//! that were polled after it.
//!
//! If the transaction is dropped open (an error returned early, a cancelled future), its
//! connection is taken out of the pool and closed, so the server rolls it back and no later
//! user of the pool can inherit it or its tenant.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Poll;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio_postgres::{Row, Statement};

use super::DbError;
use super::cached::{Params, Tx};
use super::tenant::with_tenant_setting;
use crate::domain::TenantId;

/// See the module documentation.
pub struct PipelinedTx {
    client: Option<deadpool_postgres::Client>,
    /// The start, until the first statement takes it.
    start: Mutex<Option<String>>,
    /// The start has been queued: the server has (or will have) an open transaction.
    begun: AtomicBool,
    /// A statement failed: the end will be `ROLLBACK`, whatever the caller asks.
    failed: AtomicBool,
    /// The end (`COMMIT` or `ROLLBACK`) has been queued: no statement may follow.
    ending: AtomicBool,
    /// The end has been answered: the transaction is over, whatever the answer.
    closed: AtomicBool,
    /// Statements started whose request is not queued yet.
    unqueued: AtomicUsize,
    queued: Notify,
}

impl PipelinedTx {
    /// A transaction for `tenant` on `client`; nothing is sent until its first statement.
    pub fn begin(client: deadpool_postgres::Client, tenant: TenantId) -> PipelinedTx {
        PipelinedTx {
            client: Some(client),
            start: Mutex::new(Some(format!(
                "START TRANSACTION; {}",
                with_tenant_setting(tenant)
            ))),
            begun: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            ending: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            unqueued: AtomicUsize::new(0),
            queued: Notify::new(),
        }
    }

    /// Commits after the statements `last` starts when first polled, in the same round trip.
    /// Returns `last`'s output and the commit's result. If any statement of the transaction
    /// failed, the end is a `ROLLBACK` and the result [`DbError::RolledBack`]; report `last`'s
    /// errors first, as the first failed statement is the cause.
    pub async fn commit_after<T>(&self, last: impl Future<Output = T>) -> (T, Result<(), DbError>) {
        futures_util::future::join(last, self.send_commit()).await
    }

    /// Commits (a transaction that never ran a statement has nothing to commit); rolls back,
    /// with [`DbError::RolledBack`], if a statement failed.
    pub async fn commit(&self) -> Result<(), DbError> {
        self.send_commit().await
    }

    /// The connection back, for the next transaction. A transaction still open is rolled back by
    /// closing its connection, and that is reported as an error.
    pub fn release(mut self) -> Result<deadpool_postgres::Client, DbError> {
        if self.is_open() {
            // Dropping `self` takes the connection out of the pool.
            return Err(DbError::TransactionOpen);
        }
        self.client.take().ok_or(DbError::TransactionOpen)
    }

    /// The start, for the first statement (or to drop it at the end). The lock is never held
    /// across anything that could panic, and a poisoned one still holds the right value.
    fn take_start(&self) -> Option<String> {
        self.start
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    fn is_open(&self) -> bool {
        self.begun.load(Ordering::Acquire) && !self.closed.load(Ordering::Acquire)
    }

    fn client(&self) -> Result<&deadpool_postgres::Client, DbError> {
        self.client.as_ref().ok_or(DbError::TransactionOpen)
    }

    async fn send_commit(&self) -> Result<(), DbError> {
        if self.ending.load(Ordering::Acquire) {
            // Ended already: a second end would only draw a warning from the server.
            return Err(DbError::AfterCommit);
        }
        loop {
            let queued = self.queued.notified();
            if self.unqueued.load(Ordering::Acquire) == 0 {
                break;
            }
            queued.await;
        }
        // Set in the same poll as the end is queued, so no statement of this task can slip in
        // between.
        self.ending.store(true, Ordering::Release);
        if !self.begun.load(Ordering::Acquire) {
            // Nothing was sent, and nothing may be now: there is no transaction to end.
            self.take_start();
            return Ok(());
        }
        let failed = self.failed.load(Ordering::Acquire);
        let result = self
            .client()?
            .batch_execute(if failed { "ROLLBACK" } else { "COMMIT" })
            .await;
        // Answered (even with an error), the transaction has ended on the server.
        self.closed.store(true, Ordering::Release);
        result?;
        // A statement the server refused while `COMMIT` was already on its way made the server
        // end the transaction with a rollback; its error was answered before the `COMMIT`, so
        // whoever polls this has seen it (`commit_after` polls the statements first).
        if failed || self.failed.load(Ordering::Acquire) {
            return Err(DbError::RolledBack);
        }
        Ok(())
    }

    /// Runs one statement, with the start queued ahead of it if it is the first. `send` makes
    /// the request; its first poll queues it (or fails without sending, e.g. a parameter that
    /// cannot be encoded).
    async fn run<T>(
        &self,
        sql: &str,
        send: impl AsyncFnOnce(&tokio_postgres::Client, &Statement) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, DbError> {
        let unqueued = Unqueued::enter(self);
        if self.ending.load(Ordering::Acquire) {
            return Err(DbError::AfterCommit);
        }
        let client = self.client()?;
        let start = self.take_start();
        let begin = async {
            let Some(sql) = start else {
                return Ok(());
            };
            self.begun.store(true, Ordering::Release);
            let begun = client.batch_execute(&sql).await;
            if begun.is_err() {
                self.failed.store(true, Ordering::Release);
            }
            Ok::<_, DbError>(begun?)
        };
        let statement = async {
            let mut unqueued = Some(unqueued);
            let ran = match client.statement_cache.prepare(client, sql).await {
                Ok(st) => {
                    let mut request = pin!(send(client, &st));
                    poll_fn(|cx| {
                        let polled = request.as_mut().poll(cx);
                        if matches!(polled, Poll::Ready(Err(_))) {
                            // Failed before (or without) reaching the server: the commit
                            // this statement may be pipelined with must become a rollback.
                            self.failed.store(true, Ordering::Release);
                        }
                        unqueued.take();
                        polled
                    })
                    .await
                }
                Err(e) => Err(e),
            };
            if ran.is_err() {
                self.failed.store(true, Ordering::Release);
            }
            drop(unqueued);
            Ok::<_, DbError>(ran?)
        };
        // `join` polls in argument order: the start is queued before this statement.
        let (begun, ran) = futures_util::future::join(begin, statement).await;
        begun?;
        ran
    }
}

/// A started statement whose request is not queued yet; counted while it lives.
struct Unqueued<'a>(&'a PipelinedTx);

impl<'a> Unqueued<'a> {
    fn enter(tx: &'a PipelinedTx) -> Self {
        tx.unqueued.fetch_add(1, Ordering::AcqRel);
        Unqueued(tx)
    }
}

impl Drop for Unqueued<'_> {
    fn drop(&mut self) {
        self.0.unqueued.fetch_sub(1, Ordering::AcqRel);
        self.0.queued.notify_waiters();
    }
}

impl Drop for PipelinedTx {
    fn drop(&mut self) {
        if self.is_open()
            && let Some(client) = self.client.take()
        {
            tracing::warn!("transaction dropped open; closing its connection to roll it back");
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

#[async_trait]
impl Tx for PipelinedTx {
    async fn query_cached(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, DbError> {
        self.run(sql, async |c, st| c.query(st, params).await).await
    }

    async fn execute_cached(&self, sql: &str, params: Params<'_>) -> Result<u64, DbError> {
        self.run(sql, async |c, st| c.execute(st, params).await)
            .await
    }
}
