//! personalization: writes each reported lead's email. The subject comes from the lead's A/B
//! variant (deterministic by business), the body from the LLM — using only the assessment's
//! facts, with our report link as its only link, within length and spam-risk limits — or from the
//! template when there is no LLM key, the budget is closed, or the LLM's body fails the checks.
//! Suppressed addresses and held-out leads get no email; neither a business nor an inbox (the
//! normalised address) ever gets a second outreach in one campaign (unique indexes, not just
//! this code, enforce both).

pub mod copy;
pub mod experiment;

use std::collections::HashMap;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;
use shared::bus::{Envelope, Queue};
use shared::db::{DbError, Tx, cached};
use shared::domain::{BusinessId, TenantId};
use shared::lambda::StartError;
use shared::pipeline::Stage;
use shared::pipeline::messages::{LeadColumns, LeadRef};
use shared::pipeline::{
    Deps, EventInfo, Outgoing, StageHandler, StageItem, WorkError, budget, llm_log,
};
use shared::vendors::openai::{Message, OpenAiClient};
use shared::vendors::{CallContext, Vendor};

pub use experiment::{Assignment, Experiment};

/// The queues this function sends to (the template grants exactly these).
pub const SENDS_TO: &[Queue] = &[Queue::Delivery];
pub const LLM_TEMPERATURE: f32 = 0.7;

pub struct Personalization {
    experiment: Experiment,
    openai: Option<OpenAiClient>,
}

impl Personalization {
    pub fn new(experiment: Experiment, openai: Option<OpenAiClient>) -> Self {
        Self { experiment, openai }
    }

    /// The experiment in the file `LF_EXPERIMENT_FILE` names, or the default one, and the LLM
    /// when a key is configured.
    pub fn from_source(
        deps: &Deps,
        source: &dyn shared::config::Source,
    ) -> Result<Self, StartError> {
        let experiment = shared::lambda::file_or_embedded(
            source,
            "LF_EXPERIMENT_FILE",
            experiment::DEFAULT_EXPERIMENT,
            Experiment::parse,
        )?;
        Ok(Self::new(experiment, deps.vendors.openai(&deps.policy)?))
    }
}

/// What the email is written from.
#[derive(Debug, Clone)]
pub struct Lead {
    pub name: String,
    pub email: Option<String>,
    pub suppressed: bool,
    /// Another business's outreach in this campaign already went (or waits to go) to the address.
    pub inbox_taken: bool,
    pub report_id: uuid::Uuid,
    pub token: String,
    /// The opportunity score (how much the site costs its owner): for our records, never for
    /// the copy.
    pub score: u8,
    /// The site's own Lighthouse mobile performance (0–100), when PageSpeed measured it.
    pub mobile_performance: Option<u8>,
    pub problems: Vec<String>,
    pub sender: String,
}

#[derive(Debug, Clone)]
pub struct Written {
    pub assignment: Assignment,
    /// `None` when no email is written, with the reason.
    pub email: Option<Email>,
    pub skipped: Option<&'static str>,
    pub report_id: uuid::Uuid,
}

#[derive(Debug, Clone)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub body: String,
    pub generated_by: &'static str,
    pub spam_score: u8,
    pub llm: Option<llm_log::LlmCall>,
}

/// `inbox_taken`: another business's outreach in this campaign already holds the address (a
/// unique index enforces it at insert; asking first saves writing an email that cannot be stored).
const LOAD: &str = "
SELECT b.id, b.name, b.email,
       EXISTS (SELECT 1 FROM suppressions s WHERE (s.kind = 'email' AND s.value = lower(b.email))
              OR (s.kind = 'domain' AND (s.value = split_part(lower(b.email), '@', 2) OR s.value = b.website_domain))) AS suppressed,
       EXISTS (SELECT 1 FROM emails e WHERE e.tenant_id = b.tenant_id AND e.campaign_id = c.id AND lower(e.to_email) = lower(b.email)
               AND e.kind = 'outreach' AND e.send_state <> 'cancelled' AND NOT e.duplicate_inbox AND e.business_id <> b.id) AS inbox_taken,
       rp.id AS report_id, rp.token, sc.score, a.insights, c.sender_name, a.psi_performance
FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[]) AS x(b, c, r)
JOIN businesses b ON b.id = x.b
JOIN campaigns c ON c.id = x.c
JOIN reports rp ON rp.business_id = b.id AND rp.run_id IS NOT DISTINCT FROM x.r
JOIN scores sc ON sc.id = rp.score_id
LEFT JOIN assessments a ON a.id = sc.assessment_id";

