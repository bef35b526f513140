//! assessment: fetches the homepage through the SSRF guard (redirect limit, size cap, timeout),
//! stores it gzipped in the object store, reads it with a real HTML parser, runs PageSpeed
//! (mobile) for category scores and Core Web Vitals, and turns the findings into three concrete
//! problems with fixes — from the LLM (structured JSON, logged with an expiry) when configured
//! and within budget, else from rules.

pub mod analyze;
pub mod guard;
pub mod insights;
pub mod recipient;

use std::collections::HashMap;
use std::io::Write;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::json;
use shared::bus::{Envelope, Queue};
use shared::db::{DbError, Tx, cached};
use shared::domain::{BusinessId, TenantId, WebsiteUrl};
use shared::lambda::StartError;
use shared::pipeline::Stage;
use shared::pipeline::messages::LeadRef;
use shared::pipeline::{
    Deps, EventInfo, Outgoing, StageHandler, StageItem, WorkError, budget, llm_log,
};
use shared::store::ObjectKey;
use shared::vendors::openai::{Message, OpenAiClient};
use shared::vendors::pagespeed::{PageSpeedClient, PsiSummary};
use shared::vendors::{CallContext, Vendor};

use analyze::Checks;
use guard::Guard;
use insights::Insights;

/// The queues this function sends to (the template grants exactly these).
pub const SENDS_TO: &[Queue] = &[Queue::Scoring];

/// LLM settings from the predecessors: a small model (`llm_log::MODEL`), low temperature, ~500
/// output tokens.
pub const LLM_TEMPERATURE: f32 = 0.3;
pub const LLM_MAX_TOKENS: u32 = 700;

pub struct Assessment {
    /// Checks the first hop here and, in the client, every redirect and every resolved address.
    guard: Guard,
    fetcher: shared::tls::LazyHttp,
    /// The whole fetch, redirects and body included.
    fetch_timeout: std::time::Duration,
    max_bytes: usize,
    pagespeed: PageSpeedClient,
    openai: Option<OpenAiClient>,
}

impl Assessment {
    pub fn new(deps: &Deps, pagespeed: PageSpeedClient, openai: Option<OpenAiClient>) -> Self {
        let guard = Guard {
            allow_private: deps.fetch.allow_private,
            restrict_ports: !deps.fetch.allow_private,
            test_tld_addr: deps.fetch.test_tld_addr,
        };
        Self {
            guard,
            fetcher: guard::client(guard, deps.fetch.timeout, deps.fetch.max_redirects),
            fetch_timeout: deps.fetch.timeout,
            max_bytes: deps.fetch.max_bytes,
            pagespeed,
            openai,
        }
    }

    /// PageSpeed and the LLM as configured, the fetch policy of the deployment's mode.
    pub fn from_source(
        deps: &Deps,
        _source: &dyn shared::config::Source,
    ) -> Result<Self, StartError> {
        Ok(Self::new(
            deps,
            deps.vendors.pagespeed(&deps.policy)?,
            deps.vendors.openai(&deps.policy)?,
        ))
    }
}

#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub website: Option<String>,
}

/// The fetched homepage.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    pub final_url: Option<String>,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub bytes: usize,
    pub truncated: bool,
    /// A 2xx page, read as it arrived: never held whole.
    pub page: Option<Homepage>,
    pub elapsed_ms: u64,
}

/// What was kept of a 2xx homepage: what it says, and its gzipped copy for the archive.
#[derive(Debug, Clone)]
pub struct Homepage {
    pub checks: Checks,
    pub archive: Result<Vec<u8>, String>,
}

#[derive(Debug, Clone)]
pub struct Assessed {
    pub url: String,
    pub fetched: Fetched,
    pub checks: Checks,
    /// The address the business's email goes to, and why (none when the page shows no address
    /// of the business's own).
    pub recipient: Option<recipient::Recipient>,
    pub raw_html_key: Option<String>,
    pub psi: Result<PsiSummary, String>,
    pub insights: Insights,
    pub insights_source: &'static str,
    pub llm: Option<llm_log::LlmCall>,
    pub skipped_paid: Vec<String>,
}

