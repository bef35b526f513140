//! sourcing: one Yelp search page per message. Listings are normalised (E.164 phone, normalised
//! name and address), de-duplicated within the batch and against the tenant's businesses (same
//! Yelp id, same phone, or same name + address), upserted in one statement, and handed to
//! enrichment once per (business, campaign): de-duplication is about the business, eligibility
//! per campaign — a business another campaign found is handed on for this one too, and one this
//! campaign handed on in the last 30 days is not (`campaign_leads`). Permanently closed listings
//! are stored but go no further.

mod candidate;

use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::json;
use shared::bus::{Envelope, Queue};
use shared::db::{DbError, Tx, cached};
use shared::domain::{BusinessId, CampaignId, TenantId};
use shared::lambda::StartError;
use shared::pipeline::Stage;
use shared::pipeline::messages::{LeadRef, SourcingJob};
use shared::pipeline::runs::{self, RunEvent};
use shared::pipeline::{Deps, EventInfo, Outgoing, StageHandler, StageItem, WorkError, budget};
use shared::vendors::CallContext;
use shared::vendors::yelp::{SearchRequest, YelpClient};

/// The queues this function sends to (the template grants exactly these).
pub const SENDS_TO: &[Queue] = &[Queue::Enrichment];

pub use candidate::{Candidate, from_yelp};

/// A business enriched or assessed longer ago than this is handed on again as stale.
pub const STALE_AFTER_DAYS: i32 = 30;

pub struct Sourcing {
    yelp: YelpClient,
}

impl Sourcing {
    pub fn new(yelp: YelpClient) -> Self {
        Self { yelp }
    }

    /// Yelp, as configured.
    pub fn from_source(
        deps: &Deps,
        _source: &dyn shared::config::Source,
    ) -> Result<Self, StartError> {
        Ok(Self::new(deps.vendors.yelp(&deps.policy)?))
    }
}

/// One Yelp search page's listings, or why there are none.
#[derive(Debug, Clone)]
pub enum Listings {
    /// The page's listings, and Yelp's `total` for the search (how deep the area goes).
    Found(Vec<Candidate>, u32),
    SkippedByBudget,
}

#[derive(Debug, Clone)]
struct Existing {
    id: BusinessId,
    yelp_id: Option<String>,
    phone: Option<String>,
    name_addr: (String, String),
}

/// Which of `listings` are one business, as sourcing decides it (the same normalised keys and
/// the same order of preference as a page against the stored businesses): for each listing the
/// index of the first listing of its business, or `None` for one sourcing drops (no id or no
/// name). The de-duplication quality benchmark and test run it over a labelled set.
pub fn dedupe(listings: &[shared::vendors::yelp::Business]) -> Vec<Option<usize>> {
    let cands: Vec<Option<candidate::Candidate>> =
        listings.iter().map(candidate::from_yelp).collect();
    let kept: Vec<&candidate::Candidate> = cands.iter().flatten().collect();
    let resolved = resolve(&kept, &[]);
    let mut first: HashMap<BusinessId, usize> = HashMap::new();
    let mut at = resolved.iter();
    cands
        .iter()
        .enumerate()
        .map(|(i, c)| {
            c.as_ref()?;
            let (id, _) = at.next()?;
            Some(*first.entry(*id).or_insert(i))
        })
        .collect()
}

/// Whether two normalised names can be one business: one's words contain the other's ("joes"
/// and "joes pizza"), or they share at least half their words. A phone is a business's key
/// only with a name that agrees: a restaurant group or a food hall lists several businesses
/// on one line.
fn names_agree(a: &str, b: &str) -> bool {
    let (wa, wb): (
        std::collections::HashSet<&str>,
        std::collections::HashSet<&str>,
    ) = (a.split(' ').collect(), b.split(' ').collect());
    let shared = wa.intersection(&wb).count();
    shared == wa.len().min(wb.len()) || 2 * shared >= wa.len().max(wb.len())
}