#[derive(Deserialize)]
struct LlmBody {
    body: String,
}

fn llm_schema() -> serde_json::Value {
    json!({ "type": "object", "additionalProperties": false, "required": ["body"], "properties": { "body": { "type": "string" } } })
}

const INSERT_EXPERIMENT: &str = "INSERT INTO experiments (id, tenant_id, key, name, min_sample, confidence, holdout_bp) VALUES ($1, $2, $3, $4, $5, $6, $7)
 ON CONFLICT (tenant_id, key) DO UPDATE SET name = EXCLUDED.name RETURNING id";
const INSERT_VARIANT: &str = "INSERT INTO experiment_variants (id, tenant_id, experiment_id, key, weight, subject_template)
 SELECT gen_random_uuid(), $1, $2, k, w, s FROM UNNEST($3::text[], $4::float8[], $5::text[]) AS x(k, w, s)
 ON CONFLICT (experiment_id, key) DO UPDATE SET weight = EXCLUDED.weight, subject_template = EXCLUDED.subject_template
 RETURNING key, id";
const INSERT_ASSIGNMENTS: &str = "INSERT INTO experiment_assignments SELECT * FROM jsonb_populate_recordset(NULL::experiment_assignments, $1::jsonb)
 ON CONFLICT (experiment_id, business_id) DO NOTHING";
const INSERT_EMAILS: &str =
    "INSERT INTO emails SELECT * FROM jsonb_populate_recordset(NULL::emails, $1::jsonb)
 ON CONFLICT DO NOTHING RETURNING business_id";

#[async_trait]
impl StageHandler for Personalization {
    type Payload = LeadRef;
    type Work = Written;
    type Context = HashMap<BusinessId, Lead>;

    const STAGE: Stage = Stage::Personalization;
    const INPUT: Queue = Queue::Personalization;
    const SENDS_TO: &'static [Queue] = SENDS_TO;
    const VENDORS: &'static [shared::vendors::Vendor] = &[shared::vendors::Vendor::OpenAi];

    fn worst_case_work(
        &self,
        vendors: &shared::vendors::config::VendorsConfig,
    ) -> std::time::Duration {
        vendors.openai.call_time
    }

    fn budget(&self, deps: &Deps) -> Option<(budget::BudgetClass, i64)> {
        // A personalised email: ~600 prompt and ~250 completion tokens.
        self.openai
            .as_ref()
            .map(|_| budget::llm_call(&deps.vendors.prices, 600, 250))
    }

    async fn load(
        &self,
        tx: &dyn Tx,
        _: TenantId,
        envs: &[&Envelope<LeadRef>],
    ) -> Result<Self::Context, DbError> {
        let cols = LeadColumns::of(envs);
        Ok(
            cached::query(tx, LOAD, &[&cols.businesses, &cols.campaigns, &cols.runs])
                .await?
                .iter()
                .map(|r| {
                    let insights: Option<serde_json::Value> = r.get("insights");
                    let problems = shared::domain::recommendation_titles(insights.as_ref());
                    (
                        BusinessId::from_uuid(r.get("id")),
                        Lead {
                            name: r.get("name"),
                            email: r.get("email"),
                            suppressed: r.get("suppressed"),
                            inbox_taken: r.get("inbox_taken"),
                            report_id: r.get("report_id"),
                            token: r.get("token"),
                            score: r.get::<_, i16>("score").clamp(0, 100) as u8,
                            mobile_performance: r
                                .get::<_, Option<i16>>("psi_performance")
                                .map(|p| p.clamp(0, 100) as u8),
                            problems,
                            sender: r.get("sender_name"),
                        },
                    )
                })
                .collect(),
        )
    }