impl Assessment {
    async fn fetch(&self, fetcher: &reqwest::Client, url: &str) -> Fetched {
        let started = std::time::Instant::now();
        let mut f = Fetched::default();
        let parsed = match url::Url::parse(url) {
            Ok(u) => u,
            Err(e) => {
                f.error = Some(format!("bad url: {e}"));
                return f;
            }
        };
        // The first hop is checked here, as every redirect is in the client: the fetcher is
        // safe whoever calls it, whatever it was given.
        if let Err(r) = self.guard.check_url(&parsed) {
            f.error = Some(format!("refused: {r}"));
            return f;
        }
        let resp = match fetcher
            .get(parsed)
            .header("accept", "text/html,application/xhtml+xml")
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                f.error = Some(if e.is_timeout() {
                    "timed out".into()
                } else if e.is_redirect() {
                    format!("redirect: {e:?}").chars().take(300).collect()
                } else {
                    format!("{e}").chars().take(300).collect()
                });
                f.elapsed_ms = started.elapsed().as_millis() as u64;
                return f;
            }
        };
        f.status = Some(resp.status().as_u16());
        f.final_url = Some(resp.url().to_string());
        // A homepage is HTML: a 2xx that is a PDF, an image or nothing at all is recorded as
        // not a homepage, and its bytes are never read as HTML.
        let page_kind = homepage_kind(&resp);
        if resp.status().is_success()
            && let Err(why) = &page_kind
        {
            f.error = Some(format!("not a homepage: {why}"));
        }
        // A 2xx HTML body is scanned (in its declared charset) and gzipped chunk by chunk as it
        // arrives (up to the cap, counted after decompression), so memory per fetch is a chunk
        // and the scan's capped fields, not the page; any other body is only counted.
        let mut reader = match (&page_kind, resp.status().is_success()) {
            (Ok(charset), true) => Some((
                analyze::PageScan::with_charset(charset.as_deref()),
                flate2::write::GzEncoder::new(Vec::new(), ARCHIVE_LEVEL),
            )),
            _ => None,
        };
        let mut archive_error = None;
        let mut resp = resp;
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    let room = self.max_bytes.saturating_sub(f.bytes);
                    let part = &c[..c.len().min(room)];
                    f.bytes += part.len();
                    if let Some((scan, gz)) = reader.as_mut() {
                        scan.write(part);
                        if let Err(e) = gz.write_all(part) {
                            archive_error.get_or_insert(format!("gzip: {e}"));
                        }
                    }
                    if part.len() < c.len() {
                        f.truncated = true;
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    f.error = Some(format!("reading body: {e}"));
                    break;
                }
            }
        }
        f.page = reader.map(|(scan, gz)| Homepage {
            checks: scan.finish(),
            archive: match archive_error {
                Some(e) => Err(e),
                None => gz.finish().map_err(|e| format!("gzip: {e}")),
            },
        });
        f.elapsed_ms = started.elapsed().as_millis() as u64;
        f
    }
}

/// Whether a response is a homepage — HTML (`text/html`, `application/xhtml+xml`, or no type
/// at all) with content — and its declared charset; else why not.
fn homepage_kind(resp: &reqwest::Response) -> Result<Option<String>, String> {
    if matches!(resp.status().as_u16(), 204 | 205) {
        return Err(format!("{} (no content)", resp.status().as_u16()));
    }
    if resp.content_length() == Some(0) {
        return Err("an empty body".into());
    }
    let Some(value) = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(None);
    };
    let Ok(m) = value.parse::<mime::Mime>() else {
        return Err(format!("an unreadable content type {value:?}"));
    };
    match m.essence_str() {
        "text/html" | "application/xhtml+xml" => {
            Ok(m.get_param(mime::CHARSET).map(|c| c.as_str().to_owned()))
        }
        other => Err(other.chars().take(100).collect()),
    }
}

