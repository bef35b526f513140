//! enrichment: Google Places text search for each business; a result is accepted only with
//! enough confidence (name similarity plus address or phone agreement). Stores website, phone,
//! hours, rating and status; a website already known for another business makes this one its
//! duplicate; permanently closed businesses and those without a website stop here.

mod matching;

use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::json;
use shared::bus::{Envelope, Queue};
use shared::db::{DbError, Tx, cached};
use shared::domain::{BusinessId, Phone, TenantId, WebsiteUrl};
use shared::lambda::StartError;
use shared::pipeline::Stage;
use shared::pipeline::messages::LeadRef;
use shared::pipeline::{Deps, EventInfo, Outgoing, StageHandler, StageItem, WorkError, budget};
use shared::vendors::CallContext;
use shared::vendors::places::{Place, PlacesClient, TextSearchRequest};

/// The queues this function sends to (the template grants exactly these).
pub const SENDS_TO: &[Queue] = &[Queue::Assessment];

pub use matching::{MatchScore, score_match};

pub struct Enrichment {
    places: PlacesClient,
}

impl Enrichment {
    pub fn new(places: PlacesClient) -> Self {
        Self { places }
    }

    /// Google Places, as configured.
    pub fn from_source(
        deps: &Deps,
        _source: &dyn shared::config::Source,
    ) -> Result<Self, StartError> {
        Ok(Self::new(deps.vendors.places(&deps.policy)?))
    }
}

/// What enrichment needs to know about a business.
#[derive(Debug, Clone)]
pub struct Known {
    pub name: String,
    pub address1: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub zip: Option<String>,
    pub phone: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Matched {
        place: Box<Place>,
        score: MatchScore,
        website: Option<WebsiteUrl>,
        phone: Option<String>,
    },
    NoMatch {
        best: Option<MatchScore>,
    },
    SkippedByBudget,
}

#[async_trait]
impl StageHandler for Enrichment {
    type Payload = LeadRef;
    type Work = Outcome;
    type Context = HashMap<BusinessId, Known>;

    const STAGE: Stage = Stage::Enrichment;
    const INPUT: Queue = Queue::Enrichment;
    const SENDS_TO: &'static [Queue] = SENDS_TO;

    fn worst_case_work(
        &self,
        vendors: &shared::vendors::config::VendorsConfig,
    ) -> std::time::Duration {
        vendors.places.call_time
    }

    fn budget(&self, deps: &Deps) -> Option<(budget::BudgetClass, i64)> {
        Some((
            budget::BudgetClass::Places,
            deps.vendors
                .prices
                .price(shared::vendors::Vendor::Places)
                .per_request_micros,
        ))
    }

    async fn load(
        &self,
        tx: &dyn Tx,
        _: TenantId,
        envs: &[&Envelope<LeadRef>],
    ) -> Result<Self::Context, DbError> {
        let ids = shared::pipeline::messages::LeadColumns::of(envs).businesses;
        Ok(cached::query(tx, "SELECT id, name, address1, city, state, zip, phone_e164 FROM businesses WHERE id = ANY($1) AND erased_at IS NULL", &[&ids])
            .await?
            .iter()
            .map(|r| {
                (
                    BusinessId::from_uuid(r.get(0)),
                    Known { name: r.get(1), address1: r.get(2), city: r.get(3), state: r.get(4), zip: r.get(5), phone: r.get(6) },
                )
            })
            .collect())
    }

    async fn work(
        &self,
        _deps: &Deps,
        known: &Self::Context,
        env: &Envelope<LeadRef>,
        paid_allowed: bool,
    ) -> Result<Outcome, WorkError> {
        let Some(b) = known.get(&env.payload.business_id) else {
            return Err(WorkError::Permanent(format!(
                "business {} not found for this tenant",
                env.payload.business_id
            )));
        };
        if !paid_allowed {
            return Ok(Outcome::SkippedByBudget);
        }
        let query = [
            Some(b.name.as_str()),
            b.address1.as_deref(),
            b.city.as_deref(),
            b.state.as_deref().map(|s| s.trim()),
            b.zip.as_deref(),
        ]
        .into_iter()
        .flatten()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(", ");
        let ctx = CallContext::new(env.tenant_id, env.run_id, Some(env.payload.business_id));
        let resp = self
            .places
            .search_text(
                &ctx,
                &TextSearchRequest {
                    text_query: query,
                    page_size: Some(5),
                    region_code: Some("US".into()),
                },
            )
            .await?;
        let mut scored: Vec<(MatchScore, Place)> = resp
            .places
            .into_iter()
            .map(|p| (score_match(b, &p), p))
            .collect();
        scored.sort_by(|a, b| b.0.confidence.total_cmp(&a.0.confidence));
        match scored.into_iter().next() {
            Some((score, place)) if score.accepted() => {
                let website = place
                    .website_uri
                    .as_deref()
                    .and_then(|w| WebsiteUrl::parse(w).ok());
                let phone = place
                    .international_phone_number
                    .as_deref()
                    .or(place.national_phone_number.as_deref())
                    .and_then(|p| Phone::parse(p).ok())
                    .map(|p| p.as_str().to_owned());
                Ok(Outcome::Matched {
                    place: Box::new(place),
                    score,
                    website,
                    phone,
                })
            }
            Some((score, _)) => Ok(Outcome::NoMatch { best: Some(score) }),
            None => Ok(Outcome::NoMatch { best: None }),
        }
    }