    async fn work(
        &self,
        deps: &Deps,
        ctx: &Self::Context,
        env: &Envelope<LeadRef>,
        paid_allowed: bool,
    ) -> Result<Written, WorkError> {
        let lead = ctx.get(&env.payload.business_id).ok_or_else(|| {
            WorkError::Permanent(format!(
                "no report for business {} in this run",
                env.payload.business_id
            ))
        })?;
        let assignment = self.experiment.assign(&env.payload.business_id.to_string());
        let skip = |why| {
            Ok(Written {
                assignment: assignment.clone(),
                email: None,
                skipped: Some(why),
                report_id: lead.report_id,
            })
        };
        let Some(to) = lead.email.clone() else {
            return skip("no_email");
        };
        if lead.suppressed {
            return skip("suppressed");
        }
        if lead.inbox_taken {
            return skip("inbox_already_emailed");
        }
        let Assignment::Variant { index, .. } = assignment else {
            return skip("holdout");
        };
        let subject = copy::subject(
            &self.experiment.variants[index].subject,
            &lead.name,
            lead.mobile_performance,
        );
        let base = deps.public_base_url.trim_end_matches('/');
        let preview_url = format!("{base}/r/{}", lead.token);
        let template =
            || copy::template_body(&lead.name, &lead.problems, &preview_url, &lead.sender);
        let mut email = Email {
            to,
            subject: subject.clone(),
            body: template(),
            generated_by: "template",
            spam_score: 0,
            llm: None,
        };
        if let (Some(ai), true) = (&self.openai, paid_allowed) {
            // The site's own figures only: the opportunity score would read as the site's grade.
            let speed = lead.mobile_performance.map_or_else(
                || "not measured".to_owned(),
                |p| format!("{p}/100 (Google Lighthouse, higher is better)"),
            );
            let facts = format!(
                "Business: {}\nMobile performance: {speed}\nProblems found: {}\nReport link (use exactly, once): {preview_url}\nSender: {}",
                lead.name,
                lead.problems.join("; "),
                lead.sender
            );
            let system = "Write a short, friendly, plain-text cold email body (no subject) to a local business owner about their website. Use only the facts given; invent nothing, and quote no score but the mobile performance as given. Mention at most two problems, include the report link exactly once, no other links, under 120 words, no hype. Answer in JSON.";
            let call = CallContext::new(env.tenant_id, env.run_id, Some(env.payload.business_id));
            match ai
                .structured::<LlmBody>(
                    &call,
                    llm_log::MODEL,
                    LLM_TEMPERATURE,
                    400,
                    "outreach_email",
                    llm_schema(),
                    vec![Message::system(system), Message::user(facts.clone())],
                )
                .await
            {
                Ok(s) => {
                    let body = s.value.body.trim().to_owned();
                    let ok = copy::check_body(&body, base).is_ok()
                        && body.contains(&preview_url)
                        && copy::spam_score(&subject, &body) < copy::REFUSE_AT;
                    if ok {
                        let cost = deps.vendors.prices.price(Vendor::OpenAi).cost(
                            1,
                            s.usage.prompt_tokens,
                            s.usage.completion_tokens,
                        );
                        email.body = body;
                        email.generated_by = "llm";
                        email.llm = Some(llm_log::LlmCall {
                            purpose: llm_log::Purpose::Email,
                            prompt: format!("{system}\n---\n{facts}"),
                            completion: s.raw,
                            model: s.model,
                            tokens_in: s.usage.prompt_tokens,
                            tokens_out: s.usage.completion_tokens,
                            cost_micros: cost,
                        });
                    }
                }
                Err(e) if e.is_transient() => return Err(e.into()),
                Err(e) => tracing::warn!(error = %e, "LLM email unusable; template used"),
            }
        }
        email.spam_score = copy::spam_score(&email.subject, &email.body);
        if email.spam_score >= copy::REFUSE_AT {
            return skip("spam_risk");
        }
        Ok(Written {
            assignment,
            email: Some(email),
            skipped: None,
            report_id: lead.report_id,
        })
    }