/// The raw page is kept for audits and re-analysis, rarely read: the fastest level is plenty
/// (level 6 costs ~10 times the CPU of level 1 on the 2 MB the fetch reads at most:
/// 3.6 ms against 0.37 ms, for 2 KB against 10 KB of output).
const ARCHIVE_LEVEL: flate2::Compression = flate2::Compression::fast();

const LOAD: &str =
    "SELECT id, name, website_url FROM businesses WHERE id = ANY($1) AND erased_at IS NULL";
/// The assessments, and the addresses each homepage published (`assessment_contacts`, V26),
/// in one statement: a redelivery's assessment keeps its id, drops the addresses its page no
/// longer shows and adds the new ones.
const INSERT_ASSESSMENTS: &str = "WITH a AS (INSERT INTO assessments SELECT * FROM jsonb_populate_recordset(NULL::assessments, $1::jsonb)
 ON CONFLICT (tenant_id, business_id, run_id) DO UPDATE SET final_url = EXCLUDED.final_url, http_status = EXCLUDED.http_status,
    fetch_error = EXCLUDED.fetch_error, https = EXCLUDED.https, has_viewport = EXCLUDED.has_viewport, title = EXCLUDED.title,
    meta_description = EXCLUDED.meta_description, h1 = EXCLUDED.h1, canonical = EXCLUDED.canonical,
    has_open_graph = EXCLUDED.has_open_graph, analytics = EXCLUDED.analytics, cms = EXCLUDED.cms,
    copyright_year = EXCLUDED.copyright_year, contact_phones = EXCLUDED.contact_phones,
    checks = EXCLUDED.checks, raw_html_key = EXCLUDED.raw_html_key, html_bytes = EXCLUDED.html_bytes,
    psi_performance = EXCLUDED.psi_performance, psi_seo = EXCLUDED.psi_seo, psi_accessibility = EXCLUDED.psi_accessibility,
    psi_best_practices = EXCLUDED.psi_best_practices, lcp_ms = EXCLUDED.lcp_ms, fcp_ms = EXCLUDED.fcp_ms, cls = EXCLUDED.cls,
    tbt_ms = EXCLUDED.tbt_ms, speed_index_ms = EXCLUDED.speed_index_ms, insights = EXCLUDED.insights,
    skipped_paid = EXCLUDED.skipped_paid, assessed_at = EXCLUDED.assessed_at
    RETURNING id, tenant_id, business_id),
 given AS (SELECT a.id, a.tenant_id, x.emails FROM a JOIN jsonb_to_recordset($2::jsonb) AS x(business_id uuid, emails text[]) USING (business_id)),
 gone AS (DELETE FROM assessment_contacts c USING given g WHERE c.assessment_id = g.id AND c.address <> ALL (g.emails))
 INSERT INTO assessment_contacts (tenant_id, address, assessment_id)
 SELECT DISTINCT g.tenant_id, e, g.id FROM given g CROSS JOIN LATERAL unnest(g.emails) e
 ON CONFLICT DO NOTHING";
const SET_BUSINESS_EMAILS: &str =
    "UPDATE businesses b SET email = x.e, email_reason = x.r, updated_at = now()
 FROM UNNEST($1::uuid[], $2::text[], $3::text[]) AS x(id, e, r) WHERE b.id = x.id";

#[async_trait]
impl StageHandler for Assessment {
    type Payload = LeadRef;
    type Work = Assessed;
    type Context = HashMap<BusinessId, Target>;

