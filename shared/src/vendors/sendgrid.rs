//! SendGrid v3 mail send (`POST /v3/mail/send`, 202 Accepted with `X-Message-Id`).

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::core::Usage;
use super::{CallContext, VendorError, VendorHttp};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mail {
    pub personalizations: Vec<Personalization>,
    pub from: Address,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<Address>,
    pub subject: String,
    pub content: Vec<Content>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Personalization {
    pub to: Vec<Address>,
    /// Echoed back on every event for this message: how events find their email.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_args: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Address {
    pub email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Content {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// Base64.
    pub content: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub filename: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disposition: Option<String>,
}

#[derive(Debug)]
pub struct SendGridClient {
    http: VendorHttp,
    key: SecretString,
}

impl SendGridClient {
    pub fn new(http: VendorHttp, key: SecretString) -> Self {
        Self { http, key }
    }

    pub fn http(&self) -> &VendorHttp {
        &self.http
    }

    /// Sends; returns SendGrid's message id (`X-Message-Id`). SendGrid has no idempotency key, so
    /// a send whose answer was lost is [`VendorError::Ambiguous`], never retried.
    pub async fn send(&self, ctx: &CallContext, mail: &Mail) -> Result<String, VendorError> {
        // Header injection: a line break in a subject, a name or a header value would start a
        // header of its own. Refused before anything is sent, whoever built the mail.
        if let Some(field) = header_break(mail) {
            return Err(VendorError::InvalidInput {
                vendor: crate::vendors::Vendor::SendGrid,
                detail: format!("{field} holds a line break"),
            });
        }
        let url = self.http.url("/v3/mail/send");
        let (resp, started) = self
            .http
            .send_unrepeatable(ctx, "mail/send", |c| {
                c.post(&url)
                    .bearer_auth(self.key.expose_secret())
                    .json(mail)
            })
            .await?;
        self.http
            .finish(ctx, "mail/send", &resp, started, Usage::default());
        resp.headers
            .get("x-message-id")
            .and_then(|v| v.to_str().ok())
            .map(|id| crate::domain::storable(id, crate::domain::capped::ID))
            .ok_or_else(|| self.http.malformed("202 without X-Message-Id", &resp.body))
    }
}

/// The first header-bound field of `mail` that holds a CR or LF.
fn header_break(mail: &Mail) -> Option<String> {
    let broken = |v: &str| v.contains(['\r', '\n']);
    if broken(&mail.subject) {
        return Some("the subject".into());
    }
    let names = std::iter::once(&mail.from)
        .chain(mail.reply_to.iter())
        .chain(mail.personalizations.iter().flat_map(|p| p.to.iter()));
    for a in names {
        if broken(&a.email) || a.name.as_deref().is_some_and(broken) {
            return Some(format!("the address {:?}", a.email));
        }
    }
    mail.headers
        .iter()
        .find(|(k, v)| broken(k) || broken(v))
        .map(|(k, _)| format!("header {k:?}"))
}
