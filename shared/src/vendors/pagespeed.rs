//! PageSpeed Insights v5 (`GET /pagespeedonline/v5/runPagespeed`, key as a query parameter).
//! A run takes 10–60 s, so its policy needs a long request timeout.

use std::collections::HashMap;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::core::Usage;
use super::{CallContext, VendorError, VendorHttp};
use crate::domain::capped;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PsiResponse {
    #[serde(deserialize_with = "capped::opt::<{ capped::URL }, _>")]
    pub id: Option<String>,
    pub lighthouse_result: Option<LighthouseResult>,
    #[serde(deserialize_with = "capped::json_opt")]
    pub loading_experience: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LighthouseResult {
    #[serde(deserialize_with = "capped::opt::<{ capped::URL }, _>")]
    pub requested_url: Option<String>,
    #[serde(deserialize_with = "capped::opt::<{ capped::URL }, _>")]
    pub final_url: Option<String>,
    #[serde(deserialize_with = "capped::opt::<{ capped::SHORT }, _>")]
    pub lighthouse_version: Option<String>,
    pub categories: HashMap<String, CategoryResult>,
    pub audits: HashMap<String, Audit>,
    pub runtime_error: Option<RuntimeError>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CategoryResult {
    #[serde(deserialize_with = "capped::opt::<{ capped::NAME }, _>")]
    pub id: Option<String>,
    #[serde(deserialize_with = "capped::opt::<{ capped::NAME }, _>")]
    pub title: Option<String>,
    /// 0..1, may be null.
    pub score: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Audit {
    #[serde(deserialize_with = "capped::opt::<{ capped::NAME }, _>")]
    pub id: Option<String>,
    pub score: Option<f64>,
    pub numeric_value: Option<f64>,
    #[serde(deserialize_with = "capped::opt::<{ capped::LINE }, _>")]
    pub display_value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RuntimeError {
    #[serde(deserialize_with = "capped::opt::<{ capped::NAME }, _>")]
    pub code: Option<String>,
    #[serde(deserialize_with = "capped::opt::<{ capped::MESSAGE }, _>")]
    pub message: Option<String>,
}

/// What assessment keeps: category scores 0–100 and lab Core Web Vitals.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PsiSummary {
    pub final_url: Option<String>,
    pub performance: Option<u8>,
    pub seo: Option<u8>,
    pub accessibility: Option<u8>,
    pub best_practices: Option<u8>,
    pub lcp_ms: Option<f64>,
    pub fcp_ms: Option<f64>,
    pub cls: Option<f64>,
    pub tbt_ms: Option<f64>,
    pub speed_index_ms: Option<f64>,
}

impl PsiResponse {
    /// The scores and vitals, or the Lighthouse runtime error that makes the result unusable.
    pub fn summary(&self) -> Result<PsiSummary, String> {
        let lr = self
            .lighthouse_result
            .as_ref()
            .ok_or("no lighthouseResult")?;
        if let Some(e) = &lr.runtime_error
            && e.code.as_deref().is_some_and(|c| c != "NO_ERROR")
        {
            return Err(format!(
                "{}: {}",
                e.code.as_deref().unwrap_or_default(),
                e.message.as_deref().unwrap_or_default()
            ));
        }
        // We asked for four categories: an answer with none of them measured nothing, and is
        // an error rather than a summary of nulls.
        if !["performance", "seo", "accessibility", "best-practices"]
            .iter()
            .any(|k| lr.categories.contains_key(*k))
        {
            return Err("the answer has none of the requested categories".to_owned());
        }
        let score = |k: &str| {
            lr.categories
                .get(k)
                .and_then(|c| c.score)
                .filter(|s| (0.0..=1.0).contains(s))
                .map(|s| (s * 100.0).round() as u8)
        };
        let audit = |k: &str| {
            lr.audits
                .get(k)
                .and_then(|a| a.numeric_value)
                .filter(|v| v.is_finite() && *v >= 0.0)
        };
        Ok(PsiSummary {
            final_url: lr.final_url.clone().or_else(|| self.id.clone()),
            performance: score("performance"),
            seo: score("seo"),
            accessibility: score("accessibility"),
            best_practices: score("best-practices"),
            lcp_ms: audit("largest-contentful-paint"),
            fcp_ms: audit("first-contentful-paint"),
            cls: audit("cumulative-layout-shift"),
            tbt_ms: audit("total-blocking-time"),
            speed_index_ms: audit("speed-index"),
        })
    }
}

#[derive(Debug)]
pub struct PageSpeedClient {
    http: VendorHttp,
    key: Option<SecretString>,
}

impl PageSpeedClient {
    /// `key` is optional: PSI answers unauthenticated requests at a lower quota.
    pub fn new(http: VendorHttp, key: Option<SecretString>) -> Self {
        Self { http, key }
    }

    pub fn http(&self) -> &VendorHttp {
        &self.http
    }

    /// Runs a mobile audit of `url` for performance, SEO, accessibility and best practices.
    pub async fn run_mobile(
        &self,
        ctx: &CallContext,
        url: &str,
    ) -> Result<PsiResponse, VendorError> {
        let endpoint = self.http.url("/pagespeedonline/v5/runPagespeed");
        let mut query: Vec<(&str, &str)> = vec![
            ("url", url),
            ("strategy", "mobile"),
            ("category", "performance"),
            ("category", "seo"),
            ("category", "accessibility"),
            ("category", "best-practices"),
        ];
        if let Some(k) = &self.key {
            query.push(("key", k.expose_secret()));
        }
        let (resp, _) = self
            .http
            .json(
                ctx,
                "runPagespeed",
                |c| c.get(&endpoint).query(&query),
                |_: &PsiResponse| Usage::default(),
            )
            .await?;
        Ok(resp)
    }
}