    const STAGE: Stage = Stage::Assessment;
    const INPUT: Queue = Queue::Assessment;
    const SENDS_TO: &'static [Queue] = SENDS_TO;
    const VENDORS: &'static [shared::vendors::Vendor] = &[
        shared::vendors::Vendor::PageSpeed,
        shared::vendors::Vendor::OpenAi,
    ];

    /// The homepage fetch, then PageSpeed, then the LLM, one after another.
    fn worst_case_work(
        &self,
        vendors: &shared::vendors::config::VendorsConfig,
    ) -> std::time::Duration {
        self.fetch_timeout + vendors.pagespeed.call_time + vendors.openai.call_time
    }

    fn budget(&self, deps: &Deps) -> Option<(budget::BudgetClass, i64)> {
        // An insights call: ~1,000 prompt and ~500 completion tokens.
        self.openai
            .as_ref()
            .map(|_| budget::llm_call(&deps.vendors.prices, 1_000, 500))
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
                    Target {
                        name: r.get("name"),
                        website: r.get("website_url"),
                    },
                )
            })
            .collect())
    }

    async fn work(
        &self,
        deps: &Deps,
        ctx: &Self::Context,
        env: &Envelope<LeadRef>,
        paid_allowed: bool,
    ) -> Result<Assessed, WorkError> {
        let b = ctx.get(&env.payload.business_id).ok_or_else(|| {
            WorkError::Permanent(format!("business {} not found", env.payload.business_id))
        })?;
        let url = b.website.clone().ok_or_else(|| {
            WorkError::Permanent(format!(
                "business {} has no website",
                env.payload.business_id
            ))
        })?;
        let call = CallContext::new(env.tenant_id, env.run_id, Some(env.payload.business_id));

        // A client that cannot be built is our fault, not the site's: the message is retried
        // and dead-lettered rather than the site recorded as unreachable.
        let fetcher = self
            .fetcher
            .get()
            .map_err(|e| WorkError::Transient(e.to_string()))?;
        let mut fetched = self.fetch(fetcher, &url).await;
        let page = fetched.page.take();
        let ok_page = page.is_some();
        let mut raw_html_key = None;
        let checks = match page {
            None => Checks::default(),
            Some(Homepage { checks, archive }) => {
                let run = env
                    .run_id
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "adhoc".into());
                let key = ObjectKey::parse(&format!(
                    "html/{}/{}/{run}.html.gz",
                    env.tenant_id, env.payload.business_id
                ))
                .map_err(|e| WorkError::Permanent(e.to_string()))?;
                let gz = archive.map_err(WorkError::Transient)?;
                deps.store
                    .put(&key, Bytes::from(gz), "application/gzip")
                    .await
                    .map_err(|e| WorkError::Transient(e.to_string()))?;
                raw_html_key = Some(key.to_string());
                checks
            }
        };

        // PageSpeed is free: a failure is recorded, not fatal.
        let psi = if ok_page {
            match self
                .pagespeed
                .run_mobile(&call, fetched.final_url.as_deref().unwrap_or(&url))
                .await
            {
                Ok(r) => r.summary(),
                Err(e) if e.is_transient() => return Err(e.into()),
                Err(e) => Err(e.to_string()),
            }
        } else {
            Err("site not reachable".into())
        };

        let this_year: i32 = chrono::Utc::now()
            .format("%Y")
            .to_string()
            .parse()
            .unwrap_or(2026);
        let mut skipped_paid = Vec::new();
        let (insights, source, llm) = match (&self.openai, paid_allowed, ok_page) {
            (Some(ai), true, true) => {
                let facts = insights::facts(&b.name, &url, &checks, psi.as_ref().ok());
                let messages = vec![
                    Message::system(insights::SYSTEM_PROMPT),
                    Message::user(facts.clone()),
                ];
                match ai
                    .structured::<Insights>(
                        &call,
                        llm_log::MODEL,
                        LLM_TEMPERATURE,
                        LLM_MAX_TOKENS,
                        "site_insights",
                        insights::schema(),
                        messages,
                    )
                    .await
                {
                    Ok(s) if s.value.validate().is_ok() => {
                        let cost = deps.vendors.prices.price(Vendor::OpenAi).cost(
                            1,
                            s.usage.prompt_tokens,
                            s.usage.completion_tokens,
                        );
                        let log = llm_log::LlmCall {
                            purpose: llm_log::Purpose::Insights,
                            prompt: format!("{}\n---\n{facts}", insights::SYSTEM_PROMPT),
                            completion: s.raw,
                            model: s.model,
                            tokens_in: s.usage.prompt_tokens,
                            tokens_out: s.usage.completion_tokens,
                            cost_micros: cost,
                        };
                        (s.value, "llm", Some(log))
                    }
                    Ok(_)
                    | Err(
                        shared::vendors::VendorError::Malformed { .. }
                        | shared::vendors::VendorError::Refused { .. },
                    ) => (
                        insights::fallback(&checks, psi.as_ref().ok(), this_year),
                        "template",
                        None,
                    ),
                    Err(e) if e.is_transient() => return Err(e.into()),
                    Err(_) => (
                        insights::fallback(&checks, psi.as_ref().ok(), this_year),
                        "template",
                        None,
                    ),
                }
            }
            (Some(_), false, true) => {
                skipped_paid.push("llm".to_owned());
                (
                    insights::fallback(&checks, psi.as_ref().ok(), this_year),
                    "template",
                    None,
                )
            }
            _ => (
                insights::fallback(&checks, psi.as_ref().ok(), this_year),
                "template",
                None,
            ),
        };
        let site_domains: Vec<String> = [Some(url.as_str()), fetched.final_url.as_deref()]
            .into_iter()
            .flatten()
            .filter_map(|u| WebsiteUrl::parse(u).ok())
            .map(|w| w.domain().to_owned())
            .collect();
        let recipient = recipient::choose(
            &checks.linked_emails,
            &checks.contact_emails,
            &site_domains.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        Ok(Assessed {
            url,
            fetched,
            checks,
            recipient,
            raw_html_key,
            psi,
            insights,
            insights_source: source,
            llm,
            skipped_paid,
        })
    }

    async fn persist(
        &self,
        _deps: &Deps,
        tx: &dyn Tx,
        tenant: TenantId,
        items: &[StageItem<LeadRef, Assessed>],
    ) -> Result<Vec<Vec<Outgoing>>, shared::pipeline::StageError> {
        let now = chrono::Utc::now();
        let mut rows = Vec::new();
        let mut contacts = Vec::new();
        let mut logs = Vec::new();
        let mut email_ids = Vec::new();
        let mut emails = Vec::new();
        let mut reasons = Vec::new();
        let mut next = Vec::new();
        for it in items {
            let a = &it.work;
            let p = a.psi.as_ref().ok();
            let https = a
                .fetched
                .final_url
                .as_deref()
                .map(|u| u.starts_with("https://"));
            rows.push(json!({
                "id": uuid::Uuid::new_v4(), "tenant_id": tenant.as_uuid(), "business_id": it.env.payload.business_id.as_uuid(),
                "run_id": it.env.run_id.map(|r| r.as_uuid()), "url": a.url, "final_url": a.fetched.final_url,
                "http_status": a.fetched.status, "fetch_error": a.fetched.error, "https": https,
                "has_viewport": a.checks.has_viewport, "title": a.checks.title, "meta_description": a.checks.meta_description,
                "h1": a.checks.h1, "canonical": a.checks.canonical, "has_open_graph": a.checks.has_open_graph,
                "analytics": a.checks.analytics, "cms": a.checks.cms, "copyright_year": a.checks.copyright_year,
                "contact_phones": a.checks.contact_phones,
                "checks": { "jquery_version": a.checks.jquery_version, "h1_count": a.checks.h1_count, "has_contact_form": a.checks.has_contact_form,
                            "image_count": a.checks.image_count, "uses_tables_for_layout": a.checks.uses_tables_for_layout,
                            "truncated": a.fetched.truncated, "fetch_ms": a.fetched.elapsed_ms, "psi_error": a.psi.as_ref().err(),
                            "insights_source": a.insights_source },
                "raw_html_key": a.raw_html_key, "html_bytes": a.fetched.bytes,
                "psi_performance": p.and_then(|p| p.performance), "psi_seo": p.and_then(|p| p.seo),
                "psi_accessibility": p.and_then(|p| p.accessibility), "psi_best_practices": p.and_then(|p| p.best_practices),
                "lcp_ms": p.and_then(|p| p.lcp_ms), "fcp_ms": p.and_then(|p| p.fcp_ms), "cls": p.and_then(|p| p.cls),
                "tbt_ms": p.and_then(|p| p.tbt_ms), "speed_index_ms": p.and_then(|p| p.speed_index_ms),
                "insights": a.insights, "skipped_paid": a.skipped_paid, "assessed_at": now
            }));
            contacts.push(json!({
                "business_id": it.env.payload.business_id.as_uuid(),
                "emails": a.checks.contact_emails.iter().map(|e| e.to_lowercase()).collect::<Vec<_>>(),
            }));
            if let Some(l) = &a.llm {
                logs.push(l.row(llm_log::Caller::of(&it.env), now));
            }
            if let Some(r) = &a.recipient {
                email_ids.push(it.env.payload.business_id.as_uuid());
                emails.push(r.address.to_string());
                reasons.push(r.reason.as_str());
            }
            next.push(vec![Outgoing::forward(&it.env, Queue::Scoring)?]);
        }
        // Independent writes, sent together.
        let rows = serde_json::Value::Array(rows);
        let contacts = serde_json::Value::Array(contacts);
        let logged = !logs.is_empty();
        let logs = serde_json::Value::Array(logs);
        let (stored, logged, emailed) = futures_util::future::join3(
            cached::execute(tx, INSERT_ASSESSMENTS, &[&rows, &contacts]),
            cached::execute_if(tx, logged, llm_log::INSERT, &[&logs]),
            cached::execute_if(
                tx,
                !email_ids.is_empty(),
                SET_BUSINESS_EMAILS,
                &[&email_ids, &emails, &reasons],
            ),
        )
        .await;
        stored?;
        logged?;
        emailed?;
        Ok(next)
    }

    fn describe(&self, item: &StageItem<LeadRef, Assessed>, _next: &[Outgoing]) -> Vec<EventInfo> {
        let a = &item.work;
        let entity = Some(item.env.payload.business_id.to_string());
        let reachable =
            a.fetched.error.is_none() && a.fetched.status.is_some_and(|s| (200..300).contains(&s));
        let not_html = a
            .fetched
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("not a homepage"));
        let mut events = vec![EventInfo {
            entity_id: entity.clone(),
            event: if reachable {
                "assessed".into()
            } else if not_html {
                "not_a_homepage".into()
            } else {
                "site_unreachable".into()
            },
            status: "ok",
            extra: json!({ "http_status": a.fetched.status, "performance": a.psi.as_ref().ok().and_then(|p| p.performance), "insights": a.insights_source }),
            marker: false,
        }];
        for skipped in &a.skipped_paid {
            events.push(EventInfo {
                entity_id: entity.clone(),
                event: "SKIPPED_DUE_TO_BUDGET".into(),
                status: "skipped",
                extra: json!({ "step": skipped }),
                marker: true,
            });
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::homepage_kind;

    fn response(status: u16, content_type: Option<&str>, body: &'static str) -> reqwest::Response {
        let mut b = http::Response::builder().status(status);
        if let Some(t) = content_type {
            b = b.header("content-type", t);
        }
        reqwest::Response::from(b.body(body).unwrap())
    }

    #[test]
    fn only_html_with_content_is_a_homepage_and_its_charset_is_read() {
        for (status, ct, want) in [
            (200, Some("text/html"), Ok(None)),
            (
                200,
                Some("text/html; charset=Shift_JIS"),
                Ok(Some("shift_jis".to_owned())),
            ),
            (
                200,
                Some("application/xhtml+xml;charset=\"utf-16le\""),
                Ok(Some("utf-16le".to_owned())),
            ),
            (200, None, Ok(None)),
        ] {
            assert_eq!(
                homepage_kind(&response(status, ct, "<html>")),
                want,
                "{ct:?}"
            );
        }
        for (status, ct, body, why) in [
            (200, Some("application/pdf"), "%PDF-1.7", "application/pdf"),
            (200, Some("image/png"), "\u{89}PNG", "image/png"),
            (204, None, "", "204 (no content)"),
            (200, Some("text/html"), "", "an empty body"),
            (200, Some("text/html; charset"), "<html>", "unreadable"),
        ] {
            let e = homepage_kind(&response(status, ct, body)).unwrap_err();
            assert!(e.contains(why), "{ct:?}: {e}");
        }
    }
}
