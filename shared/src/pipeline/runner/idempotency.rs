//! Every statement on `processed_messages`: what a batch finds done already, the claim of its
//! keys (with the run's count of work), and the mark that its next hops were sent.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::Outgoing;
use crate::db::{DbError, Tx, cached, with_tenant_setting};
use crate::domain::{RunId, TenantId};

/// What a record holds while it is `in_progress`: the next hops, for a redelivery to send.
#[derive(Serialize, Deserialize)]
pub(super) struct Stored {
    pub(super) next: Vec<Outgoing>,
}

/// What the batch's first round trip found.
pub(super) struct Found {
    /// Keys already recorded (done, or in progress).
    pub(super) done: HashSet<String>,
    /// Keys whose results were stored but whose next hops were not yet sent (a crash between
    /// commit and send), with those hops.
    pub(super) pending: Vec<(String, Vec<Outgoing>)>,
    /// The named runs the tenant holds (read under its row-level security).
    pub(super) held: HashSet<uuid::Uuid>,
}

const CHECK: &str =
    "SELECT key, status, outcome FROM processed_messages WHERE stage = $1 AND key = ANY($2)";
const KNOWN_RUNS: &str = "SELECT id FROM runs WHERE id = ANY($1)";

/// Reads the records of `keys` and which of `runs` the tenant holds. Both statements start
/// when first polled, so they can travel with the transaction's start and a read-only load.
pub(super) async fn check(
    tx: &dyn Tx,
    stage: &str,
    keys: &[String],
    runs: &[uuid::Uuid],
) -> Result<Found, DbError> {
    let (records, held) = futures_util::future::join(
        cached::query(tx, CHECK, &[&stage, &keys]),
        cached::query(tx, KNOWN_RUNS, &[&runs]),
    )
    .await;
    let mut found = Found {
        done: HashSet::new(),
        pending: Vec::new(),
        held: held?.iter().map(|r| r.get("id")).collect(),
    };
    for r in records? {
        let key: String = r.get("key");
        if r.get::<_, &str>("status") == "in_progress" {
            let next = r
                .get::<_, Option<serde_json::Value>>("outcome")
                .and_then(|v| serde_json::from_value::<Stored>(v).ok())
                .map(|s| s.next)
                .unwrap_or_default();
            found.pending.push((key.clone(), next));
        }
        found.done.insert(key);
    }
    Ok(found)
}

/// The distinct runs a batch's messages name.
pub(super) fn runs_named<'a>(runs: impl Iterator<Item = Option<RunId>> + 'a) -> Vec<uuid::Uuid> {
    runs.flatten()
        .map(|r| r.as_uuid())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// A processed message as its key is recorded: the run it counts under, its stored outcome
/// (the next hops, for a redelivery to send) and the next hops themselves.
pub(super) struct Claim<'a> {
    pub(super) key: &'a str,
    pub(super) run: Option<RunId>,
    pub(super) outcome: serde_json::Value,
    pub(super) next: &'a [Outgoing],
}

const CLAIM: &str = "WITH claimed AS (
     INSERT INTO processed_messages (tenant_id, stage, key, status, outcome)
     SELECT $1, $2, k, 'in_progress', o FROM UNNEST($3::text[], $4::jsonb[]) AS x(k, o)
     ON CONFLICT (tenant_id, stage, key) DO NOTHING RETURNING key),
 ended AS (
     DELETE FROM run_work w USING claimed c, UNNEST($3::text[], $5::uuid[]) AS m(k, r)
     WHERE c.key = m.k AND w.run_id = m.r AND w.queue = $6 AND w.key = m.k),
 begun AS (
     INSERT INTO run_work (tenant_id, run_id, queue, key)
     SELECT $1, n.r, n.q, n.k
     FROM UNNEST($7::text[], $8::uuid[], $9::text[], $10::text[]) AS n(parent, r, q, k)
     JOIN claimed c ON c.key = n.parent JOIN runs ON runs.id = n.r
     ON CONFLICT DO NOTHING)
 SELECT key FROM claimed";

