//! A/B experiments from a file, with deterministic assignment: sha256(`experiment:unit`) → the
//! first 8 hex digits mod 10 000 is the unit's basis-point bucket, and the variant is the one
//! whose cumulative normalised weight covers it. A separate hash decides the holdout, so changing
//! the holdout never reshuffles who sees which variant.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const DEFAULT_EXPERIMENT: &str = include_str!("../experiments.json");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    pub key: String,
    pub weight: f64,
    /// Subject template: `{business}`, `{score}`.
    pub subject: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    pub key: String,
    pub name: String,
    pub min_sample: i32,
    pub confidence: f64,
    /// Share of units held out (not contacted), in basis points.
    pub holdout_bp: u32,
    pub variants: Vec<Variant>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExperimentError {
    #[error("experiment file: {0}")]
    Parse(String),
    #[error("experiment {0}: {1}")]
    Invalid(String, String),
}

/// Where a unit landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    Variant { index: usize, bucket_bp: u32 },
    Holdout { bucket_bp: u32 },
}

/// The basis-point bucket (0..10 000) of `unit` in `salt`.
pub fn bucket(salt: &str, unit: &str) -> u32 {
    let digest = Sha256::digest(format!("{salt}:{unit}").as_bytes());
    let first8 = hex::encode(&digest[..4]);
    u32::from_str_radix(&first8, 16).unwrap_or(0) % 10_000
}

impl Experiment {
    pub fn parse(json: &str) -> Result<Self, ExperimentError> {
        let e: Experiment =
            serde_json::from_str(json).map_err(|e| ExperimentError::Parse(e.to_string()))?;
        let bad = |why: &str| Err(ExperimentError::Invalid(e.key.clone(), why.to_owned()));
        if !(2..=5).contains(&e.variants.len()) {
            return bad("needs 2 to 5 variants");
        }
        if e.variants
            .iter()
            .any(|v| !(v.weight.is_finite() && v.weight > 0.0))
        {
            return bad("every weight must be positive");
        }
        if e.holdout_bp >= 10_000
            || e.min_sample <= 0
            || !(0.0 < e.confidence && e.confidence < 1.0)
        {
            return bad("holdout_bp < 10000, min_sample > 0 and 0 < confidence < 1");
        }
        // A subject may use only the placeholders the copy fills (`{score}`, the opportunity
        // score, is not one: it would read as the site's grade).
        if let Some(v) = e.variants.iter().find(|v| {
            let mut rest = v.subject.clone();
            for p in crate::copy::SUBJECT_PLACEHOLDERS {
                rest = rest.replace(p, "");
            }
            rest.contains('{') || rest.contains('}')
        }) {
            return bad(&format!(
                "variant {:?}: a subject may use only {}",
                v.key,
                crate::copy::SUBJECT_PLACEHOLDERS.join(", ")
            ));
        }
        let mut keys: Vec<&str> = e.variants.iter().map(|v| v.key.as_str()).collect();
        keys.sort();
        keys.dedup();
        if keys.len() != e.variants.len() {
            return bad("variant keys must be unique");
        }
        Ok(e)
    }

    pub fn default_experiment() -> Result<Self, ExperimentError> {
        Self::parse(DEFAULT_EXPERIMENT)
    }

    /// The stable assignment of `unit` (a business id).
    pub fn assign(&self, unit: &str) -> Assignment {
        let holdout = bucket(&format!("holdout:{}", self.key), unit);
        let b = bucket(&self.key, unit);
        if holdout < self.holdout_bp {
            return Assignment::Holdout { bucket_bp: b };
        }
        let total: f64 = self.variants.iter().map(|v| v.weight).sum();
        let point = f64::from(b) / 10_000.0;
        let mut acc = 0.0;
        for (i, v) in self.variants.iter().enumerate() {
            acc += v.weight / total;
            if point < acc {
                return Assignment::Variant {
                    index: i,
                    bucket_bp: b,
                };
            }
        }
        Assignment::Variant {
            index: self.variants.len() - 1,
            bucket_bp: b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_quoting_the_opportunity_score_is_refused() {
        let with_score = DEFAULT_EXPERIMENT.replace("{mobile_performance}", "{score}");
        let err = Experiment::parse(&with_score).unwrap_err().to_string();
        assert!(err.contains("may use only"), "{err}");
        assert!(Experiment::default_experiment().is_ok());
    }

    #[test]
    fn assignment_is_stable_and_close_to_the_weights() {
        let mut e = Experiment::default_experiment().unwrap();
        e.variants[0].weight = 3.0; // 75 % / 25 %
        let mut counts = [0usize; 2];
        for i in 0..20_000 {
            let unit = format!("business-{i}");
            let a = e.assign(&unit);
            assert_eq!(a, e.assign(&unit), "stable");
            if let Assignment::Variant { index, .. } = a {
                counts[index] += 1;
            }
        }
        let share = counts[0] as f64 / 20_000.0;
        assert!((share - 0.75).abs() < 0.015, "{share}");
    }

    #[test]
    fn holdout_takes_its_share_without_reshuffling_the_rest() {
        let mut e = Experiment::default_experiment().unwrap();
        let before: Vec<Assignment> = (0..5_000).map(|i| e.assign(&format!("u{i}"))).collect();
        e.holdout_bp = 1_000;
        let after: Vec<Assignment> = (0..5_000).map(|i| e.assign(&format!("u{i}"))).collect();
        let held = after
            .iter()
            .filter(|a| matches!(a, Assignment::Holdout { .. }))
            .count();
        assert!(
            (400..600).contains(&held),
            "{held} held out of 5000 at 10 %"
        );
        for (b, a) in before.iter().zip(&after) {
            if let Assignment::Variant { .. } = a {
                assert_eq!(a, b, "a unit not held out keeps its variant");
            }
        }
    }

    #[test]
    fn bad_files_are_refused() {
        assert!(Experiment::parse("{").is_err());
        let mut v: serde_json::Value = serde_json::from_str(DEFAULT_EXPERIMENT).unwrap();
        v["variants"][1]["weight"] = serde_json::json!(0);
        assert!(Experiment::parse(&v.to_string()).is_err());
        v["variants"] = serde_json::json!([{ "key": "a", "weight": 1, "subject": "x" }]);
        assert!(Experiment::parse(&v.to_string()).is_err());
        assert_eq!(bucket("e", "u"), bucket("e", "u"));
        assert!(bucket("e", "u") < 10_000);
    }
}