/// Who answers on each phone number: every business listed on it, with its name.
type Lines<'a> = HashMap<&'a str, Vec<(BusinessId, &'a str)>>;

fn on_line(lines: &Lines<'_>, phone: Option<&str>, name: &str) -> Option<BusinessId> {
    lines
        .get(phone?)?
        .iter()
        .find(|(_, n)| names_agree(n, name))
        .map(|(id, _)| *id)
}

/// Decides, for each candidate in order, which business it is: an existing one, an earlier
/// candidate of this batch, or new. Returns the id and whether it is new.
fn resolve(cands: &[&Candidate], existing: &[Existing]) -> Vec<(BusinessId, bool)> {
    let mut by_yelp: HashMap<&str, BusinessId> = HashMap::new();
    let mut by_phone: Lines<'_> = HashMap::new();
    let mut by_name: HashMap<(&str, &str), BusinessId> = HashMap::new();
    for e in existing {
        if let Some(y) = &e.yelp_id {
            by_yelp.insert(y, e.id);
        }
        if let Some(p) = &e.phone {
            by_phone.entry(p).or_default().push((e.id, &e.name_addr.0));
        }
        by_name
            .entry((&e.name_addr.0, &e.name_addr.1))
            .or_insert(e.id);
    }
    let mut out = Vec::new();
    let mut batch_yelp: HashMap<&str, BusinessId> = HashMap::new();
    let mut batch_phone: Lines<'_> = HashMap::new();
    let mut batch_name: HashMap<(&str, &str), BusinessId> = HashMap::new();
    for c in cands {
        let (phone, name) = (c.phone.as_deref(), c.name_norm.as_str());
        let known = by_yelp
            .get(c.yelp_id.as_str())
            .copied()
            .or_else(|| on_line(&by_phone, phone, name))
            .or_else(|| {
                (!c.address_norm.is_empty())
                    .then(|| by_name.get(&(name, c.address_norm.as_str())).copied())
                    .flatten()
            });
        let r = if let Some(id) = known {
            (id, false)
        } else if let Some(id) = batch_yelp
            .get(c.yelp_id.as_str())
            .copied()
            .or_else(|| on_line(&batch_phone, phone, name))
            .or_else(|| batch_name.get(&(name, c.address_norm.as_str())).copied())
        {
            (id, false)
        } else {
            (BusinessId::new(), true)
        };
        batch_yelp.entry(c.yelp_id.as_str()).or_insert(r.0);
        if let Some(p) = phone {
            let line = batch_phone.entry(p).or_default();
            if !line.iter().any(|(id, _)| *id == r.0) {
                line.push((r.0, name));
            }
        }
        if !c.address_norm.is_empty() {
            batch_name
                .entry((name, c.address_norm.as_str()))
                .or_insert(r.0);
        }
        out.push(r);
    }
    out
}

const ACTIVE_CAMPAIGNS: &str = "SELECT id FROM campaigns WHERE id = ANY($1) AND status = 'active'";
const UPDATE_CURSOR_TOTALS: &str =
    "UPDATE targeting_cursors t SET known_total = x.n, updated_at = now()
 FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::int4[]) AS x(c, l, k, n)
 WHERE t.campaign_id = x.c AND t.location = x.l AND t.category = x.k";
const LOCK_TENANT: &str =
    "SELECT pg_advisory_xact_lock(hashtextextended('leadfactory:sourcing:' || $1::uuid::text, 0))";
/// The stored businesses a page's listings match by any key: one indexed lookup per key, united
/// (an `OR` of the three would read the tenant's every business).
const KNOWN_BUSINESSES: &str = "SELECT b.id, b.yelp_id, b.phone_e164, b.name_norm, b.address_norm,
        array(SELECT l.campaign_id FROM campaign_leads l
              WHERE l.business_id = b.id AND l.handed_at > now() - make_interval(days => $5)) AS fresh_for,
        array(SELECT l.campaign_id FROM campaign_leads l WHERE l.business_id = b.id) AS handed_for
 FROM (SELECT id FROM businesses WHERE yelp_id = ANY($1)
       UNION SELECT id FROM businesses WHERE phone_e164 = ANY($2)
       UNION SELECT k.id FROM UNNEST($3::text[], $4::text[]) AS x(n, a)
             JOIN businesses k ON k.name_norm = x.n AND k.address_norm = x.a) m
 JOIN businesses b ON b.id = m.id";
