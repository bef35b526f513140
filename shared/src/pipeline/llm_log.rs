//! The LLM log: every LLM call a stage makes (assessment's insights, personalization's emails),
//! kept for audit and expired by retention. Both stages write it the same way, in one set-based
//! insert per batch.

use serde_json::json;

use crate::domain::{BusinessId, RunId, TenantId};

/// The model both stages ask.
pub const MODEL: &str = "gpt-4o-mini";
/// How long a log row is kept (`llm_logs.expires_at`).
pub const KEPT_DAYS: i64 = 90;
/// A batch's rows (a JSON array of [`LlmCall::row`]s) into `llm_logs`.
pub const INSERT: &str =
    "INSERT INTO llm_logs SELECT * FROM jsonb_populate_recordset(NULL::llm_logs, $1::jsonb)";

/// What a call was for (`llm_logs.purpose`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Insights,
    Email,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Insights => "insights",
            Purpose::Email => "email",
        }
    }
}

/// One call: what was asked, what came back, and what it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmCall {
    pub purpose: Purpose,
    pub prompt: String,
    pub completion: String,
    /// The model that answered, as the vendor names it.
    pub model: String,
    pub tokens_in: u32,
    pub tokens_out: u32,
    pub cost_micros: i64,
}

/// Whose call it was.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub tenant: TenantId,
    pub business: BusinessId,
    pub run: Option<RunId>,
}

impl Caller {
    /// The lead a stage's message is about.
    pub fn of(env: &crate::bus::Envelope<super::messages::LeadRef>) -> Self {
        Self {
            tenant: env.tenant_id,
            business: env.payload.business_id,
            run: env.run_id,
        }
    }
}

impl LlmCall {
    /// The call's `llm_logs` row, stamped `now` and expiring [`KEPT_DAYS`] later.
    pub fn row(&self, by: Caller, now: chrono::DateTime<chrono::Utc>) -> serde_json::Value {
        json!({
            "id": uuid::Uuid::new_v4(), "tenant_id": by.tenant.as_uuid(),
            "business_id": by.business.as_uuid(), "run_id": by.run.map(|r| r.as_uuid()),
            "purpose": self.purpose.as_str(), "model": self.model, "prompt": self.prompt,
            "completion": self.completion, "prompt_tokens": self.tokens_in,
            "completion_tokens": self.tokens_out, "cost_micros": self.cost_micros,
            "created_at": now, "expires_at": now + chrono::Duration::days(KEPT_DAYS)
        })
    }
}
