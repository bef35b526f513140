//! The pipeline's SQS-triggered stages in one list, each built as its function's `main` builds
//! it. The local run pumps them in a loop, the template test checks each against its function's
//! resources, and the bench drives them: adding a stage is its crate, a field here, its
//! template entry and its events file.

use std::sync::Arc;

use shared::config::Source;
use shared::lambda::StartError;
use shared::pipeline::{AnyStage, Deps};

/// Every SQS-triggered stage.
pub struct Stages {
    pub sourcing: sourcing::Sourcing,
    pub enrichment: enrichment::Enrichment,
    pub assessment: assessment::Assessment,
    pub scoring: scoring::Scoring,
    pub reports: reports::Reports,
    pub personalization: personalization::Personalization,
    pub delivery: delivery::Delivery,
    pub fulfilment: delivery::Fulfilment,
}

impl Stages {
    /// Each stage from the deployment's settings in `source`, as its function's `main` builds
    /// it; outreach and fulfilment share `mailer`, as they do in the delivery function.
    pub fn new(
        deps: &Deps,
        source: &dyn Source,
        mailer: Arc<delivery::Mailer>,
    ) -> Result<Self, StartError> {
        Ok(Self {
            sourcing: sourcing::Sourcing::from_source(deps, source)?,
            enrichment: enrichment::Enrichment::from_source(deps, source)?,
            assessment: assessment::Assessment::from_source(deps, source)?,
            scoring: scoring::Scoring::from_source(deps, source)?,
            reports: reports::Reports::from_source(deps, source)?,
            personalization: personalization::Personalization::from_source(deps, source)?,
            delivery: delivery::Delivery::from(mailer.clone()),
            fulfilment: delivery::Fulfilment::from(mailer),
        })
    }

    /// Every stage, in the order of the pipeline. The destructuring names every field, so a
    /// stage added above and forgotten here does not compile.
    pub fn all(&self) -> [&dyn AnyStage; 8] {
        let Self {
            sourcing,
            enrichment,
            assessment,
            scoring,
            reports,
            personalization,
            delivery,
            fulfilment,
        } = self;
        [
            sourcing,
            enrichment,
            assessment,
            scoring,
            reports,
            personalization,
            delivery,
            fulfilment,
        ]
    }
}
