//! The send outreach and fulfilment share: one SendGrid client (one rate limit), the link
//! signer and the pacing settings.

use shared::domain::TenantId;
use shared::links::LinkSigner;
use shared::pipeline::{Deps, WorkError};
use shared::vendors::CallContext;
use shared::vendors::sendgrid::SendGridClient;

use crate::send::Outbound;
use crate::{Done, Settings, send};

/// What both senders (outreach and fulfilment) hold, and the send they share.
pub struct Mailer {
    sendgrid: SendGridClient,
    pub(crate) links: LinkSigner,
    pub(crate) settings: Settings,
    /// The storefront's public base URL (unsubscribe and download links).
    pub(crate) base: String,
}

impl Mailer {
    pub fn new(
        sendgrid: SendGridClient,
        links: LinkSigner,
        settings: Settings,
        public_base_url: &str,
    ) -> Self {
        Self {
            sendgrid,
            links,
            settings,
            base: public_base_url.trim_end_matches('/').to_owned(),
        }
    }

    /// As the function's `main` builds it: SendGrid as configured, the link secret
    /// (`LF_LINK_SECRET`) and the pacing settings from `source`.
    pub fn from_source(
        deps: &Deps,
        source: &dyn shared::config::Source,
    ) -> Result<Self, shared::lambda::StartError> {
        let mut r = shared::config::Reader::new(source);
        let secret = r.secret("LF_LINK_SECRET");
        let settings = Settings::load(&mut r);
        r.finish(())?;
        let links = LinkSigner::new(secret).map_err(|e| shared::lambda::StartError::Invalid {
            variable: "LF_LINK_SECRET",
            reason: e.to_string(),
        })?;
        Ok(Self::new(
            deps.vendors.sendgrid(&deps.policy)?,
            links,
            settings,
            &deps.public_base_url,
        ))
    }

    /// Sends a claimed email. A refusal SendGrid answered puts the row back to `queued` (and
    /// its claim off the day's `counters`) and fails the message, so the retry sends it.
    pub(crate) async fn send(
        &self,
        deps: &Deps,
        tenant: TenantId,
        call: &CallContext,
        outbound: &Outbound,
        counters: &[String],
    ) -> Result<Done, WorkError> {
        let result = self.sendgrid.send(call, &send::mail(outbound)).await;
        match send::classify(result) {
            Ok(sent) => Ok(Done::Sent(outbound.email_id, sent)),
            Err(e) => {
                send::release_claim(
                    &deps.pool,
                    tenant,
                    outbound.email_id,
                    counters,
                    &e.to_string(),
                )
                .await?;
                // Whatever SendGrid answered (a bad key included), retrying may succeed once it
                // is fixed; the DLQ keeps the message meanwhile.
                Err(WorkError::Transient(e.to_string()))
            }
        }
    }
}