const INSERT_BUSINESSES: &str =
    "INSERT INTO businesses SELECT * FROM jsonb_populate_recordset(NULL::businesses, $1::jsonb)
 ON CONFLICT (tenant_id, yelp_id) WHERE yelp_id IS NOT NULL DO UPDATE SET last_seen_at = now()";
const UPDATE_SEEN: &str = "UPDATE businesses b SET last_seen_at = now(), updated_at = now(), rating = x.r::numeric(2,1), review_count = GREATEST(b.review_count, x.n)
 FROM UNNEST($1::uuid[], $2::float8[], $3::int4[]) AS x(id, r, n) WHERE b.id = x.id";
const INSERT_CAMPAIGN_LEADS: &str =
    "INSERT INTO campaign_leads (tenant_id, business_id, campaign_id, run_id, handed_at)
 SELECT $1, b, c, r, now() FROM UNNEST($2::uuid[], $3::uuid[], $4::uuid[]) AS x(b, c, r)
 ON CONFLICT (business_id, campaign_id) DO UPDATE SET handed_at = now(), run_id = EXCLUDED.run_id";

#[async_trait]
impl StageHandler for Sourcing {
    type Payload = SourcingJob;
    type Work = Listings;
    /// The batch's campaigns that exist and are active.
    type Context = std::collections::HashSet<shared::domain::CampaignId>;

    const STAGE: Stage = Stage::Sourcing;
    const INPUT: Queue = Queue::Sourcing;
    const SENDS_TO: &'static [Queue] = SENDS_TO;
    const VENDORS: &'static [shared::vendors::Vendor] = &[shared::vendors::Vendor::Yelp];

    fn worst_case_work(
        &self,
        vendors: &shared::vendors::config::VendorsConfig,
    ) -> std::time::Duration {
        vendors.yelp.call_time
    }

    fn concurrency(&self) -> usize {
        4
    }

    fn budget(&self, deps: &Deps) -> Option<(budget::BudgetClass, i64)> {
        Some((
            budget::BudgetClass::Yelp,
            deps.vendors
                .prices
                .price(shared::vendors::Vendor::Yelp)
                .per_request_micros,
        ))
    }

    async fn load(
        &self,
        tx: &dyn Tx,
        _: TenantId,
        envs: &[&Envelope<SourcingJob>],
    ) -> Result<Self::Context, DbError> {
        let ids: Vec<uuid::Uuid> = envs
            .iter()
            .map(|e| e.payload.campaign_id.as_uuid())
            .collect();
        Ok(cached::query(tx, ACTIVE_CAMPAIGNS, &[&ids])
            .await?
            .iter()
            .map(|r| shared::domain::CampaignId::from_uuid(r.get("id")))
            .collect())
    }

    async fn work(
        &self,
        _deps: &Deps,
        campaigns: &Self::Context,
        env: &Envelope<SourcingJob>,
        paid_allowed: bool,
    ) -> Result<Listings, WorkError> {
        if !campaigns.contains(&env.payload.campaign_id) {
            return Err(WorkError::Permanent(format!(
                "campaign {} does not exist or is not active",
                env.payload.campaign_id
            )));
        }
        if !paid_allowed {
            return Ok(Listings::SkippedByBudget);
        }
        let job = &env.payload;
        if job.limit == 0 || job.limit > shared::vendors::yelp::MAX_LIMIT {
            return Err(WorkError::Permanent(format!(
                "job limit {} is outside 1..=50",
                job.limit
            )));
        }
        let ctx = CallContext::new(env.tenant_id, env.run_id, None);
        let resp = self
            .yelp
            .search(
                &ctx,
                &SearchRequest {
                    location: job.location.clone(),
                    categories: Some(job.category.clone()),
                    term: None,
                    limit: job.limit,
                    offset: job.offset,
                },
            )
            .await?;
        Ok(Listings::Found(
            resp.businesses.iter().filter_map(from_yelp).collect(),
            resp.total,
        ))
    }