/// Records the batch's keys as `in_progress` with their next hops; returns the keys that were
/// new (a key another delivery recorded first is that delivery's to send). In the same
/// statement, and only for the keys it recorded, the run's count of work moves on: each
/// consumed message's `run_work` row ends and its next hops' rows begin.
pub(super) async fn claim(
    tx: &dyn Tx,
    tenant: TenantId,
    stage: &str,
    input_queue: &str,
    items: &[Claim<'_>],
) -> Result<HashSet<String>, DbError> {
    if items.is_empty() {
        return Ok(HashSet::new());
    }
    let keys: Vec<&str> = items.iter().map(|i| i.key).collect();
    let runs: Vec<Option<uuid::Uuid>> = items.iter().map(|i| i.run.map(|r| r.as_uuid())).collect();
    let outcomes: Vec<&serde_json::Value> = items.iter().map(|i| &i.outcome).collect();
    let next: Vec<(&str, &Outgoing)> = items
        .iter()
        .flat_map(|i| i.next.iter().map(move |o| (i.key, o)))
        .filter(|(_, o)| o.run.is_some())
        .collect();
    Ok(cached::query(
        tx,
        CLAIM,
        &[
            &tenant.as_uuid(),
            &stage,
            &keys,
            &outcomes,
            &runs,
            &input_queue,
            &next.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
            &next
                .iter()
                .map(|(_, o)| o.run.map(|r| r.as_uuid()))
                .collect::<Vec<_>>(),
            &next
                .iter()
                .map(|(_, o)| o.queue.as_str())
                .collect::<Vec<_>>(),
            &next.iter().map(|(_, o)| o.key.as_str()).collect::<Vec<_>>(),
        ],
    )
    .await?
    .iter()
    .map(|r| r.get("key"))
    .collect())
}

const MARK_DONE: &str = "WITH done AS (
     UPDATE processed_messages SET status = 'done', outcome = NULL, updated_at = now()
     WHERE tenant_id = $1 AND stage = $2 AND key = ANY($3))
 SELECT n FROM (SELECT finish_runs($4::uuid[]) AS n) f WHERE n > 0";

/// Marks the records whose next hops were sent `done`, finishes any of `runs` whose work has
/// all ended and records the batch's compute (one pipelined round trip); returns whether it
/// finished a run. The store transaction
/// has committed, so whichever of two concurrent last batches gets here second sees no pending
/// work and finishes the run.
pub(super) async fn mark_done(
    client: &deadpool_postgres::Client,
    tenant: TenantId,
    stage: &str,
    sent: &[String],
    runs: &[uuid::Uuid],
    compute: &crate::compute::Columns,
) -> Result<bool, DbError> {
    let mark = !(sent.is_empty() && runs.is_empty());
    if !mark && compute.is_empty() {
        return Ok(false);
    }
    let (done, record) = futures_util::future::join(
        async {
            if mark {
                Ok(Some(client.prepare_cached(MARK_DONE).await?))
            } else {
                Ok::<_, DbError>(None)
            }
        },
        async {
            if compute.is_empty() {
                Ok(None)
            } else {
                Ok::<_, DbError>(Some(client.prepare_cached(crate::compute::RECORD).await?))
            }
        },
    )
    .await;
    let (done, record) = (done?, record?);
    let begin = format!("START TRANSACTION; {}", with_tenant_setting(tenant));
    let params = compute.params();
    let tenant_id = tenant.as_uuid();
    // Polled in order, each request queued on its first poll: one round trip.
    let (begun, finished, recorded, committed) = futures_util::future::join4(
        client.batch_execute(&begin),
        async {
            match &done {
                Some(st) => {
                    client
                        .execute(st, &[&tenant_id, &stage, &sent, &runs])
                        .await
                }
                None => Ok(0),
            }
        },
        async {
            match &record {
                Some(st) => client.execute(st, &params).await.map(|_| ()),
                None => Ok(()),
            }
        },
        client.batch_execute("COMMIT"),
    )
    .await;
    begun?;
    let finished = finished?;
    recorded?;
    committed?;
    Ok(finished > 0)
}

/// The message ids of each key (a key delivered twice in one batch has two).
pub(super) type IdsByKey = HashMap<String, Vec<String>>;
