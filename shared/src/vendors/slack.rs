//! Slack incoming webhooks: `POST` JSON `{text, blocks}` to the webhook URL; `200 ok` on success.

use secrecy::{ExposeSecret, SecretString};

use super::core::Usage;
use super::{CallContext, VendorError, VendorHttp};

#[derive(Debug)]
pub struct SlackClient {
    http: VendorHttp,
    /// The whole webhook URL is the secret.
    webhook_url: SecretString,
}

impl SlackClient {
    pub fn new(http: VendorHttp, webhook_url: SecretString) -> Self {
        Self { http, webhook_url }
    }

    pub fn http(&self) -> &VendorHttp {
        &self.http
    }

    /// Posts `text` (the notification fallback) with a mrkdwn section block.
    pub async fn post(&self, ctx: &CallContext, text: &str) -> Result<(), VendorError> {
        let body = serde_json::json!({
            "text": text,
            "blocks": [{ "type": "section", "text": { "type": "mrkdwn", "text": text } }]
        });
        let (resp, started) = self
            .http
            .send(ctx, "webhook", |c| {
                c.post(self.webhook_url.expose_secret()).json(&body)
            })
            .await?;
        self.http
            .finish(ctx, "webhook", &resp, started, Usage::default());
        Ok(())
    }
}