    async fn persist(
        &self,
        _deps: &Deps,
        tx: &dyn Tx,
        tenant: TenantId,
        items: &[StageItem<LeadRef, Outcome>],
    ) -> Result<Vec<Vec<Outgoing>>, shared::pipeline::StageError> {
        // Websites already belonging to another business of the tenant make this one a duplicate.
        let domains: Vec<&str> = items
            .iter()
            .filter_map(|i| match &i.work {
                Outcome::Matched {
                    website: Some(w), ..
                } => Some(w.domain()),
                _ => None,
            })
            .collect();
        let ids: Vec<uuid::Uuid> = items
            .iter()
            .map(|i| i.env.payload.business_id.as_uuid())
            .collect();
        let mut owner_of: HashMap<String, uuid::Uuid> = cached::query(
            tx,
            "SELECT DISTINCT ON (website_domain) website_domain, id FROM businesses
             WHERE website_domain = ANY($1) AND id <> ALL($2) AND duplicate_of IS NULL ORDER BY website_domain, created_at",
            &[&domains, &ids],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
        let mut enrich_rows = Vec::new();
        let mut upd = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut next = Vec::new();
        for it in items {
            let id = it.env.payload.business_id.as_uuid();
            let mut out = Vec::new();
            if let Outcome::Matched {
                place,
                score,
                website,
                phone,
            } = &it.work
            {
                enrich_rows.push(json!({
                    "business_id": id, "tenant_id": tenant.as_uuid(), "place_id": place.id,
                    "website_url": website.as_ref().map(|w| w.as_str()), "phone_e164": phone,
                    "hours": place.regular_opening_hours, "rating": place.rating.map(|r| (r * 10.0).round() / 10.0),
                    "user_rating_count": place.user_rating_count, "business_status": place.business_status,
                    "match_confidence": score.confidence, "matched": true, "raw": serde_json::to_value(place.as_ref()).unwrap_or_default(),
                    "enriched_at": chrono::Utc::now()
                }));
                let dup = website
                    .as_ref()
                    .and_then(|w| owner_of.get(w.domain()).copied());
                if let (Some(w), None) = (website, dup) {
                    owner_of.insert(w.domain().to_owned(), id);
                }
                upd.0.push(id);
                upd.1.push(website.as_ref().map(|w| w.as_str().to_owned()));
                upd.2.push(website.as_ref().map(|w| w.domain().to_owned()));
                upd.3.push(phone.clone());
                upd.4.push(dup);
                let closed = place.business_status.as_deref() == Some("CLOSED_PERMANENTLY");
                if website.is_some() && dup.is_none() && !closed {
                    out.push(Outgoing::forward(&it.env, Queue::Assessment)?);
                }
            } else if let Outcome::NoMatch { best } = &it.work {
                enrich_rows.push(json!({
                    "business_id": id, "tenant_id": tenant.as_uuid(), "match_confidence": best.as_ref().map_or(0.0, |b| b.confidence),
                    "matched": false, "raw": {}, "enriched_at": chrono::Utc::now()
                }));
            }
            next.push(out);
        }
        // Independent writes, sent together.
        let enriched = !enrich_rows.is_empty();
        let enrich_rows = serde_json::Value::Array(enrich_rows);
        let (stored, updated) = futures_util::future::join(
            cached::execute_if(
                tx,
                enriched,
                "INSERT INTO enrichments SELECT * FROM jsonb_populate_recordset(NULL::enrichments, $1::jsonb)
                 ON CONFLICT (business_id) DO UPDATE SET place_id = EXCLUDED.place_id, website_url = EXCLUDED.website_url,
                    phone_e164 = EXCLUDED.phone_e164, hours = EXCLUDED.hours, rating = EXCLUDED.rating,
                    user_rating_count = EXCLUDED.user_rating_count, business_status = EXCLUDED.business_status,
                    match_confidence = EXCLUDED.match_confidence, matched = EXCLUDED.matched, raw = EXCLUDED.raw, enriched_at = now()",
                &[&enrich_rows],
            ),
            cached::execute_if(
                tx,
                !upd.0.is_empty(),
                "UPDATE businesses b SET website_url = coalesce(x.w, b.website_url), website_domain = coalesce(x.d, b.website_domain),
                        phone_e164 = coalesce(b.phone_e164, x.p), duplicate_of = x.dup, updated_at = now()
                 FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::uuid[]) AS x(id, w, d, p, dup) WHERE b.id = x.id",
                &[&upd.0, &upd.1, &upd.2, &upd.3, &upd.4],
            ),
        )
        .await;
        stored?;
        updated?;
        Ok(next)
    }

    fn describe(&self, item: &StageItem<LeadRef, Outcome>, next: &[Outgoing]) -> Vec<EventInfo> {
        let (event, status, extra) = match &item.work {
            Outcome::Matched {
                place,
                score,
                website,
                ..
            } => {
                // Persisting decides whether the lead goes on (its website's domain may belong
                // to another business); the event says what it decided.
                let ev = if place.business_status.as_deref() == Some("CLOSED_PERMANENTLY") {
                    ("closed", "skipped")
                } else if website.is_none() {
                    ("no_website", "skipped")
                } else if next.is_empty() {
                    ("duplicate_website", "skipped")
                } else {
                    ("enriched", "ok")
                };
                (ev.0, ev.1, json!({ "confidence": score.confidence }))
            }
            Outcome::NoMatch { best } => (
                "no_match",
                "skipped",
                json!({ "best_confidence": best.as_ref().map(|b| b.confidence) }),
            ),
            Outcome::SkippedByBudget => ("SKIPPED_DUE_TO_BUDGET", "skipped", json!({})),
        };
        vec![EventInfo {
            entity_id: Some(item.env.payload.business_id.to_string()),
            event: event.into(),
            status,
            extra,
            marker: false,
        }]
    }
}