    async fn persist(
        &self,
        _deps: &Deps,
        tx: &dyn Tx,
        tenant: TenantId,
        items: &[StageItem<LeadRef, Written>],
    ) -> Result<Vec<Vec<Outgoing>>, shared::pipeline::StageError> {
        let e = &self.experiment;
        let exp_id: uuid::Uuid = cached::query_one(
            tx,
            INSERT_EXPERIMENT,
            &[
                &uuid::Uuid::new_v4(),
                &tenant.as_uuid(),
                &e.key,
                &e.name,
                &e.min_sample,
                &e.confidence,
                &(e.holdout_bp as i32),
            ],
        )
        .await?
        .get("id");
        let variant_ids: HashMap<String, uuid::Uuid> = cached::query(
            tx,
            INSERT_VARIANT,
            &[
                &tenant.as_uuid(),
                &exp_id,
                &e.variants
                    .iter()
                    .map(|v| v.key.as_str())
                    .collect::<Vec<_>>(),
                &e.variants.iter().map(|v| v.weight).collect::<Vec<_>>(),
                &e.variants
                    .iter()
                    .map(|v| v.subject.as_str())
                    .collect::<Vec<_>>(),
            ],
        )
        .await?
        .iter()
        .map(|r| (r.get("key"), r.get("id")))
        .collect();
        let variant_of = |a: &Assignment| match a {
            Assignment::Variant { index, .. } => variant_ids.get(&e.variants[*index].key).copied(),
            Assignment::Holdout { .. } => None,
        };
        let now = chrono::Utc::now();
        let mut assignments = Vec::new();
        let mut emails = Vec::new();
        let mut logs = Vec::new();
        for it in items {
            let w = &it.work;
            let bucket = match w.assignment {
                Assignment::Variant { bucket_bp, .. } | Assignment::Holdout { bucket_bp } => {
                    bucket_bp
                }
            };
            assignments.push(json!({
                "experiment_id": exp_id, "business_id": it.env.payload.business_id.as_uuid(), "tenant_id": tenant.as_uuid(),
                "variant_id": variant_of(&w.assignment), "holdout": matches!(w.assignment, Assignment::Holdout { .. }),
                "bucket_bp": bucket, "assigned_at": now
            }));
            if let Some(m) = &w.email {
                emails.push(json!({
                    "id": uuid::Uuid::new_v4(), "tenant_id": tenant.as_uuid(), "campaign_id": it.env.payload.campaign_id.as_uuid(),
                    "business_id": it.env.payload.business_id.as_uuid(), "run_id": it.env.run_id.map(|r| r.as_uuid()),
                    "report_id": w.report_id, "variant_id": variant_of(&w.assignment), "kind": "outreach", "to_email": m.to,
                    "subject": m.subject, "body_text": m.body, "send_state": "queued", "attempts": 0,
                    "generated_by": m.generated_by, "spam_score": m.spam_score, "created_at": now,
                    "duplicate_inbox": false, "request_key": ""
                }));
                if let Some(l) = &m.llm {
                    logs.push(l.row(llm_log::Caller::of(&it.env), now));
                }
            }
        }
        // Independent writes, sent together.
        let assignments = serde_json::Value::Array(assignments);
        let (any_emails, any_logs) = (!emails.is_empty(), !logs.is_empty());
        let (emails, logs) = (
            serde_json::Value::Array(emails),
            serde_json::Value::Array(logs),
        );
        let (assigned, written, logged) = futures_util::future::join3(
            cached::execute(tx, INSERT_ASSIGNMENTS, &[&assignments]),
            async {
                if !any_emails {
                    return Ok(Vec::new());
                }
                cached::query(tx, INSERT_EMAILS, &[&emails]).await
            },
            cached::execute_if(tx, any_logs, llm_log::INSERT, &[&logs]),
        )
        .await;
        assigned?;
        logged?;
        let written: std::collections::HashSet<uuid::Uuid> =
            written?.iter().map(|r| r.get("business_id")).collect();
        items
            .iter()
            .map(|it| {
                // A business already emailed in this campaign (an earlier run), or whose address
                // another business's outreach holds (one per inbox), gets no second email.
                if !written.contains(&it.env.payload.business_id.as_uuid()) {
                    return Ok(Vec::new());
                }
                Ok(vec![Outgoing::forward(&it.env, Queue::Delivery)?])
            })
            .collect()
    }

    fn describe(&self, item: &StageItem<LeadRef, Written>, next: &[Outgoing]) -> Vec<EventInfo> {
        let w = &item.work;
        let (event, status) = match (&w.email, w.skipped) {
            // Written by the work but not stored: the campaign already emailed the business, or
            // another business's outreach took the inbox first.
            (Some(_), _) if next.is_empty() => ("skipped:not_stored".to_owned(), "skipped"),
            (Some(m), _) => (format!("written:{}", m.generated_by), "ok"),
            (None, why) => (format!("skipped:{}", why.unwrap_or("unknown")), "skipped"),
        };
        let variant = match w.assignment {
            Assignment::Variant { index, .. } => Some(self.experiment.variants[index].key.clone()),
            Assignment::Holdout { .. } => None,
        };
        vec![EventInfo {
            entity_id: Some(item.env.payload.business_id.to_string()),
            event,
            status,
            extra: json!({ "variant": variant, "spam_score": w.email.as_ref().map(|m| m.spam_score) }),
            marker: false,
        }]
    }
}
