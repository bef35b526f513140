//! The scoring rule file: versioned, data-driven, validated on load. Weights must sum to 1.0
//! (a warning past 0.005, refused past 0.05), per vertical too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shared::domain::TierThresholds;

pub const DEFAULT_RULES: &str = include_str!("../rules/scoring-v1.json");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tiers {
    pub a: u8,
    pub b: u8,
    pub c: u8,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Factors {
    pub performance: Bands,
    pub vitals: Vitals,
    pub seo: Bands,
    pub outdated: Outdated,
    pub reputation: Reputation,
}

/// `[[threshold, value], …]`: the value of the first band whose threshold the metric is below.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bands {
    pub below: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vitals {
    pub lcp_ms_above: Vec<(f64, f64)>,
    pub cls_above: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outdated {
    pub jquery_major_below: u32,
    pub copyright_years_old: i32,
    pub old_cms_markers: Vec<String>,
    pub tables_for_layout: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reputation {
    pub good_rating: f64,
    pub good_reviews: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Qualify {
    pub require_contact_email: bool,
    pub require_reachable_site: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rules {
    pub version: String,
    #[serde(default)]
    pub description: String,
    pub tiers: Tiers,
    pub weights: BTreeMap<String, f64>,
    #[serde(default)]
    pub verticals: BTreeMap<String, BTreeMap<String, f64>>,
    pub factors: Factors,
    pub qualify: Qualify,
}

pub const FACTORS: &[&str] = &[
    "performance",
    "vitals",
    "seo",
    "mobile",
    "https",
    "basics",
    "outdated",
    "no_analytics",
    "reputation",
];

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RulesError {
    #[error("rule file is not valid JSON for the rule schema: {0}")]
    Parse(String),
    #[error("weights{scope} sum to {sum:.4}, more than 0.05 away from 1.0")]
    WeightSum { scope: String, sum: f64 },
    #[error("unknown factor {0:?} (known: {FACTORS:?})")]
    UnknownFactor(String),
    #[error("weight of {0} is negative")]
    Negative(String),
    #[error("tier thresholds: {0}")]
    Tiers(String),
}

impl Rules {
    pub fn parse(json: &str) -> Result<Rules, RulesError> {
        let r: Rules = serde_json::from_str(json).map_err(|e| RulesError::Parse(e.to_string()))?;
        r.thresholds()
            .map_err(|e| RulesError::Tiers(e.to_string()))?;
        for (name, w) in r
            .weights
            .iter()
            .chain(r.verticals.values().flat_map(|m| m.iter()))
        {
            if !FACTORS.contains(&name.as_str()) {
                return Err(RulesError::UnknownFactor(name.clone()));
            }
            if *w < 0.0 {
                return Err(RulesError::Negative(name.clone()));
            }
        }
        let mut scopes = vec![(String::new(), r.weights.clone())];
        for v in r.verticals.keys() {
            scopes.push((format!(" for {v}"), r.weights_for(v)));
        }
        for (scope, w) in scopes {
            let sum: f64 = w.values().sum();
            let off = (sum - 1.0).abs();
            if off > 0.05 {
                return Err(RulesError::WeightSum { scope, sum });
            }
            if off > 0.005 {
                tracing::warn!(scope, sum, "scoring weights do not sum to 1.0");
            }
        }
        Ok(r)
    }

    pub fn default_rules() -> Result<Rules, RulesError> {
        Self::parse(DEFAULT_RULES)
    }

    pub fn thresholds(&self) -> Result<TierThresholds, shared::domain::DomainError> {
        TierThresholds::new(self.tiers.a, self.tiers.b, self.tiers.c)
    }

    /// The base weights with the vertical's overrides applied.
    pub fn weights_for(&self, vertical: &str) -> BTreeMap<String, f64> {
        let mut w = self.weights.clone();
        if let Some(o) = self.verticals.get(vertical) {
            w.extend(o.iter().map(|(k, v)| (k.clone(), *v)));
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_rules_are_valid() {
        let r = Rules::default_rules().unwrap();
        assert_eq!(r.version, "v1");
        assert!((r.weights.values().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!((r.weights_for("restaurants").values().sum::<f64>() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn bad_rule_files_are_refused_with_the_reason() {
        let mut v: serde_json::Value = serde_json::from_str(DEFAULT_RULES).unwrap();
        v["weights"]["performance"] = serde_json::json!(0.5);
        assert!(matches!(
            Rules::parse(&v.to_string()),
            Err(RulesError::WeightSum { .. })
        ));
        let mut v: serde_json::Value = serde_json::from_str(DEFAULT_RULES).unwrap();
        v["weights"]["performance"] = serde_json::json!(0.24); // 1.02: warned, accepted
        assert!(Rules::parse(&v.to_string()).is_ok());
        let mut v: serde_json::Value = serde_json::from_str(DEFAULT_RULES).unwrap();
        v["verticals"]["plumbers"] = serde_json::json!({ "colour": 0.1 });
        assert!(matches!(
            Rules::parse(&v.to_string()),
            Err(RulesError::UnknownFactor(_))
        ));
        let mut v: serde_json::Value = serde_json::from_str(DEFAULT_RULES).unwrap();
        v["tiers"] = serde_json::json!({ "a": 40, "b": 60, "c": 80 });
        assert!(matches!(
            Rules::parse(&v.to_string()),
            Err(RulesError::Tiers(_))
        ));
        assert!(matches!(Rules::parse("{"), Err(RulesError::Parse(_))));
    }
}
