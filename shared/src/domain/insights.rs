//! The assessment's insights (`assessments.insights`): what assessment writes (from the LLM or
//! its rules) and what reports, personalization and the storefront read — one contract.

use serde::{Deserialize, Serialize};

/// One problem with its fix. Fields a stored value lacks read as empty, so one damaged entry
/// does not hide the others.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Recommendation {
    pub title: String,
    pub description: String,
    /// `high`, `medium` or `low`.
    pub impact: String,
    /// `high`, `medium` or `low`.
    pub effort: String,
    pub steps: Vec<String>,
}

/// Three concrete, plain-language problems with fixes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Insights {
    pub recommendations: Vec<Recommendation>,
}

impl Insights {
    /// The stored value as later stages read it: anything missing or malformed reads as no
    /// recommendations.
    pub fn stored(value: Option<&serde_json::Value>) -> Self {
        value
            .and_then(|v| Insights::deserialize(v).ok())
            .unwrap_or_default()
    }

    /// Exactly three, each with a title and a description, impact and effort in high|medium|low.
    pub fn validate(&self) -> Result<(), String> {
        if self.recommendations.len() != 3 {
            return Err(format!(
                "{} recommendations instead of 3",
                self.recommendations.len()
            ));
        }
        for (i, r) in self.recommendations.iter().enumerate() {
            if r.title.trim().is_empty() || r.description.trim().is_empty() {
                return Err(format!("recommendation {i} lacks a title or description"));
            }
            if !["high", "medium", "low"].contains(&r.impact.as_str())
                || !["high", "medium", "low"].contains(&r.effort.as_str())
            {
                return Err(format!(
                    "recommendation {i} has impact/effort outside high|medium|low"
                ));
            }
        }
        Ok(())
    }
}

/// The titles of the stored recommendations, in order: the "problems" an email and the report's
/// storefront page name. Anything missing or malformed reads as no recommendations.
pub fn recommendation_titles(insights: Option<&serde_json::Value>) -> Vec<String> {
    Insights::stored(insights)
        .recommendations
        .into_iter()
        .map(|r| r.title)
        .filter(|t| !t.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_in_order_and_nothing_from_malformed_insights() {
        let v = serde_json::json!({"recommendations": [
            {"title": "Speed up the homepage"}, {"impact": "high"}, {"title": "Add a title"}
        ]});
        assert_eq!(
            recommendation_titles(Some(&v)),
            ["Speed up the homepage", "Add a title"]
        );
        assert!(recommendation_titles(None).is_empty());
        assert!(
            recommendation_titles(Some(&serde_json::json!({"recommendations": "x"}))).is_empty()
        );
    }

    #[test]
    fn what_assessment_writes_is_what_the_readers_read() {
        let written = Insights {
            recommendations: (1..=3)
                .map(|i| Recommendation {
                    title: format!("Problem {i}"),
                    description: "Why it matters".into(),
                    impact: "high".into(),
                    effort: "low".into(),
                    steps: vec!["Do this".into()],
                })
                .collect(),
        };
        assert!(written.validate().is_ok());
        let stored = serde_json::to_value(&written).unwrap();
        assert_eq!(Insights::stored(Some(&stored)), written);
        assert_eq!(
            recommendation_titles(Some(&stored)),
            ["Problem 1", "Problem 2", "Problem 3"]
        );
        let mut two = written.clone();
        two.recommendations.pop();
        assert!(two.validate().is_err());
    }
}
