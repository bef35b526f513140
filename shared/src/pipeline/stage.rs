//! The pipeline's stages, named once: run events, idempotency records, metrics and progress
//! use these names.

use serde::Serialize;

/// One stage of the pipeline: targeting runs on a schedule, the rest are SQS-triggered
/// ([`super::StageHandler`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Targeting,
    Sourcing,
    Enrichment,
    Assessment,
    Scoring,
    Reports,
    Personalization,
    Delivery,
    Fulfilment,
}

impl Stage {
    /// Every stage, in the order of the pipeline.
    pub const ALL: &'static [Stage] = &[
        Stage::Targeting,
        Stage::Sourcing,
        Stage::Enrichment,
        Stage::Assessment,
        Stage::Scoring,
        Stage::Reports,
        Stage::Personalization,
        Stage::Delivery,
        Stage::Fulfilment,
    ];

    /// Every stage's name, in the order of the pipeline: a query's sort key
    /// (`ORDER BY array_position($n, stage)`), so tables list stages as the pipeline runs them.
    pub fn names() -> Vec<&'static str> {
        Stage::ALL.iter().map(|s| s.as_str()).collect()
    }

    /// The function (binary) that runs the stage: fulfilment is the delivery function's second
    /// queue.
    pub const fn function(self) -> &'static str {
        match self {
            Stage::Fulfilment => Stage::Delivery.as_str(),
            other => other.as_str(),
        }
    }

    /// The name stored in run events and idempotency records.
    pub const fn as_str(self) -> &'static str {
        match self {
            Stage::Targeting => "targeting",
            Stage::Sourcing => "sourcing",
            Stage::Enrichment => "enrichment",
            Stage::Assessment => "assessment",
            Stage::Scoring => "scoring",
            Stage::Reports => "reports",
            Stage::Personalization => "personalization",
            Stage::Delivery => "delivery",
            Stage::Fulfilment => "fulfilment",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_serialise_as_stored() {
        let names: std::collections::BTreeSet<&str> =
            Stage::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names.len(), Stage::ALL.len());
        for s in Stage::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