    async fn persist(
        &self,
        _deps: &Deps,
        tx: &dyn Tx,
        tenant: TenantId,
        items: &[StageItem<SourcingJob, Listings>],
    ) -> Result<Vec<Vec<Outgoing>>, shared::pipeline::StageError> {
        let cands: Vec<(usize, &Candidate)> = items
            .iter()
            .enumerate()
            .flat_map(|(i, it)| match &it.work {
                Listings::Found(c, _) => c.iter().map(move |c| (i, c)).collect::<Vec<_>>(),
                Listings::SkippedByBudget => Vec::new(),
            })
            .collect();
        // How deep each searched area goes, for targeting's cursors (one statement).
        let totals: Vec<(&SourcingJob, i32)> = items
            .iter()
            .filter_map(|it| match &it.work {
                Listings::Found(_, total) => {
                    Some((&it.env.payload, (*total).min(i32::MAX as u32) as i32))
                }
                Listings::SkippedByBudget => None,
            })
            .collect();
        let area_campaigns: Vec<uuid::Uuid> = totals
            .iter()
            .map(|(j, _)| j.campaign_id.as_uuid())
            .collect();
        let area_locations: Vec<&str> = totals.iter().map(|(j, _)| j.location.as_str()).collect();
        let area_categories: Vec<&str> = totals.iter().map(|(j, _)| j.category.as_str()).collect();
        let area_totals: Vec<i32> = totals.iter().map(|(_, n)| *n).collect();
        let cursor_params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [
            &area_campaigns,
            &area_locations,
            &area_categories,
            &area_totals,
        ];
        let record_totals =
            || cached::execute_if(tx, !totals.is_empty(), UPDATE_CURSOR_TOTALS, &cursor_params);
        if cands.is_empty() {
            record_totals().await?;
            return Ok(items.iter().map(|_| Vec::new()).collect());
        }
        let yelp_ids: Vec<&str> = cands.iter().map(|(_, c)| c.yelp_id.as_str()).collect();
        let phones: Vec<&str> = cands
            .iter()
            .filter_map(|(_, c)| c.phone.as_deref())
            .collect();
        let names: Vec<&str> = cands.iter().map(|(_, c)| c.name_norm.as_str()).collect();
        let addrs: Vec<&str> = cands.iter().map(|(_, c)| c.address_norm.as_str()).collect();
        // Concurrent batches of one tenant take turns from here to their commit: each resolves
        // its listings against what the other stored, so a listing two batches saw is one row,
        // whichever key (Yelp id, phone, name + address) makes it the same business, and the id
        // handed on is always the stored one. The lock is its own statement, awaited before the
        // lookup: a statement's snapshot is taken when it starts, so a lookup that waited for
        // the lock inside itself would not see what the other batch committed.
        let tenant_id = tenant.as_uuid();
        let lock_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&tenant_id];
        let serialise = cached::query(tx, LOCK_TENANT, &lock_params);
        let lookup_params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
            [&yelp_ids, &phones, &names, &addrs, &STALE_AFTER_DAYS];
        // With each known business, the campaigns it was handed on for lately (and so is not
        // again): eligibility is per campaign, de-duplication per business.
        let lookup = cached::query(tx, KNOWN_BUSINESSES, &lookup_params);
        serialise.await?;
        let rows = lookup.await?;
        // Per known business: the campaigns it was handed on for lately, and ever.
        let mut fresh_for: HashMap<BusinessId, (Vec<uuid::Uuid>, Vec<uuid::Uuid>)> = HashMap::new();
        let existing: Vec<Existing> = rows
            .iter()
            .map(|r| {
                let id = BusinessId::from_uuid(r.get("id"));
                fresh_for.insert(id, (r.get("fresh_for"), r.get("handed_for")));
                Existing {
                    id,
                    yelp_id: r.get("yelp_id"),
                    phone: r.get("phone_e164"),
                    name_addr: (r.get("name_norm"), r.get("address_norm")),
                }
            })
            .collect();
        let refs: Vec<&Candidate> = cands.iter().map(|(_, c)| *c).collect();
        let resolved = resolve(&refs, &existing);

