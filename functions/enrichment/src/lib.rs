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

const LOAD: &str = "SELECT id, name, address1, city, state, zip, phone_e164 FROM businesses WHERE id = ANY($1) AND erased_at IS NULL";
const SITE_OWNERS: &str = "SELECT DISTINCT ON (website_domain) website_domain, id FROM businesses
 WHERE website_domain = ANY($1) AND id <> ALL($2) AND duplicate_of IS NULL ORDER BY website_domain, created_at";
const INSERT_ENRICHMENTS: &str = "INSERT INTO enrichments SELECT * FROM jsonb_populate_recordset(NULL::enrichments, $1::jsonb)
 ON CONFLICT (business_id) DO UPDATE SET place_id = EXCLUDED.place_id, website_url = EXCLUDED.website_url,
    phone_e164 = EXCLUDED.phone_e164, hours = EXCLUDED.hours, rating = EXCLUDED.rating,
    user_rating_count = EXCLUDED.user_rating_count, business_status = EXCLUDED.business_status,
    match_confidence = EXCLUDED.match_confidence, matched = EXCLUDED.matched, raw = EXCLUDED.raw, enriched_at = now()";
const UPDATE_BUSINESSES: &str = "UPDATE businesses b SET website_url = coalesce(x.w, b.website_url), website_domain = coalesce(x.d, b.website_domain),
        phone_e164 = coalesce(b.phone_e164, x.p), duplicate_of = x.dup, updated_at = now()
 FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::uuid[]) AS x(id, w, d, p, dup) WHERE b.id = x.id";

#[async_trait]
impl StageHandler for Enrichment {
    type Payload = LeadRef;
    type Work = Outcome;
    type Context = HashMap<BusinessId, Known>;

    const STAGE: Stage = Stage::Enrichment;
    const INPUT: Queue = Queue::Enrichment;
    const SENDS_TO: &'static [Queue] = SENDS_TO;
    const VENDORS: &'static [shared::vendors::Vendor] = &[shared::vendors::Vendor::Places];

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
        Ok(cached::query(tx, LOAD, &[&ids])
            .await?
            .iter()
            .map(|r| {
                (
                    BusinessId::from_uuid(r.get("id")),
                    Known {
                        name: r.get("name"),
                        address1: r.get("address1"),
                        city: r.get("city"),
                        state: r.get("state"),
                        zip: r.get("zip"),
                        phone: r.get("phone_e164"),
                    },
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
            b.state.as_deref().map(str::trim),
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
        let mut owner_of: HashMap<String, uuid::Uuid> =
            cached::query(tx, SITE_OWNERS, &[&domains, &ids])
                .await?
                .iter()
                .map(|r| (r.get("website_domain"), r.get("id")))
                .collect();
        let mut enrich_rows = Vec::new();
        let mut upd = BusinessUpdates::default();
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
                    "website_url": website.as_ref().map(shared::domain::WebsiteUrl::as_str), "phone_e164": phone,
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
                upd.ids.push(id);
                upd.websites
                    .push(website.as_ref().map(|w| w.as_str().to_owned()));
                upd.domains
                    .push(website.as_ref().map(|w| w.domain().to_owned()));
                upd.phones.push(phone.clone());
                upd.duplicate_of.push(dup);
                if Verdict::of(place, website.as_ref(), dup.is_some()) == Verdict::Enriched {
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
            cached::execute_if(tx, enriched, INSERT_ENRICHMENTS, &[&enrich_rows]),
            cached::execute_if(
                tx,
                !upd.ids.is_empty(),
                UPDATE_BUSINESSES,
                &[
                    &upd.ids,
                    &upd.websites,
                    &upd.domains,
                    &upd.phones,
                    &upd.duplicate_of,
                ],
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
                // Persisting decided, with the same verdict, whether the lead goes on; a lead
                // kept back with a website that is neither closed nor missing one was kept
                // back because another business owns its website's domain.
                let (event, status) = Verdict::of(place, website.as_ref(), next.is_empty()).event();
                (event, status, json!({ "confidence": score.confidence }))
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

/// The columns of the batch's `UPDATE businesses … FROM UNNEST(…)`, one entry per matched lead.
#[derive(Default)]
struct BusinessUpdates {
    ids: Vec<uuid::Uuid>,
    websites: Vec<Option<String>>,
    domains: Vec<Option<String>>,
    phones: Vec<Option<String>>,
    /// The business that owns the website's domain, when another one does.
    duplicate_of: Vec<Option<uuid::Uuid>>,
}

/// What becomes of a matched lead: it goes on to assessment only when it is open, has a
/// website, and no other business owns that website's domain. Persisting decides with it, and
/// the run event says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Closed,
    NoWebsite,
    DuplicateWebsite,
    Enriched,
}

impl Verdict {
    fn of(place: &Place, website: Option<&WebsiteUrl>, domain_owned_by_another: bool) -> Self {
        if place.business_status.as_deref() == Some("CLOSED_PERMANENTLY") {
            Verdict::Closed
        } else if website.is_none() {
            Verdict::NoWebsite
        } else if domain_owned_by_another {
            Verdict::DuplicateWebsite
        } else {
            Verdict::Enriched
        }
    }

    /// The run event and its status.
    fn event(self) -> (&'static str, &'static str) {
        match self {
            Verdict::Closed => ("closed", "skipped"),
            Verdict::NoWebsite => ("no_website", "skipped"),
            Verdict::DuplicateWebsite => ("duplicate_website", "skipped"),
            Verdict::Enriched => ("enriched", "ok"),
        }
    }
}

#[cfg(test)]
mod verdict_tests {
    use super::*;

    #[test]
    fn only_an_open_business_with_a_website_of_its_own_goes_on() {
        let open = Place::default();
        let closed = Place {
            business_status: Some("CLOSED_PERMANENTLY".into()),
            ..Place::default()
        };
        let site = WebsiteUrl::parse("https://example.com").unwrap();
        assert_eq!(Verdict::of(&open, Some(&site), false), Verdict::Enriched);
        assert_eq!(
            Verdict::of(&open, Some(&site), true),
            Verdict::DuplicateWebsite
        );
        assert_eq!(Verdict::of(&open, None, false), Verdict::NoWebsite);
        assert_eq!(Verdict::of(&closed, Some(&site), false), Verdict::Closed);
        assert_eq!(Verdict::of(&closed, None, true), Verdict::Closed);
        assert_eq!(Verdict::Enriched.event(), ("enriched", "ok"));
    }
}