        // New businesses in one INSERT; known ones touched in one UPDATE.
        let mut rows = Vec::new();
        let mut seen_ids = Vec::new();
        let mut seen_rating = Vec::new();
        let mut seen_reviews = Vec::new();
        for ((i, c), (id, is_new)) in cands.iter().zip(&resolved) {
            let job = &items[*i].env.payload;
            if *is_new {
                rows.push(json!({
                    "id": id.as_uuid(), "tenant_id": tenant.as_uuid(), "campaign_id": job.campaign_id.as_uuid(),
                    "yelp_id": c.yelp_id, "name": c.name, "name_norm": c.name_norm, "address_norm": c.address_norm,
                    "address1": c.address1, "city": c.city, "state": c.state, "zip": c.zip, "phone_e164": c.phone,
                    "latitude": c.latitude, "longitude": c.longitude, "categories": c.categories,
                    "rating": c.rating, "review_count": c.review_count, "is_closed": c.is_closed,
                    "first_run_id": items[*i].env.run_id.map(|r| r.as_uuid()),
                    "last_seen_at": chrono::Utc::now(), "created_at": chrono::Utc::now(), "updated_at": chrono::Utc::now()
                }));
            } else {
                seen_ids.push(id.as_uuid());
                seen_rating.push(c.rating.unwrap_or(0.0));
                seen_reviews.push(c.review_count as i32);
            }
        }
        // One event per listing; the next hop for an open business once per (business,
        // campaign): new, known but not handed on for this campaign lately ("known": found by
        // another campaign; "stale": handed on for this one over 30 days ago), or a duplicate.
        let mut events = Vec::new();
        let mut next: Vec<Vec<Outgoing>> = items.iter().map(|_| Vec::new()).collect();
        let mut handed: std::collections::HashSet<(BusinessId, CampaignId)> =
            std::collections::HashSet::new();
        let mut leads: (Vec<uuid::Uuid>, Vec<uuid::Uuid>, Vec<Option<uuid::Uuid>>) =
            Default::default();
        for ((i, c), (id, is_new)) in cands.iter().zip(&resolved) {
            let env = &items[*i].env;
            let campaign = env.payload.campaign_id;
            let (fresh, handed_before) = fresh_for
                .get(id)
                .map(|(f, h)| {
                    (
                        f.contains(&campaign.as_uuid()),
                        h.contains(&campaign.as_uuid()),
                    )
                })
                .unwrap_or((false, false));
            let first_in_batch = !handed.contains(&(*id, campaign));
            let (event, status) = match (c.is_closed, is_new, fresh || !first_in_batch) {
                (true, _, _) => ("closed", "skipped"),
                (false, true, false) => ("sourced", "ok"),
                (false, _, true) => ("duplicate", "skipped"),
                (false, false, false) if handed_before => ("stale", "ok"),
                (false, false, false) => ("known", "ok"),
            };
            events.push(RunEvent {
                run: env.run_id,
                stage: Stage::Sourcing.as_str(),
                entity_id: Some(id.to_string()),
                event: event.into(),
                status,
                error_code: None,
                duration_ms: None,
                trace_id: env.trace_id.clone(),
                extra: json!({ "yelp_id": c.yelp_id }),
            });
            if status == "ok" && handed.insert((*id, campaign)) {
                leads.0.push(id.as_uuid());
                leads.1.push(campaign.as_uuid());
                leads.2.push(env.run_id.map(|r| r.as_uuid()));
                let key = format!(
                    "{}:{id}",
                    env.run_id.map(|r| r.to_string()).unwrap_or_default()
                );
                let lead = env.child(
                    key,
                    LeadRef {
                        business_id: *id,
                        campaign_id: env.payload.campaign_id,
                    },
                );
                next[*i].push(Outgoing::new(Queue::Enrichment, &lead)?);
            }
        }
        // Independent writes, sent together.
        let new_rows = !rows.is_empty();
        let rows = serde_json::Value::Array(rows);
        let (lead_ids, lead_campaigns, lead_runs) = leads;
        let (inserted, seen, logged, totals, led) = futures_util::future::join5(
            cached::execute_if(tx, new_rows, INSERT_BUSINESSES, &[&rows]),
            cached::execute_if(
                tx,
                !seen_ids.is_empty(),
                UPDATE_SEEN,
                &[&seen_ids, &seen_rating, &seen_reviews],
            ),
            runs::insert_events(tx, tenant, &events),
            record_totals(),
            // Sent after the businesses' insert on the same connection: its rows exist by then.
            cached::execute_if(
                tx,
                !lead_ids.is_empty(),
                INSERT_CAMPAIGN_LEADS,
                &[&tenant_id, &lead_ids, &lead_campaigns, &lead_runs],
            ),
        )
        .await;
        inserted?;
        seen?;
        logged?;
        totals?;
        led?;
        Ok(next)
    }

    fn describe(
        &self,
        item: &StageItem<SourcingJob, Listings>,
        _next: &[Outgoing],
    ) -> Vec<EventInfo> {
        let j = &item.env.payload;
        let (event, status, found) = match &item.work {
            Listings::Found(c, _) => ("page", "ok", c.len()),
            Listings::SkippedByBudget => ("SKIPPED_DUE_TO_BUDGET", "skipped", 0),
        };
        vec![EventInfo {
            entity_id: None,
            event: event.into(),
            status,
            extra: json!({ "location": j.location, "category": j.category, "offset": j.offset, "found": found }),
            marker: false,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(yelp: &str, phone: Option<&str>, name: &str, addr: &str) -> Candidate {
        Candidate {
            yelp_id: yelp.into(),
            name: name.into(),
            name_norm: shared::domain::normalize_name(name),
            address_norm: shared::domain::normalize_address(addr),
            phone: phone.map(str::to_owned),
            ..Candidate::default()
        }
    }

    #[test]
    fn resolves_duplicates_by_yelp_id_phone_and_name_address() {
        let known = BusinessId::new();
        let existing = vec![Existing {
            id: known,
            yelp_id: Some("Y1".into()),
            phone: Some("+14085550001".into()),
            name_addr: ("joes pizza".into(), "1 main street".into()),
        }];
        let cs = [
            cand("Y1", None, "Joe's Pizza", "1 Main St"), // same Yelp id
            cand("Y2", Some("+14085550001"), "Joe's Pizza LLC", "9 Elm"), // same phone
            cand("Y3", None, "JOE'S PIZZA, Inc.", "1 Main Street"), // same name + address
            cand("Y4", Some("+14085550002"), "Blue Door Cafe", "5 Oak Ave"), // new
            cand(
                "Y5",
                Some("+14085550002"),
                "Blue Door Cafe LLC",
                "5 Oak Ave",
            ), // duplicate of Y4 within the batch
            cand("Y4", Some("+14085550002"), "Blue Door Cafe", "5 Oak Ave"), // Y4 again on the next page
        ];
        let refs: Vec<&Candidate> = cs.iter().collect();
        let r = resolve(&refs, &existing);
        assert_eq!(r[0], (known, false));
        assert_eq!(r[1], (known, false));
        assert_eq!(r[2], (known, false));
        assert!(r[3].1, "new");
        assert_eq!(r[4], (r[3].0, false));
        assert_eq!(r[5], (r[3].0, false));
    }

    #[test]
    fn businesses_sharing_a_phone_line_stay_apart_unless_their_names_agree() {
        let group = BusinessId::new();
        let existing = vec![Existing {
            id: group,
            yelp_id: Some("Y1".into()),
            phone: Some("+14085550009".into()),
            name_addr: ("golden dragon bistro".into(), "1 market street".into()),
        }];
        let cs = [
            cand(
                "Y2",
                Some("+14085550009"),
                "Copper Kettle Bakery",
                "1 Market St",
            ),
            cand(
                "Y3",
                Some("+14085550009"),
                "The Golden Dragon",
                "2 Market St",
            ),
            cand(
                "Y4",
                Some("+14085550009"),
                "Copper Kettle Bakery LLC",
                "1 Market St, Ste 2",
            ),
        ];
        let refs: Vec<&Candidate> = cs.iter().collect();
        let r = resolve(&refs, &existing);
        assert!(r[0].1, "another business on the group's line is new");
        assert_eq!(
            r[1],
            (group, false),
            "a name that agrees is the same business"
        );
        assert_eq!(
            r[2],
            (r[0].0, false),
            "found again on the line under its own name"
        );
        assert!(names_agree("joes", "joes pizza"));
        assert!(!names_agree("copper kettle bakery", "golden dragon bistro"));
    }
}
